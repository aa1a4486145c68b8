"""Leave-one-out splitting, candidates and negative sampling on hand-made data."""

from __future__ import annotations

import numpy as np
import pytest

from datasets.errors import DataError
from datasets.interactions import Dataset, ItemCatalog
from datasets.split import leave_one_out


def _dataset(users, items, times) -> Dataset:
    n_items = 6
    catalog = ItemCatalog(np.arange(n_items), tuple("" for _ in range(n_items)),
                          tuple(None for _ in range(n_items)))
    return Dataset("t", catalog, np.arange(max(users) + 1), np.asarray(users),
                   np.asarray(items), None if times is None else np.asarray(times))


def test_chronological_leave_one_out():
    data = _dataset([0, 0, 0, 0, 1, 1, 1], [3, 1, 4, 0, 5, 2, 0], [4, 1, 3, 2, 9, 8, 7])
    split = leave_one_out(data, seed=0)
    user0 = split.client(0)
    assert (sorted(user0.train_items), user0.val_item, user0.test_item) == ([0, 1], 4, 3)
    user1 = split.client(1)
    assert (list(user1.train_items), user1.val_item, user1.test_item) == ([0], 2, 5)


def test_random_hold_out_without_timestamps_is_seeded():
    data = _dataset([0] * 5 + [1] * 3, [0, 1, 2, 3, 4, 5, 2, 1], None)
    a, b = leave_one_out(data, seed=7), leave_one_out(data, seed=7)
    assert np.array_equal(a.val, b.val) and np.array_equal(a.test, b.test)
    view = a.client(0)
    assert sorted([*view.train_items, view.val_item, view.test_item]) == [0, 1, 2, 3, 4]


def test_candidates_exclude_seen_items_and_negatives_exclude_training_items():
    data = _dataset([0, 0, 0, 0], [0, 1, 2, 3], [1, 2, 3, 4])
    view = leave_one_out(data, 0).client(0)
    assert list(np.flatnonzero(view.candidates(view.test_item))) == [3, 4, 5]
    # validation never depends on the test item: it stays a candidate there
    assert list(np.flatnonzero(view.candidates(view.val_item))) == [2, 3, 4, 5]
    items, labels = view.training_pairs(np.random.default_rng(0), neg_per_pos=20)
    assert labels.sum() == 2 and (labels == 0).sum() == 40
    # held-out items may be negatives (the device cannot know its future); training items never
    assert set(items[labels == 0]) == {2, 3, 4, 5}
    other, _ = view.training_pairs(np.random.default_rng(1), neg_per_pos=4)
    assert not np.array_equal(items, other)  # a new round draws new negatives


def _random_dataset(n_users=30, n_items=40, per_user=12, seed=0) -> Dataset:
    rng = np.random.default_rng(seed)
    users = np.repeat(np.arange(n_users), per_user)
    items = np.concatenate([rng.choice(n_items, per_user, replace=False) for _ in range(n_users)])
    catalog = ItemCatalog(np.arange(n_items), tuple("" for _ in range(n_items)),
                          tuple(None for _ in range(n_items)))
    return Dataset("t", catalog, np.arange(n_users), users, items,
                   rng.random(users.size))


def test_cold_items_leave_training_and_validation_and_are_ranked_among_new_items():
    data = _random_dataset()
    split = leave_one_out(data, seed=3, cold_items=0.25)
    assert split.cold.sum() == 10
    assert split.cold_test.size == split.cold[data.items].sum()  # every cold interaction held out
    for user in range(split.n_users):
        view = split.client(user)
        assert not split.cold[view.train_items].any()
        assert not split.cold[[view.val_item, view.test_item]].any()
        # warm ranking never includes a new item
        assert not (view.candidates(view.test_item) & split.cold).any()
        items, labels = view.training_pairs(np.random.default_rng(user), neg_per_pos=8)
        assert not split.cold[items].any()  # new items are not even negatives
        for item in view.cold_items:
            candidates = view.cold_candidates(int(item))
            assert candidates[item] and not (candidates & ~split.cold).any()
            others = set(view.cold_items.tolist()) - {int(item)}
            assert not candidates[list(others)].any() if others else True
    # the same seed draws the same new items; cold-items=0 is the ordinary split
    assert np.array_equal(leave_one_out(data, 3, 0.25).cold, split.cold)
    plain = leave_one_out(data, 3)
    assert plain.cold is None and plain.client(0).cold_items.size == 0


def test_cold_items_that_leave_a_user_too_few_interactions_fail_clearly():
    data = _random_dataset(per_user=4)
    with pytest.raises(DataError, match="lower cold-items"):
        leave_one_out(data, seed=0, cold_items=0.9)
