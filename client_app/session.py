"""What one ClientApp message needs: this node's user, data view, model and distillation teacher.

Everything is rebuilt per message from ``context`` (in deployment each message runs in a fresh
process); the dataset split is memoised per process, so simulated workers parse it once.
"""

from __future__ import annotations

import copy
import functools
from dataclasses import dataclass, field
from logging import WARNING
from pathlib import Path

import numpy as np
import torch
from flwr.app import Context, MetricRecord, RecordDict
from flwr.common import log

from client_app.secure import secure_reply
from client_app.state import load_kd_ema, load_private
from client_app.training import KDWeight, evaluate
from datasets.registry import load_split
from datasets.split import ClientView, LeaveOneOut
from strategies import protocol as p
from strategies.backbones.base import Backbone, Hyper
from strategies.backbones.registry import build_backbone
from strategies.config import RunConfig
from strategies.distillation import Teacher
from strategies.grouping import change_summary
from strategies.privacy import CLIP_NORM, add_noise, clip_update
from strategies.records import from_record
from strategies.registry import backbone_name, hyper


def data_path(context: Context, cfg: RunConfig) -> Path:
    """The SuperNode's own ``data-dir`` (node config) if set, else the run config's.

    On real machines every client keeps its data in a folder of its own choosing; the run config
    (one value for all) is the fallback for simulations and single-machine deployments.
    """
    folder = context.node_config.get("data-dir")
    return Path(str(folder)).expanduser().resolve() if folder else cfg.data_path()


def noise_rng() -> np.random.Generator:
    """A generator seeded from the operating system's entropy, for local DP noise only.

    Never from the run's seed, the user or the round: the server knows all of them and could draw
    the same noise and subtract it. DP noise is therefore not reproducible, by design.
    """
    return np.random.default_rng(np.random.SeedSequence(entropy=None))


@functools.lru_cache(maxsize=4)
def _initial_model(name: str, n_items: int, hyper_: Hyper, seed: int) -> Backbone:
    """Drawn once per process, copied per message: a copy costs a fifth of drawing the tables."""
    return build_backbone(name, n_items, hyper_, seed)


