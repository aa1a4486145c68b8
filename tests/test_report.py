"""The benchmark report pools a run split over several comparison tables exactly."""

import numpy as np

from benchmarks.report import METRICS, pooled


def table_row(values: np.ndarray) -> dict:
    row = {"run": "gfmfr", "seeds": len(values)}
    for metric in METRICS:
        row[metric] = values.mean()
        row[f"{metric} std"] = values.std(ddof=1) if len(values) > 1 else 0.0
    return row


def test_pooling_partial_tables_equals_one_table_over_all_seeds():
    values = np.array([0.1453, 0.1601, 0.1549, 0.1702])
    for split in (1, 2, 3):
        merged = pooled([table_row(values[:split]), table_row(values[split:])])
        assert merged["seeds"] == 4
        assert np.isclose(merged["HR@50"], values.mean())
        assert np.isclose(merged["HR@50 std"], values.std(ddof=1))


def test_pooling_one_seed_has_zero_spread():
    merged = pooled([table_row(np.array([0.2]))])
    assert merged["seeds"] == 1 and merged["NDCG@50 std"] == 0.0
