"""Local training and evaluation of one user's backbone, with optional GFMFR distillation.

Pure torch/numpy: the ClientApp handler calls these with data it loaded and state it restored.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch.nn import functional as F

from client_app.ranking import rank_of, ranking_metrics
from datasets.split import ClientView
from strategies.backbones.base import Backbone
from strategies.distillation import LocalTeacher, Teacher, kd_loss, student_dlogits
from strategies.protocol import COLD, TEST, VAL, metric_key


@dataclass
class KDWeight:
    """The distillation weight lambda_t: ``fixed`` or ``adaptive`` (EMA of base/kd loss ratio x
    cos(pi t / 2T), as the reference code). ``ema`` persists in the client's private state."""

    mode: str = "adaptive"  # adaptive | fixed
    fixed: float = 0.5
    cap: float = 1.0  # adaptive weights are capped: base/kd explodes as the student nears the teacher
    ema: float = 0.0  # 0 = not initialised
    decay: float = 0.9

    def value(self, base: float, kd: float, server_round: int, num_rounds: int) -> float:
        if self.mode == "fixed":
            return self.fixed
        ratio = max(base, 0.0) / max(kd, 1e-8)
        self.ema = ratio if self.ema == 0.0 else self.decay * self.ema + (1 - self.decay) * ratio
        return min(self.ema, self.cap) * math.cos(math.pi * server_round / (2 * num_rounds))


@dataclass(frozen=True)
class TrainResult:
    loss: float  # mean base loss over the last epoch
    kd_loss: float  # mean distillation loss over the last epoch (0 without a teacher)
    kd_weight: float  # last lambda_t used
    num_examples: int
    rows: np.ndarray  # item ids whose table rows this round trained


def train_local(model: Backbone, view: ClientView, rng: np.random.Generator, *, epochs: int,
                batch_size: int, neg_per_pos: int, server_round: int, num_rounds: int,
                teacher: Teacher | None = None, kd_weight: KDWeight | None = None,
                lr_scale: float = 1.0, resample_every_epoch: bool = False) -> TrainResult:
    """Train ``model`` in place on fresh negatives (one draw a round, or one every epoch with
    ``resample_every_epoch``: ``neg-resample``); adds ``lambda_t * KL`` when given a teacher;
    every learning rate is multiplied by ``lr_scale`` (``lr-decay-to``)."""
    draws = [view.training_pairs(rng, neg_per_pos)
             for _ in range(epochs if resample_every_epoch else 1)]
    # every draw indexes one slice of the item tables: the rows that any epoch trains
    rows, local = np.unique(np.concatenate([items for items, _ in draws]), return_inverse=True)
    bounds = np.cumsum([0] + [items.size for items, _ in draws])
    pairs = [(torch.from_numpy(local[a:b]), torch.from_numpy(labels))
             for a, b, (_, labels) in zip(bounds[:-1], bounds[1:], draws, strict=True)]
    generator = torch.Generator().manual_seed(int(rng.integers(2**62)))
    with model.only_items(rows):
        teacher_rows = None if teacher is None else teacher.restrict(rows)
        result = _epochs(model, pairs, generator, epochs, batch_size, server_round, num_rounds,
                         teacher_rows, kd_weight, lr_scale)
    return TrainResult(*result, rows)


def _epochs(model: Backbone, pairs: list[tuple[torch.Tensor, torch.Tensor]],
            generator: torch.Generator, epochs: int, batch_size: int, server_round: int,
            num_rounds: int, teacher: LocalTeacher | None, kd_weight: KDWeight | None,
            lr_scale: float = 1.0) -> tuple[float, float, float, int]:
    """Local epochs; epoch ``e`` trains on ``pairs[e % len(pairs)]`` (local row ids, labels)."""
    hand = model.uses_hand_gradients()
    optimizer = model.optimizer()
    for group in optimizer.param_groups:
        group["lr"] *= lr_scale
    weight = 0.0
    for epoch in range(epochs):
        items_t, labels_t = pairs[epoch % len(pairs)]
        n = int(items_t.shape[0])
        order = torch.randperm(n, generator=generator)
        total, total_kd, batches = 0.0, 0.0, 0
        for start in range(0, n, batch_size):
            batch = order[start:start + batch_size]
            items, labels = items_t[batch], labels_t[batch]
            if hand:
                with torch.no_grad():
                    logits, extra, saved = model.forward_saved(items, server_round)
                    bce = F.binary_cross_entropy_with_logits(logits, labels)
                    base = bce + extra
            else:
                base, logits = model.loss(items, labels, server_round)
                bce = None
            kd = probs = None
            if teacher is not None:
                probs, entropy = teacher.batch(model, items)
                kd = kd_loss(logits, probs, entropy)
                kd_value = kd.item()
                # the BCE alone: FedRAP's regularisers can take the base loss below 0, and a
                # negative ratio would push the student away from its teacher
                if bce is None:
                    bce = F.binary_cross_entropy_with_logits(logits.detach(), labels)
                weight = kd_weight.value(bce.item(), kd_value, server_round, num_rounds)
                total_kd += kd_value
            if hand:
                with torch.no_grad():
                    dlogits = student_dlogits(logits, labels, probs, weight)
                    model.set_grads(model.grads(saved, dlogits.div_(len(items)), server_round),
                                    items)
                optimizer.step()
            else:
                optimizer.zero_grad(set_to_none=True)
                (base if kd is None else base + weight * kd).backward()
                optimizer.step()
            total += base.item()
            batches += 1
    if not all(torch.isfinite(p).all() for p in model.parameters()):
        raise FloatingPointError(f"local training diverged in round {server_round} (non-finite "
                                 "parameters); lower lr or kd-max. Private state left unchanged.")
    return total / max(batches, 1), total_kd / max(batches, 1), weight, n


def split_metrics(scores: np.ndarray, view: ClientView, cold_scores: np.ndarray | None = None
                  ) -> dict[str, dict[str, float]]:
    """Validation and test HR/NDCG of ``scores`` (n_items,) by full ranking, per split; with new
    items (cold start), also ``cold``: the mean over this user's held-out new items, each ranked
    among the new items the user did not interact with, by ``cold_scores`` (default ``scores``)."""
    out = {split: ranking_metrics(rank_of(scores, item, view.candidates(item)))
           for split, item in ((VAL, view.val_item), (TEST, view.test_item))}
    if view.cold_items.size:
        cold = scores if cold_scores is None else cold_scores
        per_item = [ranking_metrics(rank_of(cold, int(i), view.cold_candidates(int(i))))
                    for i in view.cold_items]
        out[COLD] = {k: float(np.mean([m[k] for m in per_item])) for k in per_item[0]}
    return out


def evaluate(model: Backbone, view: ClientView, teacher: Teacher | None = None,
             content_weight: float = 0.0) -> dict[str, float]:
    """Validation and test HR/NDCG of this user's model by full ranking (wire names).

    New items have no trained rows; with a GFMFR group teacher they are scored by it (the
    group's fused embeddings of their content, plus ``content_weight`` times the user's own
    content profile: ``Teacher.new_item_scores``), without one by the model as it is."""
    scores = model.all_scores()
    cold = None
    if teacher is not None and view.cold_items.size:
        cold = teacher.new_item_scores(model, view.train_items, view.cold, content_weight)
    return {metric_key(split, name): value
            for split, metrics in split_metrics(scores, view, cold).items()
            for name, value in metrics.items()}
