"""The encoder registry: run-config encoder name -> encoder factory, per modality.

A name is ``key`` or ``key:argument``; only ``sentence-transformers`` takes an argument (a hub name
or a local folder). Adding an encoder = one module with a factory ``(argument, options) -> encoder``
and one line below.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from encoders.base import EncoderOptions, ImageEncoder, TextEncoder
from encoders.clip import OpenClipImage, OpenClipText
from encoders.image import EfficientNetLite0
from encoders.text import minilm, sentence_transformer

TEXT_ENCODERS: dict[str, Callable[[str, EncoderOptions], TextEncoder]] = {
    "minilm": minilm,
    "sentence-transformers": sentence_transformer,  # "sentence-transformers:<name-or-path>"
    "open-clip": OpenClipText,
}
IMAGE_ENCODERS: dict[str, Callable[[str, EncoderOptions], ImageEncoder]] = {
    "efficientnet-lite0": EfficientNetLite0,
    "open-clip": OpenClipImage,
}
ENCODERS: dict[str, dict[str, Callable[[str, EncoderOptions], Any]]] = {
    "text": TEXT_ENCODERS,
    "image": IMAGE_ENCODERS,
}
TAKES_ARGUMENT = ("sentence-transformers",)


def check_encoder_name(modality: str, name: str) -> tuple[str, str]:
    """Split ``name`` into (registry key, argument), or raise a ValueError listing valid names."""
    registry = ENCODERS[modality]
    key, _, argument = name.partition(":")
    valid = ", ".join(f"{k}:<name-or-path>" if k in TAKES_ARGUMENT else k for k in registry)
    if key not in registry:
        raise ValueError(f"unknown {modality} encoder {name!r}; valid {modality} encoders: "
                         f"{valid}.")
    if (key in TAKES_ARGUMENT) != bool(argument):
        raise ValueError(f"{modality} encoder {name!r} is malformed; valid {modality} encoders: "
                         f"{valid}.")
    return key, argument


def build_encoder(modality: str, name: str, options: EncoderOptions) -> Any:
    """The encoder registered as ``name`` for ``modality`` ("text" or "image"); loads no model."""
    key, argument = check_encoder_name(modality, name)
    return ENCODERS[modality][key](argument, options)
