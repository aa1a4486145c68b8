"""What a run learned, round by round: timings, losses, evaluations and the best-validation round.

Evaluations are per user (paired by user id) and averaged here; model selection takes the round
with the best validation ``select_metric`` and reports test metrics of that same round.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from strategies.protocol import COLD, RANKING_METRICS, TEST, VAL, metric_key


@dataclass
class RoundRecord:
    round: int
    seconds: float | None = None  # wall time of the round's exchange and server work
    trained: int = 0  # clients whose update was aggregated
    failed: int = 0  # clients that raised or never answered
    rejected: int = 0  # updates refused by screening
    train_loss: float | None = None
    kd_loss: float | None = None
    kd_weight: float | None = None
    val: dict[str, float] | None = None  # metrics of the model after this round
    test: dict[str, float] | None = None
    cold: dict[str, float] | None = None  # new items (cold-items > 0), over users who have any
    evaluated_users: int = 0
    client_seconds: dict[str, float] = field(default_factory=dict)  # train/eval, summed
    groups: dict | None = None  # GFMFR: group sizes, fusion fit
    server_seconds: dict[str, float] = field(default_factory=dict)  # phase -> seconds

    def as_dict(self) -> dict:
        return {k: v for k, v in self.__dict__.items()}


class RunHistory:
    """Rounds, best-validation tracking and early stopping."""

    def __init__(self, select_metric: str = "HR@50", patience: int = 0) -> None:
        self.select_metric = select_metric
        self.patience = patience
        self.rounds: dict[int, RoundRecord] = {}
        self.best_round: int | None = None
        self._since_best = 0
        self.stopped_after: int | None = None  # round after which early stopping triggered

    def at(self, server_round: int) -> RoundRecord:
        return self.rounds.setdefault(server_round, RoundRecord(server_round))

    def record_evaluation(self, server_round: int, per_user: dict[int, dict[str, float]]) -> None:
        """Average users' metrics for the model after ``server_round`` and update the best round."""
        if not per_user:
            return
        record = self.at(server_round)
        record.evaluated_users = len(per_user)
        for split in (VAL, TEST, COLD):
            users = [u for u in sorted(per_user)  # sorted: arrival order free
                     if metric_key(split, RANKING_METRICS[0]) in per_user[u]]
            if users:
                setattr(record, split, {m: float(np.mean([per_user[u][metric_key(split, m)]
                                                          for u in users]))
                                        for m in RANKING_METRICS})
        best = self.best()
        if best is None or record.val[self.select_metric] > best.val[self.select_metric]:
            self.best_round, self._since_best = server_round, 0
        else:
            self._since_best += 1
            if self.patience and self._since_best >= self.patience and self.stopped_after is None:
                self.stopped_after = server_round

    def to_dict(self) -> dict:
        return {"rounds": [r.as_dict() for _, r in sorted(self.rounds.items())],
                "best_round": self.best_round, "since_best": self._since_best,
                "stopped_after": self.stopped_after}

    def load_dict(self, state: dict) -> None:
        self.rounds = {r["round"]: RoundRecord(**r) for r in state["rounds"]}
        self.best_round, self._since_best = state["best_round"], state["since_best"]
        self.stopped_after = state["stopped_after"]

    def best(self) -> RoundRecord | None:
        return None if self.best_round is None else self.rounds[self.best_round]

    def seconds_left(self, last_round: int, num_rounds: int) -> float | None:
        """Estimated seconds for rounds ``last_round + 1 .. num_rounds``: their count times the
        mean training round so far; None when none is left or none was timed."""
        per_round = self.seconds_per_round()
        if last_round >= num_rounds or per_round is None:
            return None
        return per_round * (num_rounds - last_round)

    def seconds_per_round(self) -> float | None:
        times = [r.seconds for r in self.rounds.values() if r.seconds is not None and r.trained]
        return float(np.mean(times)) if times else None
