"""Conversions between numpy dicts and Flower records, shared by ServerApp and ClientApp."""

from __future__ import annotations

import math

import numpy as np
from flwr.app import Array, ArrayRecord


def to_record(arrays: dict[str, np.ndarray]) -> ArrayRecord:
    return ArrayRecord({name: Array(np.ascontiguousarray(value)) for name, value in arrays.items()})


def from_record(record: ArrayRecord) -> dict[str, np.ndarray]:
    return {name: to_numpy(array) for name, array in record.items()}


def to_numpy(array: Array) -> np.ndarray:
    """``array.numpy()``, without parsing the .npy header when it is the one numpy writes for a
    C-ordered array of ``array.dtype``.

    ``Array.numpy`` parses the header with ``ast`` on every call: for a model's small arrays that
    was most of the cost of reading a record (about a second of CPU per ml-100k round).
    """
    dtype = np.dtype(array.dtype) if array.stype == "numpy.ndarray" else None
    if dtype is None or dtype.hasobject:
        return array.numpy()
    nbytes = dtype.itemsize * math.prod(array.shape)
    data = array.data
    header = data[:len(data) - nbytes]
    if (not header.startswith(b"\x93NUMPY") or b"'fortran_order': False" not in header
            or f"'descr': '{dtype.str}'".encode() not in header):
        return array.numpy()
    return np.frombuffer(data, dtype, offset=len(header)).reshape(array.shape).copy()
