"""The strategy registry: run-config ``strategy`` name -> server strategy + the backbones it takes.

A baseline is ``strategy='<name>'``; a plug-in strategy (GFMFR) wraps any backbone it lists:
``strategy='gfmfr' backbone='pfedrec'``. Adding a method: one module, one line here.
"""

from __future__ import annotations

from dataclasses import dataclass

from strategies.backbones.base import Hyper
from strategies.backbones.registry import BACKBONES
from strategies.config import RunConfig
from strategies.fedrec import FedRecStrategy
from strategies.gfmfr import GFMFRStrategy


@dataclass(frozen=True)
class StrategySpec:
    strategy: type[FedRecStrategy]
    default_backbone: str
    backbones: tuple[str, ...]
    description: str


STRATEGIES: dict[str, StrategySpec] = {
    "fcf": StrategySpec(FedRecStrategy, "mf", ("mf",),
                        "federated matrix factorisation (user vector private, item table shared)"),
    "fedncf": StrategySpec(FedRecStrategy, "ncf", ("ncf",),
                           "FedAvg over NCF (user embedding private; item table, MLP, head shared)"),
    "fedrap": StrategySpec(FedRecStrategy, "fedrap", ("fedrap",),
                           "FedRAP variant used by GFMFR (e_u and D_u private; C, MLP, head shared)"),
    "fedrap-original": StrategySpec(FedRecStrategy, "fedrap-original", ("fedrap-original",),
                                    "FedRAP as published (head on D_u + C; only C shared)"),
    "pfedrec": StrategySpec(FedRecStrategy, "pfedrec", ("pfedrec",),
                            "PFedRec (item table shared, score head private)"),
    "gfmfr": StrategySpec(GFMFRStrategy, "pfedrec",
                          ("pfedrec", "fedrap", "ncf", "fedrap-original", "mf"),
                          "GFMFR: group-aware multimodal fusion + distillation over a backbone"),
}


def strategy_spec(cfg: RunConfig) -> StrategySpec:
    if cfg.strategy not in STRATEGIES:
        raise ValueError(f"bad run config: unknown strategy {cfg.strategy!r}; choose one of: "
                         f"{', '.join(STRATEGIES)}.")
    return STRATEGIES[cfg.strategy]


def backbone_name(cfg: RunConfig) -> str:
    """The backbone a run uses: ``backbone`` if set, else the strategy's default; checked."""
    spec = strategy_spec(cfg)
    name = cfg.backbone or spec.default_backbone
    if name not in BACKBONES:
        raise ValueError(f"bad run config: unknown backbone {name!r}; choose one of: "
                         f"{', '.join(BACKBONES)}.")
    if name not in spec.backbones:
        raise ValueError(f"bad run config: strategy {cfg.strategy!r} cannot use backbone {name!r}; "
                         f"it takes: {', '.join(spec.backbones)}.")
    return name


def hyper(cfg: RunConfig) -> Hyper:
    return Hyper(dim=cfg.latent_dim, **cfg.learning_rates, mlp_init=cfg.mlp_init,
                 mlp_hidden=cfg.mlp_hidden, item_bias=cfg.item_bias,
                 weight_decay=cfg.weight_decay, optimizer=cfg.optimizer,
                 reg_bug=cfg.fedrap_reg_bug, separation=cfg.fedrap_separation)
