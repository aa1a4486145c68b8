"""benchmarks.compare: real runs, reuse of finished ones, and tables of the finished ones only."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def compare(out: Path, *args: str) -> str:
    done = subprocess.run([sys.executable, "-m", "benchmarks.compare", "--federation",
                           "synthetic", "--runs", "fcf", "--out", str(out), "--engine",
                           "inprocess", "--run-config",
                           f"num-server-rounds=2 cache-dir='{out / 'cache'}'", *args],
                          cwd=ROOT, capture_output=True, text=True, check=True)
    return done.stdout


def test_finished_only_tabulates_what_ran_and_runs_nothing(tmp_path):
    compare(tmp_path, "--seeds", "0")
    assert (tmp_path / "runs" / "fcf-seed0" / "summary.json").is_file()

    printed = compare(tmp_path, "--seeds", "0", "1", "--finished-only")

    assert "fcf seed 1: not run yet" in printed
    assert not (tmp_path / "runs" / "fcf-seed1").exists()
    table = (tmp_path / "table.md").read_text()
    row = next(line for line in table.splitlines() if line.startswith("| `fcf`"))
    assert row.split("|")[2].strip() == "1"  # seeds column
    assert "±" not in row  # a single seed has no spread to show
    assert (tmp_path / "val_hr50.png").stat().st_size > 0
