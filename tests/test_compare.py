"""``gfmfr compare``: real runs, tables rebuilt from summaries alone, and one-line errors."""

from __future__ import annotations

import json
import shlex
import shutil
from pathlib import Path

import pytest

from server_app import references
from server_app.cli import main
from tests.conftest import ROOT, gfmfr_error


def rows(table: Path) -> list[str]:
    return [line for line in table.read_text().splitlines() if line.startswith("| `")]


def compare(out: Path, *args: str, config: str = "", rounds: int = 2) -> int:
    return main(["compare", "--federation", "synthetic", "--runs", "fcf", "--out", str(out),
                 "--engine", "inprocess", "--run-config",
                 f"num-server-rounds={rounds} cache-dir='{out / 'cache'}' {config}", *args])


def test_finished_only_rebuilds_the_table_from_summaries_alone(tmp_path, capsys, monkeypatch):
    assert compare(tmp_path, "--seeds", "0") == 0
    summary = json.loads((tmp_path / "runs" / "fcf-seed0" / "summary.json").read_text())
    built = rows(tmp_path / "table.md")
    for name in ("table.md", "table.csv", "val_hr50.png"):
        (tmp_path / name).unlink()

    def no_training(*args, **kwargs):
        raise AssertionError("a reference was recomputed instead of read from references.json")

    monkeypatch.setitem(references.REFERENCES, "central-mf", no_training)
    monkeypatch.setitem(references.REFERENCES, "pop", no_training)
    capsys.readouterr()
    assert compare(tmp_path, "--seeds", "0", "1", "--finished-only") == 0

    assert "fcf seed 1: not run yet" in capsys.readouterr().out
    assert not (tmp_path / "runs" / "fcf-seed1").exists()
    assert rows(tmp_path / "table.md") == built
    fcf = built[0].split("|")
    assert fcf[2].strip() == "1" and "±" not in built[0]  # one seed: no spread to show
    assert fcf[5].strip() == f"{summary['test']['HR@50']:.4f}"
    assert [row.split("|")[1].strip() for row in built] == [
        "`fcf`", "`pop` *non-federated*", "`central-mf` *non-federated*"]
    assert (tmp_path / "val_hr50.png").stat().st_size > 0


def test_an_interrupted_run_continues_from_its_checkpoint(tmp_path, capsys):
    """A run killed after a checkpoint (no summary yet) continues from it instead of failing on
    the unfinished run's folder; without the users' stored state it is refused, with the reason."""
    state = f"client-state-dir='{tmp_path / 'clients'}'"
    assert compare(tmp_path, "--seeds", "0", config=state) == 0
    run_dir = tmp_path / "runs" / "fcf-seed0"
    first = json.loads((run_dir / "summary.json").read_text())
    (run_dir / "summary.json").unlink()  # as if killed after round 2's checkpoint
    capsys.readouterr()
    assert compare(tmp_path, "--seeds", "0", config=state, rounds=4) == 0
    assert "fcf seed 0: continuing from its checkpoint" in capsys.readouterr().out
    resumed = json.loads((run_dir / "summary.json").read_text())
    assert resumed["config"]["resume"] is True
    assert [r["round"] for r in resumed["rounds"]] == [0, 1, 2, 3, 4]
    assert resumed["rounds"][:3] == first["rounds"][:3]

    (run_dir / "summary.json").unlink()
    shutil.rmtree(tmp_path / "clients")
    assert compare(tmp_path, "--seeds", "0", rounds=6) == 1
    assert "fcf seed 0 failed" in capsys.readouterr().err
    assert "client-state-dir" in (tmp_path / "runs" / "fcf-seed0.log").read_text()


@pytest.mark.parametrize("name", ["ml-100k-mm-cold", "ml-100k-mm-cold-fedncf", "ml-100k-mm-recipe",
                                  "ml-1m-mm-recipe", "ml-100k-mm-recipe-secure-aggregation",
                                  "ml-100k-mm-recipe-fedrap-separation", "ml-100k-mm-recipe-neg-resample",
                                  "ml-1m-mm-recipe-fedrap-separation", "ml-1m-mm-recipe-lr-decay",
                                  "ml-100k-mm-cold-fusion-dropout", "ml-100k-mm-cold-content",
                                  "ml-100k-mm-cold-content-fedncf", "ml-100k-mm-cold-content-fedrap"])
def test_committed_tables_are_rebuilt_from_their_committed_summaries(tmp_path, name):
    """The command in a table's header, with --finished-only, gives its rows back exactly
    (references from references.json: no dataset needed)."""
    committed = ROOT / "docs" / "results" / name
    shutil.copytree(committed, tmp_path / name, ignore=shutil.ignore_patterns("table.*", "*.png"))
    header = next(line for line in (committed / "table.md").read_text().splitlines()
                  if line.startswith("Command: "))
    argv = shlex.split(header.removeprefix("Command: `").removesuffix("`"))
    # `python -m benchmarks.compare ...` (older tables) or `gfmfr compare ...`: the same flags
    argv = argv[argv.index("benchmarks.compare" if "benchmarks.compare" in argv else "compare") + 1:]
    argv[argv.index("--out") + 1] = str(tmp_path / name)

    assert main(["compare", *argv, "--finished-only"]) == 0

    assert rows(tmp_path / name / "table.md") == rows(committed / "table.md")


def test_bad_input_is_one_line_that_says_what_to_do(tmp_path, capsys):
    empty = tmp_path / "empty"
    (empty / "runs").mkdir(parents=True)
    base = ["compare", "--federation", "synthetic", "--engine", "inprocess"]

    assert "without --finished-only" in gfmfr_error(
        capsys, [*base, "--runs", "fcf", "--out", str(tmp_path / "missing"), "--finished-only"])
    assert "holds no summary.json" in gfmfr_error(
        capsys, [*base, "--runs", "fcf", "--out", str(empty), "--finished-only"])
    assert "unknown strategy 'fedmagic'" in gfmfr_error(
        capsys, [*base, "--runs", "fcf", "fedmagic", "--out", str(tmp_path / "new")])
    assert "unknown run-config keys lrr" in gfmfr_error(
        capsys, [*base, "--runs", "fcf:lrr=0.1", "--out", str(tmp_path / "new")])
    assert "unknown dataset 'ml-10m'" in gfmfr_error(
        capsys, ["compare", "--federation", "ml-10m", "--engine", "inprocess", "--runs", "fcf",
                 "--out", str(tmp_path / "new")])
    assert not (tmp_path / "new").exists()  # nothing ran
