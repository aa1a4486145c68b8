"""The run configuration, parsed once from Flower's run config into a typed dataclass.

``pyproject.toml``'s ``[tool.flwr.app.config]`` is the schema users see; the defaults here must equal
it (a test checks). Flower passes overrides without type coercion (``lr=1`` arrives as an int) and
``run_simulation`` passes an empty run config, so every key has a default and is coerced here.
"""

from __future__ import annotations

import math
import os
import shlex
import tomllib
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from datasets.synthetic import SyntheticSpec
from strategies.secure_aggregation import MIN_COHORT


def _key(name: str) -> str:
    return name.replace("_", "-")


# Weight decay that is refused as destructive (docs/training-recipe.md, "Adam, one rate ..."):
SGD_MAX_DECAY_PER_STEP = 0.1  # lr * weight-decay: the share of every weight decay removes a step
ADAM_MAX_WEIGHT_DECAY = 1e-3  # FCF collapsed at this value (adam, lr 0.01)


@dataclass(frozen=True)
class RunConfig:
    """All run-config keys (kebab-case in ``pyproject.toml``; snake_case here)."""

    # what to run
    dataset: str = "ml-100k-mm"
    strategy: str = "gfmfr"
    backbone: str = ""  # "" = the strategy's default backbone
    num_server_rounds: int = 50
    seed: int = 0
    # where things are
    data_dir: str = "data"
    cache_dir: str = ""  # "" = $GFMFR_CACHE_DIR or ~/.cache/gfmfr
    results_dir: str = "results"
    run_name: str = ""  # "" = <dataset>-<strategy>-<backbone>-seed<seed>-<time>
    # evaluation and model selection
    eval_every: int = 1
    patience: int = 0  # evaluations without improvement before stopping; 0 = never stop early
    select_metric: str = "HR@50"
    cold_items: float = 0.0  # share of items held out as new (cold start); 0 = none
    # federation
    fraction_train: float = 1.0
    min_nodes: int = 0  # 0 = one SuperNode per user of the dataset
    node_wait: float = 60.0  # seconds to wait for SuperNodes to connect
    node_registry: str = ""  # JSON node id -> partition-id; other nodes/claims refused ("" = off)
    round_timeout: float = 600.0
    min_replies: int = 1  # fewer accepted updates in a round: the model is left unchanged
    max_failed_rounds: int = 2  # consecutive rounds without any accepted update before the run stops
    resume: bool = False  # continue from <results-dir>/<run-name>/checkpoint (needs run-name)
    client_state_dir: str = ""  # clients also keep private state here (simulation; "" = off)
    max_in_flight: int = 64  # messages in flight at once (0 = all at once)
    wire_dtype: str = "float32"  # float32 | float16: precision of shared parameters on the wire
    upload_rows: str = "auto"  # auto | true | false: upload only the item-table rows trained
    # robustness and privacy
    # SecAgg+: the server sees sums of updates, never one; auto = on in a deployment, off in a
    # simulation (resolved by the ServerApp: RunConfig.resolve_secure_aggregation)
    secure_aggregation: str = "auto"  # auto | true | false
    update_norm_limit: float = 1e4  # server rejects updates whose L2 norm exceeds this
    update_clip: float = 0.0  # server clips updates to this L2 norm (0 = off)
    ldp_epsilon: float = 0.0  # local DP budget over the whole run; the noise follows (0 = off)
    ldp_delta: float = 1e-5  # local DP delta (gaussian only)
    ldp_noise: float = 0.0  # expert: a noise scale of your own instead of ldp-epsilon (0 = off)
    ldp_mechanism: str = "laplace"  # laplace | gaussian
    ldp_clip: float = 0.0  # client clips its update to this norm (L1 laplace, L2 gaussian)
    # local training (method spec defaults)
    local_epochs: int = 5
    batch_size: int = 256
    optimizer: str = "adam"  # adam | sgd: the local optimiser (fresh every round)
    lr: float = 0.01
    item_lr: float = 0.0  # learning rate of the shared item tables; 0 = lr
    user_lr: float = 0.003  # learning rate of NCF's private user embedding (FedNCF, FedRAP); 0 = lr
    personal_lr: float = 0.0001  # learning rate of private item tables (FedRAP's D_u)
    mlp_lr: float = 0.001  # learning rate of NCF's shared MLP (FedNCF, FedRAP); 0 = lr
    mlp_init: str = "factorized"  # factorized | random (PyTorch's): how NCF's MLP starts
    mlp_hidden: int = 256  # hidden units of NCF's MLP (FedNCF, FedRAP); 0 = latent-dim
    item_bias: bool = False  # MF (FCF): the item table's last column is a per-item bias
    lr_decay_to: float = 0.1  # local rates in the last round as a share of round 1's (cosine)
    weight_decay: float = 0.0
    item_aggregation: str = "rows"  # rows | all: item-table rows averaged over who trained them
    dense_weights: str = "uniform"  # uniform | examples: how dense layers (NCF's MLP) are averaged
    server_lr: float = 3.0  # server step on the mean update (FedAvg = 1)
    server_lr_end: float = 0.0  # server step in the last round, cosine from server-lr (0 = constant)
    neg_per_pos: int = 4
    neg_resample: str = "round"  # round | epoch: draw the negatives once a round or every local epoch
    latent_dim: int = 64
    fedrap_reg_bug: bool = False
    fedrap_separation: str = "bounded"  # bounded | published: FedRAP's -a_t MSE(D_u, C) term
    # GFMFR (strategy = "gfmfr")
    num_groups: int = 5
    grouping: str = "spectral"  # spectral | kmeans | random
    grouping_pca: bool = True
    grouping_normalize: bool = True  # unit-length client vectors (cluster by direction)
    fusion: str = "mlp"  # mlp | sum | gate | attention | moe
    fusion_epochs: int = 50
    fusion_lr: float = 0.01
    fusion_dropout: float = 0.0
    kd_weight: str = "adaptive"  # adaptive | fixed | none
    kd_fixed: float = 0.5
    kd_max: float = 1.0  # cap of the adaptive weight
    kd_start: int = 1  # first round whose local training distils (earlier rounds: base loss only)
    teacher: str = "auto"  # auto | group-head | own-model
    cold_content_weight: float = 2.0  # new items: weight of the user's content profile
    text_encoder: str = "minilm"
    image_encoder: str = "efficientnet-lite0"
    clip_model: str = "ViT-B-32"
    clip_pretrained: str = ""
    # synthetic dataset size
    synthetic_users: int = 60
    synthetic_items: int = 80
    synthetic_tastes: int = 2
    synthetic_interactions: int = 12

    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    @classmethod
    def from_run_config(cls, run_config: dict[str, Any]) -> RunConfig:
        """Coerce and validate Flower's run config; unknown keys are kept in ``extra``."""
        known = {_key(f.name): f for f in fields(cls) if f.name != "extra"}
        values: dict[str, Any] = {}
        for key, raw in run_config.items():
            if key not in known:
                continue
            default = known[key].default
            values[known[key].name] = _coerce(key, raw, type(default))
        extra = {k: v for k, v in run_config.items() if k not in known}
        config = cls(**values, extra=extra)
        config.validate()
        return config

    def validate(self) -> None:
        """Fail before any training with a message naming the key and the allowed values."""
        checks = [
            (self.num_server_rounds >= 1, "num-server-rounds must be >= 1"),
            (self.eval_every >= 1, "eval-every must be >= 1"),
            (self.patience >= 0, "patience must be >= 0 (0 disables early stopping)"),
            (0.0 < self.fraction_train <= 1.0, "fraction-train must be in (0, 1]"),
            (self.local_epochs >= 1, "local-epochs must be >= 1"),
            (self.batch_size >= 1, "batch-size must be >= 1"),
            (self.lr > 0, "lr must be > 0"),
            (self.item_lr >= 0, "item-lr must be >= 0 (0 = lr)"),
            (self.user_lr >= 0, "user-lr must be >= 0 (0 = lr)"),
            (self.personal_lr >= 0, "personal-lr must be >= 0"),
            (self.mlp_lr >= 0, "mlp-lr must be >= 0 (0 = lr)"),
            (self.server_lr > 0, "server-lr must be > 0 (FedAvg is 1)"),
            (0 < self.lr_decay_to <= 1, "lr-decay-to must be in (0, 1] (1 = no decay)"),
            (self.server_lr_end >= 0, "server-lr-end must be >= 0 (0 = server-lr every round)"),
            (self.weight_decay >= 0, "weight-decay must be >= 0"),
            (self.neg_per_pos >= 0, "neg-per-pos must be >= 0"),
            (self.latent_dim >= 1, "latent-dim must be >= 1"),
            (self.mlp_hidden >= 0, "mlp-hidden must be >= 0 (0 = latent-dim)"),
            (self.min_nodes >= 0, "min-nodes must be >= 0"),
            (self.round_timeout > 0, "round-timeout must be > 0"),
            (self.min_replies >= 1, "min-replies must be >= 1"),
            (self.max_failed_rounds >= 0, "max-failed-rounds must be >= 0"),
            (self.seed >= 0, "seed must be >= 0"),
            (0.0 <= self.cold_items < 1.0, "cold-items must be in [0, 1) (0 = no new items)"),
            (not self.resume or bool(self.run_name),
             "resume needs the run-name of the run to continue"),
        ]
        choices = [
            ("grouping", self.grouping, ("spectral", "kmeans", "random")),
            ("fusion", self.fusion, ("mlp", "sum", "gate", "attention", "moe")),
            ("kd-weight", self.kd_weight, ("adaptive", "fixed", "none")),
            ("wire-dtype", self.wire_dtype, ("float32", "float16")),
            ("optimizer", self.optimizer, ("adam", "sgd")),
            ("mlp-init", self.mlp_init, ("factorized", "random")),
            ("item-aggregation", self.item_aggregation, ("rows", "all")),
            ("dense-weights", self.dense_weights, ("examples", "uniform")),
            ("fedrap-separation", self.fedrap_separation, ("published", "bounded")),
            ("neg-resample", self.neg_resample, ("round", "epoch")),
            ("teacher", self.teacher, ("auto", "group-head", "own-model")),
            ("ldp-mechanism", self.ldp_mechanism, ("laplace", "gaussian")),
            ("upload-rows", self.upload_rows.lower(), ("auto", "true", "false")),
            ("secure-aggregation", self.secure_aggregation.lower(), ("auto", "true", "false")),
        ]
        for key, value, allowed in choices:
            if value not in allowed:
                raise ValueError(f"bad run config: {key} must be one of {', '.join(allowed)}, "
                                 f"got {value!r}.")
        checks += [
            (self.num_groups >= 1, "num-groups must be >= 1"),
            (self.fusion_epochs >= 0, "fusion-epochs must be >= 0"),
            (self.fusion_lr > 0, "fusion-lr must be > 0"),
            (0 <= self.fusion_dropout < 1, "fusion-dropout must be in [0, 1) (0 = off)"),
            (self.cold_content_weight >= 0,
             "cold-content-weight must be >= 0 (0 = new items ranked by the teacher alone)"),
            (self.kd_fixed >= 0, "kd-fixed must be >= 0"),
            (self.kd_max >= 0, "kd-max must be >= 0"),
            (self.kd_start >= 1, "kd-start must be >= 1 (the first round that distils)"),
            (self.update_norm_limit > 0, "update-norm-limit must be > 0"),
            (self.update_clip >= 0, "update-clip must be >= 0 (0 = off)"),
            (self.ldp_noise >= 0, "ldp-noise must be >= 0 (0 = off)"),
            (self.ldp_epsilon >= 0, "ldp-epsilon must be >= 0 (0 = off)"),
            (0 < self.ldp_delta < 1, "ldp-delta must be in (0, 1)"),
            (self.ldp_clip >= 0, "ldp-clip must be >= 0 (0 = off)"),
            (not (self.ldp_epsilon and self.ldp_noise),
             "set ldp-epsilon (the noise follows from it) or ldp-noise, not both"),
            (not self.ldp_epsilon or self.ldp_clip > 0,
             "ldp-epsilon needs ldp-clip > 0: the clip bounds the update, the noise is scaled "
             "to it (e.g. ldp-clip=1.0)"),
            (not (self.ldp_on and self.upload_rows.lower() == "true"),
             "upload-rows cannot be combined with local DP (the rows sent would reveal which "
             "items a user trained on); set upload-rows='auto' or false"),
        ]
        for f in fields(self):  # inf and NaN pass every comparison above that they fail
            value = getattr(self, f.name)
            if isinstance(value, float) and not math.isfinite(value):
                raise ValueError(f"bad run config: {_key(f.name)} must be a finite number, got "
                                 f"{value!r}.")
        for ok, message in checks:
            if not ok:
                raise ValueError(f"bad run config: {message}.")
        problem = self.weight_decay_problem()
        if problem:
            raise ValueError(f"bad run config: {problem}.")
        from strategies.protocol import RANKING_METRICS

        if self.select_metric not in RANKING_METRICS:
            raise ValueError(f"bad run config: select-metric must be one of "
                             f"{', '.join(RANKING_METRICS)}, got {self.select_metric!r}.")

    def weight_decay_problem(self) -> str | None:
        """Why ``weight-decay`` is destructive with this optimiser and these rates, or None.

        SGD: each step multiplies every weight by ``1 - rate * weight-decay``; the product is what
        matters, refused above 0.1 (10% of every weight gone per step from decay alone, under 35%
        left after 10 steps; the spec's recipe has 16.82 x 0.0001 = 0.0017). Adam: steps are about
        ``lr`` whatever the gradient's size, so the rate cancels out; decay outweighs the gradient
        wherever ``weight-decay * |weight|`` exceeds it, and then moves the weight by about ``lr``
        per step towards 0. Refused at the value where FCF collapsed.
        """
        decay = self.weight_decay
        if self.optimizer == "sgd":
            rate = max(self.learning_rates.values())
            if rate * decay > SGD_MAX_DECAY_PER_STEP:
                return (f"weight-decay={decay:g} with optimizer='sgd' and a learning rate of "
                        f"{rate:g} removes {rate * decay:.0%} of every weight per step (lr * "
                        f"weight-decay > {SGD_MAX_DECAY_PER_STEP:g}), so the model decays to 0 "
                        f"whatever it learns; use weight-decay <= "
                        f"{SGD_MAX_DECAY_PER_STEP / rate:.3g} (the spec's recipe: 0.0001)")
        elif decay >= ADAM_MAX_WEIGHT_DECAY:
            return (f"weight-decay={decay:g} with optimizer='adam' is destructive: Adam's steps "
                    "are about lr whatever the gradient's size, so coupled L2 moves every weight "
                    "it outweighs the gradient of by about lr per step towards 0 (FCF collapsed "
                    f"to validation HR@50 0.004 at weight-decay={ADAM_MAX_WEIGHT_DECAY:g}, lr "
                    f"0.01); use weight-decay < {ADAM_MAX_WEIGHT_DECAY:g} (the recipe keeps 0) "
                    "or optimizer='sgd'")
        return None

    # --- derived values ------------------------------------------------------------------------
    IDENTITY = ("dataset", "strategy", "backbone", "seed", "latent_dim", "mlp_init", "mlp_hidden",
                "item_bias", "cold_items", "num_groups", "fusion", "text_encoder", "image_encoder",
                "clip_model", "clip_pretrained", "synthetic_users", "synthetic_items", "synthetic_tastes",
                "synthetic_interactions", "client_state_dir")

    def identity(self) -> dict[str, Any]:
        """The keys that shape the model, the data or where private state lives: a checkpoint
        only continues under the same values."""
        return {_key(name): getattr(self, name) for name in self.IDENTITY}

    @property
    def secure(self) -> bool:
        """SecAgg+ on this run (``auto`` counts as off until the ServerApp resolves it)."""
        return self.secure_aggregation.lower() == "true"

    def resolve_secure_aggregation(self, simulated: bool, users: int) -> RunConfig:
        """``auto`` made definite: on in a deployment, where each user's data is on their own
        device and the uploads are what the server could learn them from; off in a simulation,
        where one machine holds every user's data anyway and SecAgg+ only costs time
        (docs/privacy.md). Off, too, with fewer users than a secure sum needs."""
        choice = self.secure_aggregation.lower()
        if choice == "auto":
            choice = "true" if not simulated and users >= MIN_COHORT else "false"
        return replace(self, secure_aggregation=choice)

    @property
    def sends_rows(self) -> bool:
        """Upload only the trained item-table rows: exact (untouched rows equal the broadcast),
        a third of the bytes up, 8% off a GFMFR round (docs/performance.md). ``auto`` does it
        unless local DP is on: noise on the trained rows only would reveal which they are."""
        choice = self.upload_rows.lower()
        return choice == "true" or (choice == "auto" and not self.ldp_on)

    def server_lr_at(self, server_round: int) -> float:
        """The server step of round ``server_round`` (1-based): ``server-lr`` in round 1, falling
        on a half cosine to ``server-lr-end`` in the last round (constant when that is 0). A
        large early step moves rows that few clients train; a small late one stops the slide."""
        if not self.server_lr_end:
            return self.server_lr
        return self._cosine(self.server_lr, self.server_lr_end, server_round)

    @property
    def learning_rates(self) -> dict[str, float]:
        """The local rate of each parameter kind, ``item-lr``, ``user-lr`` and ``mlp-lr`` at 0
        meaning ``lr``."""
        return {"lr": self.lr, "item_lr": self.item_lr or self.lr,
                "user_lr": self.user_lr or self.lr, "personal_lr": self.personal_lr,
                "mlp_lr": self.mlp_lr or self.lr}

    def lr_scale_at(self, server_round: int) -> float:
        """What every local learning rate is multiplied by in round ``server_round``: 1 in round
        1, falling on a half cosine to ``lr-decay-to`` in the last round."""
        return self._cosine(1.0, self.lr_decay_to, server_round)

    def _cosine(self, start: float, end: float, server_round: int) -> float:
        if self.num_server_rounds == 1:
            return start
        done = min(max(server_round - 1, 0) / (self.num_server_rounds - 1), 1.0)
        return end + (start - end) * (1 + math.cos(math.pi * done)) / 2

    @property
    def ldp_on(self) -> bool:
        return bool(self.ldp_epsilon or self.ldp_noise)

    def ldp_budget(self):
        """The local DP noise and the budget it spends over the run (None: no finite budget)."""
        from strategies.privacy import budget_of, plan_budget

        if self.ldp_epsilon:
            return plan_budget(self.ldp_mechanism, self.ldp_epsilon, self.ldp_delta,
                               self.ldp_clip, self.num_server_rounds)
        return budget_of(self.ldp_mechanism, self.ldp_noise, self.ldp_clip, self.ldp_delta,
                         self.num_server_rounds)

    def data_path(self) -> Path:
        """An explicit ``data-dir`` wins; ``$GFMFR_DATA_DIR`` replaces only the default."""
        chosen = self.data_dir
        if self.data_dir == RunConfig.data_dir and os.environ.get("GFMFR_DATA_DIR"):
            chosen = os.environ["GFMFR_DATA_DIR"]
        return Path(chosen).expanduser().resolve()

    def cache_path(self) -> Path:
        chosen = self.cache_dir or os.environ.get("GFMFR_CACHE_DIR") or "~/.cache/gfmfr"
        return Path(chosen).expanduser().resolve()

    def synthetic_spec(self) -> SyntheticSpec:
        return SyntheticSpec(n_users=self.synthetic_users, n_items=self.synthetic_items,
                             n_tastes=self.synthetic_tastes,
                             interactions=self.synthetic_interactions, seed=self.seed)

    def as_dict(self) -> dict[str, Any]:
        out = {_key(f.name): getattr(self, f.name) for f in fields(self) if f.name != "extra"}
        out.update(self.extra)
        return out


def parse_overrides(text: str) -> dict[str, Any]:
    """``k=v k2='s'`` (Flower's --run-config syntax) -> dict, values parsed as TOML."""
    pairs = [item.split("=", 1) for item in shlex.split(text, posix=False) if item]
    return tomllib.loads("\n".join(f"{k} = {v}" for k, v in pairs))


def _coerce(key: str, raw: Any, kind: type) -> Any:
    try:
        if kind is bool:
            if isinstance(raw, str):
                if raw.lower() not in ("true", "false"):
                    raise ValueError
                return raw.lower() == "true"
            return bool(raw)
        if kind in (int, float) and isinstance(raw, bool):  # true would pass as 1
            raise ValueError
        if kind is int and isinstance(raw, float) and not raw.is_integer():
            raise ValueError
        return kind(raw)
    except (TypeError, ValueError):
        noun = {int: "an integer", float: "a number", bool: "true or false"}.get(kind,
                                                                                 "a string")
        raise ValueError(f"bad run config: {key} must be {noun}, got {raw!r}.") from None
