"""The dataset object every loader returns: contiguous ids, item content and implicit interactions.

Loaders parse files into raw ids; ``build_dataset`` does the shared cleaning once (implicit feedback,
duplicate removal, dropping users with too few interactions, contiguous re-indexing) so that every
dataset obeys the same rules.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from datasets.errors import DataError

MIN_INTERACTIONS = 3  # train + validation + test need at least one each


@dataclass(frozen=True)
class ItemCatalog:
    """What the server holds about items: content only, never interactions.

    Row ``i`` of every field describes contiguous item ``i``; ``raw_ids[i]`` maps it back to the
    dataset's own id. ``features`` holds precomputed feature matrices (the paper's layout ships
    ``text`` and ``image`` ones); raw-content datasets leave it empty and let ``encoders/`` fill it.
    """

    raw_ids: np.ndarray  # (n_items,) int64
    texts: tuple[str, ...]  # (n_items,)
    image_paths: tuple[Path | None, ...]  # (n_items,), None where the item has no image
    features: dict[str, np.ndarray] = field(default_factory=dict)  # name -> (n_items, m) float32

    @property
    def n_items(self) -> int:
        return int(self.raw_ids.shape[0])

    @property
    def n_missing_images(self) -> int:
        """Items without an image; precomputed image features (the paper's layout) count as
        images, as the encoders treat them."""
        if "image" in self.features:
            return 0
        return sum(path is None for path in self.image_paths)


@dataclass(frozen=True)
class Dataset:
    """Implicit-feedback interactions over contiguous user and item ids, plus the item catalog."""

    name: str
    catalog: ItemCatalog
    user_raw_ids: np.ndarray  # (n_users,) raw id of each contiguous user
    users: np.ndarray  # (n_interactions,) int64 contiguous user id
    items: np.ndarray  # (n_interactions,) int64 contiguous item id
    timestamps: np.ndarray | None  # (n_interactions,) or None when the data has no time order
    dropped_users: int = 0  # users removed for having fewer than MIN_INTERACTIONS interactions
    duplicates: int = 0  # repeated (user, item) pairs dropped (the latest one is kept)
    notes: tuple[str, ...] = ()  # facts a run should print (e.g. "no timestamps")

    @property
    def n_users(self) -> int:
        return int(self.user_raw_ids.shape[0])

    @property
    def n_items(self) -> int:
        return self.catalog.n_items

    @property
    def n_interactions(self) -> int:
        return int(self.users.shape[0])

    def describe(self) -> str:
        text = (f"{self.name}: {self.n_users} users, {self.n_items} items, "
                f"{self.n_interactions} interactions, {self.dropped_users} users dropped "
                f"(< {MIN_INTERACTIONS} interactions), {self.duplicates} repeated "
                "interactions dropped, "
                f"{self.catalog.n_missing_images} items without image")
        return "; ".join((text, *self.notes))


def build_dataset(
    name: str,
    catalog: ItemCatalog,
    raw_users: np.ndarray,
    item_index: np.ndarray,
    timestamps: np.ndarray | None,
    source: Path | str,
) -> Dataset:
    """Clean parsed interactions into a ``Dataset``.

    ``raw_users`` are the dataset's user ids, ``item_index`` already contiguous item ids (rows of
    ``catalog``). Every rating is a positive (implicit feedback); repeated (user, item) pairs keep
    their latest occurrence; users with fewer than ``MIN_INTERACTIONS`` distinct items are dropped
    and counted. ``source`` names the interaction file in errors.
    """
    raw_users = np.asarray(raw_users, dtype=np.int64)
    item_index = np.asarray(item_index, dtype=np.int64)
    if raw_users.size == 0:
        raise DataError("the interaction file holds no interactions.", path=source,
                        fix="check that the file is the right one and not truncated.")
    order = np.arange(raw_users.size)
    if timestamps is not None:
        timestamps = np.asarray(timestamps, dtype=np.int64)
        order = np.lexsort((order, timestamps))  # time order, file order breaks ties
    # keep the last occurrence of each (user, item) pair in time order
    keys = raw_users[order] * np.int64(catalog.n_items + 1) + item_index[order]
    _, last_from_end = np.unique(keys[::-1], return_index=True)
    keep = np.sort(order[::-1][last_from_end])
    duplicates = int(raw_users.size - keep.size)
    raw_users, item_index = raw_users[keep], item_index[keep]
    if timestamps is not None:
        timestamps = timestamps[keep]

    user_raw_ids, user_index, counts = np.unique(raw_users, return_inverse=True, return_counts=True)
    enough = counts >= MIN_INTERACTIONS
    dropped = int((~enough).sum())
    if not enough.any():
        raise DataError(
            f"no user has {MIN_INTERACTIONS} or more distinct interactions, so nothing is left "
            "after filtering.", path=source,
            fix="use a dataset where users have at least 3 interactions (train, validation, test).")
    new_id = np.cumsum(enough) - 1
    mask = enough[user_index]
    return Dataset(
        name=name,
        catalog=catalog,
        user_raw_ids=user_raw_ids[enough],
        users=new_id[user_index[mask]].astype(np.int64),
        items=item_index[mask],
        timestamps=None if timestamps is None else timestamps[mask],
        dropped_users=dropped,
        duplicates=duplicates,
        notes=() if timestamps is not None else (
            "no timestamps: validation and test items are a seeded random hold-out",),
    )
