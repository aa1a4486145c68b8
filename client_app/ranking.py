"""Full-ranking metrics for one user's held-out item (pure numpy)."""

from __future__ import annotations

import numpy as np

from strategies.protocol import KS


def rank_of(scores: np.ndarray, target: int, candidates: np.ndarray) -> int:
    """0-based rank of ``target`` among ``candidates`` (bool mask); ties count against the target.

    A NaN score counts against the target too, so a broken model can never score a hit.
    """
    others = candidates.copy()
    others[target] = False
    return int(np.count_nonzero(~(scores[others] < scores[target])))


def ranking_metrics(rank: int, ks: tuple[int, ...] = KS) -> dict[str, float]:
    """HR@K and NDCG@K of a single held-out item at 0-based ``rank``."""
    out = {}
    for k in ks:
        out[f"HR@{k}"] = float(rank < k)
    for k in ks:
        out[f"NDCG@{k}"] = float(1.0 / np.log2(rank + 2)) if rank < k else 0.0
    return out
