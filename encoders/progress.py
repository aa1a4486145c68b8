"""Progress of an encoding a person can follow: items done, items per second and time left.

On a terminal this is a tqdm bar. Anywhere else (a run's log, which Flower streams line by line
to ``flwr run --stream``; a file) a bar's carriage returns turn into noise, so it logs one line
through this package's ``encoders`` logger when it starts, every ``interval`` seconds and when it
ends. The ServerApp forwards that logger to Flower's log (``server_app/run_log.py``).
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable
from types import TracebackType

from tqdm import tqdm

logger = logging.getLogger("encoders")


class Progress:
    """``with Progress(n, "image efficientnet-lite0") as bar: ... bar.update(k)``.

    ``terminal`` None asks whether stderr is a terminal; ``clock`` is for tests.
    """

    def __init__(self, total: int, what: str, interval: float = 10.0,
                 terminal: bool | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.total, self.what, self.interval, self.clock = total, what, interval, clock
        self.done = 0
        terminal = sys.stderr.isatty() if terminal is None else terminal
        self._bar = tqdm(total=total, desc=what, unit="item") if terminal else None
        self._start = self._last = clock()
        if self._bar is None:
            logger.info("%s: encoding %d items", what, total)

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        if self._bar is not None:
            self._bar.close()

    def update(self, count: int) -> None:
        self.done += count
        if self._bar is not None:
            self._bar.update(count)
            return
        now = self.clock()
        if now - self._last >= self.interval or self.done >= self.total:
            self._last = now
            logger.info("%s", self.line(now))

    def line(self, now: float) -> str:
        """``what: done/total items (pct%), rate items/s, mm:ss left`` (or ``done in mm:ss``)."""
        elapsed = max(now - self._start, 1e-9)
        rate = self.done / elapsed
        text = (f"{self.what}: {self.done}/{self.total} items "
                f"({100 * self.done / max(self.total, 1):.0f}%), {rate:.1f} items/s, ")
        if self.done >= self.total:
            return text + f"done in {tqdm.format_interval(elapsed)}"
        left = (self.total - self.done) / rate if rate > 0 else None
        return text + ("time left unknown" if left is None
                       else f"{tqdm.format_interval(left)} left")
