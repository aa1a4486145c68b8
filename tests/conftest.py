"""Shared fixtures: the real data directory, and an isolated Flower home for simulations."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(os.environ.get("GFMFR_DATA_DIR") or ROOT / "data")


def require_dataset(name: str) -> Path:
    """The real dataset folder, or skip with the reason when this checkout has no data link."""
    path = DATA / name
    if not path.is_dir():
        pytest.skip(f"{path} is missing: link the data directory (ln -s ../shared/data data)")
    return path


def inprocess_config(tmp_path: Path, users: int, items: int, interactions: int,
                     **extra: object) -> dict:
    """Run config of a small synthetic federation run in one process (``run_inprocess``)."""
    return {"dataset": "synthetic", "synthetic-users": users, "synthetic-items": items,
            "synthetic-interactions": interactions, "cache-dir": str(tmp_path / "cache"),
            "results-dir": str(tmp_path / "results"), "max-in-flight": 0, **extra}


def gfmfr_error(capsys: pytest.CaptureFixture, argv: list[str]) -> str:
    """Run ``gfmfr argv``: it must fail with exit 2 and one ``gfmfr: ...`` line, no traceback."""
    from server_app.cli import main

    capsys.readouterr()
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert captured.err.count("\n") == 1 and captured.err.startswith("gfmfr: ")
    assert "Traceback" not in captured.err + captured.out
    return captured.err


@pytest.fixture
def flwr_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Environment for Flower CLI calls: a private FLWR_HOME and no telemetry or installs."""
    home = tmp_path / "flwr-home"
    home.mkdir()
    env = {"FLWR_HOME": str(home), "FLWR_TELEMETRY_ENABLED": "0",
           "FLWR_DISABLE_UPDATE_CHECK": "1", "FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION": "1",
           "RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO": "0", "GFMFR_CACHE_DIR": str(tmp_path / "cache")}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return env


@pytest.fixture
def flower_task():
    """Messages can only be built inside a Flower task; give this process a task identity."""
    from flwr.supercore.task_identity import TaskIdentity

    saved = (TaskIdentity._task_id, TaskIdentity._run_id, TaskIdentity._node_id)
    TaskIdentity.task_id, TaskIdentity.run_id, TaskIdentity.node_id = 1, 1, 0
    yield
    TaskIdentity._task_id, TaskIdentity._run_id, TaskIdentity._node_id = saved
