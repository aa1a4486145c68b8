"""The operator's locked run config (server_app/run_config_lock.py): a run that changes a locked
value is refused before anything loads; a broken lock refuses every run (fail closed)."""

from __future__ import annotations

import pytest

from server_app import run_config_lock as lock
from server_app.superexec import main as superexec_main

RUN = {"node-registry": "/srv/reg.json", "dataset": "ml-100k-mm", "num-server-rounds": 50,
       "lr": 0.01, "resume": False}


def env(path) -> dict[str, str]:
    return {lock.ENV: str(path)}


def test_without_a_lock_every_run_config_passes():
    lock.check({**RUN, "node-registry": ""}, environ={})


def test_a_run_with_the_locked_values_passes_and_one_that_changes_them_is_refused(tmp_path):
    path = lock.write(tmp_path / "locked.toml", {"node-registry": "/srv/reg.json",
                                                 "num-server-rounds": 50, "resume": False,
                                                 "lr": 0.01})
    assert lock.load(path) == {"node-registry": "/srv/reg.json", "num-server-rounds": 50,
                               "resume": False, "lr": 0.01}
    lock.check(RUN, environ=env(path))
    with pytest.raises(lock.RunConfigLocked) as refused:
        lock.check({**RUN, "node-registry": ""}, environ=env(path))
    message = str(refused.value)
    assert "node-registry=''" in message
    assert "/srv/reg.json" not in message and str(tmp_path) not in message  # server's log only
    with pytest.raises(lock.RunConfigLocked, match="num-server-rounds"):
        lock.check({**RUN, "num-server-rounds": 5}, environ=env(path))


def test_strings_with_quotes_and_backslashes_survive_the_file(tmp_path):
    value = 'C:\\data\\"odd" dir'
    path = lock.write(tmp_path / "locked.toml", {"results-dir": value})
    assert lock.load(path) == {"results-dir": value}


@pytest.mark.parametrize("text", [None, "node-registry = ", "[table]\nkey = 1\n",
                                  "unknown-key = 1\n"])
def test_a_missing_malformed_or_foreign_lock_refuses_every_run(tmp_path, text):
    path = tmp_path / "locked.toml"
    if text is not None:
        path.write_text(text)
    with pytest.raises(lock.RunConfigLocked, match="refused"):
        lock.check(RUN, environ=env(path))


def test_gfmfr_superexec_refuses_to_start_with_a_broken_lock(tmp_path, capsys):
    trusted = tmp_path / "trusted-apps.txt"
    trusted.write_text("a" * 64 + "\n")
    (tmp_path / "locked.toml").write_text("node-registry = \n")
    assert superexec_main(["--trusted-apps", str(trusted), "--locked-run-config",
                           str(tmp_path / "locked.toml")]) == 2
    assert "is not TOML" in capsys.readouterr().err
