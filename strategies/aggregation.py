"""Server-side maths on client uploads: screening and weighted averaging (pure numpy)."""

from __future__ import annotations

import numpy as np


def screen_upload(arrays: dict[str, np.ndarray], expected: dict[str, tuple[int, ...]],
                  weight: float) -> str | None:
    """Why an upload must be rejected (wrong keys, shape or dtype, non-finite values, bad weight),
    or None when it is sound."""
    if set(arrays) != set(expected):
        return f"keys {sorted(arrays)} differ from the shared parameters {sorted(expected)}"
    if not (np.isfinite(weight) and weight > 0):
        return f"num-examples must be a positive number, got {weight!r}"
    for name, shape in expected.items():
        value = arrays[name]
        if value.shape != shape:
            return f"{name} has shape {value.shape}, expected {shape}"
        if not np.issubdtype(value.dtype, np.floating):
            return f"{name} has dtype {value.dtype}, expected a float type"
        if not np.isfinite(value).all():
            return f"{name} holds NaN or Inf"
    return None


def weighted_mean(uploads: list[dict[str, np.ndarray]], weights: list[float]
                  ) -> dict[str, np.ndarray]:
    """Per-parameter mean of ``uploads`` weighted by ``weights`` (float32 out, float64 inside)."""
    if not uploads:
        raise ValueError("no uploads to aggregate")
    total = float(np.sum(weights))
    out = {}
    for name in uploads[0]:
        acc = np.zeros(uploads[0][name].shape, dtype=np.float64)
        for upload, weight in zip(uploads, weights, strict=True):
            acc += upload[name] * (weight / total)
        out[name] = acc.astype(np.float32)
    return out
