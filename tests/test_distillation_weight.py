"""The adaptive distillation weight lambda_t and local training with a teacher."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from client_app.training import KDWeight, train_local
from datasets.split import ClientView
from strategies.backbones.base import Hyper
from strategies.backbones.registry import build_backbone
from strategies.distillation import Teacher, kd_loss


def test_adaptive_weight_is_an_ema_of_the_loss_ratio_times_a_cosine():
    weight = KDWeight(mode="adaptive", cap=100.0)
    assert weight.value(2.0, 1.0, 0, 10) == pytest.approx(2.0)  # first value: the ratio itself
    # EMA(0.9): 0.9 * 2 + 0.1 * 4 = 2.2, times cos(pi * 5 / 20)
    assert weight.value(4.0, 1.0, 5, 10) == pytest.approx(2.2 * math.cos(math.pi / 4))
    assert weight.value(4.0, 1.0, 10, 10) == pytest.approx(0.0, abs=1e-12)  # cosine ends at 0


def test_adaptive_weight_is_capped_and_never_negative():
    assert KDWeight(mode="adaptive", cap=1.0).value(50.0, 1.0, 0, 10) == 1.0
    # FedRAP's regularisers take its base loss below 0: that must not turn distillation around
    assert KDWeight(mode="adaptive").value(-0.5, 0.1, 3, 10) == 0.0
    assert KDWeight(mode="fixed", fixed=0.5).value(-0.5, 0.1, 3, 10) == 0.5


def _view(n_items: int = 30) -> ClientView:
    return ClientView(0, n_items, np.arange(0, 20, 2), 25, 27)


@pytest.mark.parametrize("backbone", ["pfedrec", "fedrap"])
def test_training_with_a_teacher_moves_the_student_towards_it(backbone):
    """Same data and seed, with and without a teacher: the KL to the teacher is lower with it."""
    view = _view()
    target = torch.linspace(0.95, 0.05, view.n_items)  # the group prefers low item ids
    teacher = Teacher(probs_all=target.numpy())
    kls = {}
    for with_teacher in (False, True):
        model = build_backbone(backbone, view.n_items, Hyper(dim=8), seed=0)
        train_local(model, view, np.random.default_rng(0), epochs=20, batch_size=16,
                    neg_per_pos=2, server_round=3, num_rounds=10,
                    teacher=teacher if with_teacher else None,
                    kd_weight=KDWeight(mode="fixed", fixed=1.0))
        with torch.no_grad():
            logits = torch.from_numpy(model.all_scores())
            kls[with_teacher] = kd_loss(logits, target).item()
    assert kls[True] < 0.8 * kls[False]


@pytest.mark.parametrize("backbone", ["mf", "fedrap"])
def test_negatives_drawn_every_epoch_train_more_rows_and_only_those(backbone):
    """``neg-resample = "epoch"``: each epoch draws its own negatives, so a round trains the rows
    of every draw (reported for upload) and leaves every other row as it was."""
    view = ClientView(0, 400, np.arange(0, 20, 2), 25, 27)
    trained = {}
    for every_epoch in (False, True):
        model = build_backbone(backbone, view.n_items, Hyper(dim=8), seed=0)
        table = model.ITEM_TABLES[0]
        before = model.shared_arrays()[table]
        result = train_local(model, view, np.random.default_rng(0), epochs=5, batch_size=16,
                             neg_per_pos=2, server_round=3, num_rounds=10,
                             resample_every_epoch=every_epoch)
        after = model.shared_arrays()[table]
        changed = np.flatnonzero(np.abs(after - before).sum(axis=1) > 0)
        assert set(changed) <= set(result.rows.tolist())  # nothing outside the reported rows
        assert set(view.train_items.tolist()) <= set(result.rows.tolist())
        assert result.num_examples == view.train_items.size * 3  # one epoch's examples
        trained[every_epoch] = result.rows.size
    # one draw: 10 positives + at most 20 negatives; five draws: up to 110 distinct rows
    assert trained[False] <= 30 < trained[True]
