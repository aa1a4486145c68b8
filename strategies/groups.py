"""GFMFR's server state across rounds and the pure step that advances it (no Flower here).

One round: group the participants from their uploads (aligned to last round's ids), fit the fusion
network to each group's mean uploaded item table, and build each group's distillation payload.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from strategies import protocol as p
from strategies.backbones.base import Backbone
from strategies.distillation import teacher_probs
from strategies.fusion import FusionTrainer, fit_r2
from strategies.grouping import (
    align,
    cluster,
    describe_clients,
    random_groups,
    table_change_summary,
)


@dataclass(frozen=True)
class GroupingOptions:
    n_groups: int = 5
    method: str = "spectral"  # spectral | kmeans | random
    pca: bool = True
    normalize: bool = True
    fusion_epochs: int = 50
    seed: int = 0
    teacher: str = "own-model"  # own-model: server sends Q_k (any backbone) | group-head: p_k


@dataclass
class GroupState:
    """Everything GFMFR's server carries from round to round."""

    trainer: FusionTrainer
    assignment: dict[int, int] = field(default_factory=dict)  # user -> group
    payloads: dict[int, dict[str, np.ndarray]] = field(default_factory=dict)  # group -> arrays
    fusion_losses: list[float] = field(default_factory=list)  # last round's epoch losses
    seconds: dict[str, float] = field(default_factory=dict)  # last round's phase times
    fusion_r2: float = float("nan")  # share of the targets' variance the fused tables explain


@dataclass
class SecureTargets:
    """Under secure aggregation the server never holds a member's table, only each group's
    mean (summed within the group, by last round's assignment) and which rows anyone trained."""

    tables: dict[int, np.ndarray]  # group -> mean item table of its trainers
    trained: np.ndarray  # (n_items,) bool
    # mean item table of every trainer: the target of a group too small to be summed alone
    # (without it such a group's clients would never get a teacher)
    overall: np.ndarray | None = None


def advance(state: GroupState, uploads: dict[int, dict[str, np.ndarray]],
            sent: dict[str, np.ndarray], backbone: type[Backbone],
            options: GroupingOptions, secure: SecureTargets | None = None) -> GroupState:
    """The next round's state from this round's accepted uploads (``sent``: what was broadcast;
    ``secure``: the group means when uploads hold only the clients' grouping descriptors)."""
    tic = time.perf_counter()
    assignment = _regroup(state.assignment, uploads, sent, backbone, options)
    grouping_seconds = time.perf_counter() - tic

    tic = time.perf_counter()
    members: dict[int, list[int]] = {}
    for user in sorted(uploads):
        members.setdefault(assignment[user], []).append(user)
    table, base = backbone.ITEM_TABLE, sent[backbone.ITEM_TABLE]
    if secure is None:
        groups = np.asarray(sorted(members))
        targets = np.stack([_mean_table([uploads[u] for u in members[k]], table, base)
                            for k in groups])
        trained = _trained_rows(uploads.values(), table, base.shape[0])
    else:
        own = {k for k in secure.tables if k in members or options.teacher != "group-head"}
        fallback = set(members) - own if secure.overall is not None else set()
        groups = np.asarray(sorted(own | fallback), dtype=np.int64)
        if groups.size == 0:  # no group summed alone yet (first round): no fusion targets
            return GroupState(state.trainer, assignment, dict(state.payloads), [],
                              {"grouping": grouping_seconds, "fusion": 0.0}, float("nan"))
        targets = np.stack([secure.tables[k] if k in own else secure.overall for k in groups])
        trained = secure.trained if secure.trained.any() else np.ones(base.shape[0], bool)
    losses = state.trainer.fit(groups, targets, options.fusion_epochs, trained)
    tables = state.trainer.tables(groups)  # Q_k
    r2 = fit_r2(tables[:, trained], targets[:, trained])
    payloads = dict(state.payloads)
    for k, table in zip(groups.tolist(), tables, strict=True):
        payloads[k] = _payload(k, table, [uploads[u] for u in members.get(k, [])], backbone,
                               options.teacher)
    return GroupState(state.trainer, assignment, payloads, losses,
                      {"grouping": grouping_seconds, "fusion": time.perf_counter() - tic}, r2)


