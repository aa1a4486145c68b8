"""The dataset registry: run-config ``dataset`` name -> loader.

Adding a dataset: write a loader returning ``datasets.interactions.Dataset`` and add one line to
``DATASETS``. Loaded datasets are memoised per process, since simulated clients on one worker
process reuse them across rounds.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache
from pathlib import Path

from datasets.errors import DataError
from datasets.interactions import Dataset
from datasets.movielens import load_ml1m, load_ml100k
from datasets.paper_layout import load_paper_layout
from datasets.split import LeaveOneOut, leave_one_out
from datasets.synthetic import SyntheticSpec, generate_synthetic

# name -> (loader taking the dataset's own folder, sub-folder of data-dir holding it)
DATASETS: dict[str, tuple[Callable[[Path], Dataset], str]] = {
    "ml-100k-mm": (load_ml100k, "ml-100k-mm"),
    "ml-1m-mm": (load_ml1m, "ml-1m-mm"),
    "gfmfr": (load_paper_layout, "gfmfr"),
}
GENERATED = ("synthetic",)


def dataset_names() -> tuple[str, ...]:
    return (*DATASETS, *GENERATED)


def check_dataset_name(name: str) -> None:
    if name not in dataset_names():
        raise DataError(f"unknown dataset {name!r}.",
                        fix=f"choose one of: {', '.join(dataset_names())}.")


@lru_cache(maxsize=4)
def load_dataset(name: str, data_dir: Path, cache_dir: Path,
                 synthetic: SyntheticSpec = SyntheticSpec()) -> Dataset:
    """Load dataset ``name``; the ``gfmfr`` layout may sit in ``data_dir`` itself or ``data_dir/gfmfr``.

    ``cache_dir`` receives generated files (synthetic images); ``synthetic`` sizes the generated set.
    """
    check_dataset_name(name)
    if name == "synthetic":
        return generate_synthetic(synthetic, Path(cache_dir))
    loader, folder = DATASETS[name]
    root = Path(data_dir) / folder
    if name == "gfmfr" and not root.exists() and (Path(data_dir) / "inter.csv").exists():
        root = Path(data_dir)
    return loader(root)


@lru_cache(maxsize=4)
def load_split(name: str, data_dir: Path, cache_dir: Path, seed: int,
               synthetic: SyntheticSpec = SyntheticSpec(), cold_items: float = 0.0
               ) -> LeaveOneOut:
    """The leave-one-out split of a dataset (``cold_items``: share of new items held out),
    memoised like ``load_dataset``."""
    return leave_one_out(load_dataset(name, data_dir, cache_dir, synthetic), seed, cold_items)
