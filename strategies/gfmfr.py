"""GFMFR as a Flower strategy: FedRecStrategy plus grouping, fusion and per-group teachers.

Subclassing (not wrapping) FedRecStrategy: GFMFR changes what each node receives (its own group's
payload) and keeps the parts of every accepted upload that grouping and fusion read (the base
strategy's hooks provide them; everything else is aggregated as it arrives); the FedAvg
aggregation of the backbone's shared parts is inherited unchanged.

Client duties beyond the backbone's: when a training message carries a ``group`` record, add
``lambda_t * KL(teacher || student)`` over the local training pairs (``client_app.training``). The
server never sends features or the fusion network; clients never send anything new.

Paper: "Multimodal-enhanced Federated Recommendation: A Group-wise Fusion Approach" (arXiv
2509.19955); spec in docs/method.md.
"""

from __future__ import annotations

from logging import INFO

import numpy as np
from flwr.app import ArrayRecord
from flwr.common import log

from datasets.interactions import Dataset
from strategies import protocol as p
from strategies.aggregation import changed_rows
from strategies.backbones.base import Backbone
from strategies.checkpoint import strip_prefix, torch_state_from_array, torch_state_to_array, with_prefix
from strategies.config import RunConfig
from strategies.content import content_vectors
from strategies.fedrec import FedRecStrategy, RunFailed, shared_item_tables
from strategies.fusion import FusionTrainer
from strategies.groups import (
    GroupingOptions,
    GroupState,
    SecureTargets,
    advance,
    cohorts_by_group,
    resolve_teacher,
)
from strategies.records import to_record
from strategies.secure_aggregation import MIN_COHORT


