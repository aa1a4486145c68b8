"""Fuzz-style robustness: malformed dataset files and malformed replies never crash the app.

Seeded random mutations of valid inputs: a loader either raises a one-line DataError that names
the file (and line) and a fix, or returns a dataset that keeps every invariant callers rely on
(contiguous ids in range, no duplicates, enough interactions per user, finite float32 features);
both outcomes occur. The strategy either aggregates or rejects a reply, and the run always completes.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from flwr.app import Array, ArrayRecord, Message, MetricRecord, RecordDict

from datasets.errors import DataError
from datasets.interactions import MIN_INTERACTIONS, Dataset
from datasets.movielens import load_ml100k
from datasets.paper_layout import load_paper_layout
from server_app.inprocess import run_inprocess
from strategies import protocol as p

U_DATA = "".join(f"{u}\t{i}\t{(u + i) % 5 + 1}\t{100 + u * 10 + i}\n"
                 for u in range(1, 6) for i in range(1, 6)) + "2\t3\t1\t999\n"  # a repeat
U_ITEM = "".join(f"{i}|Movie {i} (1990)|01-Jan-1990||url|" + "|".join(["0"] * 18) + "|1\n"
                 for i in range(1, 6))


def mutate(text: bytes, rng: np.random.Generator) -> bytes:
    data = bytearray(text)
    kind = rng.integers(6)
    position = int(rng.integers(len(data))) if data else 0
    if kind == 0 and data:
        data[position] = int(rng.integers(256))  # any byte, also invalid UTF-8
    elif kind == 1:
        del data[position:position + int(rng.integers(1, 20))]
    elif kind == 2:
        data = data[:position]  # truncated file
    elif kind == 3:
        data[position:position] = bytes(rng.integers(0, 256, size=int(rng.integers(1, 30))))
    elif kind == 4:
        data[position:position] = b"\t|,\n"
    else:  # overwritten in place, length kept: a float32 NaN in a binary file
        data[position:position + 4] = b"\xff\xff\xff\x7f"
    return bytes(data)


def assert_loaded_dataset_is_sound(data: Dataset) -> None:
    """What every caller relies on, whatever bytes the files held."""
    n = data.n_interactions
    assert data.users.shape == data.items.shape == (n,) and n > 0
    assert data.users.dtype == data.items.dtype == np.int64
    assert np.array_equal(np.unique(data.users), np.arange(data.n_users))  # contiguous, none empty
    assert data.items.min() >= 0 and data.items.max() < data.n_items
    assert data.timestamps is None or data.timestamps.shape == (n,)
    pairs = data.users * data.n_items + data.items
    assert np.unique(pairs).size == n  # duplicates were dropped
    assert np.bincount(data.users).min() >= MIN_INTERACTIONS
    catalog = data.catalog
    assert np.unique(catalog.raw_ids).size == catalog.n_items
    assert len(catalog.texts) == len(catalog.image_paths) == catalog.n_items
    for features in catalog.features.values():
        assert features.dtype == np.float32 and features.shape[0] == catalog.n_items
        assert np.isfinite(features).all()


def assert_names_a_file(error: DataError, root: Path, mutated: str) -> None:
    """A one-line error that names the file (and line of a text file) and says how to fix it."""
    message = str(error)
    assert error.path is not None and error.path.parent == root, message
    assert str(error.path) in message and "Fix:" in message and "\n" not in message
    if error.path.name == mutated:
        assert error.line is not None or mutated.endswith(".npy"), message
    else:  # the other file names the mutated one: ratings of items the item file lost
        assert (error.path.name, mutated) == ("u.data", "u.item") and "item file" in message


def load_or_raise(load: Callable[[Path], Dataset], root: Path, mutated: str,
                  outcomes: Counter) -> None:
    try:
        data = load(root)
    except DataError as error:
        assert_names_a_file(error, root, mutated)
        outcomes["error"] += 1
    else:
        assert_loaded_dataset_is_sound(data)
        outcomes["loaded"] += 1


@pytest.mark.parametrize("target", ["u.data", "u.item"])
def test_mutated_movielens_files_load_or_raise_data_error(tmp_path, target):
    rng = np.random.default_rng(0)
    outcomes: Counter = Counter()
    for attempt in range(150):
        root = tmp_path / f"ml{attempt}"
        root.mkdir()
        files = {"u.data": U_DATA.encode(), "u.item": U_ITEM.encode("latin-1")}
        files[target] = mutate(files[target], rng)
        for name, content in files.items():
            (root / name).write_bytes(content)
        load_or_raise(load_ml100k, root, target, outcomes)
    assert outcomes["error"] > 50 and outcomes["loaded"] > 10, outcomes  # both paths exercised


def test_mutated_feature_files_load_or_raise_data_error(tmp_path):
    rng = np.random.default_rng(1)
    outcomes: Counter = Counter()
    for attempt in range(60):
        root = tmp_path / f"g{attempt}"
        root.mkdir()
        np.save(root / "text_features.npy", np.ones((3, 4), np.float32))
        np.save(root / "image_features.npy", np.ones((3, 4), np.float32))
        path = root / ("text_features.npy" if attempt % 2 else "image_features.npy")
        path.write_bytes(mutate(path.read_bytes(), rng))
        (root / "inter.csv").write_text("userId,itemId,rating,timestamp\n0,0,1,1\n0,1,1,2\n"
                                        "0,2,1,3\n")
        load_or_raise(load_paper_layout, root, path.name, outcomes)
    assert outcomes["error"] > 30 and outcomes["loaded"] > 5, outcomes


def garbage_reply(reply: Message, rng: np.random.Generator) -> Message:
    """A reply with one random defect: wrong keys, dtypes, shapes, values or metrics."""
    arrays = {k: v.numpy() for k, v in reply.content.array_records[p.SHARED].items()}
    metrics = dict(reply.content.metric_records[p.METRICS])
    name = sorted(arrays)[int(rng.integers(len(arrays)))]
    kind = int(rng.integers(9))
    if kind == 0:
        arrays[name] = arrays[name].astype(np.int64)
    elif kind == 1:
        arrays[name] = np.zeros((2, 3, 4), np.float32)
    elif kind == 2:
        arrays.pop(name)
    elif kind == 3:
        arrays["intruder"] = np.ones(3, np.float32)
    elif kind == 4:  # non-finite values; for the row ids of an item table, out-of-range ones
        value = arrays[name]
        arrays[name] = np.full_like(value, np.inf if value.dtype.kind == "f"
                                    else np.iinfo(value.dtype).max)
    elif kind == 5:
        metrics[p.NUM_EXAMPLES] = -5
    elif kind == 6:
        metrics.pop(p.NUM_EXAMPLES)
    elif kind == 7:
        metrics[p.metric_key(p.VAL, "HR@10")] = 7.0  # an impossible hit rate
        metrics[p.NUM_EXAMPLES] = [1.0, 2.0]
    else:
        arrays[name + p.ROWS] = np.array([10**9, -1])
    record = ArrayRecord({k: Array(np.ascontiguousarray(v)) for k, v in arrays.items()})
    return Message(RecordDict({p.SHARED: record, p.METRICS: MetricRecord(metrics)}),
                   reply_to=reply)


def test_garbage_replies_are_rejected_and_the_run_completes(tmp_path):
    rng = np.random.default_rng(2)

    def fault(node, received, reply):
        if received.metadata.message_type == "train" and rng.random() < 0.4:
            return garbage_reply(reply, rng)
        return None

    run_config = {"dataset": "synthetic", "synthetic-users": 30, "synthetic-items": 60,
                  "synthetic-interactions": 8, "num-server-rounds": 4, "strategy": "gfmfr",
                  "backbone": "ncf", "cache-dir": str(tmp_path / "cache"),
                  "results-dir": str(tmp_path), "max-in-flight": 0, "fusion-epochs": 3}
    _, run = run_inprocess(run_config, 30, fault=fault)
    rejected = sum(r.rejected for r in run.history.rounds.values())
    assert rejected > 10
    for record in run.history.rounds.values():
        if record.val is not None:
            assert all(0.0 <= v <= 1.0 for v in record.val.values())
    assert run.history.rounds[4].trained > 0
