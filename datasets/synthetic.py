"""A seeded synthetic dataset whose right answer is known.

Users belong to taste groups and items to topics laid out in contiguous blocks; a user of taste
``k`` mostly interacts with topic-``k`` items. Item text and small rendered images carry the topic
too (topic words, topic colour and shape), so both collaborative and content signals are learnable
and a grouping method should recover the taste groups.
"""

from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw  # pillow arrives with torchvision

from datasets.errors import DataError
from datasets.interactions import Dataset, ItemCatalog, build_dataset

TOPICS = (
    ("Space", "astronauts fly a rocket to a distant galaxy and meet an alien starship crew"),
    ("Romance", "two lovers meet, fall in love and plan a wedding despite heartbreak"),
    ("Crime", "a detective hunts a gangster after a bank heist and a murder in the city"),
    ("Comedy", "a silly family plays pranks and jokes that end in loud laughter"),
    ("Horror", "a ghost haunts an old house and a monster spreads fear at night"),
    ("Animation", "talking animal cartoons and toys go on a colourful adventure for children"),
    ("War", "soldiers of an army fight a long battle during a historic invasion"),
    ("Sports", "a coach trains a football team for the championship final"),
)
COLOURS = ((40, 60, 200), (220, 40, 90), (60, 60, 60), (250, 210, 40), (110, 20, 20),
           (60, 200, 90), (120, 110, 60), (30, 160, 220))
IMAGE_SIZE = 64
MISSING_IMAGE_EVERY = 20  # every 20th item has no image, as real catalogues do

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class SyntheticSpec:
    """Size and seed of a synthetic dataset (run-config keys ``synthetic-*``)."""

    n_users: int = 60
    n_items: int = 80
    n_tastes: int = 2
    interactions: int = 12  # mean interactions per user
    on_taste: float = 0.9  # share of a user's interactions inside its taste's item block
    seed: int = 0

    def validate(self) -> None:
        if self.n_tastes < 1 or self.n_tastes > self.n_items:
            raise DataError(f"synthetic-tastes must be between 1 and synthetic-items "
                            f"({self.n_items}), got {self.n_tastes}.")
        if self.n_users < 1 or self.interactions < 3:
            raise DataError("synthetic-users must be >= 1 and synthetic-interactions >= 3.")
        if self.interactions > self.n_items // self.n_tastes:
            raise DataError(f"synthetic-interactions ({self.interactions}) exceeds the items per "
                            f"taste ({self.n_items // self.n_tastes}).",
                            fix="raise synthetic-items or lower synthetic-interactions.")

    def topic_of_item(self) -> np.ndarray:
        return np.arange(self.n_items) * self.n_tastes // self.n_items

    def taste_of_user(self) -> np.ndarray:
        return np.arange(self.n_users) % self.n_tastes


def generate_synthetic(spec: SyntheticSpec, image_root: Path) -> Dataset:
    """Generate the dataset; item images are rendered once under ``image_root``."""
    spec.validate()
    rng = np.random.default_rng(spec.seed)
    topic = spec.topic_of_item()
    popularity = rng.pareto(1.5, spec.n_items) + 1.0
    users, items = [], []
    for user, taste in enumerate(spec.taste_of_user()):
        count = int(np.clip(rng.poisson(spec.interactions), 3, spec.n_items // spec.n_tastes))
        on = rng.binomial(count, spec.on_taste)
        for pool, size in ((np.flatnonzero(topic == taste), on),
                           (np.flatnonzero(topic != taste), count - on)):
            size = min(size, pool.size)
            if size:
                weights = popularity[pool] / popularity[pool].sum()
                items.extend(rng.choice(pool, size=size, replace=False, p=weights).tolist())
                users.extend([user] * size)
    order = rng.permutation(len(users))
    users_arr = np.asarray(users)[order]
    items_arr = np.asarray(items)[order]
    catalog = ItemCatalog(
        raw_ids=np.arange(spec.n_items, dtype=np.int64),
        texts=tuple(_item_text(i, int(t), rng) for i, t in enumerate(topic)),
        image_paths=_render_images(spec, topic, image_root),
    )
    return build_dataset("synthetic", catalog, users_arr, items_arr,
                         np.arange(users_arr.size), "<synthetic>")


def _item_text(item: int, topic: int, rng: np.random.Generator) -> str:
    name, plot = TOPICS[topic % len(TOPICS)]
    words = [w for w in plot.split() if len(w) > 3]
    chosen = sorted(rng.choice(len(words), size=min(5, len(words)), replace=False))
    picked = " ".join(words[j] for j in chosen)
    return f"Item {item}. Genres: {name}. A story where {picked}."


def _render_images(spec: SyntheticSpec, topic: np.ndarray, image_root: Path
                   ) -> tuple[Path | None, ...]:
    """Render each item's image into a folder keyed by ``spec``; reuse a cached file only if intact.

    A cached PNG is kept when it decodes to exactly the pixels drawn now, so a file truncated by a
    killed run, overwritten or otherwise corrupt is rendered again instead of reaching the image
    encoder (which would mask it as a missing image and train on zeros).
    """
    key = hashlib.sha1(repr(spec).encode()).hexdigest()[:12]
    folder = Path(image_root) / f"synthetic-{key}"
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(spec.seed + 1)
    paths: list[Path | None] = []
    for item, t in enumerate(topic.tolist()):
        noise = rng.integers(-25, 26, size=3)
        if item % MISSING_IMAGE_EVERY == MISSING_IMAGE_EVERY - 1:
            paths.append(None)
            continue
        path = folder / f"{item}.png"
        image = _draw(t, noise)
        if not _cached_matches(path, image):
            if path.exists():
                logger.warning("cached synthetic image %s is corrupt or stale: rendered again", path)
            tmp = path.with_name(f"{item}.{os.getpid()}.tmp.png")  # per process: no shared tmp
            image.save(tmp)
            tmp.replace(path)
        paths.append(path)
    return tuple(paths)


def _draw(t: int, noise: np.ndarray) -> Image.Image:
    """The image of a topic-``t`` item: the topic's colour shifted by ``noise``, the topic's shape."""
    colour = tuple(int(c) for c in np.clip(np.asarray(COLOURS[t % len(COLOURS)]) + noise, 0, 255))
    image = Image.new("RGB", (IMAGE_SIZE, IMAGE_SIZE), colour)
    draw = ImageDraw.Draw(image)
    box = (12, 12, IMAGE_SIZE - 12, IMAGE_SIZE - 12)
    shape = t % 3
    if shape == 0:
        draw.ellipse(box, fill=(255, 255, 255))
    elif shape == 1:
        draw.rectangle(box, fill=(0, 0, 0))
    else:
        draw.polygon([(32, 8), (8, 56), (56, 56)], fill=(255, 255, 255))
    return image


def _cached_matches(path: Path, image: Image.Image) -> bool:
    """True if ``path`` holds a fully decodable image with exactly ``image``'s pixels."""
    if not path.is_file():
        return False
    try:
        with Image.open(path) as cached:
            cached.load()  # decodes every byte: a truncated or damaged PNG raises here
            return cached.mode == image.mode and cached.tobytes() == image.tobytes()
    except (OSError, SyntaxError, ValueError):  # what Pillow raises for unreadable files
        return False
