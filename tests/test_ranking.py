"""HR@K / NDCG@K against hand computations (3 users, 5 items)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from client_app.ranking import rank_of, ranking_metrics


@pytest.mark.parametrize("scores, target, seen, rank", [
    ([0.9, 0.1, 0.5, 0.3, 0.2], 0, [], 0),  # best item
    ([0.9, 0.1, 0.5, 0.3, 0.2], 3, [0], 1),  # 0.9 is seen, so only 0.5 beats it
    ([0.5, 0.5, 0.5, 0.1, 0.0], 1, [], 2),  # ties count against the held-out item
])
def test_rank_of(scores, target, seen, rank):
    candidates = np.ones(5, dtype=bool)
    candidates[seen] = False
    assert rank_of(np.asarray(scores), target, candidates) == rank


def test_nan_scores_never_hit():
    everything = np.ones(5, dtype=bool)
    assert rank_of(np.full(5, np.nan), 0, everything) == 4
    assert rank_of(np.array([0.5, np.nan, 0.1, 0.0, 0.2]), 0, everything) == 1


def test_metrics_by_hand():
    m = ranking_metrics(2, ks=(1, 3))
    assert m == {"HR@1": 0.0, "HR@3": 1.0, "NDCG@1": 0.0, "NDCG@3": pytest.approx(0.5)}
    assert ranking_metrics(0, ks=(10,))["NDCG@10"] == 1.0
    assert ranking_metrics(5, ks=(10,))["NDCG@10"] == pytest.approx(1 / math.log2(7))
