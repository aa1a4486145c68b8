"""A user's private parameters: kept in ``context.state`` and, on real devices, on local disk.

They never enter a reply. In deployment a SuperNode started with ``state-dir`` in its node config
also writes them to ``<state-dir>/user-<id>.npz`` after every round, so a restarted SuperNode (or
a new run) resumes them; a missing or corrupted file means a fresh start, logged, never a crash.
"""

from __future__ import annotations

import os
import zipfile
from logging import INFO, WARNING
from pathlib import Path

import numpy as np
from flwr.app import Context, MetricRecord
from flwr.common import log

from strategies.records import from_record, to_record

PRIVATE = "private"  # ArrayRecord: private parameters (e.g. e_u, D_u)
KD_STATE = "kd-state"  # MetricRecord: the adaptive distillation weight's running average
KD_EMA_FILE_KEY = "__kd_ema__"


def state_file(context: Context, user: int) -> Path | None:
    folder = context.node_config.get("state-dir")
    return None if not folder else Path(str(folder)).expanduser() / f"user-{user}.npz"


def load_private(context: Context, user: int) -> dict[str, np.ndarray] | None:
    """Private parameters from ``context.state``, else from the node's state file, else None."""
    if PRIVATE in context.state.array_records:
        return from_record(context.state.array_records[PRIVATE])
    path = state_file(context, user)
    if path is None or not path.exists():
        return None
    try:
        with np.load(path, allow_pickle=False) as stored:
            arrays = {name: stored[name] for name in stored.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as error:
        log(WARNING, "private state file %s is unreadable (%s); starting user %d afresh",
            path, error, user)
        return None
    ema = arrays.pop(KD_EMA_FILE_KEY, None)
    if ema is not None:
        context.state[KD_STATE] = MetricRecord({"ema": float(ema)})
    log(INFO, "restored the private state of user %d from %s", user, path)
    return arrays


def save_private(context: Context, user: int, arrays: dict[str, np.ndarray], kd_ema: float
                 ) -> None:
    """Keep the private parameters for the next round (and on disk when a state-dir is set)."""
    context.state[PRIVATE] = to_record(arrays)
    context.state[KD_STATE] = MetricRecord({"ema": float(kd_ema)})
    path = state_file(context, user)
    if path is None:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("wb") as handle:
        np.savez(handle, **arrays, **{KD_EMA_FILE_KEY: np.asarray(kd_ema)})
    os.replace(tmp, path)  # atomic: a crash leaves the old file or the new one, never half


def load_kd_ema(context: Context) -> float:
    record = context.state.metric_records.get(KD_STATE)
    return float(record["ema"]) if record is not None else 0.0
