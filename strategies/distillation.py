"""Preference-guided distillation (GFMFR step 5): the group teacher and the KL term (pure torch)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch.nn import functional as F

from strategies.backbones.base import Backbone
from strategies.content import profile_cosine, standardised

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
    content: np.ndarray | None = None  # (n_items, c) content vectors, sent with new items

    def all_scores(self, model: Backbone) -> np.ndarray:
        """(n_items,) the teacher's scores of every item (ranked, never trained on): how GFMFR
        scores new items, whose rows in the shared tables were never trained."""
        if self.probs_all is not None:
            return self.probs_all.astype(np.float32)
        with torch.no_grad():
            items = torch.arange(self.item_vectors.shape[0])
            return model.score(items, torch.from_numpy(self.item_vectors)).numpy()

    def new_item_scores(self, model: Backbone, own_items: np.ndarray, new: np.ndarray,
                        content_weight: float) -> np.ndarray:
        """(n_items,) how the client ranks new items: the teacher's scores, plus
        ``content_weight`` times the cosine of each item's content vector to the mean content
        vector of the user's own training items, both standardised over the new items
        (``cold-content-weight``; 0: the teacher alone)."""
        scores = self.all_scores(model)
        if content_weight == 0:
            return scores
        if self.content is None:
            raise ValueError("cold-content-weight > 0 needs the items' content vectors, which "
                             "the server sends with the group payload when cold-items > 0.")
        profile = profile_cosine(self.content, own_items)
        return standardised(scores, new) + content_weight * standardised(profile, new)

    def restrict(self, rows: np.ndarray) -> LocalTeacher:
        """The teacher on the item rows a local training round uses (see Backbone.only_items)."""
        if self.probs_all is not None:
            probs = torch.from_numpy(self.probs_all[rows]).clamp(EPS, 1 - EPS)
            return LocalTeacher(probs=probs, entropy=binary_entropy(probs))
        return LocalTeacher(item_vectors=torch.from_numpy(self.item_vectors[rows]))


@dataclass(frozen=True)
class LocalTeacher:
    """A teacher on one round's rows, as tensors. Fixed probabilities come clamped and with their
    entropies, computed once per round instead of once per batch."""

    probs: torch.Tensor | None = None
    entropy: torch.Tensor | None = None
    item_vectors: torch.Tensor | None = None

    def batch(self, model: Backbone, items: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(p, H(p))`` for the batch's items, ``p`` clamped to ``[EPS, 1 - EPS]``."""
        if self.probs is not None:
            return self.probs[items], self.entropy[items]
        with torch.no_grad():
            probs = torch.sigmoid(model.score(items, self.item_vectors[items]))
        probs = probs.clamp_(EPS, 1 - EPS)
        return probs, binary_entropy(probs)


def teacher_probs(item_vectors: np.ndarray, w: np.ndarray, b: np.ndarray) -> np.ndarray:
    """p_k(i) = sigmoid(w_k . Q_k[i] + b_k) for all items: (n_items,) float32."""
    logits = item_vectors.astype(np.float64) @ w.astype(np.float64) + float(np.ravel(b)[0])
    return (1.0 / (1.0 + np.exp(-logits))).astype(np.float32)


def binary_entropy(p: torch.Tensor) -> torch.Tensor:
    """H(p) = -p log p - (1 - p) log(1 - p), elementwise."""
    return -(p * p.log() + (1 - p) * torch.log1p(-p))


def kd_loss(student_logits: torch.Tensor, teacher: torch.Tensor,
            entropy: torch.Tensor | None = None) -> torch.Tensor:
    """Mean over the batch of KL([p, 1-p] || [y, 1-y]), p teacher probs, y = sigmoid(logits).

    Computed as BCE(logits, p) - H(p): one fused op where the KL written out takes a dozen, and
    H(p) does not depend on the student (``entropy``: H of the clamped ``teacher``, if known).
    """
    p = teacher.clamp(EPS, 1 - EPS)
    h = binary_entropy(p) if entropy is None else entropy
    return F.binary_cross_entropy_with_logits(student_logits, p) - h.mean()


def student_dlogits(student_logits: torch.Tensor, labels: torch.Tensor,
                    teacher: torch.Tensor | None = None, weight: float = 0.0) -> torch.Tensor:
    """Per-item gradient wrt the logits of ``BCE(z, labels) + weight * kd_loss(z, teacher)``
    (before the batch mean): ``s - y + weight (s - p)``, s = sigmoid(z), one sigmoid for both."""
    s = torch.sigmoid(student_logits)
    if teacher is None:
        return s.sub_(labels)
    return s.mul_(1 + weight).sub_(labels).sub_(teacher.clamp(EPS, 1 - EPS), alpha=weight)
