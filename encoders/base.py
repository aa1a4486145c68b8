"""What every encoder provides, and the options one ``item_features`` call shares with them.

An encoder is cheap to build: building only resolves names and fingerprints the model files (its
cache identity). The model itself loads on the first ``encode``, so a fully cached call never
loads it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    import numpy as np
    import torch
    from PIL import Image


@dataclass
class EncoderOptions:
    """Settings of one ``item_features`` call, shared by its text and image encoder."""

    device: str  # "cpu", "cuda", "cuda:1", ...
    batch_size: int
    clip_model: str = "ViT-B-32"
    clip_pretrained: str = ""
    loaded: dict[tuple[Any, ...], Any] = field(default_factory=dict)  # models loaded this call


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

    def preprocess(self, image: Image.Image) -> torch.Tensor:
        """One decoded RGB image -> model input (C, H, W); runs in decode threads."""
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


def use_all_cores(device: str) -> None:
    """Let torch use every allowed core for CPU encoding (process-wide torch setting)."""
    import torch

    if device == "cpu" and torch.get_num_threads() < n_cpus():
        torch.set_num_threads(n_cpus())
