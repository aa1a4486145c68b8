"""Issue 26, without Flower processes: the trusted-apps file, the decision, the guarded plugin."""

from __future__ import annotations

import os

import pytest
from flwr.proto.task_pb2 import Task  # pylint: disable=E0611
from flwr.supercore.constant import TaskType
from flwr.supercore.superexec import run_superexec as flower_loop
from flwr.supercore.superexec.executor import LaunchResult, LaunchResultStatus
from flwr.supercore.superexec.plugin import AutoExecPlugin

from server_app import superexec, trusted_apps
from server_app.trusted_apps import TrustedApps, TrustedAppsError
from tests.conftest import ROOT

A, B = "a" * 64, "0123456789abcdef" * 4


def test_file_format_labels_comments_and_case():
    text = f"# pinned by the operator\n\n{A}  gfmfr 0.1.0 (2026-12-06)\n  {B.upper()} # v2\n"
    assert trusted_apps.parse(text) == {A, B}


@pytest.mark.parametrize("text, words", [
    ("", "pins no app"),
    ("# only a comment\n\n", "pins no app"),
    (f"{A}\nnot-a-hash\n", "line 2: 'not-a-hash' is not a FAB hash"),
    (A[:63], "line 1"),  # one digit short
])
def test_empty_or_malformed_file_is_named(text, words):
    with pytest.raises(TrustedAppsError, match=words) as error:
        trusted_apps.parse(text, "trusted-apps file /x/t.txt")
    assert "/x/t.txt" in str(error.value)


def test_missing_file_names_the_path_and_the_fix(tmp_path):
    with pytest.raises(TrustedAppsError, match="does not exist") as error:
        trusted_apps.load(tmp_path / "nope.txt")
    assert str(tmp_path / "nope.txt") in str(error.value) and "gfmfr app-hash" in str(error.value)


def test_only_pinned_hashes_run_and_the_refusal_names_the_hash(tmp_path):
    path = tmp_path / "trusted-apps.txt"
    path.write_text(A + "\n")
    trusted = TrustedApps(path)
    assert trusted.check(A) is None and trusted.check(A.upper()) is None
    reason = trusted.check(B)
    assert B in reason and str(path) in reason and "nothing of it was installed or run" in reason
    assert "names no FAB hash" in trusted.check("")

    path.write_text(f"{A}\n{B}\n")  # pinned later: no restart needed
    os.utime(path, ns=(1, 1))  # a different stamp even within the clock's resolution
    assert trusted.check(B) is None

    path.write_text("garbage\n")  # broken later: fail closed, saying why
    os.utime(path, ns=(2, 2))
    assert "is not a FAB hash" in trusted.check(A)
    path.unlink()
    assert "does not exist" in trusted.check(A)


def test_fab_hash_is_what_flwr_build_names_and_is_stable():
    first = trusted_apps.fab_hash(ROOT)
    assert trusted_apps.HASH.fullmatch(first) and trusted_apps.fab_hash(ROOT) == first


class _Executor:
    def __init__(self):
        self.launched = []

    def launch(self, spec):
        self.launched.append(spec)
        return LaunchResult.accepted()


def _plugin(tmp_path, monkeypatch):
    path = tmp_path / "trusted-apps.txt"
    path.write_text(A + "\n")
    monkeypatch.setattr(superexec.GuardedExecPlugin, "trusted", TrustedApps(path))
    answered = []
    monkeypatch.setattr(superexec.GuardedExecPlugin, "_answer_refused",
                        lambda self, token, task, reason: answered.append((task.task_id, reason)))
    executor = _Executor()
    plugin = superexec.GuardedExecPlugin(runtime_api_address="127.0.0.1:1", insecure=True,
                                         root_certificates_path=None, executor=executor)
    return plugin, executor, answered


def test_guarded_plugin_launches_pinned_apps_and_answers_the_others(tmp_path, monkeypatch):
    plugin, executor, answered = _plugin(tmp_path, monkeypatch)
    ok = plugin.launch_task("t1", Task(task_id=1, run_id=7, type=TaskType.CLIENT_APP,
                                       fab_hash=A))
    assert ok.status == LaunchResultStatus.ACCEPTED and executor.launched[0].fab_hash == A
    for task_id, fab_hash in ((2, B), (3, "")):
        refused = plugin.launch_task("t", Task(task_id=task_id, run_id=7,
                                               type=TaskType.SERVER_APP, fab_hash=fab_hash))
        assert refused.status == LaunchResultStatus.FAILED
    assert len(executor.launched) == 1  # nothing else reached Flower's executor
    assert [t for t, _ in answered] == [2, 3] and B in answered[0][1]
    assert str(tmp_path) not in answered[0][1]  # the submitter learns the hash, not our paths


def test_install_replaces_the_plugin_flower_builds(monkeypatch, tmp_path):
    path = tmp_path / "t.txt"
    path.write_text(A)
    monkeypatch.setattr(flower_loop, "AutoExecPlugin", AutoExecPlugin)
    superexec.install(TrustedApps(path))
    assert flower_loop.AutoExecPlugin is superexec.GuardedExecPlugin
    with pytest.raises(SystemExit, match="unguarded"):  # Flower changed: refuse to start
        superexec.install(TrustedApps(path))


def test_gfmfr_run_stops_when_the_deployment_does_not_pin_this_app(tmp_path):
    """A file of the app changed after `gfmfr deploy up`: say so, instead of submitting a run that
    every machine refuses."""
    from server_app import deploy
    from server_app import federations as fz
    from server_app.cli import check_pinned

    (tmp_path / "flower.toml").write_text('[federations.d]\nkind = "deployment"\n'
                                          'address = "127.0.0.1:9"\ninsecure = true\n')
    fed = fz.load_flower_toml(tmp_path / "flower.toml").federation("d")
    check_pinned(fed)  # no trusted-apps file here: nothing to check
    fed.run_dir.mkdir(parents=True)
    (fed.run_dir / deploy.TRUSTED_APPS).write_text(A + "\n")
    with pytest.raises(RuntimeError, match="gfmfr deploy pin d") as error:
        check_pinned(fed)
    current = trusted_apps.fab_hash(ROOT)
    assert current in str(error.value)
    (fed.run_dir / deploy.TRUSTED_APPS).write_text(trusted_apps.pin_text(current))
    check_pinned(fed)
