"""Private state: kept in context.state, persisted to the node's state-dir, resumed after restart."""

from __future__ import annotations

import numpy as np
from flwr.app import ConfigRecord, Context, RecordDict

from client_app.state import RUN_FILE_KEY, load_kd_ema, load_private, save_private
from strategies import protocol as p


def context(state_dir=None) -> Context:
    node_config = {"partition-id": 3}
    if state_dir is not None:
        node_config["state-dir"] = str(state_dir)
    return Context(run_id=1, node_id=7, node_config=node_config, state=RecordDict(),
                   run_config={})


def test_first_round_has_no_private_state():
    assert load_private(context(), 3, 0) is None


def test_state_round_trips_through_context_and_disk(tmp_path):
    arrays = {"e_u": np.arange(4, dtype=np.float32), "D_u": np.ones((5, 4), np.float32)}
    first = context(tmp_path)
    save_private(first, 3, arrays, kd_ema=2.5, server_round=1)
    again = load_private(first, 3, 1)
    assert all(np.array_equal(again[k], arrays[k]) for k in arrays)
    restarted = context(tmp_path)  # a SuperNode restart: empty context.state
    resumed = load_private(restarted, 3, 1)
    assert all(np.array_equal(resumed[k], arrays[k]) for k in arrays)
    assert load_kd_ema(restarted) == 2.5
    assert sorted(p.name for p in tmp_path.iterdir()) == ["user-3.npz"]  # no temp files left
    assert load_private(context(tmp_path), 3, 0) is None  # saved in round 1: not for round 0
    # a new run starts afresh, whatever an earlier run (of any strategy) left in the folder
    assert load_private(context(tmp_path), 3, 5, run="next run") is None
    assert load_private(context(tmp_path), 3, 5, run="") is not None  # the same run, restarted


def test_corrupted_state_file_means_a_fresh_start(tmp_path, caplog):
    (tmp_path / "user-3.npz").write_bytes(b"not a zip file")
    assert load_private(context(tmp_path), 3, 5) is None


def test_state_file_of_another_model_means_a_fresh_start(tmp_path, caplog):
    from client_app.session import Session
    from strategies.backbones.registry import build_backbone
    from strategies.records import to_record
    from strategies.registry import backbone_name, hyper

    run_config = {"dataset": "synthetic", "strategy": "fedrap", "synthetic-users": 4,
                  "synthetic-items": 20, "synthetic-interactions": 6,
                  "cache-dir": str(tmp_path / "cache")}
    ctx = Context(run_id=1, node_id=7, node_config={"partition-id": 3, "state-dir": str(tmp_path)},
                  state=RecordDict(), run_config=run_config)
    session = Session.open(ctx)
    template = build_backbone(backbone_name(session.cfg), session.split.n_items,
                              hyper(session.cfg), 0)
    content = RecordDict({p.SHARED: to_record(template.shared_arrays()),
                          p.CONFIG: ConfigRecord({p.STATE_ROUND: 5})})
    fresh = session.model(content)
    np.savez(tmp_path / "user-3.npz", **{k: np.ones((2, 2), np.float32)  # e.g. after a bad edit
                                         for k in fresh.private_arrays()},
             **{RUN_FILE_KEY: np.frombuffer(session.run_key.encode(), np.uint8)})
    again = session.model(content)
    assert "does not fit this model" in caplog.text
    assert all(np.array_equal(again.private_arrays()[k], v)
               for k, v in fresh.private_arrays().items())


def test_a_crash_mid_round_resumes_from_the_previous_version(tmp_path):
    for rnd in (1, 2, 3):
        save_private(context(tmp_path), 3, {"e_u": np.full(2, rnd, np.float32)}, 0.0, rnd)
    resumed = load_private(context(tmp_path), 3, upto_round=2)  # the server re-runs round 3
    assert resumed["e_u"][0] == 2.0
    assert load_private(context(tmp_path), 3, upto_round=1) is None  # only 2 versions are kept


def test_run_config_state_dir_is_used_without_node_config(tmp_path):
    plain = context()
    save_private(plain, 3, {"e_u": np.ones(2, np.float32)}, 0.0, 1, fallback_dir=str(tmp_path))
    assert (tmp_path / "user-3.npz").exists()
