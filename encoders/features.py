"""Item content -> frozen feature matrices, encoded once and cached: the server's ``item_features``.

Each modality goes through the same steps: hash every item's content, take cached rows, encode
only the distinct contents the cache lacks (loading the model only then), store them, and gather
one row per item. Datasets that ship precomputed ``text``/``image`` matrices (the paper's layout)
skip encoding entirely.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from encoders.base import EncoderOptions, ImageEncoder, TextEncoder
from encoders.cache import FeatureCache, file_key, text_key
from encoders.image import encode_image_files
from encoders.registry import build_encoder, check_encoder_name

if TYPE_CHECKING:
    from datasets.interactions import ItemCatalog
    from strategies.config import RunConfig

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ItemFeatures:
    """Frozen item features; row ``i`` describes contiguous item ``i`` of the catalog."""

    text: np.ndarray  # (n_items, d_text) float32
    image: np.ndarray  # (n_items, d_image) float32, zero rows where image_mask is False
    image_mask: np.ndarray  # (n_items,) bool, True where the image feature is real
    n_unreadable: int  # image files that existed but could not be read or decoded


def default_cache_dir() -> Path:
    """``$GFMFR_CACHE_DIR/encoders``, else ``~/.cache/gfmfr/encoders`` (the run config's rule)."""
    base = os.environ.get("GFMFR_CACHE_DIR") or Path.home() / ".cache" / "gfmfr"
    return Path(base) / "encoders"


def encoder_options(device: str | None = None, batch_size: int | None = None,
                    clip_model: str = "ViT-B-32", clip_pretrained: str = "") -> EncoderOptions:
    """Options with ``device`` auto-detected (CUDA when present); None batch: encoder default."""
    if device is None:
        import torch

        device = "cuda" if torch.cuda.is_available() else "cpu"
    if batch_size is not None and batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}.")
    return EncoderOptions(device=device, batch_size=batch_size, clip_model=clip_model,
                          clip_pretrained=clip_pretrained)


def text_features(texts: list[str] | tuple[str, ...], encoder: str, cache_dir: Path,
                  options: EncoderOptions) -> np.ndarray:
    """(len(texts), d) float32 text features, encoding only texts the cache lacks."""
    return _text_features(texts, build_encoder("text", encoder, options), cache_dir)


def _text_features(texts: list[str] | tuple[str, ...], model: TextEncoder,
                   cache_dir: Path) -> np.ndarray:
    cache = FeatureCache.open(cache_dir, "text", model.name, model.identity)
    keys = [text_key(text) for text in texts]
    todo = cache.missing(keys)
    if todo:
        first = dict(zip(keys, texts, strict=True))
        started = time.perf_counter()
        vectors = model.encode([first[key] for key in todo])
        cache.add(todo, vectors, np.ones(len(todo), dtype=bool))
        cache.save()
        _log_rate("text", model.name, len(todo), started)
    dim = cache.dim if cache.dim is not None else model.dim()
    logger.info("text %s: %d items, %d distinct texts encoded, the rest from cache %s",
                model.name, len(keys), len(todo), cache.path)
    return cache.gather(keys, dim)[0]


def image_features(paths: list[Path | None] | tuple[Path | None, ...], encoder: str,
                   cache_dir: Path, options: EncoderOptions) -> tuple[np.ndarray, np.ndarray, int]:
    """(features (n, d) float32, mask (n,) bool, n_unreadable) for image files; None = no image."""
    return _image_features(paths, build_encoder("image", encoder, options), cache_dir, options)


def _image_features(paths: list[Path | None] | tuple[Path | None, ...], model: ImageEncoder,
                    cache_dir: Path, options: EncoderOptions) -> tuple[np.ndarray, np.ndarray, int]:
    cache = FeatureCache.open(cache_dir, "image", model.name, model.identity)
    keys = [None if path is None else file_key(path) for path in paths]
    gone = [path for path, key in zip(paths, keys, strict=True) if path is not None and key is None]
    for path in gone:
        logger.warning("image %s cannot be read (missing or no permission): zero features, "
                       "masked", path)
    todo = cache.missing([key for key in keys if key is not None])
    if todo:
        first = {key: path for path, key in zip(paths, keys, strict=True) if key is not None}
        started = time.perf_counter()
        vectors, ok = encode_image_files([first[key] for key in todo], model, options)
        cache.add(todo, vectors, ok)
        cache.save()
        _log_rate("image", model.name, len(todo), started)
    dim = cache.dim if cache.dim is not None else model.dim()
    present = [i for i, key in enumerate(keys) if key is not None]
    features = np.zeros((len(paths), dim), dtype=np.float32)
    mask = np.zeros(len(paths), dtype=bool)
    features[present], mask[present] = cache.gather([keys[i] for i in present], dim)
    features[~mask] = 0.0
    n_unreadable = len(gone) + len(present) - int(mask.sum())
    logger.info("image %s: %d items, %d without image, %d unreadable, %d distinct images encoded, "
                "the rest from cache %s", model.name, len(paths), sum(p is None for p in paths),
                n_unreadable, len(todo), cache.path)
    return features, mask, n_unreadable


