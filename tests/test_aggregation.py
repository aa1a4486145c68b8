"""Weighted averaging against numpy's oracle, and upload screening."""

from __future__ import annotations

import numpy as np
import pytest

from strategies.aggregation import WeightedMean, densify, screen_upload


def test_weighted_mean_matches_numpy_average():
    rng = np.random.default_rng(0)
    uploads = [{"E": rng.normal(size=(3, 2)).astype(np.float32)} for _ in range(4)]
    weights = [1.0, 5.0, 2.0, 7.0]
    expected = np.average(np.stack([u["E"] for u in uploads]), axis=0, weights=weights)
    mean = WeightedMean()
    for upload, weight in zip(uploads, weights, strict=True):
        mean.add(upload, weight)
    assert mean.count == 4
    assert np.allclose(mean.result()["E"], expected, atol=1e-6)


def test_weighted_mean_of_nothing_is_an_error():
    with pytest.raises(ValueError, match="no uploads"):
        WeightedMean().result()


SHAPES = {"E": (3, 2), "b": (1,)}


def good():
    return {"E": np.zeros((3, 2), np.float32), "b": np.zeros(1, np.float32)}


@pytest.mark.parametrize("change, reason", [
    (lambda u: u.pop("b"), "differ from the shared parameters"),
    (lambda u: u.update(E=np.zeros((2, 2), np.float32)), "shape"),
    (lambda u: u.update(E=np.zeros((3, 2), np.int64)), "dtype"),
    (lambda u: u["E"].__setitem__((0, 0), np.nan), "NaN or Inf"),
    (lambda u: u.update(private=np.zeros(2, np.float32)), "differ from the shared"),
])
def test_screen_rejects_malformed_uploads(change, reason):
    upload = good()
    change(upload)
    assert reason in screen_upload(upload, SHAPES, 10.0)


def test_screen_accepts_good_and_rejects_bad_weight():
    assert screen_upload(good(), SHAPES, 10.0) is None
    assert "num-examples" in screen_upload(good(), SHAPES, 0.0)


def test_densify_is_exact_and_checks_ids():
    base = {"E": np.arange(12, dtype=np.float32).reshape(4, 3), "b": np.zeros(1, np.float32)}
    upload = {"E": np.full((2, 3), -1.0, np.float32), "E@rows": np.array([3, 1]),
              "b": np.ones(1, np.float32)}
    dense, problem = densify(upload, base)
    assert problem is None and set(dense) == {"E", "b"}
    expected = base["E"].copy()
    expected[[3, 1]] = -1.0
    assert np.array_equal(dense["E"], expected)
    for bad_ids in (np.array([4, 1]), np.array([1, 1]), np.array([0.5, 1.0])):
        assert densify({**upload, "E@rows": bad_ids}, base)[1] is not None
    assert "shape" in densify({**upload, "E": np.zeros((3, 3), np.float32)}, base)[1]