class GFMFRStrategy(FedRecStrategy):
    """Group-aware multimodal fusion with preference-guided distillation over any backbone."""

    def __init__(self, cfg: RunConfig, template: Backbone, users: dict[int, int],
                 trainer: FusionTrainer, content: np.ndarray | None = None) -> None:
        super().__init__(cfg, {k: v.shape for k, v in template.shared_arrays().items()}, users,
                         shared_item_tables(template))
        self.backbone = type(template)
        self.options = GroupingOptions(cfg.num_groups, cfg.grouping, cfg.grouping_pca,
                                       cfg.grouping_normalize, cfg.fusion_epochs, cfg.seed,
                                       resolve_teacher(cfg.teacher, template))
        self.groups = GroupState(trainer)
        self._records: dict[int, ArrayRecord] = {}
        # items' content vectors (new items), serialised once a run and sent with every payload
        self._content_wire = None if content is None else to_record(
            {p.ITEM_CONTENT: content.astype(cfg.wire_dtype)})[p.ITEM_CONTENT]

    @classmethod
    def check(cls, cfg: RunConfig, dataset: Dataset) -> None:
        from encoders.registry import check_encoder_name  # server-only, heavy imports
        from strategies.backbones.registry import build_backbone
        from strategies.registry import backbone_name, hyper

        check_encoder_name("text", cfg.text_encoder)
        check_encoder_name("image", cfg.image_encoder)
        # a one-item model says whether the teacher exists, before features are encoded
        resolve_teacher(cfg.teacher, build_backbone(backbone_name(cfg), 1, hyper(cfg), cfg.seed))
        if cfg.num_groups > dataset.n_users:
            raise ValueError(f"bad run config: num-groups ({cfg.num_groups}) is larger than the "
                             f"number of clients ({dataset.n_users} users in {dataset.name}).")

    @classmethod
    def for_run(cls, cfg: RunConfig, template: Backbone, dataset: Dataset,
                users: dict[int, int]) -> GFMFRStrategy:
        from encoders.features import run_item_features  # server-only, heavy imports

        features = run_item_features(dataset.catalog, cfg)
        log(INFO, "item features: text %s, image %s, %d items without a usable image",
            features.text.shape, features.image.shape, int((~features.image_mask).sum()))
        trainer = FusionTrainer(cfg.num_groups, features.text, features.image,
                                features.image_mask, cfg.latent_dim, cfg.fusion, cfg.fusion_lr,
                                cfg.seed, dropout=cfg.fusion_dropout)
        content = None
        if cfg.cold_items > 0:  # what clients rank new items with, besides the teacher
            content = content_vectors(features.text, features.image, features.image_mask,
                                      seed=cfg.seed)
        return cls(cfg, template, users, trainer, content)

    def state(self) -> tuple[dict[str, np.ndarray], dict]:
        arrays, meta = super().state()
        for k, payload in self.groups.payloads.items():
            arrays.update(with_prefix(f"payload/{k}", payload))
        arrays["fusion/net"] = torch_state_to_array(self.groups.trainer.net.state_dict())
        arrays["fusion/optimizer"] = torch_state_to_array(
            self.groups.trainer.optimizer.state_dict())
        meta["assignment"] = sorted(self.groups.assignment.items())
        return arrays, meta

    def restore(self, arrays: dict[str, np.ndarray], meta: dict) -> None:
        super().restore(arrays, meta)
        trainer = self.groups.trainer
        trainer.net.load_state_dict(torch_state_from_array(arrays["fusion/net"]))
        trainer.optimizer.load_state_dict(torch_state_from_array(arrays["fusion/optimizer"]))
        groups = {int(k.split("/")[1]) for k in arrays if k.startswith("payload/")}
        payloads = {k: strip_prefix(f"payload/{k}", arrays) for k in groups}
        self.groups = GroupState(trainer, {int(u): int(g) for u, g in meta["assignment"]},
                                 payloads)
        self._records = self._to_records(payloads)

    def payload(self, server_round: int, user: int) -> ArrayRecord | None:
        needed = self.cfg.kd_weight != "none" or self.cfg.cold_items > 0
        if not needed or user not in self.groups.assignment:
            return None
        return self._records.get(self.groups.assignment[user])

    def _to_records(self, payloads: dict[int, dict[str, np.ndarray]]) -> dict[int, ArrayRecord]:
        """One record per group, shared by its members' messages (never mutated), with the
        items' content vectors when there are new items."""
        wire = self.cfg.wire_dtype
        records = {k: to_record({n: a.astype(wire) if a.dtype.kind == "f" else a
                                 for n, a in v.items()}) for k, v in payloads.items()}
        if self._content_wire is not None:
            for record in records.values():
                record[p.ITEM_CONTENT] = self._content_wire
        return records

    def kept_from(self, upload: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Grouping reads the prediction-function parameters (or the item table's change), fusion
        each group's mean item table, the teacher the group's mean head; nothing else is kept.
        The item table is kept as the rows this client changed, with their ids (``@rows``): on
        ml-1m 775 of 3,706 on average, so 6,040 clients keep 1.2 instead of 5.7 GB."""
        b = self.backbone
        out = {name: upload[name] for name in dict.fromkeys((*(b.HEAD or ()), *b.GROUPING))}
        if b.ITEM_TABLE not in out:
            ids, rows = changed_rows(upload[b.ITEM_TABLE], self.broadcast[b.ITEM_TABLE])
            out.update({b.ITEM_TABLE: rows, b.ITEM_TABLE + p.ROWS: ids})
        return out

    def cohorts(self, nodes: set[int]) -> dict[int, list[int]]:
        """Secure aggregation sums each group apart (the fusion targets are group means)."""
        return cohorts_by_group({n: self.groups.assignment.get(self.users[n], -1) for n in nodes},
                                MIN_COHORT)

    def after_aggregate(self, server_round: int, uploads: dict[int, dict[str, np.ndarray]],
                        aggregated: dict[str, np.ndarray],
                        cohorts: dict[int, tuple[int, dict, dict]] | None = None) -> None:
        targets = None
        if cohorts:  # secure aggregation: each group's mean table from its cohort's sum
            table, base = self.backbone.ITEM_TABLE, self.broadcast[self.backbone.ITEM_TABLE]
            everyone = sum(n for n, _, _ in cohorts.values())
            targets = SecureTargets(
                {k: (base + changes[table] / n).astype(np.float32)
                 for k, (n, changes, _) in cohorts.items() if k >= 0},
                sum(trained[table] for _, _, trained in cohorts.values()) > 0,
                (base + sum(changes[table] for _, changes, _ in cohorts.values()) / everyone
                 ).astype(np.float32))
        self.groups = advance(self.groups, uploads, self.broadcast, self.backbone, self.options,
                              targets)
        for k, payload in self.groups.payloads.items():  # never send a broken teacher
            broken = [n for n, a in payload.items() if a.dtype.kind == "f" and
                      not np.isfinite(a).all()]
            if broken:
                raise RunFailed(f"round {server_round}: the fusion network produced NaN or Inf "
                                f"for group {k} ({', '.join(broken)}); lower fusion-lr, and "
                                "check the item features.")
        self._records = self._to_records(self.groups.payloads)
        record = self.history.at(server_round)
        record.server_seconds.update(self.groups.seconds)
        record.groups = {"sizes": np.bincount([self.groups.assignment[u] for u in uploads],
                                              minlength=self.options.n_groups).tolist(),
                         "fusion_mse": self.groups.fusion_losses[-1]
                         if self.groups.fusion_losses else None,
                         "fusion_r2": self.groups.fusion_r2}
        losses = self.groups.fusion_losses
        log(INFO, "  groups %s | fusion MSE %.4f -> %.4f (R2 %.2f) | grouping %.2f s, fusion "
            "%.2f s", record.groups["sizes"], losses[0] if losses else float("nan"),
            losses[-1] if losses else float("nan"), self.groups.fusion_r2,
            self.groups.seconds["grouping"], self.groups.seconds["fusion"])
