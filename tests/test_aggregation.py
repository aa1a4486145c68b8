"""Weighted averaging against numpy's oracle, and upload screening."""

from __future__ import annotations

import numpy as np
import pytest

from strategies.aggregation import UpdateMean, densify, screen_upload


def test_dense_parameters_are_averaged_weighted_by_examples():
    rng = np.random.default_rng(0)
    base = {"W": rng.normal(size=(3, 2)).astype(np.float32)}
    uploads = [{"W": rng.normal(size=(3, 2)).astype(np.float32)} for _ in range(4)]
    weights = [1.0, 5.0, 2.0, 7.0]
    expected = np.average(np.stack([u["W"] for u in uploads]), axis=0, weights=weights)
    mean = UpdateMean(base)
    for upload, weight in zip(uploads, weights, strict=True):
        mean.add(upload, weight)
    assert mean.count == 4
    assert np.allclose(mean.result()["W"], expected, atol=1e-6)
    # the server step scales item tables only: dense layers stay FedAvg
    assert np.allclose(mean.result(3.0)["W"], expected, atol=1e-6)


def test_uniform_dense_weights_give_every_user_one_vote():
    """``dense-weights = "uniform"``: a user with many examples does not outweigh the others, and
    item rows are still averaged over their trainers."""
    base = {"W": np.zeros(2, np.float32), "E": np.zeros((2, 1), np.float32)}
    heavy = {"W": np.array([1.0, 1.0], np.float32), "E": np.array([[1.0], [0.0]], np.float32)}
    light = {"W": np.array([-1.0, 3.0], np.float32), "E": np.array([[3.0], [0.0]], np.float32)}
    uniform = UpdateMean(base, ("E",), weighted=False)
    weighted = UpdateMean(base, ("E",))
    for mean in (uniform, weighted):
        mean.add(heavy, 700.0)
        mean.add(light, 20.0)
    assert np.allclose(uniform.result()["W"], [0.0, 2.0])
    assert np.allclose(weighted.result()["W"], [(700 - 20) / 720, (700 + 60) / 720])
    assert np.allclose(uniform.result()["E"], weighted.result()["E"])
    assert np.allclose(uniform.result()["E"], [[2.0], [0.0]])


def test_item_rows_are_averaged_over_the_clients_that_trained_them():
    base = {"E": np.zeros((4, 2), np.float32)}
    a = {"E": np.array([[1, 1], [2, 2], [0, 0], [0, 0]], np.float32)}
    b = {"E": np.array([[3, 3], [0, 0], [0, 0], [0, 0]], np.float32)}
    rows = UpdateMean(base, ("E",))
    rows.add(a, 10.0, {"E": np.array([0, 1])})
    rows.add(b, 1.0)  # no row ids: the rows that differ from the broadcast
    # row 0: mean of 1 and 3; row 1: only a trained it; rows 2-3: nobody, unchanged
    assert np.allclose(rows.result()["E"], [[2, 2], [2, 2], [0, 0], [0, 0]])
    assert np.allclose(rows.result(3.0)["E"], [[6, 6], [6, 6], [0, 0], [0, 0]])
    fedavg = UpdateMean(base, ("E",), by_rows=False)
    fedavg.add(a, 1.0)
    fedavg.add(b, 1.0)
    assert np.allclose(fedavg.result()["E"], [[2, 2], [1, 1], [0, 0], [0, 0]])


def test_a_row_trained_to_its_broadcast_value_still_counts():
    """Row ids sent with the upload count a client that trained a row, even if it did not move."""
    base = {"E": np.ones((2, 2), np.float32)}
    rows = UpdateMean(base, ("E",))
    rows.add({"E": np.ones((2, 2), np.float32)}, 1.0, {"E": np.array([0])})
    rows.add({"E": np.full((2, 2), 3.0, np.float32)}, 1.0, {"E": np.array([0, 1])})
    assert np.allclose(rows.result()["E"], [[2, 2], [3, 3]])


def test_mean_of_nothing_is_an_error():
    with pytest.raises(ValueError, match="no uploads"):
        UpdateMean({"E": np.zeros((1, 1), np.float32)}).result()


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
