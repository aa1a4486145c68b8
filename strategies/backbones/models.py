"""The backbones of the method spec (``docs`` of the project: shared/private split per model).

Scores are ``sigmoid(logits)``; symbols follow the spec: ``e_u`` user embedding, ``C`` common item
table, ``D_u`` personal item table, ``E`` item table, ``W1, b1`` MLP layer, ``w, b`` output head.

Each model also carries its gradients derived by hand (``forward_saved``/``grads``): local
training then runs without autograd, twice as fast per step; ``loss`` stays the definition and
tests/test_backbones.py checks every hand gradient against autograd on it.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from strategies.backbones.base import Backbone, Hyper, fedrap_ramp, init_linear, init_normal


def factorized_mlp(generator: torch.Generator, d: int, hidden: int, noise: float = 0.01
                   ) -> tuple[nn.Parameter, ...]:
    """``W1, b1, w, b`` of an MLP ``w . relu(W1 [x ; y] + b1) + b`` that starts as a
    factorisation: hidden units in fours compute ``|x_k + y_k| - |x_k - y_k|`` (= 2 sign(x_k y_k)
    min(|x_k|, |y_k|), a product in all but scale) for the first ``min(d, hidden // 4)``
    dimensions, plus small noise elsewhere so the other dimensions and units can still learn
    (``hidden = 4 d`` covers every dimension).

    Why: under federation each client fits PyTorch's random MLP to its own user, and the average
    of those fits never learns to let the private ``e_u`` matter: FedNCF and the FedRAP variant
    stayed at a most-popular list's level (validation HR@50 0.19-0.21 on ml-100k-mm) whatever the
    rates. Started as a factorisation, the user vector personalises from round one
    (docs/training-recipe.md).
    """
    W1 = torch.randn(hidden, 2 * d, generator=generator) * noise
    w = torch.zeros(hidden)
    for k in range(min(d, hidden // 4)):
        for j, (user, item, out) in enumerate(((1, 1, 1), (-1, -1, 1), (1, -1, -1), (-1, 1, -1))):
            W1[4 * k + j, k], W1[4 * k + j, d + k], w[4 * k + j] = user, item, out
    return nn.Parameter(W1), nn.Parameter(torch.zeros(hidden)), nn.Parameter(w), \
        nn.Parameter(torch.zeros(1))


class NCF(Backbone):
    """FedNCF: ``y = s(w . relu(W1 [e_u ; E[i]] + b1) + b)``; ``e_u`` private, the rest shared."""

    SHARED = ("E", "W1", "b1", "w", "b")
    PRIVATE = ("e_u",)
    ITEM_TABLE = "E"
    ITEM_TABLES = ("E",)
    HEAD = ("w", "b")
    GROUPING = ("W1", "b1", "w", "b")
    USER = "e_u"
    HAND_GRADIENTS = True

    def __init__(self, n_items: int, hyper: Hyper, generator: torch.Generator) -> None:
        super().__init__(n_items, hyper)
        d, hidden = hyper.dim, hyper.mlp_hidden or hyper.dim
        setattr(self, self.ITEM_TABLE, init_normal(generator, n_items, d))
        if hyper.mlp_init == "factorized":
            self.W1, self.b1, self.w, self.b = factorized_mlp(generator, d, hidden)
        else:
            self.W1 = init_linear(generator, 2 * d, hidden, 2 * d)
            self.b1 = init_linear(generator, 2 * d, hidden)
            self.w = init_linear(generator, hidden, hidden)
            self.b = init_linear(generator, d, 1)
        self.e_u = init_normal(generator, d)

    def score(self, items: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        return self.mlp(rows)

    def mlp(self, v: torch.Tensor) -> torch.Tensor:
        return self.mlp_saved(v)[0]

    def forward_saved(self, items: torch.Tensor, server_round: int
                      ) -> tuple[torch.Tensor, float, tuple]:
        logits, saved = self.mlp_saved(F.embedding(items, getattr(self, self.ITEM_TABLE)))
        return logits, 0.0, saved

    def grads(self, saved: tuple, dlogits: torch.Tensor, server_round: int
              ) -> dict[str, torch.Tensor]:
        grads, dv = self.mlp_grads(saved, dlogits)
        return {**grads, self.ITEM_TABLE: dv}

    def mlp_saved(self, v: torch.Tensor) -> tuple[torch.Tensor, tuple]:
        # W1 [e_u ; v] = W1[:, :d] e_u + W1[:, d:] v: the user's half is one vector for the whole
        # batch, so the first layer's products are half as large as on the concatenation
        d = self.e_u.shape[0]
        pre = torch.addmm(torch.addmv(self.b1, self.W1[:, :d], self.e_u), v, self.W1[:, d:].t())
        hidden = F.relu(pre)
        return torch.addmv(self.b, hidden, self.w), (v, pre, hidden)

    def mlp_grads(self, saved: tuple, dlogits: torch.Tensor
                  ) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """The MLP's parameter gradients and ``dL/dv`` (v: the item vectors fed in)."""
        v, pre, hidden = saved
        d = self.e_u.shape[0]
        dpre = torch.outer(dlogits, self.w).mul_(pre > 0)
        db1 = dpre.sum(0)
        return {"W1": torch.cat((torch.outer(db1, self.e_u), dpre.t() @ v), dim=1), "b1": db1,
                "w": hidden.t() @ dlogits, "b": dlogits.sum(0, keepdim=True),
                "e_u": self.W1[:, :d].t() @ db1}, dpre @ self.W1[:, d:]


class PersonalTable:
    """FedRAP's additive item vectors ``D_u[i] + C[i]`` (``D_u`` private) and its regulariser
    ``- a_t MSE(D_u[i], C[i]) + b_t mean|C[i]|``, ramped ``a_t = b_t = tanh(t/10) * 0.1``.

    The published separation term ``- a_t MSE`` has no lower bound: it can lower the loss
    without end by pushing the two tables apart (the loss reaches -2.2 by round 50 on ml-1m-mm).
    ``separation = "bounded"`` uses ``- a_t tanh(MSE)`` instead: the same push while the tables
    are close (tanh x ~ x), never more than ``a_t`` in all.

    Mixed into a backbone that defines ``head`` (item vector -> logit).
    """

    C: torch.nn.Parameter
    D_u: torch.nn.Parameter
    hyper: Hyper

    def head(self, v: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def head_saved(self, v: torch.Tensor) -> tuple[torch.Tensor, tuple]:
        raise NotImplementedError

    def head_grads(self, saved: tuple, dlogits: torch.Tensor
                   ) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        raise NotImplementedError

    def score(self, items: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        return self.head(F.embedding(items, self.D_u) + rows)

    def separation(self, mse: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | float]:
        """The separation term's value from ``MSE(D_u, C)`` and its slope d value / d mse (a
        tensor: no device sync)."""
        if self.hyper.separation == "bounded":
            value = torch.tanh(mse)
            return value, 1.0 - value.square()
        return mse, 1.0

    def loss(self, items: torch.Tensor, labels: torch.Tensor, server_round: int
             ) -> tuple[torch.Tensor, torch.Tensor]:
        # Both tables gathered once for logits and regulariser: gathers and their scatter-add
        # backward were a quarter of a FedRAP step.
        c, d = F.embedding(items, self.C), F.embedding(items, self.D_u)
        logits = self.head(d + c)
        ramp = fedrap_ramp(server_round, self.hyper.reg_bug)
        separation, _ = self.separation(F.mse_loss(d, c))
        return (F.binary_cross_entropy_with_logits(logits, labels)
                + ramp * (c.abs().mean() - separation)), logits

    def forward_saved(self, items: torch.Tensor, server_round: int
                      ) -> tuple[torch.Tensor, torch.Tensor | float, tuple]:
        c, d = F.embedding(items, self.C), F.embedding(items, self.D_u)
        logits, head = self.head_saved(d + c)
        ramp = fedrap_ramp(server_round, self.hyper.reg_bug)
        diff = d - c
        if not ramp:
            return logits, 0.0, (c, diff, head, 1.0)
        separation, slope = self.separation(diff.square().mean())
        return logits, ramp * (c.abs().mean() - separation), (c, diff, head, slope)

    def grads(self, saved: tuple, dlogits: torch.Tensor, server_round: int
              ) -> dict[str, torch.Tensor]:
        c, diff, head, slope = saved
        grads, dv = self.head_grads(head, dlogits)
        ramp = fedrap_ramp(server_round, self.hyper.reg_bug)
        if not ramp:
            return {**grads, "C": dv, "D_u": dv}
        # d/dc of ramp * (mean|c| - s(mean((d - c)^2))) and d/dd of its second term (s' = slope)
        dmse = diff.mul(2 * ramp * slope / c.numel())
        return {**grads, "C": dv + torch.sign(c).mul_(ramp / c.numel()) + dmse, "D_u": dv - dmse}


class FedRAP(PersonalTable, NCF):
    """FedRAP variant (GFMFR's reference backbone): NCF on ``D_u[i] + C[i]``.

    ``e_u`` and ``D_u`` private; ``C``, ``W1``, ``b1``, ``w``, ``b`` shared.
    """

    SHARED = ("C", "W1", "b1", "w", "b")
    PRIVATE = ("e_u", "D_u")
    ITEM_TABLE = "C"
    ITEM_TABLES = ("C", "D_u")
    HAND_GRADIENTS = True

    def __init__(self, n_items: int, hyper: Hyper, generator: torch.Generator) -> None:
        super().__init__(n_items, hyper, generator)
        self.D_u = torch.nn.Parameter(torch.zeros(n_items, hyper.dim))

    def head(self, v: torch.Tensor) -> torch.Tensor:
        return self.mlp(v)

    def head_saved(self, v: torch.Tensor) -> tuple[torch.Tensor, tuple]:
        return self.mlp_saved(v)

    def head_grads(self, saved: tuple, dlogits: torch.Tensor
                   ) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        return self.mlp_grads(saved, dlogits)


class FedRAPOriginal(PersonalTable, Backbone):
    """FedRAP as published: ``y = s(w . (D_u[i] + C[i]) + b)``; only ``C`` is shared."""

    SHARED = ("C",)
    PRIVATE = ("D_u", "w", "b")
    ITEM_TABLE = "C"
    ITEM_TABLES = ("C", "D_u")
    HAND_GRADIENTS = True

    def __init__(self, n_items: int, hyper: Hyper, generator: torch.Generator) -> None:
        super().__init__(n_items, hyper)
        d = hyper.dim
        self.C = init_normal(generator, n_items, d)
        self.D_u = torch.nn.Parameter(torch.zeros(n_items, d))
        self.w = init_linear(generator, d, d)
        self.b = init_linear(generator, d, 1)

    def head(self, v: torch.Tensor) -> torch.Tensor:
        return v @ self.w + self.b

    def head_saved(self, v: torch.Tensor) -> tuple[torch.Tensor, tuple]:
        return self.head(v), (v,)

    def head_grads(self, saved: tuple, dlogits: torch.Tensor
                   ) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        return linear_head_grads(saved[0], dlogits, self.w)


class PFedRec(Backbone):
    """PFedRec: ``y = s(w_u . E[i] + b_u)``; item table ``E`` shared, the score head private."""

    SHARED = ("E",)
    PRIVATE = ("w", "b")
    ITEM_TABLE = "E"
    ITEM_TABLES = ("E",)
    HAND_GRADIENTS = True

    def __init__(self, n_items: int, hyper: Hyper, generator: torch.Generator) -> None:
        super().__init__(n_items, hyper)
        d = hyper.dim
        self.E = init_normal(generator, n_items, d)
        self.w = init_linear(generator, d, d)
        self.b = init_linear(generator, d, 1)

    def score(self, items: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        return rows @ self.w + self.b

    def forward_saved(self, items: torch.Tensor, server_round: int
                      ) -> tuple[torch.Tensor, float, tuple]:
        rows = F.embedding(items, self.E)
        return self.score(items, rows), 0.0, (rows,)

    def grads(self, saved: tuple, dlogits: torch.Tensor, server_round: int
              ) -> dict[str, torch.Tensor]:
        grads, drows = linear_head_grads(saved[0], dlogits, self.w)
        return {**grads, "E": drows}


class MF(Backbone):
    """FCF (federated matrix factorisation): ``y = s(e_u . E[i])``; ``e_u`` private, ``E`` shared.

    With ``item-bias`` the last column of ``E`` is the item's bias, ``y = s(e_u[:-1] . E[i, :-1] +
    E[i, -1])`` (``e_u[-1]`` unused): a dot product has no constant, so without it every user
    vector must learn the popularity direction on its own; PFedRec's and NCF's heads can already
    express one. Kept inside ``E`` so uploads, aggregation and GFMFR's fused tables stay ``d`` wide.
    """

    SHARED = ("E",)
    PRIVATE = ("e_u",)
    ITEM_TABLE = "E"
    ITEM_TABLES = ("E",)
    HAND_GRADIENTS = True

    def __init__(self, n_items: int, hyper: Hyper, generator: torch.Generator) -> None:
        super().__init__(n_items, hyper)
        self.E = init_normal(generator, n_items, hyper.dim)
        self.e_u = init_normal(generator, hyper.dim)
        self.bias = hyper.item_bias
        if self.bias:
            with torch.no_grad():
                self.E[:, -1] = 0.0
                self.e_u[-1] = 0.0

    def score(self, items: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        if self.bias:
            return torch.addmv(rows[:, -1], rows[:, :-1], self.e_u[:-1])
        return rows @ self.e_u

    def forward_saved(self, items: torch.Tensor, server_round: int
                      ) -> tuple[torch.Tensor, float, tuple]:
        rows = F.embedding(items, self.E)
        return self.score(items, rows), 0.0, (rows,)

    def grads(self, saved: tuple, dlogits: torch.Tensor, server_round: int
              ) -> dict[str, torch.Tensor]:
        rows = saved[0]
        if not self.bias:
            return {"e_u": rows.t() @ dlogits, "E": torch.outer(dlogits, self.e_u)}
        user = torch.cat((self.e_u[:-1], torch.ones(1, dtype=self.e_u.dtype)))
        de_u = rows.t() @ dlogits
        de_u[-1] = 0.0
        return {"e_u": de_u, "E": torch.outer(dlogits, user)}


def linear_head_grads(v: torch.Tensor, dlogits: torch.Tensor, w: torch.Tensor
                      ) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """Gradients of ``v @ w + b`` for ``dL/dlogits``: ``{w, b}`` and ``dL/dv``."""
    return ({"w": v.t() @ dlogits, "b": dlogits.sum(0, keepdim=True)},
            torch.outer(dlogits, w))