@dataclass
class Session:
    context: Context
    cfg: RunConfig
    user: int
    split: LeaveOneOut
    received: dict[str, np.ndarray] = field(default_factory=dict)  # shared parts as received

    @classmethod
    def open(cls, context: Context) -> Session:
        # A user's model is tiny: one thread per ClientApp, parallelism comes from running several
        # ClientApps (more threads only add synchronisation and fight the other workers).
        torch.set_num_threads(1)
        cfg = RunConfig.from_run_config(dict(context.run_config))
        if "partition-id" not in context.node_config:
            raise ValueError("this SuperNode has no partition-id in its node config; start it "
                             "with --node-config 'partition-id=<user> num-partitions=<users>'.")
        user = int(context.node_config["partition-id"])
        split = load_split(cfg.dataset, data_path(context, cfg), cfg.cache_path(), cfg.seed,
                           cfg.synthetic_spec(), cfg.cold_items)
        split.client(user)  # range check with a clear message
        return cls(context, cfg, user, split)

    @property
    def view(self) -> ClientView:
        return self.split.client(self.user)

    @property
    def run_key(self) -> str:
        """Identifies the run in state files: its name (kept on resume), else Flower's run id."""
        return self.cfg.run_name or f"run-{self.context.run_id}"

    def initial_model(self) -> Backbone:
        """The run's initial model, the same for every user (drawn from the run's seed).

        Private parts start from it, as if every device had downloaded the initial global model
        once (PFedRec's scheme), then evolve privately. Per-user random starts would make the
        first updates of a private head point in random directions that cancel out in FedAvg:
        FCF, PFedRec and FedRAP-original then never learn (measured: docs/method-notes.md).
        """
        return copy.deepcopy(_initial_model(backbone_name(self.cfg), self.split.n_items,
                                            hyper(self.cfg), self.cfg.seed))

    def model(self, content: RecordDict) -> Backbone:
        """This user's model: private parts from state (or the initial model), shared received."""
        model = self.initial_model()
        upto = int(content[p.CONFIG].get(p.STATE_ROUND, 0))
        private = load_private(self.context, self.user, upto, self.cfg.client_state_dir,
                               self.run_key)
        if private is not None:
            try:
                model.set_arrays(private, model.PRIVATE)
            except (KeyError, ValueError) as error:  # a state file from another model or dataset
                log(WARNING, "stored private state of user %d does not fit this model (%s); "
                    "starting afresh", self.user, error)
                model = self.initial_model()
        self.received = from_record(content.array_records[p.SHARED])
        model.set_arrays(self.received, model.SHARED)
        return model

    def upload(self, model: Backbone, rows: np.ndarray, server_round: int
               ) -> dict[str, np.ndarray]:
        """The shared parameters as they go on the wire: clipped and noised under local DP, only
        the trained item-table rows (with their ids) when ``sends_rows``, in
        ``wire-dtype``."""
        arrays = self._private_shared(model)
        if self.cfg.sends_rows:
            for name in set(model.ITEM_TABLES) & set(model.SHARED):
                arrays[name] = arrays[name][rows]
                arrays[name + p.ROWS] = rows.astype(np.int64)
        return {k: v if k.endswith(p.ROWS) else v.astype(self.cfg.wire_dtype)
                for k, v in arrays.items()}

    def secure_reply(self, model: Backbone, rows: np.ndarray, metrics: dict) -> RecordDict:
        """The reply when the server runs secure aggregation (``client_app.secure``): the dense
        change (clipped and noised under local DP), the rows trained (every row under local DP,
        where every row carries noise), and for GFMFR what it groups clients by, in the clear:
        the output head where it is shared, not the MLP's first layer, whose change is a sum of
        outer products with the embeddings (known to the server) of the items trained (a
        precaution: docs/privacy.md)."""
        arrays = self._private_shared(model)
        if self.cfg.update_clip > 0:  # the server cannot clip a masked update: the client does
            arrays = clip_update(arrays, {k: self.received[k] for k in arrays},
                                 self.cfg.update_clip)
        change = {k: v.astype(np.float32) - self.received[k].astype(np.float32)
                  for k, v in arrays.items()}
        tables = tuple(t for t in model.ITEM_TABLES if t in model.SHARED)
        trained = {t: np.arange(self.split.n_items) if self.cfg.ldp_on else rows for t in tables}
        descriptor = None
        if self.cfg.strategy == "gfmfr":
            descriptor = ({n: arrays[n] for n in model.HEAD} if model.HEAD else
                          {p.CHANGE_SUMMARY: change_summary(change[model.ITEM_TABLE])})
        return secure_reply(change, trained, tables,
                            RecordDict({p.METRICS: MetricRecord(metrics)}), descriptor)

    def _private_shared(self, model: Backbone) -> dict[str, np.ndarray]:
        """The shared parameters after local DP's clip and noise (unchanged without it)."""
        arrays = model.shared_arrays()
        if self.cfg.ldp_on or self.cfg.ldp_clip:
            base = {k: self.received[k].astype(np.float32) for k in arrays}
            mechanism = self.cfg.ldp_mechanism
            arrays = clip_update(arrays, base, self.cfg.ldp_clip, CLIP_NORM[mechanism])
            budget = self.cfg.ldp_budget()
            scale = budget.scale if budget is not None else self.cfg.ldp_noise
            arrays = add_noise(arrays, mechanism, scale, noise_rng())
        return arrays

    def rng(self, server_round: int) -> np.random.Generator:
        return np.random.default_rng([self.cfg.seed, self.user, server_round])

    def teacher(self, content: RecordDict, server_round: int) -> Teacher | None:
        """The group teacher GFMFR sent, or None (no group yet, distillation off, or a round
        before ``kd-start``)."""
        if self.cfg.kd_weight == "none" or server_round < self.cfg.kd_start:
            return None
        return self.cold_scorer(content)

    def evaluate(self, model: Backbone, content: RecordDict) -> dict[str, float]:
        """This user's validation, test and new-item metrics (wire names)."""
        return evaluate(model, self.view, self.cold_scorer(content),
                        content_weight=self.cfg.cold_content_weight)

    def cold_scorer(self, content: RecordDict) -> Teacher | None:
        """What scores new items (cold start): the group's teacher when GFMFR sent one, whether
        or not distillation is on."""
        if p.GROUP not in content.array_records:
            return None
        payload = from_record(content.array_records[p.GROUP])
        return Teacher(probs_all=payload.get(p.TEACHER_PROBS),
                       item_vectors=payload.get(p.GROUP_ITEMS), content=payload.get(p.ITEM_CONTENT))

    def kd_weight(self) -> KDWeight:
        return KDWeight(mode=self.cfg.kd_weight, fixed=self.cfg.kd_fixed, cap=self.cfg.kd_max,
                        ema=load_kd_ema(self.context))
