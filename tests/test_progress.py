"""Progress a person can read: encoding progress, time left per round, the result at the end."""

from __future__ import annotations

import logging

import pytest

from encoders.progress import Progress
from strategies.history import RoundRecord, RunHistory


def test_encoding_progress_lines_give_items_rate_and_time_left(caplog):
    now = [100.0]
    caplog.set_level(logging.INFO, logger="encoders")

    with Progress(100, "image net", interval=10.0, terminal=False, clock=lambda: now[0]) as bar:
        for _ in range(10):
            now[0] += 2.0
            bar.update(10)  # 5 items/s

    assert [r.getMessage() for r in caplog.records] == [
        "image net: encoding 100 items",
        "image net: 50/100 items (50%), 5.0 items/s, 00:10 left",
        "image net: 100/100 items (100%), 5.0 items/s, done in 00:20"]


def test_time_left_is_the_mean_round_time_times_the_rounds_left():
    history = RunHistory()
    history.rounds = {0: RoundRecord(0, seconds=30.0), 1: RoundRecord(1, seconds=4.0, trained=5),
                      2: RoundRecord(2, seconds=2.0, trained=5)}  # round 0 only evaluates

    assert history.seconds_left(2, 10) == pytest.approx(3.0 * 8)
    assert history.seconds_left(10, 10) is None
    assert RunHistory().seconds_left(0, 10) is None


class Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


def test_encoder_lines_reach_the_run_log_while_features_are_encoded():
    from server_app.run_log import encoder_progress_in_log

    lines = Lines()
    flower = logging.getLogger("flwr")
    flower.addHandler(lines)
    try:
        with encoder_progress_in_log():
            logging.getLogger("encoders.image").info("image x: 3/4 items")
        logging.getLogger("encoders.image").info("after the encoding: not forwarded")
    finally:
        flower.removeHandler(lines)

    assert lines.lines == ["image x: 3/4 items"]


def test_a_run_shows_time_left_and_ends_with_its_result_not_flowers_history(tmp_path):
    from server_app.inprocess import run_dataset_inprocess

    lines = Lines()
    flower = logging.getLogger("flwr")
    flower.addHandler(lines)
    try:
        run_dataset_inprocess({"dataset": "synthetic", "strategy": "fcf", "num-server-rounds": 3,
                               "results-dir": str(tmp_path), "run-name": "r"})
    finally:
        flower.removeHandler(lines)
    text, folder = lines.lines, tmp_path / "r"

    rounds = [line for line in text if line.startswith("[round ")]
    assert [line.endswith(" left") for line in rounds] == [True, True, False]
    assert not [line for line in text if "Final results" in line or "MetricRecord" in line]
    assert text[-6].startswith("best validation round") and text[-4].startswith("  test: HR@10")
    assert text[-2] == f"results in {folder} (summary.json, rounds.csv)"
    assert text[-1] == f"learning curves: gfmfr report {folder} --out {folder / 'report'}"
