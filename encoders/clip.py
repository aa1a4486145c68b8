"""open_clip text and image towers (``open-clip``), from any model and weights open_clip accepts.

``clip_model`` is an open_clip architecture name (``ViT-B-32``), ``local-dir:/folder`` (a folder
with ``open_clip_config.json`` and weights) or ``hf-hub:org/repo``; ``clip_pretrained`` is a
pretrained tag (``laion2b_s34b_b79k``: downloaded, or read from the Hugging Face cache with
HF_HUB_OFFLINE=1), a checkpoint file, or ``local-dir:/folder`` (open_clip takes that as the model
name, not as ``pretrained``; we move it there).

Features are the towers' raw pooled outputs (``encode_image``/``encode_text`` with
``normalize=False``), not L2-normalised as CLIP's contrastive head does: the server's fusion and
any cosine take care of scale. The model's own preprocess transform and tokenizer are used. When
text and image both use ``open-clip`` the model loads once per call.
"""

from __future__ import annotations

import difflib
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from encoders.base import EncoderOptions, free_cores, torch_threads
from encoders.cache import dir_fingerprint, file_fingerprint, string_key
from encoders.progress import Progress

logger = logging.getLogger(__name__)

LOCAL_DIR = "local-dir:"
HF_HUB = "hf-hub:"
PREPROCESS = "open-clip-native-raw-v1"  # model's own transform/tokenizer, unnormalised outputs
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pth", ".pt")


@dataclass(frozen=True)
class ClipSource:
    """What ``open_clip.create_model_and_transforms`` receives, plus its cache identity."""

    model: str
    pretrained: str | None
    identity: str
    config: dict[str, Any] | None  # model config when known without loading (embed_dim)


def resolve_clip(model: str, pretrained: str) -> ClipSource:
    """Check ``clip_model``/``clip_pretrained`` without loading weights; fail with a fix."""
    if pretrained.startswith(LOCAL_DIR):
        logger.info("clip_pretrained %s is a local-dir: using it as the open_clip model (its "
                    "config names the architecture; clip_model %r is ignored)", pretrained, model)
        model, pretrained = pretrained, ""
    if model.startswith(LOCAL_DIR):
        return _local_dir(Path(model[len(LOCAL_DIR):]).expanduser())
    if model.startswith(HF_HUB):
        if pretrained:
            logger.info("clip_pretrained %r ignored: %s names its own weights", pretrained, model)
        return ClipSource(model, None, f"{model}|{PREPROCESS}", None)
    return _builtin(model, pretrained)


def _local_dir(folder: Path) -> ClipSource:
    config_path = folder / "open_clip_config.json"
    if not config_path.is_file():
        raise FileNotFoundError(
            f"open_clip folder {folder} does not exist or lacks open_clip_config.json. Fix: point "
            "'local-dir:' at a folder holding open_clip_config.json ({'model_cfg': ...}) and a "
            "weights file (.safetensors, .bin or .pth).")
    if not any(p.suffix in WEIGHT_SUFFIXES for p in folder.iterdir()):
        raise FileNotFoundError(f"open_clip folder {folder} holds no weights file. Fix: save the "
                                "model's state_dict there as open_clip_model.safetensors or .pth.")
    config = json.loads(config_path.read_text(encoding="utf-8"))
    return ClipSource(f"{LOCAL_DIR}{folder.resolve()}", None,
                      f"{LOCAL_DIR}{dir_fingerprint(folder)}|{PREPROCESS}",
                      config.get("model_cfg", config))


