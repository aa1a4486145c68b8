"""Backbone registry: run-config ``backbone`` name -> model class.

Adding a backbone: subclass ``Backbone`` (parameters, ``logits``, ``SHARED``/``PRIVATE``) and add
one line here.
"""

from __future__ import annotations

import torch

from strategies.backbones.base import Backbone, Hyper
from strategies.backbones.models import MF, NCF, FedRAP, FedRAPOriginal, PFedRec

BACKBONES: dict[str, type[Backbone]] = {
    "ncf": NCF,
    "fedrap": FedRAP,
    "fedrap-original": FedRAPOriginal,
    "pfedrec": PFedRec,
    "mf": MF,
}


def backbone_class(name: str) -> type[Backbone]:
    if name not in BACKBONES:
        raise ValueError(f"unknown backbone {name!r}; choose one of: {', '.join(BACKBONES)}")
    return BACKBONES[name]


def build_backbone(name: str, n_items: int, hyper: Hyper, seed: int) -> Backbone:
    """A fresh model whose every parameter is drawn from ``seed`` (reproducible on any machine)."""
    cls = backbone_class(name)
    generator = torch.Generator().manual_seed(seed)
    return cls(n_items, hyper, generator)
