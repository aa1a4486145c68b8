"""Best-validation selection, test reporting at that round, and early stopping."""

from __future__ import annotations

from strategies.history import RunHistory
from strategies.protocol import RANKING_METRICS, metric_key


def users(val_hr50: float, test_hr50: float, n: int = 2) -> dict[int, dict[str, float]]:
    row = {}
    for split, value in (("val", val_hr50), ("test", test_hr50)):
        row.update({metric_key(split, m): value for m in RANKING_METRICS})
    return {u: dict(row) for u in range(n)}


def test_best_round_reports_its_own_test_metrics():
    history = RunHistory("HR@50", patience=0)
    for rnd, (val, test) in enumerate([(0.1, 0.5), (0.3, 0.2), (0.2, 0.9)]):
        history.record_evaluation(rnd, users(val, test))
    assert history.best_round == 1
    assert history.best().test["HR@50"] == 0.2 and history.stopped_after is None


def test_patience_stops_after_n_evaluations_without_improvement():
    history = RunHistory("HR@50", patience=2)
    for rnd, val in enumerate([0.1, 0.3, 0.2, 0.25, 0.5]):
        history.record_evaluation(rnd, users(val, 0.0))
    assert history.stopped_after == 3 and history.best_round == 4


def test_metrics_average_over_users():
    history = RunHistory()
    per_user = users(0.0, 0.0)
    per_user[1] = {k: 1.0 for k in per_user[1]}
    history.record_evaluation(0, per_user)
    assert history.rounds[0].val["HR@10"] == 0.5 and history.rounds[0].evaluated_users == 2
