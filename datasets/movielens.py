"""MovieLens with posters and plots: ``ml-100k-mm`` (GroupLens layout) and ``ml-1m-mm``."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from datasets.errors import DataError, require_dir
from datasets.interactions import Dataset, ItemCatalog, build_dataset
from datasets.parsing import decoded_lines, read_rows, to_float, to_int

ML100K_GENRES = ("unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime",
                 "Documentary", "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery",
                 "Romance", "Sci-Fi", "Thriller", "War", "Western")


def load_ml100k(root: Path) -> Dataset:
    """MovieLens-100K: ``u.data`` (tab: user, item, rating, time), ``u.item``, posters, plots."""
    require_dir(root, "ml-100k-mm")
    data_path = root / "u.data"
    users, items, times = [], [], []
    for line, f in read_rows(data_path, "\t", 4, "u.data (user, item, rating, timestamp)"):
        users.append(to_int(f[0], data_path, line, "user"))
        items.append(to_int(f[1], data_path, line, "item"))
        to_float(f[2], data_path, line, "rating")
        times.append(to_int(f[3], data_path, line, "timestamp"))
    item_path = root / "u.item"
    titles, genres = {}, {}
    for line, f in read_rows(item_path, "|", 24, "u.item (id|title|...|19 genre flags)",
                             encoding="latin-1"):
        item = to_int(f[0], item_path, line, "movie id")
        titles[item] = f[1].strip()
        genres[item] = [g for g, flag in zip(ML100K_GENRES, f[5:24], strict=True)
                        if flag.strip() == "1"]
    plots = _read_plots(root / "plots.csv")
    return _movielens_dataset("ml-100k-mm", root, data_path, users, items, times, titles, genres,
                              plots)


def load_ml1m(root: Path) -> Dataset:
    """MovieLens-1M with posters: ``ratings.csv`` (no timestamps), ``movies.dat`` (tab-separated)."""
    require_dir(root, "ml-1m-mm")
    data_path = root / "ratings.csv"
    users, items = [], []
    for line, f in read_rows(data_path, ",", 3, "ratings.csv (user_id,item_id,rating)",
                             header=("user_id", "item_id", "rating")):
        users.append(to_int(f[0], data_path, line, "user_id"))
        items.append(to_int(f[1], data_path, line, "item_id"))
        to_float(f[2], data_path, line, "rating")
    item_path = root / "movies.dat"
    titles, genres = {}, {}
    for line, f in read_rows(item_path, "\t", 3, "movies.dat (id, title, genres)",
                             encoding="latin-1"):
        item = to_int(f[0], item_path, line, "id")
        titles[item] = f[1].strip()
        genres[item] = [g for g in f[2].strip().split("|") if g]
    return _movielens_dataset("ml-1m-mm", root, data_path, users, items, None, titles, genres, {})


def _read_plots(path: Path) -> dict[int, str]:
    """``plots.csv`` (item_id,plot); optional: a missing file means no plots."""
    if not path.is_file():
        return {}
    rows = list(csv.reader(decoded_lines(path, "utf-8")))  # names the line of bad bytes
    if not rows or [c.strip() for c in rows[0][:2]] != ["item_id", "plot"]:
        raise DataError("expected the header item_id,plot.", path=path, line=1,
                        fix="restore the header row.")
    plots = {}
    for number, row in enumerate(rows[1:], start=2):
        if len(row) < 2:
            raise DataError(f"malformed row: expected item_id,plot, got {row!r}.", path=path,
                            line=number, fix="quote plots that contain commas.")
        plots[to_int(row[0], path, number, "item_id")] = row[1].strip()
    return plots


def _movielens_dataset(name: str, root: Path, data_path: Path, users: list[int],
                       items: list[int], times: list[int] | None, titles: dict[int, str],
                       genres: dict[int, list[str]], plots: dict[int, str]) -> Dataset:
    raw_items = np.asarray(items, dtype=np.int64)
    catalog_ids = np.unique(raw_items)
    unknown = [int(i) for i in catalog_ids if int(i) not in titles]
    if unknown:
        line = items.index(unknown[0]) + 1
        raise DataError(
            f"item {unknown[0]} (and {len(unknown) - 1} more) is rated but not listed in the item "
            "file, so it has no title or poster.", path=data_path, line=line,
            fix="add the item to the item file or remove its ratings.")
    posters = root / "posters"
    texts, images = [], []
    for raw in catalog_ids.tolist():
        parts = [titles[raw]]
        if genres.get(raw):
            parts.append("Genres: " + ", ".join(genres[raw]) + ".")
        if plots.get(raw):
            parts.append(plots[raw])
        texts.append(" ".join(parts))
        poster = posters / f"{raw}.jpg"
        images.append(poster if poster.is_file() else None)
    catalog = ItemCatalog(raw_ids=catalog_ids, texts=tuple(texts), image_paths=tuple(images))
    item_index = np.searchsorted(catalog_ids, raw_items)
    return build_dataset(name, catalog, np.asarray(users), item_index,
                         None if times is None else np.asarray(times), data_path)