def _builtin(model: str, pretrained: str) -> ClipSource:
    import open_clip
    from open_clip.pretrained import get_pretrained_cfg, list_pretrained_tags_by_model

    name = model.replace("/", "-")
    config = open_clip.get_model_config(name)
    if config is None:
        close = difflib.get_close_matches(name, open_clip.list_models(), n=5)
        raise ValueError(f"unknown open_clip model {model!r} (close names: {', '.join(close)}). "
                         "Fix: use a name from open_clip.list_models(), 'local-dir:/folder' or "
                         "'hf-hub:org/repo'.")
    tags = ", ".join(list_pretrained_tags_by_model(name)) or "none"
    if not pretrained:
        raise ValueError(f"open-clip needs clip_pretrained for {name}: random weights give "
                         f"meaningless features. Fix: give a checkpoint file, 'local-dir:/folder' "
                         f"or a pretrained tag ({tags}).")
    if get_pretrained_cfg(name, pretrained):
        weights = f"tag:{pretrained}"
    else:
        path = Path(pretrained).expanduser()
        if not path.is_file():
            raise FileNotFoundError(
                f"open_clip checkpoint {path} does not exist. Fix: set clip_pretrained to an "
                f"existing checkpoint file (state_dict saved with torch.save or safetensors) for "
                f"architecture {name}, 'local-dir:/folder', or a pretrained tag ({tags}).")
        pretrained, weights = str(path.resolve()), file_fingerprint(path)
    config_key = string_key(json.dumps(config, sort_keys=True))
    return ClipSource(name, pretrained, f"{name}|{config_key}|{weights}|{PREPROCESS}", config)


def _load(source: ClipSource, options: EncoderOptions) -> tuple[Any, Any, Any]:
    """(model, preprocess, tokenizer), loaded once per ``item_features`` call and device."""
    key = ("open-clip", source.model, source.pretrained, options.device)
    if key not in options.loaded:
        import open_clip

        logger.info("loading open_clip %s (%s) on %s", source.model,
                    source.pretrained or "weights from its source", options.device)
        model, _, preprocess = open_clip.create_model_and_transforms(
            source.model, pretrained=source.pretrained or None, device=options.device)
        options.loaded[key] = (model.eval(), preprocess, open_clip.get_tokenizer(source.model))
    return options.loaded[key]


class _OpenClipTower:
    def __init__(self, tower: str, options: EncoderOptions) -> None:
        self.options = options
        self.source = resolve_clip(options.clip_model, options.clip_pretrained)
        self.name = "open-clip"
        self.identity = f"{tower}|open-clip|{self.source.identity}"

    def dim(self) -> int:
        if self.source.config is not None:
            return int(self.source.config["embed_dim"])
        model, _, tokenizer = _load(self.source, self.options)  # hf-hub: size known once loaded
        with torch.inference_mode():
            return int(model.encode_text(tokenizer(["x"]).to(self.options.device)).shape[-1])


class OpenClipText(_OpenClipTower):
    """open_clip text tower; texts are truncated to the model's context length."""

    def __init__(self, argument: str, options: EncoderOptions) -> None:
        super().__init__("text", options)

    def encode(self, texts: list[str]) -> np.ndarray:
        model, _, tokenizer = _load(self.source, self.options)
        size, rows = self.options.batch(32, 256), []
        with torch.inference_mode(), torch_threads(free_cores), \
                Progress(len(texts), "text open-clip") as bar:
            for start in range(0, len(texts), size):
                tokens = tokenizer(texts[start:start + size]).to(self.options.device)
                rows.append(model.encode_text(tokens).float().cpu().numpy())
                bar.update(len(tokens))
        return np.concatenate(rows) if rows else np.zeros((0, self.dim()), np.float32)


class OpenClipImage(_OpenClipTower):
    """open_clip image tower with the model's own eval transform."""

    def __init__(self, argument: str, options: EncoderOptions) -> None:
        super().__init__("image", options)
        self._preprocess: Any = None

    def batch_size(self) -> int:
        return self.options.batch(8, 128)

    def load(self) -> None:
        self._model, self._preprocess, _ = _load(self.source, self.options)

    def preprocess(self, image: Image.Image) -> torch.Tensor:
        return self._preprocess(image)

    def encode(self, pixels: torch.Tensor) -> np.ndarray:
        return self._model.encode_image(pixels.to(self.options.device)).float().cpu().numpy()
