"""Update clipping and local differential privacy noise (pure numpy).

Clipping bounds a client's influence (and is the sensitivity LDP noise is scaled to); noise is
added on the device to every uploaded tensor, so the server only ever sees noisy parameters.
"""

from __future__ import annotations

import numpy as np

MECHANISMS = ("laplace", "gaussian")


def update_norm(upload: dict[str, np.ndarray], base: dict[str, np.ndarray]) -> float:
    """L2 norm of the whole update (all tensors' differences from what was broadcast).

    Squares summed by a float32 dot product per tensor: the server screens every reply with
    this, and a float64 copy of each item table made it 7x slower for a threshold check."""
    total = 0.0
    for k in base:
        diff = np.subtract(upload[k], base[k], dtype=np.float32).ravel()
        total += float(diff @ diff)
    return float(np.sqrt(total))


def clip_update(upload: dict[str, np.ndarray], base: dict[str, np.ndarray], max_norm: float
                ) -> dict[str, np.ndarray]:
    """Scale the update down to L2 norm ``max_norm`` (unchanged when already within it)."""
    norm = update_norm(upload, base)
    if max_norm <= 0 or norm <= max_norm:
        return upload
    factor = max_norm / norm
    return {k: (base[k] + (upload[k] - base[k]) * factor).astype(upload[k].dtype) for k in upload}


def add_noise(arrays: dict[str, np.ndarray], mechanism: str, scale: float,
              rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Add i.i.d. Laplace(0, scale) or Gaussian(0, scale^2) noise to every tensor."""
    if scale <= 0:
        return arrays
    if mechanism not in MECHANISMS:
        raise ValueError(f"unknown noise mechanism {mechanism!r}; choose {', '.join(MECHANISMS)}")
    draw = rng.laplace if mechanism == "laplace" else rng.normal
    return {k: (v + draw(0.0, scale, size=v.shape)).astype(v.dtype) for k, v in arrays.items()}
