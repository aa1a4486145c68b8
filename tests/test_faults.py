"""Faults in a real (in-process) federation: failing, silent and malicious clients, server restarts.

Every test runs the real ServerApp and ClientApp; faults are injected at the message layer.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from flwr.app import Message, MetricRecord, RecordDict

from server_app.inprocess import run_inprocess
from strategies import protocol as p
from strategies.records import from_record, to_record
from tests.conftest import inprocess_config

USERS = 30


def config(tmp_path, **extra) -> dict:
    return inprocess_config(tmp_path, USERS, 120, 10, **{"num-server-rounds": 4, "lr": 0.05,
                                                         "strategy": "fedrap", **extra})


def tamper(reply: Message, change) -> Message:
    """A copy of ``reply`` whose uploaded arrays went through ``change``."""
    arrays = from_record(reply.content.array_records[p.SHARED])
    change(arrays)
    metrics = MetricRecord(dict(reply.content.metric_records[p.METRICS]))
    return Message(RecordDict({p.SHARED: to_record(arrays), p.METRICS: metrics}),
                   reply_to=reply)


def round_of(message: Message) -> int:
    return int(message.content[p.CONFIG][p.SERVER_ROUND])


@pytest.fixture
def clean(tmp_path):
    return run_inprocess(config(tmp_path / "clean"), USERS)[1].history


def test_faulty_round_completes_and_stays_close_to_a_clean_run(tmp_path, clean):
    """Round 2: 30% of clients raise, one uploads NaN, one a wrong shape, one never answers."""
    nodes: list[int] = []

    def fault(node, received, reply):
        if received.metadata.message_type != "train" or round_of(received) != 2:
            return None
        nodes.append(node)
        index = len(nodes) - 1
        if index < 9:
            raise RuntimeError("device crashed")
        if index == 9:
            return tamper(reply, lambda a: a["C"].__setitem__((0, 0), np.nan))
        if index == 10:
            return tamper(reply, lambda a: a.update(W1=np.zeros((3, 3), np.float32)))
        if index == 11:
            return tamper(reply, lambda a: a.update(C=a["C"] * 1e9))
        return None

    _, run = run_inprocess(config(tmp_path / "faulty"), USERS, fault=fault)
    second = run.history.rounds[2]
    assert (second.failed, second.rejected, second.trained) == (9, 3, USERS - 12)
    assert all(np.isfinite(run.history.rounds[4].val[m]) for m in run.history.rounds[4].val)
    for rnd in (3, 4):
        assert abs(run.history.rounds[rnd].val["HR@10"] - clean.rounds[rnd].val["HR@10"]) < 0.15


def test_too_few_replies_leave_the_model_unchanged(tmp_path):
    def fault(node, received, reply):
        if received.metadata.message_type == "train" and round_of(received) == 2:
            raise RuntimeError("offline")

    _, run = run_inprocess(config(tmp_path, **{"min-replies": 5}), USERS, fault=fault)
    assert run.history.rounds[2].trained == 0 and run.history.rounds[2].failed == USERS
    assert run.history.rounds[4].trained == USERS  # the run goes on


class ServerCrash(BaseException):
    """Not an Exception: escapes the grid's client-error handling, as a dying server would."""


@pytest.mark.parametrize("strategy", ["fedrap", "gfmfr"])
def test_killed_server_resumes_to_the_same_result(tmp_path, strategy):
    extra = {"strategy": strategy, "client-state-dir": str(tmp_path / "clients"),
             "run-name": "r", "fusion-epochs": 5}
    _, whole = run_inprocess(config(tmp_path / "whole", **{**extra, "client-state-dir":
                                                          str(tmp_path / "whole-clients")}),
                             USERS)
    seen = []

    def crash(node, received, reply):
        if received.metadata.message_type == "train" and round_of(received) == 3:
            seen.append(node)
            if len(seen) == USERS // 2:  # half the clients of round 3 already trained
                raise ServerCrash

    with pytest.raises(ServerCrash):
        run_inprocess(config(tmp_path, **extra), USERS, fault=crash)
    assert (tmp_path / "results" / "r" / "checkpoint.npz").exists()
    _, resumed = run_inprocess(config(tmp_path, **extra, resume=True), USERS)
    for rnd in range(5):
        assert resumed.history.rounds[rnd].val == whole.history.rounds[rnd].val
    summary = json.loads((tmp_path / "results" / "r" / "summary.json").read_text())
    assert summary["best_round"] == whole.history.best_round


