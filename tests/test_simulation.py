"""End to end through Flower's real Ray simulation, started the way users start it (`gfmfr run`)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from strategies.registry import STRATEGIES
from tests.conftest import ROOT

pytestmark = pytest.mark.slow


def gfmfr_run(federation: str, run_config: str, timeout: float = 300
              ) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "server_app.cli", "run", federation, "-c",
                           run_config], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout, check=False)


def test_synthetic_run_completes_and_writes_results(flwr_env, tmp_path: Path):
    results = tmp_path / "results"
    done = gfmfr_run("synthetic", f"num-server-rounds=3 run-name='t' results-dir='{results}' "
                     "lr=0.05")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "ended as finished:completed" in done.stdout
    summary = json.loads((results / "t" / "summary.json").read_text())
    assert set(summary) >= {"config", "best_round", "val", "test", "rounds", "seconds_per_round"}
    assert set(summary["test"]) == {f"{m}@{k}" for m in ("HR", "NDCG") for k in (10, 20, 50)}
    rounds = {r["round"]: r for r in summary["rounds"]}
    assert sorted(rounds) == [0, 1, 2, 3] and rounds[3]["trained"] == 60
    assert rounds[0]["evaluated_users"] == 60 and rounds[3]["val"] is not None
    assert (results / "t" / "rounds.csv").read_text().startswith("round,seconds")
    assert summary["config"]["secure-aggregation"] == "false"  # auto: off in a simulation


# Every strategy runs through the real ServerApp and ClientApp in tests/test_contract.py; under
# Ray, GFMFR (the default job, above) plus the two backbones whose messages differ most from it:
# FedRAP's private item table with hand gradients, and NCF's dense shared MLP. Each Ray start costs
# about 30 s of CI time.
RAY_STRATEGIES = ["fedrap-original", "fedncf"]


def test_ray_strategies_are_registered():
    assert set(RAY_STRATEGIES) <= set(STRATEGIES)


@pytest.mark.parametrize("strategy", RAY_STRATEGIES)
def test_backbones_run_two_rounds_in_a_ray_simulation(flwr_env, tmp_path: Path, strategy):
    done = gfmfr_run("synthetic", f"strategy='{strategy}' num-server-rounds=2 run-name='s' "
                     f"results-dir='{tmp_path}' fusion-epochs=5")
    assert "ended as finished:completed" in done.stdout, done.stdout[-3000:]
    summary = json.loads((tmp_path / "s" / "summary.json").read_text())
    assert summary["rounds"][-1]["round"] == 2 and summary["rounds"][-1]["val"] is not None


def test_federation_sized_for_another_dataset_fails_fast(flwr_env, tmp_path: Path):
    toml = tmp_path / "flower.toml"
    toml.write_text('default = "fixed"\n[simulation]\nclient-cpus = 1\nray-cpus = 2\n'
                    '[federations.fixed]\nkind = "simulation"\nnum-supernodes = 60\n'
                    'run-config = { dataset = "synthetic" }\n')
    done = subprocess.run([sys.executable, "-m", "server_app.cli", "run", "--flower-toml",
                           str(toml), "-c", f"dataset='ml-100k-mm' results-dir='{tmp_path}'"],
                          cwd=ROOT, capture_output=True, text=True, timeout=180, check=False)
    assert done.returncode == 1, done.stdout[-3000:] + done.stderr[-3000:]
    assert "the federation has 60 SuperNodes but ml-100k-mm has 943 users" in done.stdout
