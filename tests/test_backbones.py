"""Every backbone: forward, loss, hand gradients, the shared/private split, row-restricted training."""

from __future__ import annotations

import copy
from dataclasses import replace

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from strategies.backbones.base import Hyper, fedrap_ramp
from strategies.backbones.models import FedRAP
from strategies.backbones.registry import BACKBONES, build_backbone
from strategies.distillation import kd_loss, student_dlogits

N_ITEMS, DIM = 12, 4


@pytest.fixture(params=[*sorted(BACKBONES), "mf+item-bias", "fedrap+bounded",
                        "fedrap-original+bounded"])
def model(request):
    name, _, option = request.param.partition("+")
    hyper = Hyper(dim=DIM, item_bias=option == "item-bias",
                  separation="bounded" if option == "bounded" else "published")
    return build_backbone(name, N_ITEMS, hyper, seed=0)


def test_split_covers_every_parameter_once(model):
    names = {name for name, _ in model.named_parameters()}
    assert set(model.SHARED) | set(model.PRIVATE) == names
    assert not set(model.SHARED) & set(model.PRIVATE)
    assert model.ITEM_TABLE in model.SHARED


def test_item_tables_are_the_per_item_parameters(model):
    per_item = {n for n, p in model.named_parameters() if p.dim() == 2 and p.shape[0] == N_ITEMS}
    assert set(model.ITEM_TABLES) == per_item


def test_forward_and_loss(model):
    items = torch.tensor([0, 3, 5])
    labels = torch.tensor([1.0, 0.0, 0.0])
    loss, logits = model.loss(items, labels, server_round=3)
    assert logits.shape == (3,) and loss.ndim == 0 and torch.isfinite(loss)
    loss.backward()
    assert all(p.grad is not None for p in model.parameters())
    assert model.all_scores().shape == (N_ITEMS,)


def test_training_lowers_loss_on_fixed_pairs(model):
    items, labels = torch.tensor([0, 1, 2, 3]), torch.tensor([1.0, 1.0, 0.0, 0.0])
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    first = model.loss(items, labels, 1)[0].item()
    for _ in range(50):
        optimizer.zero_grad()
        model.loss(items, labels, 1)[0].backward()
        optimizer.step()
    assert model.loss(items, labels, 1)[0].item() < first


def test_only_items_trains_rows_and_writes_them_back(model):
    before = {n: getattr(model, n).detach().clone() for n in model.ITEM_TABLES}
    rows = np.array([2, 7])
    with model.only_items(rows):
        table = getattr(model, model.ITEM_TABLE)
        assert table.shape == (2, DIM)
        with torch.no_grad():
            table += 1.0
    after = getattr(model, model.ITEM_TABLE).detach()
    changed = ~torch.isclose(after, before[model.ITEM_TABLE]).all(dim=1)
    assert changed.nonzero().flatten().tolist() == [2, 7]


def test_same_seed_same_model():
    a = build_backbone("fedrap", N_ITEMS, Hyper(dim=DIM), seed=5).shared_arrays()
    b = build_backbone("fedrap", N_ITEMS, Hyper(dim=DIM), seed=5).shared_arrays()
    assert all(np.array_equal(a[k], b[k]) for k in a)


def test_set_arrays_rejects_wrong_shape(model):
    bad = {name: np.zeros((1, 1), np.float32) for name in model.SHARED}
    with pytest.raises(ValueError, match="expected shape"):
        model.set_arrays(bad, model.SHARED)


def test_bounded_separation_cannot_lower_the_loss_past_its_ramp():
    """The published ``- a_t MSE(D_u, C)`` falls without end as the tables part; the bounded
    form stops at ``- a_t``, and both agree while the tables are close."""
    items, labels = torch.arange(N_ITEMS), torch.zeros(N_ITEMS)
    losses = {}
    for separation in ("published", "bounded"):
        model = build_backbone("fedrap-original", N_ITEMS, Hyper(dim=DIM, separation=separation),
                               seed=0)
        for scale in (1e-3, 100.0):  # D_u next to C, then far from it
            with torch.no_grad():
                model.D_u.copy_(model.C + scale)
                head_only, _ = model.loss(items, labels, server_round=1)  # t = 0: no regulariser
                loss, _ = model.loss(items, labels, server_round=21)
            ramp = fedrap_ramp(21, reg_bug=False)
            losses[separation, scale] = float(loss - head_only) - ramp * float(model.C.detach().abs().mean())
    assert losses["published", 100.0] < -100 * ramp
    assert -ramp <= losses["bounded", 100.0] < -0.99 * ramp
    assert losses["bounded", 1e-3] == pytest.approx(losses["published", 1e-3], rel=1e-4)


def test_fedrap_ramp_and_reference_bug():
    assert fedrap_ramp(1, reg_bug=False) == 0.0  # t = 0
    assert fedrap_ramp(11, reg_bug=False) == pytest.approx(np.tanh(1.0) * 0.1)
    assert fedrap_ramp(11, reg_bug=True) == 0.0


