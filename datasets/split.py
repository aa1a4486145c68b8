"""Leave-one-out split and the per-client view a user's device works with.

Per user, the last interaction in time is the test item and the one before it the validation item;
without timestamps both are a seeded random hold-out. Candidates for full ranking are the items the
user never trained on (for the test item: nor held out for validation), plus the held-out item.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from datasets.interactions import Dataset


@dataclass(frozen=True)
class LeaveOneOut:
    """All users' splits in compressed form (train items of user ``u``: ``train[indptr[u]:indptr[u+1]]``)."""

    n_items: int
    indptr: np.ndarray  # (n_users + 1,)
    train: np.ndarray  # (n_train,) item ids grouped by user
    val: np.ndarray  # (n_users,)
    test: np.ndarray  # (n_users,)

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
        return ClientView(user, self.n_items, train, int(self.val[user]), int(self.test[user]))


def leave_one_out(data: Dataset, seed: int) -> LeaveOneOut:
    """Split every user's interactions chronologically (or by a seeded shuffle without time)."""
    if data.timestamps is not None:
        order = np.lexsort((np.arange(data.n_interactions), data.timestamps, data.users))
    else:
        shuffle = np.random.default_rng(seed).permutation(data.n_interactions)
        order = shuffle[np.argsort(data.users[shuffle], kind="stable")]
    users, items = data.users[order], data.items[order]
    ends = np.searchsorted(users, np.arange(data.n_users + 1))
    last = ends[1:] - 1
    keep = np.ones(items.size, dtype=bool)
    keep[last] = keep[last - 1] = False
    indptr = np.concatenate(([0], np.cumsum(np.diff(ends) - 2)))
    return LeaveOneOut(data.n_items, indptr, items[keep], items[last - 1], items[last])


@dataclass(frozen=True)
class ClientView:
    """One user's data: train items, held-out validation and test items."""

    user: int
    n_items: int
    train_items: np.ndarray  # (n_train,)
    val_item: int
    test_item: int

    def candidates(self, held_out: int) -> np.ndarray:
        """(n_items,) True for the items ``held_out`` is ranked against, itself included.

        The validation item is ranked against every item the user did not train on, the test
        item against every item not trained on and not the validation item. Validation never
        depends on the test item, so model selection and tuning cannot see it (RecBole's rule).
        """
        mask = np.ones(self.n_items, dtype=bool)
        mask[self.train_items] = False
        if held_out == self.test_item and self.test_item != self.val_item:
            mask[self.val_item] = False
        mask[held_out] = True
        return mask

    def training_pairs(self, rng: np.random.Generator, neg_per_pos: int
                       ) -> tuple[np.ndarray, np.ndarray]:
        """Positives plus ``neg_per_pos`` negatives each, drawn from items not in the training set.

        The held-out validation and test items can be drawn as negatives, as on a real device
        that cannot know its future: excluding them would leave them the only items never
        pushed down, which personal item tables (FedRAP's D_u) turn into a leak of the answer.
        Returns ``(items, labels)`` in a random order; call once per round to resample negatives.
        """
        train = np.zeros(self.n_items, dtype=bool)
        train[self.train_items] = True
        unseen = np.flatnonzero(~train)
        n_neg = self.train_items.size * neg_per_pos
        negatives = rng.choice(unseen, size=n_neg, replace=unseen.size < n_neg) if unseen.size \
            else np.empty(0, dtype=np.int64)
        items = np.concatenate((self.train_items, negatives))
        labels = np.concatenate((np.ones(self.train_items.size, np.float32),
                                 np.zeros(negatives.size, np.float32)))
        order = rng.permutation(items.size)
        return items[order], labels[order]
