"""A user's private parameters <-> the ClientApp's ``context.state`` (they never enter a reply)."""

from __future__ import annotations

import numpy as np
from flwr.app import Context, MetricRecord

from strategies.records import from_record, to_record

PRIVATE = "private"  # ArrayRecord: private parameters (e.g. e_u, D_u)
KD_STATE = "kd-state"  # MetricRecord: the adaptive distillation weight's running average


def load_private(context: Context) -> dict[str, np.ndarray] | None:
    """The private parameters kept from an earlier round, or None on the first one."""
    if PRIVATE not in context.state.array_records:
        return None
    return from_record(context.state.array_records[PRIVATE])


def save_private(context: Context, arrays: dict[str, np.ndarray]) -> None:
    context.state[PRIVATE] = to_record(arrays)


def load_kd_ema(context: Context) -> float:
    record = context.state.metric_records.get(KD_STATE)
    return float(record["ema"]) if record is not None else 0.0


def save_kd_ema(context: Context, ema: float) -> None:
    context.state[KD_STATE] = MetricRecord({"ema": float(ema)})
