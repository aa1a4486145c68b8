"""What every backbone provides: a per-user model whose parameters split into shared and private.

A backbone is one user's model. ``SHARED`` names the parameters that are uploaded and aggregated;
``PRIVATE`` the ones that never leave the device. The strategy code only ever moves ``SHARED``.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F


@dataclass(frozen=True)
class Hyper:
    """Local-training hyperparameters a backbone needs (run-config keys in parentheses)."""

    dim: int = 64  # (latent-dim)
    lr: float = 0.01  # (lr) learning rate of every parameter without a rate of its own
    user_lr: float = 0.003  # (user-lr) learning rate of NCF's private user embedding e_u
    item_lr: float = 0.01  # (item-lr) learning rate of the shared item tables
    personal_lr: float = 0.0001  # (personal-lr) learning rate of private item tables (FedRAP's D_u)
    mlp_lr: float = 0.001  # (mlp-lr) learning rate of a shared MLP and head (NCF's)
    mlp_init: str = "factorized"  # (mlp-init) factorized | random: how NCF's MLP starts
    mlp_hidden: int = 256  # (mlp-hidden) hidden units of NCF's MLP; 0 = dim
    item_bias: bool = False  # (item-bias) MF's last item-table column is a per-item bias
    weight_decay: float = 0.0  # (weight-decay)
    optimizer: str = "adam"  # (optimizer) adam | sgd
    reg_bug: bool = False  # (fedrap-reg-bug) reproduce the reference code's zeroed regularisers
    separation: str = "bounded"  # (fedrap-separation) bounded | published


class Backbone(nn.Module):
    """Base class: subclasses define parameters, ``score`` and, for extra loss terms, ``loss``."""

    SHARED: ClassVar[tuple[str, ...]]
    PRIVATE: ClassVar[tuple[str, ...]]
    ITEM_TABLE: ClassVar[str]  # shared (n_items, d) table the GFMFR fusion network targets
    ITEM_TABLES: ClassVar[tuple[str, ...]]  # every (n_items, d) table, shared or private
    USER: ClassVar[str | None] = None  # private input of a shared MLP (NCF, FedRAP): at user-lr
    HEAD: ClassVar[tuple[str, str] | None] = None  # shared (w, b) output head, if the head is shared
    GROUPING: ClassVar[tuple[str, ...]] = ()  # shared parameters describing the prediction function
    # Set in a class's own body when it implements ``forward_saved`` and ``grads`` for exactly its
    # ``loss``; a subclass that changes the loss falls back to autograd until it declares it too.
    HAND_GRADIENTS: ClassVar[bool] = False

    def __init__(self, n_items: int, hyper: Hyper) -> None:
        super().__init__()
        self.n_items = n_items
        self.hyper = hyper

    # --- model ---------------------------------------------------------------------------------
    def score(self, items: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        """(batch,) pre-sigmoid scores of ``items`` whose shared item-table rows are ``rows``.

        Separating the rows lets GFMFR's own-model teacher score items with the group's fused
        table ``Q_k`` in place of the shared one.
        """
        raise NotImplementedError

    def logits(self, items: torch.Tensor) -> torch.Tensor:
        """(batch,) pre-sigmoid scores of this user for ``items``."""
        # embedding, not indexing: its backward is a cheaper scatter-add on the CPU
        return self.score(items, F.embedding(items, getattr(self, self.ITEM_TABLE)))

    def loss(self, items: torch.Tensor, labels: torch.Tensor, server_round: int
             ) -> tuple[torch.Tensor, torch.Tensor]:
        """Base loss (BCE; subclasses add their own terms) and the batch logits."""
        logits = self.logits(items)
        return F.binary_cross_entropy_with_logits(logits, labels), logits

    # --- hand-derived gradients (optional; see uses_hand_gradients) ----------------------------
    def forward_saved(self, items: torch.Tensor, server_round: int
                      ) -> tuple[torch.Tensor, torch.Tensor | float, tuple]:
        """Without autograd: the batch logits, the value of ``loss``'s terms beyond the BCE (0.0
        if none), and what ``grads`` needs."""
        raise NotImplementedError

    def grads(self, saved: tuple, dlogits: torch.Tensor, server_round: int
              ) -> dict[str, torch.Tensor]:
        """Gradient of every parameter for ``dL/dlogits`` (the loss's own extra terms included).

        Item tables get row gradients, ``(batch, d)``, one per gathered item, to be added at the
        batch's items; every other parameter its full gradient.
        """
        raise NotImplementedError

    def uses_hand_gradients(self) -> bool:
        """Only the class that declares ``HAND_GRADIENTS`` itself: eager autograd costs half of
        a small model's local step (docs/performance.md); tests check the hand gradients
        against autograd on ``loss``."""
        return bool(type(self).__dict__.get("HAND_GRADIENTS", False))

    @torch.no_grad()
    def all_scores(self) -> np.ndarray:
        """(n_items,) scores of every item, for full ranking."""
        return self.logits(torch.arange(self.n_items)).numpy()

    # --- parameter split -----------------------------------------------------------------------
    @contextmanager
    def only_items(self, rows: np.ndarray) -> Iterator[None]:
        """Train on the item-table rows ``rows`` only; batches then index rows by position.

        Local training touches a few hundred of the catalogue's items; restricting the tables to
        them makes every step cost O(len(rows)) instead of O(n_items). Untouched rows (and their
        weight decay) stay as they are, as with sparse embedding updates. Rows are written back
        on exit.
        """
        index = torch.from_numpy(np.asarray(rows, dtype=np.int64))
        full = {name: getattr(self, name) for name in self.ITEM_TABLES}
        for name, param in full.items():
            setattr(self, name, nn.Parameter(param.detach()[index].clone()))
        try:
            yield
        finally:
            with torch.no_grad():
                for name, param in full.items():
                    param[index] = getattr(self, name).detach()
                    setattr(self, name, param)

    def optimizer(self) -> torch.optim.Optimizer:
        """The local optimiser, made afresh every round (its state is not kept between rounds).

        Adam's steps do not depend on the scale of a gradient, so one learning rate serves item
        rows that appear in one example of a batch and dense layers that appear in all: with SGD
        the item tables needed ``lr * n_items`` (FedRAP's rule), a rate that grows with the
        catalogue. A private item table (FedRAP's ``D_u``) sees one user's data only and, as fast
        as the shared one, memorises it: it gets its own, smaller rate; so does a shared MLP,
        which each client would otherwise fit to its own user, and the private user embedding
        that feeds one (NCF's ``USER``: through a wide MLP a fast one memorises the user's items;
        MF's user vector, a linear score, needs ``lr``) (docs/training-recipe.md).
        """
        def lr(name: str) -> float:
            if name == self.USER:
                return self.hyper.user_lr
            if name not in self.ITEM_TABLES:
                return self.hyper.mlp_lr if name in self.SHARED else self.hyper.lr
            return self.hyper.personal_lr if name in self.PRIVATE else self.hyper.item_lr

        by_lr: dict[float, list[nn.Parameter]] = {}
        for name, param in self.named_parameters():
            by_lr.setdefault(lr(name), []).append(param)
        groups = [{"params": params, "lr": rate} for rate, params in by_lr.items()]
        if self.hyper.optimizer == "sgd":
            return torch.optim.SGD(groups, lr=self.hyper.lr, weight_decay=self.hyper.weight_decay,
                                   foreach=True)
        # fused: a quarter of the foreach step's cost on a few small CPU tensors
        return torch.optim.Adam(groups, lr=self.hyper.lr, weight_decay=self.hyper.weight_decay,
                                fused=True)

    def set_grads(self, grads: dict[str, torch.Tensor], items: torch.Tensor) -> None:
        """Load hand gradients (``grads``) into ``.grad`` for ``optimizer()`` to step; item-table
        row gradients are added at ``items``."""
        for name, grad in grads.items():
            param = getattr(self, name)
            if name in self.ITEM_TABLES:
                param.grad = torch.zeros_like(param).index_add_(0, items, grad)
            else:
                param.grad = grad

    def get_arrays(self, names: tuple[str, ...]) -> dict[str, np.ndarray]:
        return {n: getattr(self, n).detach().numpy().copy() for n in names}

    def set_arrays(self, arrays: dict[str, np.ndarray], names: tuple[str, ...]) -> None:
        """Load the named parameters; a missing name or a shape mismatch is an error."""
        with torch.no_grad():
            for name in names:
                param = getattr(self, name)
                value = np.asarray(arrays[name], dtype=np.float32)
                if value.shape != tuple(param.shape):
                    raise ValueError(f"parameter {name!r}: expected shape {tuple(param.shape)}, "
                                     f"got {value.shape}")
                param.copy_(torch.from_numpy(value))

    def shared_arrays(self) -> dict[str, np.ndarray]:
        return self.get_arrays(self.SHARED)

    def private_arrays(self) -> dict[str, np.ndarray]:
        return self.get_arrays(self.PRIVATE)


def init_normal(generator: torch.Generator, *shape: int, std: float = 0.1) -> nn.Parameter:
    return nn.Parameter(torch.randn(*shape, generator=generator) * std)


def init_linear(generator: torch.Generator, fan_in: int, *shape: int) -> nn.Parameter:
    """PyTorch's default Linear init, drawn from an explicit generator (reproducible)."""
    bound = 1.0 / math.sqrt(fan_in)
    return nn.Parameter((torch.rand(*shape, generator=generator) * 2 - 1) * bound)


def fedrap_ramp(server_round: int, reg_bug: bool) -> float:
    """FedRAP's regulariser weight tanh(t/10) * 0.1 (t = 0-based round); the reference code's bug
    zeroes it after round 0, reproducible with ``reg_bug``."""
    t = server_round - 1
    if reg_bug and t > 0:
        return 0.0
    return math.tanh(t / 10) * 0.1
