"""The non-federated reference rows' helpers (pure numpy, no dataset)."""

from __future__ import annotations

import numpy as np

from datasets.split import LeaveOneOut
from server_app.references import recency_weights


def _split() -> LeaveOneOut:
    # user 0 trained on 3 items (oldest first), user 1 on 2
    return LeaveOneOut(n_items=10, indptr=np.array([0, 3, 5]), train=np.array([4, 5, 6, 1, 2]),
                       val=np.array([7, 3]), test=np.array([8, 9]))


def test_recency_weights_halve_per_half_life_and_keep_each_users_mean_at_one():
    weights = recency_weights(_split(), half_life=1.0)
    # user 0: ages 2, 1, 0 -> 1/4, 1/2, 1 scaled to mean 1; user 1: ages 1, 0 -> 1/2, 1
    np.testing.assert_allclose(weights[:3], np.array([0.25, 0.5, 1.0]) * 3 / 1.75)
    np.testing.assert_allclose(weights[3:], np.array([0.5, 1.0]) * 2 / 1.5)
    np.testing.assert_allclose([weights[:3].mean(), weights[3:].mean()], [1.0, 1.0])


def test_no_half_life_weights_every_interaction_alike():
    np.testing.assert_array_equal(recency_weights(_split(), half_life=0.0), np.ones(5))
