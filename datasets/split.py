"""Leave-one-out split and the per-client view a user's device works with.

Per user, the last interaction in time is the test item and the one before it the validation item;
without timestamps both are a seeded random hold-out. Candidates for full ranking are the items the
user never trained on (for the test item: nor held out for validation), plus the held-out item.

Cold start (``cold-items``): a seeded share of the catalogue is new. Every interaction with those
items is held out of training and of validation; each user's held-out cold items are ranked among
the cold items that user did not interact with. Warm ranking never includes cold items.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from datasets.errors import DataError
from datasets.interactions import Dataset

NO_ITEMS = np.empty(0, dtype=np.int64)


@dataclass(frozen=True)
class LeaveOneOut:
    """All users' splits in compressed form (train items of user ``u``: ``train[indptr[u]:indptr[u+1]]``)."""

    n_items: int
    indptr: np.ndarray  # (n_users + 1,)
    train: np.ndarray  # (n_train,) item ids grouped by user
    val: np.ndarray  # (n_users,)
    test: np.ndarray  # (n_users,)
    cold: np.ndarray | None = None  # (n_items,) bool: new items, never trained on; None = none
    cold_indptr: np.ndarray | None = None  # (n_users + 1,) each user's held-out cold items ...
    cold_test: np.ndarray | None = None  # ... in cold_test[cold_indptr[u]:cold_indptr[u+1]]

    @property
    def n_users(self) -> int:
        return int(self.val.shape[0])

    def client(self, user: int) -> ClientView:
        """The view of one user's device (``partition-id`` = contiguous user id)."""
        if not 0 <= user < self.n_users:
            raise ValueError(f"partition-id {user} is out of range: the dataset has "
                             f"{self.n_users} users (ids 0..{self.n_users - 1}). Run one SuperNode "
                             "per user (see flower.toml).")
        train = self.train[self.indptr[user]:self.indptr[user + 1]]
        cold_items = NO_ITEMS if self.cold is None else \
            self.cold_test[self.cold_indptr[user]:self.cold_indptr[user + 1]]
        return ClientView(user, self.n_items, train, int(self.val[user]), int(self.test[user]),
                          self.cold, cold_items)


def cold_item_mask(n_items: int, fraction: float, seed: int) -> np.ndarray:
    """(n_items,) bool: the seeded ``fraction`` of the catalogue that is new (cold)."""
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"bad run config: cold-items must be in [0, 1), got {fraction!r}.")
    mask = np.zeros(n_items, dtype=bool)
    count = int(round(fraction * n_items))
    # a stream of its own: the cold items do not shift when other seeded draws change
    mask[np.random.default_rng([seed, 0xC01D]).choice(n_items, size=count, replace=False)] = True
    return mask


def leave_one_out(data: Dataset, seed: int, cold_items: float = 0.0) -> LeaveOneOut:
    """Split every user's interactions chronologically (or by a seeded shuffle without time);
    with ``cold_items`` > 0, hold out every interaction with a seeded share of the items first."""
    if data.timestamps is not None:
        order = np.lexsort((np.arange(data.n_interactions), data.timestamps, data.users))
    else:
        shuffle = np.random.default_rng(seed).permutation(data.n_interactions)
        order = shuffle[np.argsort(data.users[shuffle], kind="stable")]
    users, items = data.users[order], data.items[order]
    cold = cold_item_mask(data.n_items, cold_items, seed) if cold_items else None
    cold_indptr = cold_test = None
    if cold is not None:
        is_cold = cold[items]
        cold_indptr = np.searchsorted(users[is_cold], np.arange(data.n_users + 1))
        cold_test = items[is_cold]
        users, items = users[~is_cold], items[~is_cold]
    ends = np.searchsorted(users, np.arange(data.n_users + 1))
    short = np.flatnonzero(np.diff(ends) < 3)
    if short.size:  # only reachable with cold items: the loaders drop users with fewer than 3
        raise DataError(f"with cold-items={cold_items}, {short.size} users keep fewer than 3 "
                        f"interactions with warm items (e.g. user {short[0]}), too few for a "
                        "training, validation and test item.",
                        fix="lower cold-items, or drop those users from the dataset.")
    last = ends[1:] - 1
    keep = np.ones(items.size, dtype=bool)
    keep[last] = keep[last - 1] = False
    indptr = np.concatenate(([0], np.cumsum(np.diff(ends) - 2)))
    return LeaveOneOut(data.n_items, indptr, items[keep], items[last - 1], items[last], cold,
                       cold_indptr, cold_test)


@dataclass(frozen=True)
class ClientView:
    """One user's data: train items, held-out validation and test items."""

    user: int
    n_items: int
    train_items: np.ndarray  # (n_train,)
    val_item: int
    test_item: int
    cold: np.ndarray | None = None  # (n_items,) bool: the new items (None: no cold start)
    cold_items: np.ndarray = field(default_factory=lambda: NO_ITEMS)  # held-out new items

    def candidates(self, held_out: int) -> np.ndarray:
        """(n_items,) True for the items ``held_out`` is ranked against, itself included.

        The validation item is ranked against every item the user did not train on, the test
        item against every item not trained on and not the validation item. Validation never
        depends on the test item, so model selection and tuning cannot see it (RecBole's rule).
        """
        mask = np.ones(self.n_items, dtype=bool) if self.cold is None else ~self.cold
        mask[self.train_items] = False
        if held_out == self.test_item and self.test_item != self.val_item:
            mask[self.val_item] = False
        mask[held_out] = True
        return mask

    def cold_candidates(self, held_out: int) -> np.ndarray:
        """(n_items,) True for the new items a held-out cold item is ranked against: every new
        item this user did not interact with, and itself."""
        mask = self.cold.copy()
        mask[self.cold_items] = False
        mask[held_out] = True
        return mask

    def training_pairs(self, rng: np.random.Generator, neg_per_pos: int
                       ) -> tuple[np.ndarray, np.ndarray]:
        """Positives plus ``neg_per_pos`` negatives each, drawn from items not in the training set.

        The held-out validation and test items can be drawn as negatives, as on a real device
        that cannot know its future: excluding them would leave them the only items never
        pushed down, which personal item tables (FedRAP's D_u) turn into a leak of the answer.
        New items (cold start) are never negatives: they are not in the catalogue yet.
        Returns ``(items, labels)`` in a random order; each call is a fresh draw of negatives
        (once a round, or once an epoch with ``neg-resample = "epoch"``: ``train_local``).
        """
        train = np.zeros(self.n_items, dtype=bool) if self.cold is None else self.cold.copy()
        train[self.train_items] = True  # (and new items: they are not in the catalogue yet)
        unseen = np.flatnonzero(~train)
        n_neg = self.train_items.size * neg_per_pos
        negatives = rng.choice(unseen, size=n_neg, replace=unseen.size < n_neg) if unseen.size \
            else np.empty(0, dtype=np.int64)
        items = np.concatenate((self.train_items, negatives))
        labels = np.concatenate((np.ones(self.train_items.size, np.float32),
                                 np.zeros(negatives.size, np.float32)))
        order = rng.permutation(items.size)
        return items[order], labels[order]