def run_item_features(catalog: ItemCatalog, cfg: RunConfig) -> ItemFeatures:
    """The features a run's server uses: the run config's encoders and feature cache."""
    return item_features(catalog, text_encoder=cfg.text_encoder, image_encoder=cfg.image_encoder,
                         cache_dir=cfg.cache_path() / "encoders", clip_model=cfg.clip_model,
                         clip_pretrained=cfg.clip_pretrained)


def item_features(catalog: ItemCatalog, text_encoder: str = "minilm",
                  image_encoder: str = "efficientnet-lite0", cache_dir: Path | None = None,
                  clip_model: str = "ViT-B-32", clip_pretrained: str = "",
                  device: str | None = None, batch_size: int | None = None) -> ItemFeatures:
    """Encode a catalog's item texts and images into frozen feature matrices, with a disk cache.

    Parameters
    ----------
    catalog
        Item content; ``catalog.features["text"]``/``["image"]`` (the paper's layout) pass straight
        through, whatever encoder is named (the image mask is then all True).
    text_encoder, image_encoder
        Names from ``encoders.registry.ENCODERS``; unknown names raise ValueError listing them.
    cache_dir
        A writable folder for the feature cache (default ``default_cache_dir()``); nothing is ever
        written next to the data. A repeat call with unchanged content loads no model.
    clip_model, clip_pretrained
        The open_clip architecture and weights (tag, checkpoint file or ``local-dir:``), used only
        by ``open-clip`` encoders.
    device
        Torch device; None picks CUDA when available, else CPU (all cores).
    batch_size
        Items per forward pass; None lets each encoder pick for the device (on CPU: 2 images
        per core for EfficientNet, 8 for open_clip, 32 texts; on GPU: 128 or more).
    """
    check_encoder_name("text", text_encoder)
    check_encoder_name("image", image_encoder)
    options = encoder_options(device, batch_size, clip_model, clip_pretrained)
    cache_dir = default_cache_dir() if cache_dir is None else Path(cache_dir)
    text = _precomputed(catalog, "text", text_encoder)
    image = _precomputed(catalog, "image", image_encoder)
    # Build (cheap: no model loads) both encoders before encoding anything, so that a bad
    # checkpoint path fails before minutes of text encoding.
    text_model = None if text is not None else build_encoder("text", text_encoder, options)
    image_model = None if image is not None else build_encoder("image", image_encoder, options)
    if text_model is not None:
        text = _text_features(catalog.texts, text_model, cache_dir)
    if image_model is None:
        return ItemFeatures(text, image, np.ones(catalog.n_items, dtype=bool), 0)
    image, mask, n_unreadable = _image_features(catalog.image_paths, image_model, cache_dir,
                                                options)
    return ItemFeatures(text, image, mask, n_unreadable)


def _precomputed(catalog: ItemCatalog, modality: str, encoder: str) -> np.ndarray | None:
    matrix = catalog.features.get(modality)
    if matrix is None:
        return None
    matrix = np.asarray(matrix, dtype=np.float32)
    if matrix.ndim != 2 or matrix.shape[0] != catalog.n_items:
        raise ValueError(f"precomputed {modality} features have shape {matrix.shape}, expected "
                         f"({catalog.n_items}, d): one row per catalog item.")
    logger.info("%s: using the dataset's precomputed %s features %s; %s encoder %r not used",
                modality, modality, matrix.shape, modality, encoder)
    return matrix


def _log_rate(modality: str, name: str, count: int, started: float) -> None:
    seconds = time.perf_counter() - started
    logger.info("%s %s: encoded %d items in %.1f s (%.1f items/s, model load included)",
                modality, name, count, seconds, count / max(seconds, 1e-9))
