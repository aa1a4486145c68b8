"""A user's private parameters: kept in ``context.state`` and, on real devices, on local disk.

They never enter a reply. A SuperNode started with ``state-dir`` in its node config (or any
client of a run with ``client-state-dir``) also writes them to ``<dir>/user-<id>.npz`` after every
round, tagged with the run and the round, keeping the previous version as
``user-<id>.prev.npz``. A restarted SuperNode or a resumed server picks the newest version of the
same run from before the current round (a server that crashed mid-round resumes from a round some
clients had already passed). A new run starts every user afresh, whatever an earlier run left in
the folder: results must not depend on it. A missing or corrupted file means a fresh start,
logged, never a crash.
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
ROUND_FILE_KEY = "__round__"
RUN_FILE_KEY = "__run__"


def user_file(folder: str | Path, user: int) -> Path:
    """Where a user's private parameters are kept in a state folder (read by benchmarks too)."""
    return Path(str(folder)).expanduser() / f"user-{user}.npz"


def state_file(context: Context, user: int, fallback_dir: str = "") -> Path | None:
    """``<state-dir>/user-<id>.npz``: node config ``state-dir``, else run config's fallback."""
    folder = context.node_config.get("state-dir") or fallback_dir
    return None if not folder else user_file(folder, user)


def _previous(path: Path) -> Path:
    return path.with_name(path.name.replace(".npz", ".prev.npz"))


def load_private(context: Context, user: int, upto_round: int, fallback_dir: str = "",
                 run: str = "") -> dict[str, np.ndarray] | None:
    """Private parameters from ``context.state``, else the newest stored version (of run ``run``:
    saved in round ``upto_round`` or before), else None (a fresh start)."""
    if PRIVATE in context.state.array_records:
        return from_record(context.state.array_records[PRIVATE])
    path = state_file(context, user, fallback_dir)
    if path is None:
        return None
    for candidate in (path, _previous(path)):
        arrays = _read(candidate, user)
        if arrays is None:
            continue
        saved_round = int(arrays.pop(ROUND_FILE_KEY, 0))
        saved_run = arrays.pop(RUN_FILE_KEY, np.zeros(0, np.uint8)).tobytes().decode()
        if saved_run != run:
            log(INFO, "%s holds user %d's state from run %r, not this run (%r): not used",
                candidate, user, saved_run, run)
            continue
        if saved_round > upto_round:
            continue  # from a round the server is about to run again
        ema = arrays.pop(KD_EMA_FILE_KEY, None)
        if ema is not None:
            context.state[KD_STATE] = MetricRecord({"ema": float(ema)})
        log(INFO, "restored the private state of user %d (round %d) from %s", user,
            saved_round, candidate)
        return arrays
    return None


def _read(path: Path, user: int) -> dict[str, np.ndarray] | None:
    if not path.exists():
        return None
    try:
        with np.load(path, allow_pickle=False) as stored:
            return {name: stored[name] for name in stored.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as error:
        log(WARNING, "private state file %s is unreadable (%s); not using it for user %d",
            path, error, user)
        return None


def save_private(context: Context, user: int, arrays: dict[str, np.ndarray], kd_ema: float,
                 server_round: int, fallback_dir: str = "", run: str = "") -> None:
    """Keep the private parameters for the next round (and on disk when a state dir is set)."""
    context.state[PRIVATE] = to_record(arrays)
    context.state[KD_STATE] = MetricRecord({"ema": float(kd_ema)})
    path = state_file(context, user, fallback_dir)
    if path is None:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("wb") as handle:
        np.savez(handle, **arrays, **{KD_EMA_FILE_KEY: np.asarray(kd_ema),
                                      ROUND_FILE_KEY: np.asarray(server_round),
                                      RUN_FILE_KEY: np.frombuffer(run.encode(), np.uint8)})
    if path.exists():
        os.replace(path, _previous(path))
    os.replace(tmp, path)  # atomic: a crash leaves complete files, never half of one


def load_kd_ema(context: Context) -> float:
    record = context.state.metric_records.get(KD_STATE)
    return float(record["ema"]) if record is not None else 0.0
