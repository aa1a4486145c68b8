"""Conversions between numpy dicts and Flower records, shared by ServerApp and ClientApp."""

from __future__ import annotations

import numpy as np
from flwr.app import Array, ArrayRecord


def to_record(arrays: dict[str, np.ndarray]) -> ArrayRecord:
    return ArrayRecord({name: Array(np.ascontiguousarray(value)) for name, value in arrays.items()})


def from_record(record: ArrayRecord) -> dict[str, np.ndarray]:
    return {name: array.numpy() for name, array in record.items()}
