"""``gfmfr report``: learning curves and a table from run summaries, and one-line errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from server_app.cli import main
from server_app.results import write_results
from server_app.run_report import find_runs
from tests.conftest import ROOT, gfmfr_error

PNG = b"\x89PNG\r\n\x1a\n"


def metrics(hr50: float) -> dict[str, float]:
    return {"HR@10": hr50 / 2, "HR@20": hr50 * 0.7, "HR@50": hr50,
            "NDCG@10": hr50 / 8, "NDCG@20": hr50 / 6, "NDCG@50": hr50 / 4}


def write_run(folder: Path, strategy: str, seed: int, hr50: list[float], kd: bool) -> None:
    """A finished run of ``len(hr50) - 1`` rounds, as server_app/results.py writes it."""
    rounds = [{"round": r, "seconds": None if r == 0 else 1.0 + r, "trained": 0 if r == 0 else 5,
               "train_loss": None if r == 0 else 0.7 / r, "kd_loss": 0.1 * r if kd else 0.0,
               "val": metrics(v), "test": metrics(v - 0.01)} for r, v in enumerate(hr50)]
    best = max(range(len(hr50)), key=hr50.__getitem__)
    write_results(folder, {
        "config": {"dataset": "synthetic", "strategy": strategy, "backbone": "pfedrec",
                   "seed": seed},
        "best_round": best, "select_metric": "HR@50", "val": rounds[best]["val"],
        "test": rounds[best]["test"], "seconds_per_round": 2.5, "total_seconds": 7.5,
        "rounds": rounds})


def test_report_writes_curves_and_a_table_of_every_run(tmp_path, capsys):
    write_run(tmp_path / "a" / "gfmfr-seed0", "gfmfr", 0, [0.1, 0.3, 0.5, 0.4], kd=True)
    write_run(tmp_path / "a" / "gfmfr-seed1", "gfmfr", 1, [0.1, 0.2, 0.3, 0.6], kd=True)
    write_run(tmp_path / "b", "pfedrec", 0, [0.1, 0.4, 0.2, 0.3], kd=False)

    assert main(["report", str(tmp_path / "a"), str(tmp_path / "b"), "--out",
                 str(tmp_path / "out")]) == 0

    for name in ("metrics.png", "training.png"):
        assert (tmp_path / "out" / name).read_bytes()[:8] == PNG
    rows = [line.split("|")[1:-1] for line in (tmp_path / "out" / "runs.md").read_text()
            .splitlines() if line.startswith("| `")]
    assert [[c.strip() for c in row[:8]] for row in rows] == [
        ["`gfmfr-seed0`", "synthetic", "gfmfr", "pfedrec", "0", "3", "2", "HR@50 0.5000"],
        ["`gfmfr-seed1`", "synthetic", "gfmfr", "pfedrec", "1", "3", "3", "HR@50 0.6000"],
        ["`b`", "synthetic", "pfedrec", "pfedrec", "0", "3", "1", "HR@50 0.4000"]]
    assert [row[9].strip() for row in rows] == ["0.4900", "0.5900", "0.3900"]  # test HR@50
    assert "3 run(s)" in capsys.readouterr().out


def test_seeds_of_one_run_share_a_colour_and_equal_names_are_told_apart(tmp_path):
    write_run(tmp_path / "x" / "fcf-seed0", "fcf", 0, [0.1, 0.2], kd=False)
    write_run(tmp_path / "y" / "fcf-seed0", "fcf", 0, [0.1, 0.3], kd=False)

    runs = find_runs([tmp_path / "x", tmp_path / "y"])

    assert [run.label for run in runs] == ["x/fcf-seed0", "y/fcf-seed0"]
    assert runs[0].series("val", "HR@50") == ([0, 1], [0.1, 0.2])
    assert runs[0].series("train_loss") == ([1], [0.7])


def test_report_of_the_committed_cold_start_runs(tmp_path):
    runs = ROOT / "docs" / "results" / "ml-100k-mm-cold" / "runs"

    assert main(["report", str(runs), "--out", str(tmp_path)]) == 0

    assert (tmp_path / "metrics.png").read_bytes()[:8] == PNG
    table = (tmp_path / "runs.md").read_text()
    assert table.count("| `") == 6 and "new items HR@50" in table


def test_bad_input_is_one_line_that_says_what_to_do(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    (tmp_path / "unfinished").mkdir()
    (tmp_path / "unfinished" / "checkpoint.npz").write_bytes(b"")
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "summary.json").write_text("{not json")
    write_run(tmp_path / "ok", "fcf", 0, [0.1, 0.2], kd=False)
    out = ["--out", str(tmp_path / "out")]

    assert "no folder" in gfmfr_error(capsys, ["report", str(tmp_path / "missing"), *out])
    assert "holds no summary.json" in gfmfr_error(capsys, ["report", str(tmp_path / "empty"), *out])
    assert "resume=true" in gfmfr_error(capsys, ["report", str(tmp_path / "unfinished"), *out])
    assert "cannot be read" in gfmfr_error(capsys, ["report", str(tmp_path / "broken"), *out])
    assert "choose among" in gfmfr_error(capsys, ["report", str(tmp_path / "ok"), "--k", "5", *out])
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("argv", [["report", "--out", "x"]])
def test_report_needs_a_run_folder(argv, capsys):
    with pytest.raises(SystemExit) as stop:
        main(argv)
    assert stop.value.code == 2
