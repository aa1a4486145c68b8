"""One client's update as the flat vector secure aggregation sums, and the sums read back.

Layout: the change of every shared parameter (sorted by name), then per shared item table a 0/1
"trained" indicator per row. Summed over a cohort, the indicators count the clients that trained
each row, so the server can still average every row over its trainers (``item-aggregation=rows``,
docs/training-recipe.md) without learning who trained what. Updates are unweighted: a weight
would have to be quantised into the same range as the update.
"""

from __future__ import annotations

import numpy as np


def layout(shapes: dict[str, tuple[int, ...]], tables: tuple[str, ...]
           ) -> list[tuple[str, tuple[int, ...]]]:
    """``(name, shape)`` of each piece; a table's indicator is named ``<table>#trained``."""
    out = [(name, tuple(shapes[name])) for name in sorted(shapes)]
    return out + [(f"{t}#trained", (shapes[t][0],)) for t in sorted(tables)]


def encode(change: dict[str, np.ndarray], trained: dict[str, np.ndarray],
           shapes: dict[str, tuple[int, ...]], tables: tuple[str, ...]) -> list[np.ndarray]:
    """``change``: dense change of every shared parameter; ``trained``: per item table, the ids
    of the rows this client trained."""
    out = [np.asarray(change[name], dtype=np.float64) for name in sorted(shapes)]
    for table in sorted(tables):
        flags = np.zeros(shapes[table][0])
        flags[trained[table]] = 1.0
        out.append(flags)
    return out


def decode(vector: list[np.ndarray], shapes: dict[str, tuple[int, ...]],
           tables: tuple[str, ...]) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """``(changes, trained)`` from a (summed) vector; shapes are checked."""
    pieces = layout(shapes, tables)
    if [tuple(v.shape) for v in vector] != [shape for _, shape in pieces]:
        raise ValueError(f"secure sum has shapes {[v.shape for v in vector]}, expected "
                         f"{[shape for _, shape in pieces]}")
    changes = {name: vector[i] for i, name in enumerate(sorted(shapes))}
    trained = {t: np.rint(vector[len(shapes) + i]) for i, t in enumerate(sorted(tables))}
    return changes, trained