def test_item_tables_use_item_lr_whatever_the_catalogue():
    for n_items in (N_ITEMS, 10 * N_ITEMS):
        model = build_backbone("fedrap", n_items, Hyper(dim=DIM, lr=0.01, item_lr=0.05, user_lr=0.004,
                                                        personal_lr=0.002, mlp_lr=0.003), seed=0)
        with model.only_items(np.array([1, 2])):  # also while training on a few rows
            groups = model.optimizer().param_groups
        by_lr = {round(g["lr"], 6): len(g["params"]) for g in groups}
        assert by_lr == {0.003: 4, 0.004: 1, 0.05: 1, 0.002: 1}  # MLP; e_u; C; D_u


def test_user_lr_is_for_the_input_of_ncfs_shared_mlp_only():
    """MF's user vector trains at lr (it was worse at 0.003); PFedRec and FedRAP-original have
    none: user-lr changes none of their rates."""
    hyper = Hyper(dim=DIM, lr=0.01, item_lr=0.05, user_lr=0.003, mlp_lr=0.001)
    for name, users in (("mf", 0), ("ncf", 1), ("fedrap", 1), ("pfedrec", 0), ("fedrap-original", 0)):
        model = build_backbone(name, N_ITEMS, hyper, seed=0)
        slow = [p for g in model.optimizer().param_groups if g["lr"] == 0.003 for p in g["params"]]
        assert len(slow) == users, name
        assert all(p is model.e_u for p in slow), name


def test_mlp_lr_is_for_shared_dense_layers_only():
    """A private head (PFedRec, FedRAP-original) trains at ``lr``; NCF's shared MLP at mlp-lr."""
    hyper = Hyper(dim=DIM, lr=0.01, item_lr=0.05, user_lr=0.01, mlp_lr=0.003)
    for name, slow in (("pfedrec", 0), ("fedrap-original", 0), ("ncf", 4)):
        groups = build_backbone(name, N_ITEMS, hyper, seed=0).optimizer().param_groups
        assert sum(len(g["params"]) for g in groups if g["lr"] == 0.003) == slow, name


