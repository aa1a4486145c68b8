"""Reading Flower arrays: the header-skipping fast path equals ``Array.numpy`` for every layout."""

from __future__ import annotations

import numpy as np
import pytest
from flwr.app import Array

from strategies.records import to_numpy


@pytest.mark.parametrize("value", [
    np.arange(12, dtype=np.float32).reshape(3, 4),
    np.arange(5),
    np.zeros((0, 3), np.float32),
    np.array(2.5),
    np.asfortranarray(np.arange(12.0).reshape(3, 4)),
    np.array([1, 2], dtype=">i4"),
    np.arange(6, dtype=np.float16).reshape(2, 3),
    np.array([True, False]),
])
def test_to_numpy_equals_flowers_own_reader(value):
    array = Array(value)
    fast, reference = to_numpy(array), array.numpy()
    assert fast.dtype == reference.dtype and fast.shape == reference.shape
    assert np.array_equal(fast, reference)
    fast[...] = 0  # a private, writable copy: later in-place updates never touch the message
    assert np.array_equal(array.numpy(), reference)