def _regroup(previous: dict[int, int], uploads: dict[int, dict[str, np.ndarray]],
             sent: dict[str, np.ndarray], backbone: type[Backbone],
             options: GroupingOptions) -> dict[int, int]:
    """Participants get this round's (aligned) group; absent clients keep their last one."""
    assignment = dict(previous)
    if options.method == "random":
        fresh = random_groups(sorted(uploads), options.n_groups, options.seed)
        return {**assignment, **fresh}
    if options.n_groups == 1:
        return {**assignment, **{u: 0 for u in uploads}}
    if backbone.GROUPING and all(n in u for u in uploads.values() for n in backbone.GROUPING):
        users, z = describe_clients(uploads, backbone.GROUPING)
    elif backbone.HEAD and all(n in u for u in uploads.values() for n in backbone.HEAD):
        users, z = describe_clients(uploads, backbone.HEAD)  # secure aggregation: heads only
    elif all(p.CHANGE_SUMMARY in u for u in uploads.values()):  # computed by the clients
        users, z = describe_clients(uploads, (p.CHANGE_SUMMARY,))
    else:
        users, z = table_change_summary(uploads, backbone.ITEM_TABLE, sent[backbone.ITEM_TABLE])
    labels = cluster(z, options.n_groups, options.method, options.pca, options.seed,
                     options.normalize)
    labels = align(previous, users, labels, options.n_groups)
    assignment.update(zip(users, labels.tolist(), strict=True))
    return assignment


def _trained_rows(uploads, name: str, n_rows: int) -> np.ndarray:
    """(n_rows,) bool: the rows some client trained this round. Only they are fusion targets: a
    row nobody trained (a new item, cold start) still holds its random initial values, and
    fitting content to noise would teach the fusion network nothing."""
    rows = np.zeros(n_rows, dtype=bool)
    for upload in uploads:
        ids = upload.get(name + p.ROWS)
        if ids is None:
            rows[:] = True
            break
        rows[ids] = True
    return rows if rows.any() else np.ones(n_rows, dtype=bool)


def _mean_table(members: list[dict[str, np.ndarray]], name: str, base: np.ndarray
                ) -> np.ndarray:
    """The members' mean table ``name``: ``base`` (what was broadcast) plus the mean of their
    changes, added one member at a time over the rows each changed (``name@rows``, see
    ``GFMFRStrategy.kept_from``); a table without row ids counts whole."""
    total = np.zeros(base.shape, dtype=np.float64)
    for upload in members:
        ids = upload.get(name + p.ROWS)
        if ids is None:
            total += upload[name] - base
        else:
            total[ids] += upload[name] - base[ids]
    return (base + total / len(members)).astype(np.float32)


def cohorts_by_group(group_of: dict[int, int], minimum: int) -> dict[int, list[int]]:
    """Nodes summed together under secure aggregation, keyed by group (``group_of``: node ->
    group, -1 when it has none yet). Groups of fewer than ``minimum`` nodes, and nodes without a
    group, are summed together as cohort -1, which is no group's target; if that leaves fewer than
    ``minimum`` nodes, the largest group joins them."""
    by_group: dict[int, list[int]] = {}
    for node in sorted(group_of):
        by_group.setdefault(group_of[node], []).append(node)
    out = {k: m for k, m in by_group.items() if k >= 0 and len(m) >= minimum}
    mixed = [n for k, m in by_group.items() if k not in out for n in m]
    if mixed and len(mixed) < minimum and out:
        mixed += out.pop(max(out, key=lambda k: len(out[k])))
    if mixed:
        out[-1] = sorted(mixed)
    return out


def resolve_teacher(choice: str, template: Backbone) -> str:
    """``auto``: the spec's group head where it is defined (a shared head as wide as the item
    vectors it is applied to), else the client's own model on ``Q_k``. NCF's head scores the
    MLP's hidden units: at ``mlp-hidden = latent-dim`` the product exists but carries no item
    preference (docs/gfmfr.md), at any other width it does not exist."""
    head = template.HEAD
    width = getattr(template, head[0]).shape[0] if head else None
    dim = getattr(template, template.ITEM_TABLE).shape[1]
    if choice == "auto":
        return "group-head" if width == dim else "own-model"
    name = type(template).__name__
    if choice == "group-head" and head is None:
        raise ValueError(f"bad run config: teacher='group-head' needs a shared output head; "
                         f"backbone {name} keeps its head private: use teacher='own-model'.")
    if choice == "group-head" and width != dim:
        raise ValueError(f"bad run config: teacher='group-head' applies {name}'s head ({width} "
                         f"weights, one per hidden unit: mlp-hidden) to item vectors of "
                         f"latent-dim {dim}; use teacher='own-model', or mlp-hidden=0 for the "
                         "spec's width.")
    return choice


def _payload(group: int, table: np.ndarray, members: list[dict[str, np.ndarray]],
             backbone: type[Backbone], teacher: str) -> dict[str, np.ndarray]:
    """What group members receive. ``group-head``: the server applies the members' mean head to
    Q_k and sends p_k (n_items floats, d times smaller than Q_k). ``own-model``: it sends Q_k and
    each client scores items with its own model on Q_k."""
    out = {p.GROUP_ID: np.asarray([group], dtype=np.int64)}
    if teacher == "group-head":
        w = np.mean([m[backbone.HEAD[0]] for m in members], axis=0)
        b = np.mean([m[backbone.HEAD[1]] for m in members], axis=0)
        out[p.TEACHER_PROBS] = teacher_probs(table, w, b)
    else:
        out[p.GROUP_ITEMS] = table.astype(np.float32)
    return out
