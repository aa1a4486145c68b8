"""Loaders on the real files, the synthetic generator, and every bad-input case."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from datasets.errors import DataError
from datasets.movielens import load_ml1m, load_ml100k
from datasets.paper_layout import load_paper_layout
from datasets.registry import check_dataset_name, load_dataset
from datasets.synthetic import SyntheticSpec, generate_synthetic
from tests.conftest import require_dataset


def test_ml100k_real_files():
    data = load_ml100k(require_dataset("ml-100k-mm"))
    assert (data.n_users, data.n_items, data.n_interactions) == (943, 1682, 100_000)
    assert data.dropped_users == 0 and data.timestamps is not None
    assert data.catalog.n_missing_images == 45
    toy_story = int(np.flatnonzero(data.catalog.raw_ids == 1)[0])
    text = data.catalog.texts[toy_story]
    assert text.startswith("Toy Story (1995)") and "Animation" in text and "cowboy doll" in text
    assert data.catalog.image_paths[toy_story].name == "1.jpg"
    assert data.user_raw_ids[data.users].min() >= 1  # raw ids map back


def test_ml1m_real_files_have_no_timestamps():
    data = load_ml1m(require_dataset("ml-1m-mm"))
    assert (data.n_users, data.n_items) == (6040, 3706)
    assert data.timestamps is None
    assert any("no timestamps" in note for note in data.notes)


def _write(path: Path, text: str, encoding: str = "utf-8") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding=encoding)
    return path


def _ml100k(root: Path, u_data: str, items: int = 4) -> Path:
    _write(root / "u.data", u_data)
    rows = "".join(f"{i}|Movie {i} (1990)|01-Jan-1990||url|" + "|".join(["0"] * 18) + "|1\n"
                   for i in range(1, items + 1))
    _write(root / "u.item", rows, "latin-1")
    return root


def test_users_with_fewer_than_three_interactions_are_dropped_and_counted(tmp_path):
    lines = ["1\t1\t5\t10", "1\t2\t5\t11", "1\t3\t5\t12", "2\t1\t4\t10", "2\t2\t4\t11",
             "3\t1\t3\t9", "3\t2\t3\t8", "3\t4\t3\t7", "3\t4\t2\t20"]  # user 3 repeats item 4
    data = load_ml100k(_ml100k(tmp_path / "ml", "\n".join(lines) + "\n"))
    assert data.n_users == 2 and data.dropped_users == 1
    assert data.n_interactions == 6  # the duplicate (3, 4) kept once
    assert data.duplicates == 1 and "1 repeated interactions dropped" in data.describe()
    assert list(data.user_raw_ids) == [1, 3]


@pytest.mark.parametrize("content, line, words", [
    ("1\t1\t5\t10\n1\t2\n", 2, "expected 4 fields"),
    ("1\t1\t5\t10\nx\t2\t5\t3\n", 2, "'user' must be an integer"),
    ("1\t1\t5\t10\n1\t2\tgood\t3\n", 2, "'rating' must be a number"),
])
def test_malformed_rows_name_file_and_line(tmp_path, content, line, words):
    root = _ml100k(tmp_path / "ml", content)
    with pytest.raises(DataError) as error:
        load_ml100k(root)
    assert error.value.line == line and error.value.path.name == "u.data"
    assert words in str(error.value) and "Fix:" in str(error.value)


def test_item_missing_from_item_file(tmp_path):
    root = _ml100k(tmp_path / "ml", "1\t1\t5\t1\n1\t9\t5\t2\n1\t2\t5\t3\n", items=2)
    with pytest.raises(DataError, match="item 9 .* not listed in the item file"):
        load_ml100k(root)


def test_missing_directory_and_file(tmp_path):
    with pytest.raises(DataError, match="directory does not exist.*data-dir"):
        load_ml100k(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="missing u.data"):
        load_ml100k(tmp_path / "empty")


def test_empty_after_filtering(tmp_path):
    root = _ml100k(tmp_path / "ml", "1\t1\t5\t1\n2\t2\t5\t2\n")
    with pytest.raises(DataError, match="nothing is left after filtering"):
        load_ml100k(root)


def test_unknown_dataset_lists_valid_names():
    with pytest.raises(DataError, match="ml-100k-mm, ml-1m-mm, gfmfr, synthetic"):
        check_dataset_name("movielens")


def _paper_layout(root: Path, inter: str, n_items: int = 3) -> Path:
    root.mkdir(parents=True)
    np.save(root / "text_features.npy", np.eye(n_items, 4, dtype=np.float32))
    np.save(root / "image_features.npy", np.ones((n_items, 5), dtype=np.float32))
    _write(root / "inter.csv", "userId,itemId,rating,timestamp\n" + inter)
    return root


def test_paper_layout_loads_features(tmp_path):
    root = _paper_layout(tmp_path / "g", "0,0,5,1\n0,1,4,2\n0,2,3,3\n1,0,1,1\n")
    data = load_paper_layout(root)
    assert data.n_users == 1 and data.dropped_users == 1 and data.n_items == 3
    assert data.catalog.features["text"].shape == (3, 4)
    assert data.catalog.features["image"].shape == (3, 5)


def test_paper_layout_item_out_of_range(tmp_path):
    root = _paper_layout(tmp_path / "g", "0,0,5,1\n0,7,4,2\n")
    with pytest.raises(DataError) as error:
        load_paper_layout(root)
    assert error.value.line == 3 and "out of range" in str(error.value)


def test_paper_layout_rejects_mismatched_feature_rows(tmp_path):
    root = _paper_layout(tmp_path / "g", "0,0,5,1\n")
    np.save(root / "image_features.npy", np.ones((2, 5), dtype=np.float32))
    with pytest.raises(DataError, match="both need one row per item"):
        load_paper_layout(root)


def test_paper_layout_rejects_features_that_overflow_float32(tmp_path):
    root = _paper_layout(tmp_path / "g", "0,0,5,1\n")
    image = np.ones((3, 5), dtype=np.float64)
    image[1, 2] = 1e300  # finite in float64, inf once cast to the float32 the model uses
    np.save(root / "image_features.npy", image)
    with pytest.raises(DataError, match="beyond float32's range"):
        load_paper_layout(root)


def test_synthetic_is_seeded_and_structured(tmp_path):
    spec = SyntheticSpec(n_users=40, n_items=60, n_tastes=2, interactions=10, seed=3)
    a, b = generate_synthetic(spec, tmp_path), generate_synthetic(spec, tmp_path)
    assert np.array_equal(a.items, b.items) and np.array_equal(a.users, b.users)
    topic = spec.topic_of_item()
    taste = spec.taste_of_user()[a.user_raw_ids[a.users]]
    assert np.mean(topic[a.items] == taste) > 0.8  # interactions follow the taste groups
    assert "Space" in a.catalog.texts[0] and "Romance" in a.catalog.texts[59]
    assert a.catalog.n_missing_images == 3 and a.catalog.image_paths[0].is_file()


def test_a_corrupt_rendered_synthetic_image_is_rendered_again(tmp_path):
    from PIL import Image

    spec = SyntheticSpec(n_users=10, n_items=20, interactions=5)
    paths = generate_synthetic(spec, tmp_path).catalog.image_paths
    rendered = {i: paths[i].read_bytes() for i in (0, 1, 2)}
    paths[0].write_bytes(rendered[0][: len(rendered[0]) // 2])  # truncated by a killed write
    paths[1].write_bytes(b"not a png at all")
    Image.new("RGB", (8, 8)).save(paths[2])  # decodes, but is not what the generator draws
    again = generate_synthetic(spec, tmp_path).catalog.image_paths
    assert again == paths
    for i, original in rendered.items():
        assert again[i].read_bytes() == original
        with Image.open(again[i]) as image:
            image.load()


def test_registry_loads_synthetic(tmp_path):
    data = load_dataset("synthetic", tmp_path, tmp_path / "cache", SyntheticSpec(n_users=10))
    assert data.n_users == 10


def test_plots_with_a_byte_order_mark_load_and_bad_bytes_name_their_line(tmp_path):
    root = _ml100k(tmp_path / "ml", "1\t1\t5\t10\n1\t2\t5\t11\n1\t3\t5\t12\n")
    (root / "plots.csv").write_bytes("\ufeffitem_id,plot\n1,a heist\n".encode("utf-8"))
    data = load_ml100k(root)
    assert "a heist" in data.catalog.texts[0]
    (root / "plots.csv").write_bytes(b"item_id,plot\n1,ok\n2,caf\xe9 society\n")
    with pytest.raises(DataError) as error:
        load_ml100k(root)
    assert error.value.line == 3 and "plots.csv" in str(error.value)


@pytest.mark.parametrize("stamp", ["nan", "inf", "1e30"])
def test_paper_layout_rejects_timestamps_that_are_not_times(tmp_path, stamp):
    root = _paper_layout(tmp_path / "g", f"0,0,5,1\n0,1,4,{stamp}\n0,2,3,3\n")
    with pytest.raises(DataError) as error:
        load_paper_layout(root)
    assert error.value.line == 3 and "finite time" in str(error.value)


def test_paper_layout_counts_precomputed_image_features_as_images(tmp_path):
    data = load_paper_layout(_paper_layout(tmp_path / "g", "0,0,5,1\n0,1,4,2\n0,2,3,3\n"))
    assert data.catalog.n_missing_images == 0 and "0 items without image" in data.describe()
