"""What every encoder provides, and the options one ``item_features`` call shares with them.

An encoder is cheap to build: building only resolves names and fingerprints the model files (its
cache identity). The model itself loads on the first ``encode``, so a fully cached call never
loads it.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    import numpy as np
    import torch
    from PIL import Image

logger = logging.getLogger(__name__)


@dataclass
class EncoderOptions:
    """Settings of one ``item_features`` call, shared by its text and image encoder."""

    device: str  # "cpu", "cuda", "cuda:1", ...
    batch_size: int | None = None  # None: each encoder's default for the device
    clip_model: str = "ViT-B-32"
    clip_pretrained: str = ""
    loaded: dict[tuple[Any, ...], Any] = field(default_factory=dict)  # models loaded this call

    def batch(self, cpu: int, gpu: int) -> int:
        """The caller's batch size, else the encoder's default (``cpu`` or ``gpu``)."""
        if self.batch_size is not None:
            return self.batch_size
        return cpu if self.device == "cpu" else gpu


class TextEncoder(Protocol):
    name: str  # run-config name, e.g. "minilm"
    identity: str  # everything that changes the output: model fingerprint, preprocessing version

    def dim(self) -> int: ...

    def encode(self, texts: list[str]) -> np.ndarray:
        """(len(texts), dim) float32; loads the model on first use."""
        ...


class ImageEncoder(Protocol):
    name: str
    identity: str

    def dim(self) -> int: ...

    def load(self) -> None:
        """Load the model; called once, in the main thread, before any ``preprocess``."""
        ...

    def batch_size(self) -> int:
        """Images per forward pass (per worker thread on CPU)."""
        ...

    def preprocess(self, image: Image.Image) -> torch.Tensor:
        """One decoded RGB image -> model input (C, H, W); runs in worker threads."""
        ...

    def encode(self, pixels: torch.Tensor) -> np.ndarray:
        """A stacked batch of ``preprocess`` outputs -> (batch, dim) float32."""
        ...


def n_cpus() -> int:
    """CPU cores this process may use (container-aware where the OS says so)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def busy_cores(window: float = 0.25) -> float:
    """Cores kept busy by other processes right now (sampled from /proc/stat; 0 where absent)."""
    def sample() -> tuple[int, int]:
        with open("/proc/stat", encoding="ascii") as handle:
            ticks = [int(value) for value in handle.readline().split()[1:9]]
        return sum(ticks), ticks[3] + ticks[4]  # total, idle + iowait

    try:
        total, idle = sample()
        time.sleep(window)  # this process is idle meanwhile: what is busy is someone else
        total2, idle2 = sample()
    except (OSError, ValueError, IndexError):
        return 0.0
    return (total2 - total - (idle2 - idle)) / os.sysconf("SC_CLK_TCK") / window


def _omp_threads() -> int | None:
    value = os.environ.get("OMP_NUM_THREADS", "")
    return int(value) if value.isdigit() and int(value) > 0 else None


def cpu_workers() -> int:
    """Parallel CPU workers: OMP_NUM_THREADS when set (the user's choice), else every core."""
    return _omp_threads() or n_cpus()


def free_cores() -> int:
    """Torch threads for one CPU job: OMP_NUM_THREADS when set, else the cores that other
    processes leave free right now (at least 1)."""
    return _omp_threads() or max(1, min(n_cpus(), round(n_cpus() - busy_cores())))


@contextmanager
def torch_threads(threads: int | Callable[[], int]) -> Iterator[None]:
    """Run CPU torch ops on ``threads`` intra-op threads, then restore torch's setting.

    Oversubscribing hurts badly: on a 2-core machine with one core busy elsewhere, EfficientNet
    ran 4.5x slower on 2 threads than on 1 (threads wait on each other at every operator). It
    matters on GPU too, where decode workers still stack batches on the CPU.
    """
    import torch

    before = torch.get_num_threads()
    count = threads() if callable(threads) else threads
    logger.debug("CPU encoding with %d torch thread(s) on %d cores", count, n_cpus())
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)