def test_resume_refuses_what_would_continue_a_different_run(tmp_path):
    extra = {"client-state-dir": str(tmp_path / "clients"), "run-name": "r"}

    def crash(node, received, reply):
        if received.metadata.message_type == "train" and round_of(received) == 3:
            raise ServerCrash

    with pytest.raises(ServerCrash):
        run_inprocess(config(tmp_path, **extra), USERS, fault=crash)
    refused = [
        ({}, "holds the checkpoint of an unfinished run.*resume=true"),  # forgot resume
        ({"resume": True, "seed": 7}, r"seed=0 \(now 7\)"),
        ({"resume": True, "strategy": "gfmfr"}, r"strategy='fedrap' \(now 'gfmfr'\)"),
        ({"resume": True, "latent-dim": 32}, r"latent-dim=64 \(now 32\)"),
        ({"resume": True, "client-state-dir": ""}, "without client-state-dir"),
    ]
    checkpoint = tmp_path / "results" / "r" / "checkpoint.npz"
    before = checkpoint.read_bytes()
    for overrides, words in refused:
        with pytest.raises(ValueError, match=words):
            run_inprocess(config(tmp_path, **{**extra, **overrides}), USERS)
    assert checkpoint.read_bytes() == before  # nothing was overwritten
    checkpoint.write_bytes(before[: len(before) // 2])  # a truncated file
    with pytest.raises(ValueError, match="unreadable"):
        run_inprocess(config(tmp_path, **extra, resume=True), USERS)


def test_a_new_run_never_overwrites_a_finished_runs_results(tmp_path):
    extra = {"run-name": "r", "num-server-rounds": 1}
    run_inprocess(config(tmp_path, **extra), USERS)
    summary = tmp_path / "results" / "r" / "summary.json"
    before = summary.read_bytes()
    with pytest.raises(ValueError, match="results of a finished run.*another run-name"):
        run_inprocess(config(tmp_path, **{**extra, "seed": 3}), USERS)
    assert summary.read_bytes() == before


def test_a_simulated_run_without_client_state_dir_cannot_be_resumed(tmp_path):
    """Its users' private parameters were in memory only: a resume would restart every user from
    the initial model under the trained shared model and report that as the run's result."""
    def crash(node, received, reply):
        if received.metadata.message_type == "train" and round_of(received) == 3:
            raise ServerCrash

    with pytest.raises(ServerCrash):
        run_inprocess(config(tmp_path, **{"run-name": "r"}), USERS, fault=crash)
    with pytest.raises(ValueError, match="lived only in the simulation's memory"):
        run_inprocess(config(tmp_path, **{"run-name": "r", "resume": True}), USERS)


def test_an_explicit_data_dir_wins_over_the_environment(tmp_path, monkeypatch):
    from strategies.config import RunConfig

    monkeypatch.setenv("GFMFR_DATA_DIR", str(tmp_path / "env"))
    assert RunConfig.from_run_config({"data-dir": str(tmp_path / "mine")}).data_path() == \
        tmp_path / "mine"
    assert RunConfig.from_run_config({}).data_path() == tmp_path / "env"



def test_a_run_whose_clients_all_fail_stops_with_the_cause(tmp_path):
    """Every client failing must not end as a 'successful' run of the untrained model."""
    from strategies.fedrec import RunFailed

    def fault(node, received, reply):
        if received.metadata.message_type == "train" and round_of(received) >= 2:
            raise FloatingPointError("local training diverged in round 2")

    with pytest.raises(RunFailed, match="3 consecutive round.*diverged in round 2"):
        run_inprocess(config(tmp_path, **{"num-server-rounds": 6, "run-name": "r"}), USERS,
                      fault=fault)
    # nothing that looks like a result
    assert not (tmp_path / "results" / "r" / "summary.json").exists()
    # with max-failed-rounds=0 the first empty round stops it
    with pytest.raises(RunFailed, match="1 consecutive"):
        run_inprocess(config(tmp_path / "b", **{"num-server-rounds": 6,
                                                "max-failed-rounds": 0}), USERS, fault=fault)


def test_gfmfr_never_sends_a_broken_teacher(tmp_path, monkeypatch):
    from strategies.fedrec import RunFailed
    from strategies.fusion import FusionTrainer

    tables = FusionTrainer.tables
    monkeypatch.setattr(FusionTrainer, "tables", lambda self, g: tables(self, g) * np.nan)
    with pytest.raises(RunFailed, match="fusion network produced NaN"):
        run_inprocess(config(tmp_path, strategy="gfmfr", **{"fusion-epochs": 2}), USERS)
