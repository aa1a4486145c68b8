"""The GFMFR paper's code layout: ``inter.csv`` + ``image_features.npy`` + ``text_features.npy``.

Ids are already contiguous and 0-based; row ``i`` of each feature matrix is item ``i``. Items have
no raw text or images here: the features pass straight through to the server.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from datasets.errors import DataError, require_dir, require_file
from datasets.interactions import Dataset, ItemCatalog, build_dataset
from datasets.parsing import read_rows, to_float, to_int, to_timestamp

FEATURE_FILES = {"text": "text_features.npy", "image": "image_features.npy"}


def load_paper_layout(root: Path) -> Dataset:
    """Load a dataset in the layout of the paper's reference code."""
    require_dir(root, "gfmfr-layout dataset")
    features = {name: _read_features(root / file) for name, file in FEATURE_FILES.items()}
    n_items = features["text"].shape[0]
    if features["image"].shape[0] != n_items:
        raise DataError(
            f"text_features.npy has {n_items} rows but image_features.npy has "
            f"{features['image'].shape[0]}; both need one row per item.", path=root,
            fix="regenerate the two feature files from the same item list.")
    data_path = root / "inter.csv"
    users, items, times = [], [], []
    for line, f in read_rows(data_path, ",", 4, "inter.csv (userId,itemId,rating,timestamp)",
                             header=("userId", "itemId", "rating", "timestamp")):
        item = to_int(f[1], data_path, line, "itemId")
        if not 0 <= item < n_items:
            raise DataError(f"itemId {item} is out of range: the feature files have {n_items} rows "
                            f"(ids 0..{n_items - 1}).", path=data_path, line=line,
                            fix="use contiguous 0-based item ids matching the feature rows.")
        users.append(to_int(f[0], data_path, line, "userId"))
        items.append(item)
        to_float(f[2], data_path, line, "rating")
        times.append(to_timestamp(f[3], data_path, line))
    catalog = ItemCatalog(raw_ids=np.arange(n_items, dtype=np.int64),
                          texts=tuple("" for _ in range(n_items)),
                          image_paths=tuple(None for _ in range(n_items)), features=features)
    return build_dataset("gfmfr", catalog, np.asarray(users), np.asarray(items),
                         np.asarray(times), data_path)


def _read_features(path: Path) -> np.ndarray:
    require_file(path, path.name)
    try:
        array = np.load(path, allow_pickle=False)
    except Exception as error:  # noqa: BLE001 - numpy raises many types on a broken header
        raise DataError(f"not a readable .npy array ({type(error).__name__}: {error}).",
                        path=path,
                        fix="save it with numpy.save as a 2-D float array.") from None
    if array.ndim != 2 or not np.issubdtype(array.dtype, np.number):
        raise DataError(f"expected a 2-D numeric array (items x features), got shape "
                        f"{array.shape} of {array.dtype}.", path=path,
                        fix="save one feature row per item.")
    # checked after the cast: a float64 1e300 is finite but becomes inf in float32
    array = array.astype(np.float32)
    if not np.isfinite(array).all():
        raise DataError("the feature matrix holds NaN or Inf values (or values beyond float32's "
                        "range, about 3.4e38).", path=path,
                        fix="recompute, rescale or impute the broken rows.")
    return array
