"""Server-side maths on client uploads: screening and weighted averaging (pure numpy)."""

from __future__ import annotations

import numpy as np

from strategies.protocol import ROWS


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


def densify(arrays: dict[str, np.ndarray], base: dict[str, np.ndarray]
            ) -> tuple[dict[str, np.ndarray], str | None]:
    """Expand sparse item-table uploads (rows + their ids under ``name@rows``) onto ``base``.

    Rows a client did not train equal the broadcast ones, so this is exact. Returns the dense
    upload and the reason to reject it (bad ids, shapes) or None.
    """
    out = {k: v for k, v in arrays.items() if not k.endswith(ROWS)}
    for key in [k for k in arrays if k.endswith(ROWS)]:
        name, ids = key[: -len(ROWS)], arrays[key]
        if name not in base or name not in out:
            return out, f"{key} names no shared item table"
        rows, full = out[name], base[name]
        if ids.ndim != 1 or not np.issubdtype(ids.dtype, np.integer):
            return out, f"{key} must be a 1-D integer array"
        if ids.size and (ids.min() < 0 or ids.max() >= full.shape[0]
                         or np.unique(ids).size != ids.size):
            return out, f"{key} holds out-of-range or repeated item ids"
        if rows.shape != (ids.size, *full.shape[1:]):
            return out, f"{name} has shape {rows.shape} for {ids.size} rows"
        dense = full.astype(np.float32, copy=True)
        dense[ids] = rows
        out[name] = dense
    return out, None


def changed_rows(table: np.ndarray, base: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(ids, rows)``: the rows of ``table`` that differ from ``base`` (the inverse of
    ``densify``'s expansion)."""
    ids = np.flatnonzero((table != base).any(axis=1))
    return ids, table[ids]


class UpdateMean:
    """The mean change of the shared parameters over one round's uploads, one upload at a time.

    Item-table rows (``tables``) are averaged over the clients that trained each row (``rows``),
    unweighted; untouched rows do not change. FedAvg over all clients (``by_rows=False``) counts
    every untouched row as "no change" and so shrinks a row's update by the share of clients that
    trained it: on ml-100k-mm a typical item is trained by a few percent of the users, which is why
    FedRAP multiplies the item learning rate by the catalogue size (docs/training-recipe.md).
    Every other parameter is averaged over all uploads, weighted by their examples (the spec) or,
    with ``weighted=False`` (``dense-weights = "uniform"``), one vote a user: weighted, a user
    with 700 ratings moves NCF's shared MLP 35 times as far as one with 20, and the MLP fits the
    heaviest users while every user counts the same in HR@K (docs/training-recipe.md).

    Only running sums are kept (float64), so a round costs the memory of one model, not of every
    reply: what lets 6,040 ml-1m clients aggregate in a few hundred MB.
    """

    def __init__(self, base: dict[str, np.ndarray], tables: tuple[str, ...] = (),
                 by_rows: bool = True, weighted: bool = True) -> None:
        self.base = base
        self.weighted = weighted
        self.tables = set(tables) if by_rows else set()
        self._sums = {k: np.zeros(v.shape, dtype=np.float64) for k, v in base.items()}
        self._counts = {k: np.zeros(base[k].shape[0], dtype=np.float64) for k in self.tables}
        self.total = 0.0
        self.count = 0

    def add(self, upload: dict[str, np.ndarray], weight: float,
            rows: dict[str, np.ndarray] | None = None) -> None:
        """``rows``: per item table, the ids of the rows this client trained (absent: the rows
        that differ from the broadcast)."""
        rows = rows or {}
        weight = weight if self.weighted else 1.0
        scale = np.float32(weight)
        for name, acc in self._sums.items():
            if name in self.tables:
                ids = rows.get(name)
                if ids is None:
                    ids, _ = changed_rows(upload[name], self.base[name])
                acc[ids] += upload[name][ids] - self.base[name][ids]
                self._counts[name][ids] += 1
            else:  # float32 product, float64 sum: one temporary, no copies
                acc += (upload[name] - self.base[name]) * scale
        self.total += float(weight)
        self.count += 1

    def add_sums(self, n: int, changes: dict[str, np.ndarray],
                 trained: dict[str, np.ndarray]) -> None:
        """Add the sum of ``n`` unweighted updates, as secure aggregation returns it: ``changes``
        per shared parameter, and per item table how many of them trained each row."""
        for name, acc in self._sums.items():
            acc += changes[name]
            if name in self.tables:
                self._counts[name] += trained[name]
        self.total += float(n)
        self.count += n

    def delta(self) -> dict[str, np.ndarray]:
        """The mean change of every shared parameter (float64)."""
        if not self.count:
            raise ValueError("no uploads to aggregate")
        out = {}
        for name, acc in self._sums.items():
            if name in self.tables:
                counts = self._counts[name].reshape(-1, *([1] * (acc.ndim - 1)))
                out[name] = acc / np.maximum(counts, 1)
            else:
                out[name] = acc / self.total
        return out

    def result(self, server_lr: float = 1.0) -> dict[str, np.ndarray]:
        """The new global parameters (float32): ``base + server_lr * delta`` for the row-averaged
        item tables, ``base + delta`` (FedAvg) for the rest.

        ``server_lr`` is FedOpt's server learning rate: clients' steps on an item row point in
        different directions and their mean is short. The dense layers (NCF's MLP and head) are
        averaged over every client and stay plain FedAvg: a server step of 3 on them made FedNCF
        diverge (docs/training-recipe.md)."""
        return {k: (self.base[k] + (server_lr if k in self.tables else 1.0) * d).astype(np.float32)
                for k, d in self.delta().items()}
