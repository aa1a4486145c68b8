"""Clipping and local DP noise against hand computations."""

from __future__ import annotations

import numpy as np
import pytest

from strategies.privacy import add_noise, clip_update, update_norm


def test_update_norm_and_clipping():
    base = {"a": np.zeros(2, np.float32), "b": np.ones(1, np.float32)}
    upload = {"a": np.array([3.0, 0.0], np.float32), "b": np.array([5.0], np.float32)}
    assert update_norm(upload, base) == pytest.approx(5.0)  # sqrt(9 + 16)
    clipped = clip_update(upload, base, 1.0)
    assert update_norm(clipped, base) == pytest.approx(1.0)
    assert clipped["a"][0] == pytest.approx(0.6) and clipped["b"][0] == pytest.approx(1.8)
    assert clip_update(upload, base, 10.0) is upload and clip_update(upload, base, 0) is upload


@pytest.mark.parametrize("mechanism, std", [("laplace", np.sqrt(2) * 0.5), ("gaussian", 0.5)])
def test_noise_has_the_configured_scale(mechanism, std):
    arrays = {"E": np.zeros((400, 50), np.float32)}
    noisy = add_noise(arrays, mechanism, 0.5, np.random.default_rng(0))["E"]
    assert noisy.dtype == np.float32 and abs(noisy.mean()) < 0.01
    assert noisy.std() == pytest.approx(std, rel=0.03)
    assert add_noise(arrays, mechanism, 0.0, np.random.default_rng(0)) is arrays
