"""On-disk feature cache: one file per encoder identity, one row per distinct item content.

Rows are keyed by a hash of the item's content (the text string, the image file's bytes), never by
item id, so a changed text or poster misses the cache and re-encodes alone while every other row is
reused, and identical contents share one row. The file name carries a hash of the encoder identity
(encoder name, model/checkpoint fingerprint, preprocessing version), so a different model or
preprocessing never reads another's rows. Writes go to a temporary file that replaces the old one
atomically: a crash or a concurrent writer can lose new rows, never corrupt the cache.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import uuid
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

logger = logging.getLogger(__name__)

CACHE_FORMAT = 1  # bump when the file layout below changes
KEY_CHARS = 32  # hex characters of a 128-bit blake2b digest


def _blake2b() -> hashlib.blake2b:
    return hashlib.blake2b(digest_size=KEY_CHARS // 2)


def text_key(text: str) -> str:
    """Content key of one item text."""
    digest = _blake2b()
    digest.update(text.encode("utf-8"))
    return digest.hexdigest()


def file_key(path: Path) -> str | None:
    """Content key of one file's bytes, or None when the file cannot be read at all."""
    try:
        with open(path, "rb") as handle:
            return hashlib.file_digest(handle, _blake2b).hexdigest()
    except OSError:
        return None


def string_key(text: str) -> str:
    """Short stable hash of an identity string, for file names."""
    return text_key(text)[:16]


def file_fingerprint(path: Path) -> str:
    """Cheap identity of a model file: name, size and modification time (no full read)."""
    stat = Path(path).stat()
    return f"{Path(path).name}:{stat.st_size}:{stat.st_mtime_ns}"


def dir_fingerprint(path: Path) -> str:
    """Cheap identity of a model folder: the fingerprint of every file below it."""
    files = sorted(p for p in Path(path).rglob("*") if p.is_file())
    parts = [f"{p.relative_to(path)}:{p.stat().st_size}:{p.stat().st_mtime_ns}" for p in files]
    return string_key("|".join(parts))


@dataclass
class FeatureCache:
    """The cached rows of one encoder identity; ``save`` writes new rows back atomically."""

    path: Path
    identity: str
    rows: dict[str, int] = field(default_factory=dict)  # content key -> row of vectors
    vectors: np.ndarray | None = None  # (n_rows, d) float32; None until the first row
    ok: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=bool))  # (n_rows,)
    dirty: bool = False

    @classmethod
    def open(cls, cache_dir: Path, kind: str, name: str, identity: str) -> FeatureCache:
        """The cache for ``identity`` under ``cache_dir`` (empty if absent or unreadable)."""
        slug = re.sub(r"[^A-Za-z0-9._-]+", "_", name)[-40:]
        path = Path(cache_dir) / f"{kind}-{slug}-{string_key(identity)}.npz"
        cache = cls(path=path, identity=identity)
        if path.is_file():
            cache._load()
        return cache

    def _load(self) -> None:
        try:
            with np.load(self.path, allow_pickle=False) as data:
                stored = (str(data["identity"]), int(data["format"]))
                keys, vectors, ok = data["keys"], data["vectors"], data["ok"]
        except (OSError, KeyError, ValueError, zipfile.BadZipFile) as error:
            logger.warning("ignoring unreadable feature cache %s (%s); re-encoding",
                           self.path, error)
            return
        vectors = vectors.astype(np.float32, copy=False)
        if not np.isfinite(vectors).all():
            logger.warning("ignoring feature cache %s: it holds NaN or Inf vectors; re-encoding",
                           self.path)
            return
        if stored != (self.identity, CACHE_FORMAT) or not (len(keys) == len(vectors) == len(ok)):
            logger.warning("ignoring feature cache %s: written for another encoder identity or "
                           "format; re-encoding", self.path)
            return
        self.rows = {str(key): row for row, key in enumerate(keys.tolist())}
        self.vectors, self.ok = vectors, ok.astype(bool)

    @property
    def dim(self) -> int | None:
        return None if self.vectors is None else int(self.vectors.shape[1])

    def missing(self, keys: list[str]) -> list[str]:
        """Distinct keys, in first-seen order, that have no row yet."""
        return list(dict.fromkeys(key for key in keys if key not in self.rows))

    def add(self, keys: list[str], vectors: np.ndarray, ok: np.ndarray) -> None:
        """Store rows for ``keys`` (``ok`` False marks content that could not be encoded)."""
        if not keys:
            return
        vectors = np.asarray(vectors, dtype=np.float32)
        start = 0 if self.vectors is None else self.vectors.shape[0]
        self.vectors = vectors if self.vectors is None else np.concatenate([self.vectors, vectors])
        self.ok = np.concatenate([self.ok, np.asarray(ok, dtype=bool)])
        self.rows.update({key: start + i for i, key in enumerate(keys)})
        self.dirty = True

    def gather(self, keys: list[str], dim: int) -> tuple[np.ndarray, np.ndarray]:
        """Rows for ``keys`` (all present): vectors (n, dim) float32 and ok (n,) bool."""
        if not keys:
            return np.zeros((0, dim), dtype=np.float32), np.zeros(0, dtype=bool)
        index = np.fromiter((self.rows[key] for key in keys), dtype=np.int64, count=len(keys))
        return self.vectors[index], self.ok[index]

    def save(self) -> None:
        """Write the cache if it changed: temporary file in the same folder, then ``os.replace``."""
        if not self.dirty or self.vectors is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        keys = np.array(sorted(self.rows, key=self.rows.__getitem__), dtype=f"<U{KEY_CHARS}")
        # own temporary name (not tempfile's 0600 files): the cache keeps the umask's permissions
        temporary = self.path.with_name(f"{self.path.name}.{os.getpid()}.{uuid.uuid4().hex}.tmp")
        try:
            with open(temporary, "xb") as handle:
                np.savez(handle, keys=keys, vectors=self.vectors, ok=self.ok,
                         identity=np.array(self.identity), format=np.array(CACHE_FORMAT))
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temporary, self.path)
        except BaseException:
            temporary.unlink(missing_ok=True)
            raise
        self.dirty = False
