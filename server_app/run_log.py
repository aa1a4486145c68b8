"""What a run's log shows a person: the encoders' progress in it, Flower's history dump not.

Flower streams its own logger (``flwr``) and the ServerApp's stdout/stderr to ``flwr run
--stream``. Two adjustments, both through standard ``logging`` hooks, both scoped to a ``with``:

- ``encoder_progress_in_log``: the ``encoders`` package logs through Python's ``logging`` (it must
  not import Flower); its lines (model loads, items done, items/s, time left, cache use) are
  forwarded into Flower's log while the ServerApp encodes item features.
- ``without_flower_history``: ``Strategy.start`` ends by logging the whole ``Result`` (every
  round's aggregated metrics, "Final results: ...") and logs each round's aggregated
  ``MetricRecord``; the app's own round lines and ``summary.json`` hold the same numbers, and the
  run's last lines should be its result. This drops those records from Flower's logger, and
  nothing else, while ``start()`` runs.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

from flwr.common import log
from flwr.common.logger import LOGGER_NAME

ENCODERS_LOGGER = "encoders"
RESULT_HEADER = "Final results:"  # Strategy.start logs the Result after this line
ROUND_METRICS = "\t└──> Aggregated MetricRecord: %s"  # Strategy.start, once per round and kind


class _ToFlowerLog(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        log(record.levelno, "%s", record.getMessage())


@contextmanager
def encoder_progress_in_log() -> Iterator[None]:
    """Forward INFO and above of the ``encoders`` loggers into Flower's log."""
    logger = logging.getLogger(ENCODERS_LOGGER)
    handler, level = _ToFlowerLog(logging.INFO), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


class _NoHistory(logging.Filter):
    """Drops the per-round MetricRecord lines, and every record from ``Final results:`` on."""

    def __init__(self) -> None:
        super().__init__()
        self.in_result = False

    def filter(self, record: logging.LogRecord) -> bool:
        self.in_result = self.in_result or record.msg == RESULT_HEADER
        return not self.in_result and record.msg != ROUND_METRICS


@contextmanager
def without_flower_history() -> Iterator[None]:
    """Around ``strategy.start(...)``: Flower's logger leaves out the history it keeps."""
    logger = logging.getLogger(LOGGER_NAME)
    dropper = _NoHistory()
    logger.addFilter(dropper)
    try:
        yield
    finally:
        logger.removeFilter(dropper)
