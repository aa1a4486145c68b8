"""The tuner searches on validation only: a study cannot depend on any test item."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from server_app.tuning import parse_space, tune

N_USERS, N_ITEMS = 12, 30


def _paper_dataset(root: Path, test_shift: int) -> Path:
    """Users with 6 interactions; the last (the test item) is moved by ``test_shift`` items."""
    rng = np.random.default_rng(0)
    lines = ["userId,itemId,rating,timestamp"]
    for user in range(N_USERS):
        items = rng.choice(N_ITEMS - 8, size=6, replace=False)
        items[-1] = N_ITEMS - 8 + (user + test_shift) % 8  # a test item no other split uses
        lines += [f"{user},{item},5,{t}" for t, item in enumerate(items)]
    root.mkdir(parents=True)
    (root / "inter.csv").write_text("\n".join(lines) + "\n")
    np.save(root / "text_features.npy", rng.normal(size=(N_ITEMS, 8)).astype(np.float32))
    np.save(root / "image_features.npy", rng.normal(size=(N_ITEMS, 6)).astype(np.float32))
    return root


@pytest.mark.slow
def test_a_study_never_sees_a_test_item(tmp_path):
    space = parse_space("lr=log:1e-3:1e-1 server-lr=log:1:10")
    studies = []
    for shift in (0, 3):
        data = _paper_dataset(tmp_path / f"data-{shift}", shift)
        base = {"dataset": "gfmfr", "data-dir": str(data), "strategy": "fcf",
                "num-server-rounds": 3, "cache-dir": str(tmp_path / "cache"),
                "results-dir": str(tmp_path / f"runs-{shift}")}
        studies.append(tune(base, space, trials=3, out=tmp_path / f"study-{shift}"))
    first, second = studies
    assert len(first["trials"]) == 3
    for a, b in zip(first["trials"], second["trials"], strict=True):
        assert a == b  # same values tried, same validation scores, same best rounds
    # and the datasets really differ in what the test metrics would see
    assert (tmp_path / "data-0" / "inter.csv").read_text() != \
        (tmp_path / "data-3" / "inter.csv").read_text()


def test_search_space_syntax():
    assert parse_space("lr=log:0.001:0.1 local-epochs=int:1:5 optimizer=cat:adam|sgd") == {
        "lr": ("log", 0.001, 0.1), "local-epochs": ("int", 1, 5),
        "optimizer": ("categorical", ("adam", "sgd"))}
    with pytest.raises(ValueError, match="bad search space"):
        parse_space("lr=log:0.1")


def test_a_misspelt_key_stops_the_study_before_any_trial(tmp_path):
    with pytest.raises(ValueError, match="unknown run-config keys: lrr"):
        tune({"dataset": "synthetic"}, parse_space("lrr=log:1e-3:1e-1"), 2, tmp_path)
    assert not (tmp_path / "study.db").exists()