@pytest.mark.parametrize("name", ["ncf", "fedrap"])
@pytest.mark.parametrize("hidden", [0, 32])
def test_factorized_mlp_starts_as_a_product_of_user_and_item(name, hidden):
    """With the noise off, the MLP is sum_k |x_k + y_k| - |x_k - y_k| over the first
    hidden/4 dims (every dim at hidden = 4 d): it grows with the agreement of user and item, as a
    dot product does."""
    from strategies.backbones.models import factorized_mlp

    d = 8
    model = build_backbone(name, N_ITEMS, Hyper(dim=d, mlp_hidden=hidden), seed=0)
    assert model.W1.shape == (hidden or d, 2 * d) and model.w.shape == (hidden or d,)
    with torch.no_grad():
        for param, value in zip((model.W1, model.b1, model.w, model.b),
                                factorized_mlp(torch.Generator().manual_seed(0), d, hidden or d,
                                               noise=0.0),
                                strict=True):
            param.copy_(value)
        model.e_u.copy_(torch.randn(d))
    v = torch.randn(5, d)
    k = min(d, (hidden or d) // 4)
    x = model.e_u[:k]
    expected = ((x + v[:, :k]).abs() - (x - v[:, :k]).abs()).sum(1)
    torch.testing.assert_close(model.mlp(v), expected)
    aligned = torch.zeros(1, d)
    aligned[0, :k] = model.e_u[:k]
    assert model.mlp(aligned) > model.mlp(-aligned)


def test_item_bias_is_the_last_item_column_in_every_users_score():
    """MF with item-bias: ``e_u[:-1] . E[i, :-1] + E[i, -1]``; it starts at 0 and learns
    popularity: an item every user likes rises above the others for a user who never saw it."""
    model = build_backbone("mf", N_ITEMS, Hyper(dim=DIM, item_bias=True), seed=0)
    assert torch.all(model.E[:, -1] == 0)
    items = torch.arange(N_ITEMS)
    with torch.no_grad():
        model.E[:, -1] = torch.linspace(-1, 1, N_ITEMS)
        expected = model.E[:, :-1] @ model.e_u[:-1] + model.E[:, -1]
    torch.testing.assert_close(model.logits(items), expected)
    with torch.no_grad():
        model.e_u.mul_(0)
    assert torch.argmax(model.logits(items)) == N_ITEMS - 1


def test_random_mlp_init_is_pytorch_default():
    model = build_backbone("ncf", N_ITEMS, Hyper(dim=DIM, mlp_init="random"), seed=0)
    bound = 1 / np.sqrt(2 * DIM)
    assert model.W1.abs().max() <= bound and model.W1.std() > bound / 4


@pytest.mark.parametrize("server_round", [1, 7])  # FedRAP's regulariser off (t = 0) and on
def test_hand_gradients_equal_autograd_on_loss(model, server_round):
    """Every hand-derived gradient (BCE, FedRAP's regulariser, distillation) against autograd."""
    assert model.uses_hand_gradients()
    with torch.no_grad():  # non-zero personal tables, so the regulariser's gradient is not trivial
        for param in model.parameters():
            param.add_(torch.randn(param.shape, generator=torch.Generator().manual_seed(1)) * 0.3)
    items = torch.tensor([0, 3, 5, 3, 11, 0])  # repeated items: row gradients must add up
    labels = torch.tensor([1.0, 0.0, 0.0, 1.0, 0.0, 1.0])
    teacher, weight = torch.tensor([0.9, 0.2, 0.0, 0.6, 1.0, 0.5]), 0.7
    base, logits = model.loss(items, labels, server_round)
    (base + weight * kd_loss(logits, teacher)).backward()
    with torch.no_grad():
        logits_h, extra, saved = model.forward_saved(items, server_round)
        base_h = F.binary_cross_entropy_with_logits(logits_h, labels) + extra
        dlogits = student_dlogits(logits_h, labels, teacher, weight)
        grads = model.grads(saved, dlogits / len(items), server_round)
    torch.testing.assert_close(logits_h, logits.detach())
    torch.testing.assert_close(torch.as_tensor(base_h), base.detach())
    assert set(grads) == {name for name, _ in model.named_parameters()}
    for name, param in model.named_parameters():
        grad = grads[name]
        if name in model.ITEM_TABLES:
            grad = torch.zeros_like(param).index_add_(0, items, grad)
        torch.testing.assert_close(grad, param.grad, msg=lambda m, name=name: f"{name}: {m}")


def first_step(optimizer: str, lr: torch.Tensor, grad: torch.Tensor, param: torch.Tensor,
               weight_decay: float) -> torch.Tensor:
    """One step from a fresh optimiser, by hand: coupled L2 adds ``weight_decay * param`` to the
    gradient; Adam's first step is ``lr * g / (|g| + eps)`` (bias-corrected moments of one g)."""
    g = grad + weight_decay * param
    return param - lr * (g if optimizer == "sgd" else g / (g.abs() + 1e-8))


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_hand_step_is_the_autograd_step(model, optimizer):
    # rates and decay large enough that weight decay moves every parameter by lr * 0.1 * |p|, about
    # 1e-3 (SGD) or up to lr (Adam, on rows the batch does not touch): far above assert_close's atol
    decay = 0.1
    model.hyper = replace(model.hyper, optimizer=optimizer, weight_decay=decay, lr=0.05,
                          item_lr=0.5, user_lr=0.05, personal_lr=0.05, mlp_lr=0.05)
    twin = copy.deepcopy(model)
    before = {name: param.detach().clone() for name, param in model.named_parameters()}
    items, labels = torch.tensor([1, 4, 4, 9]), torch.tensor([1.0, 0.0, 1.0, 0.0])
    optimizer_ = model.optimizer()
    rate = {id(param): group["lr"] for group in optimizer_.param_groups for param in group["params"]}
    model.loss(items, labels, 5)[0].backward()
    grads = {name: param.grad.clone() for name, param in model.named_parameters()}
    optimizer_.step()
    twin_optimizer = twin.optimizer()
    with torch.no_grad():
        logits, _, saved = twin.forward_saved(items, 5)
        dlogits = (torch.sigmoid(logits) - labels) / len(items)
    twin.set_grads(twin.grads(saved, dlogits, 5), items)
    twin_optimizer.step()
    for name, param in model.named_parameters():
        torch.testing.assert_close(getattr(twin, name), param, msg=lambda m, name=name: f"{name}: {m}")
        expected = first_step(optimizer, rate[id(param)], grads[name], before[name], decay)
        torch.testing.assert_close(param.detach(), expected,
                                   msg=lambda m, name=name: f"{name} (weight decay): {m}")
    # the check can see decay: rows of the shared item table outside the batch move by it alone
    table = model.ITEM_TABLE
    without = first_step(optimizer, rate[id(getattr(model, table))], grads[table], before[table],
                         0.0)
    untouched = torch.ones(N_ITEMS, dtype=torch.bool).index_fill_(0, items, False)
    # (per row: MF's bias column starts at 0, where decay has nothing to move)
    assert (getattr(model, table).detach() - without)[untouched].abs().amax(1).min() > 1e-4


def test_a_subclass_that_changes_the_loss_trains_with_autograd():
    class Tweaked(FedRAP):
        def loss(self, items, labels, server_round):
            base, logits = super().loss(items, labels, server_round)
            return base + self.e_u.square().sum(), logits

    tweaked = Tweaked(N_ITEMS, Hyper(dim=DIM), torch.Generator().manual_seed(0))
    assert not tweaked.uses_hand_gradients()


def test_mlp_is_the_layer_on_the_concatenation():
    """The MLP backbones compute W1 [e_u ; v] blockwise; it must equal the spec's form."""
    model = build_backbone("ncf", N_ITEMS, Hyper(dim=DIM), seed=0)
    v = torch.randn(5, DIM)
    x = torch.cat((model.e_u.expand(5, -1), v), dim=1)
    by_spec = torch.relu(x @ model.W1.t() + model.b1) @ model.w + model.b
    torch.testing.assert_close(model.mlp(v), by_spec)
