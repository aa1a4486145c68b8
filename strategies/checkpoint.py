"""Server checkpoints: one ``.npz`` file holding arrays and a JSON document, replaced atomically.

A crash while writing leaves the previous checkpoint intact (write to a temporary file, then
``os.replace``), so there is never a torn checkpoint to resume from.
"""

from __future__ import annotations

import io
import json
import os
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

META = "__meta__"


def save_checkpoint(path: Path, arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    payload = {**arrays, META: np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)}
    try:
        with tmp.open("wb") as handle:
            np.savez(handle, **payload)
        os.replace(tmp, path)
    finally:  # a failed write (disk full, read-only folder) leaves no temporary file behind
        tmp.unlink(missing_ok=True)


def load_checkpoint(path: Path) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """(arrays, meta) of a checkpoint; a clear error when it is missing or unreadable."""
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}: resume needs the results-dir and "
                                "run-name of a run that completed at least one round.")
    try:
        with np.load(path, allow_pickle=False) as stored:
            arrays = {k: stored[k] for k in stored.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as error:
        raise ValueError(f"checkpoint {path} is unreadable ({error}); delete it to start "
                         "over.") from None
    meta = json.loads(arrays.pop(META).tobytes().decode())
    return arrays, meta


def torch_state_to_array(state: dict) -> np.ndarray:
    """A torch state dict (module or optimiser) as bytes in a uint8 array."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    return np.frombuffer(buffer.getvalue(), dtype=np.uint8)


def torch_state_from_array(array: np.ndarray) -> dict:
    return torch.load(io.BytesIO(array.tobytes()), weights_only=True)


def with_prefix(prefix: str, arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {f"{prefix}/{k}": v for k, v in arrays.items()}


def strip_prefix(prefix: str, arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    start = len(prefix) + 1
    return {k[start:]: v for k, v in arrays.items() if k.startswith(prefix + "/")}
