"""Preference-guided distillation (GFMFR step 5): the group teacher and the KL term (pure torch)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch.nn import functional as F

from strategies.backbones.base import Backbone

EPS = 1e-6


@dataclass(frozen=True)
class Teacher:
    """A group's teacher as received by a client.

    Either ``probs_all`` (p_k(i) for every item: the group's mean head applied to Q_k on the
    server) or ``item_vectors`` (Q_k: the client scores items with its own model, Q_k in place of
    the shared item table).
    """

    probs_all: np.ndarray | None = None  # (n_items,)
    item_vectors: np.ndarray | None = None  # (n_items, d)

    def restrict(self, rows: np.ndarray) -> Teacher:
        """The teacher on the item rows a local training round uses (see Backbone.only_items)."""
        if self.probs_all is not None:
            return Teacher(probs_all=self.probs_all[rows])
        return Teacher(item_vectors=self.item_vectors[rows])

    def probs(self, model: Backbone, items: torch.Tensor) -> torch.Tensor:
        if self.probs_all is not None:
            return torch.from_numpy(self.probs_all)[items]
        with torch.no_grad():
            return torch.sigmoid(model.score(items, torch.from_numpy(self.item_vectors)[items]))


def teacher_probs(item_vectors: np.ndarray, w: np.ndarray, b: np.ndarray) -> np.ndarray:
    """p_k(i) = sigmoid(w_k . Q_k[i] + b_k) for all items: (n_items,) float32."""
    logits = item_vectors.astype(np.float64) @ w.astype(np.float64) + float(np.ravel(b)[0])
    return (1.0 / (1.0 + np.exp(-logits))).astype(np.float32)


def kd_loss(student_logits: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """Mean over the batch of KL([p, 1-p] || [y, 1-y]), p teacher probs, y = sigmoid(logits)."""
    p = teacher.clamp(EPS, 1 - EPS)
    log_y, log_not_y = F.logsigmoid(student_logits), F.logsigmoid(-student_logits)
    kl = p * (torch.log(p) - log_y) + (1 - p) * (torch.log(1 - p) - log_not_y)
    return kl.mean()


def kd_dlogits(student_logits: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """Per-item gradient of ``kd_loss``'s KL wrt the student logits: ``sigmoid(z) - p``."""
    return torch.sigmoid(student_logits) - teacher.clamp(EPS, 1 - EPS)
