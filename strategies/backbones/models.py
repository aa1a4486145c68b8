"""The backbones of the method spec (``docs`` of the project: shared/private split per model).

Scores are ``sigmoid(logits)``; symbols follow the spec: ``e_u`` user embedding, ``C`` common item
table, ``D_u`` personal item table, ``E`` item table, ``W1, b1`` MLP layer, ``w, b`` output head.
"""

from __future__ import annotations

import torch
from torch.nn import functional as F

from strategies.backbones.base import Backbone, Hyper, fedrap_ramp, init_linear, init_normal


class NCF(Backbone):
    """FedNCF: ``y = s(w . relu(W1 [e_u ; E[i]] + b1) + b)``; ``e_u`` private, the rest shared."""

    SHARED = ("E", "W1", "b1", "w", "b")
    PRIVATE = ("e_u",)
    ITEM_TABLE = "E"
    ITEM_TABLES = ("E",)
    HEAD = ("w", "b")
    GROUPING = ("W1", "b1", "w", "b")

    def __init__(self, n_items: int, hyper: Hyper, generator: torch.Generator) -> None:
        super().__init__(n_items, hyper)
        d = hyper.dim
        setattr(self, self.ITEM_TABLE, init_normal(generator, n_items, d))
        self.W1 = init_linear(generator, 2 * d, d, 2 * d)
        self.b1 = init_linear(generator, 2 * d, d)
        self.w = init_linear(generator, d, d)
        self.b = init_linear(generator, d, 1)
        self.e_u = init_normal(generator, d)

    def score(self, items: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        return self.mlp(rows)

    def mlp(self, v: torch.Tensor) -> torch.Tensor:
        u = self.e_u.expand(v.shape[0], -1)
        hidden = F.relu(F.linear(torch.cat((u, v), dim=1), self.W1, self.b1))
        return F.linear(hidden, self.w.unsqueeze(0), self.b).squeeze(1)


class PersonalTable:
    """FedRAP's additive item vectors ``D_u[i] + C[i]`` (``D_u`` private) and its regulariser
    ``- a_t MSE(D_u[i], C[i]) + b_t mean|C[i]|``, ramped ``a_t = b_t = tanh(t/10) * 0.1``.

    Mixed into a backbone that defines ``head`` (item vector -> logit).
    """

    C: torch.nn.Parameter
    D_u: torch.nn.Parameter
    hyper: Hyper

    def head(self, v: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def score(self, items: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        return self.head(F.embedding(items, self.D_u) + rows)

    def loss(self, items: torch.Tensor, labels: torch.Tensor, server_round: int
             ) -> tuple[torch.Tensor, torch.Tensor]:
        # Both tables gathered once for logits and regulariser: gathers and their scatter-add
        # backward were a quarter of a FedRAP step.
        c, d = F.embedding(items, self.C), F.embedding(items, self.D_u)
        logits = self.head(d + c)
        ramp = fedrap_ramp(server_round, self.hyper.reg_bug)
        return (F.binary_cross_entropy_with_logits(logits, labels)
                + ramp * (c.abs().mean() - F.mse_loss(d, c))), logits


class FedRAP(PersonalTable, NCF):
    """FedRAP variant (GFMFR's reference backbone): NCF on ``D_u[i] + C[i]``.

    ``e_u`` and ``D_u`` private; ``C``, ``W1``, ``b1``, ``w``, ``b`` shared.
    """

    SHARED = ("C", "W1", "b1", "w", "b")
    PRIVATE = ("e_u", "D_u")
    ITEM_TABLE = "C"
    ITEM_TABLES = ("C", "D_u")

    def __init__(self, n_items: int, hyper: Hyper, generator: torch.Generator) -> None:
        super().__init__(n_items, hyper, generator)
        self.D_u = torch.nn.Parameter(torch.zeros(n_items, hyper.dim))

    def head(self, v: torch.Tensor) -> torch.Tensor:
        return self.mlp(v)


class FedRAPOriginal(PersonalTable, Backbone):
    """FedRAP as published: ``y = s(w . (D_u[i] + C[i]) + b)``; only ``C`` is shared."""

    SHARED = ("C",)
    PRIVATE = ("D_u", "w", "b")
    ITEM_TABLE = "C"
    ITEM_TABLES = ("C", "D_u")

    def __init__(self, n_items: int, hyper: Hyper, generator: torch.Generator) -> None:
        super().__init__(n_items, hyper)
        d = hyper.dim
        self.C = init_normal(generator, n_items, d)
        self.D_u = torch.nn.Parameter(torch.zeros(n_items, d))
        self.w = init_linear(generator, d, d)
        self.b = init_linear(generator, d, 1)

    def head(self, v: torch.Tensor) -> torch.Tensor:
        return v @ self.w + self.b


class PFedRec(Backbone):
    """PFedRec: ``y = s(w_u . E[i] + b_u)``; item table ``E`` shared, the score head private."""

    SHARED = ("E",)
    PRIVATE = ("w", "b")
    ITEM_TABLE = "E"
    ITEM_TABLES = ("E",)

    def __init__(self, n_items: int, hyper: Hyper, generator: torch.Generator) -> None:
        super().__init__(n_items, hyper)
        d = hyper.dim
        self.E = init_normal(generator, n_items, d)
        self.w = init_linear(generator, d, d)
        self.b = init_linear(generator, d, 1)

    def score(self, items: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        return rows @ self.w + self.b


class MF(Backbone):
    """FCF (federated matrix factorisation): ``y = s(e_u . E[i])``; ``e_u`` private, ``E`` shared."""

    SHARED = ("E",)
    PRIVATE = ("e_u",)
    ITEM_TABLE = "E"
    ITEM_TABLES = ("E",)

    def __init__(self, n_items: int, hyper: Hyper, generator: torch.Generator) -> None:
        super().__init__(n_items, hyper)
        self.E = init_normal(generator, n_items, hyper.dim)
        self.e_u = init_normal(generator, hyper.dim)

    def score(self, items: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        return rows @ self.e_u
