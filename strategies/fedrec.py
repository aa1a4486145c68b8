"""The federated-recommendation strategy every baseline uses (FedAvg over a backbone's shared parts).

Client duties: on ``train``, evaluate the received model when asked (``evaluate`` flag), train the
backbone locally with private parts from ``context.state``, and reply with exactly the shared
parameters plus ``num-examples`` and ``user-id``; on ``evaluate``, only evaluate.

Evaluation rides on the training exchange: a client evaluates the shared parts it receives in
round ``t`` before training, which is exactly the model after round ``t - 1`` (its private parts have
not changed since). Nodes not sampled for training get an evaluate-only message in the same
exchange, and the final model is evaluated in the last round's evaluate phase. This keeps one
message exchange per round, which dominates simulation cost.
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterable
from logging import INFO, WARNING
from pathlib import Path

import numpy as np
from flwr.app import ArrayRecord, ConfigRecord, Message, MessageType, MetricRecord, RecordDict
from flwr.common import log
from flwr.serverapp import Grid
from flwr.serverapp.strategy import Strategy
from tqdm import tqdm

from datasets.interactions import Dataset
from strategies import protocol as p
from strategies.aggregation import UpdateMean
from strategies.backbones.base import Backbone
from strategies.checkpoint import load_checkpoint, save_checkpoint, strip_prefix, with_prefix
from strategies.config import RunConfig
from strategies.history import RunHistory
from strategies.records import from_record, to_record
from strategies.replies import Reply, read_reply
from strategies.secure_aggregation import (
    CONFIGS,
    MIN_COHORT,
    SecAggPlusRound,
    SecureAggregationFailed,
)
from strategies.secure_update import decode

LOGGED_PER_ROUND = 5  # failures and rejections logged one by one per round, then counted


class RunFailed(RuntimeError):
    """The federation stopped producing updates: the run must not end as if it had trained."""


class FedRecStrategy(Strategy):
    """FedAvg of shared backbone parameters, weighted by local examples, with per-user evaluation.

    Parameters
    ----------
    cfg : RunConfig
        The parsed run config (rounds, sampling, evaluation cadence, patience, seed).
    shared_shapes : dict[str, tuple[int, ...]]
        Name and shape of every shared parameter; uploads that differ are rejected.
    users : dict[int, int]
        Node id -> user id, learned by ``server_app.nodes.connect_nodes``.
    item_tables : tuple[str, ...]
        The shared ``(n_items, d)`` tables, aggregated row by row (``item-aggregation``).
    """

    def __init__(self, cfg: RunConfig, shared_shapes: dict[str, tuple[int, ...]],
                 users: dict[int, int], item_tables: tuple[str, ...] = ()) -> None:
        self.cfg = cfg
        self.shared_shapes = shared_shapes
        self.item_tables = item_tables
        self.users = users
        self.history = RunHistory(cfg.select_metric, cfg.patience)
        self._rng = random.Random(cfg.seed)
        self._round_start = 0.0
        self._empty_rounds = 0  # consecutive rounds without an accepted update
        self._secure: SecAggPlusRound | None = None  # this round's SecAgg+ state, when on
        self.broadcast: dict[str, np.ndarray] = {}  # the shared parts sent this round
        self.checkpoint_path: Path | None = None  # written after every round when set
        self.round_offset = 0  # rounds done before a resume: Flower's loop restarts at 1
        self.final_shared: dict[str, np.ndarray] = {}  # the model the final evaluation sees

    @classmethod
    def check(cls, cfg: RunConfig, dataset: Dataset) -> None:
        """Raise a clear error for settings this strategy cannot run with, before any training."""

    @classmethod
    def for_run(cls, cfg: RunConfig, template: Backbone, dataset: Dataset,
                users: dict[int, int]) -> FedRecStrategy:
        """Build the strategy for a run; ``template`` is a backbone giving the shared shapes."""
        return cls(cfg, {k: v.shape for k, v in template.shared_arrays().items()}, users,
                   shared_item_tables(template))

    # --- hooks for strategies built on this one -------------------------------------------------
    def payload(self, server_round: int, user: int) -> ArrayRecord | None:
        """Extra per-user record sent with a training message (GFMFR's group teacher), and with
        evaluation messages when there are new items to score (cold start)."""
        return None

    def kept_from(self, upload: dict[str, np.ndarray]) -> dict[str, np.ndarray] | None:
        """What ``after_aggregate`` needs of one accepted upload (None: nothing). Replies are
        otherwise aggregated as they arrive and dropped, so keep as little as possible."""
        return None

    def after_aggregate(self, server_round: int, uploads: dict[int, dict[str, np.ndarray]],
                        aggregated: dict[str, np.ndarray],
                        cohorts: dict[int, tuple[int, dict, dict]] | None = None) -> None:
        """Server work after aggregation; ``uploads``: the kept parameters of every accepted
        upload (under secure aggregation: the grouping descriptor a client sent), keyed by
        user; ``cohorts``: under secure aggregation, each cohort's (trainers, summed changes,
        trained-row counts)."""

    # --- checkpoints -----------------------------------------------------------------------------
    def state(self) -> tuple[dict[str, np.ndarray], dict]:
        """Everything needed to continue the run exactly: (arrays, JSON-able meta)."""
        meta = {"history": self.history.to_dict(), "rng": _rng_state(self._rng)}
        return {}, meta

    def restore(self, arrays: dict[str, np.ndarray], meta: dict) -> None:
        self.history.load_dict(meta["history"])
        self._rng.setstate(_rng_from_state(meta["rng"]))

    def save_checkpoint(self, server_round: int, shared: dict[str, np.ndarray]) -> None:
        if self.checkpoint_path is None:
            return
        arrays, meta = self.state()
        save_checkpoint(self.checkpoint_path, {**arrays, **with_prefix("shared", shared)},
                        {**meta, "round": server_round, "identity": self.cfg.identity()})

    @staticmethod
    def check_resumable(path: Path, cfg: RunConfig, simulated: bool = False) -> dict:
        """The checkpoint's meta, if ``cfg`` may continue it (call before anything trains).

        Refuses a run config that differs from the checkpoint's in anything that shapes the
        model or the data (it would continue a different experiment), one that drops the
        client-state-dir the checkpointed run kept users' private parameters in, and, in a
        simulation, a run that kept them in memory only: its users would restart from the
        initial model under a trained shared model (validation HR@50 fell from 0.32 to 0.23 on
        such a resume), which is not the run continued. A deployment's SuperNodes keep them in
        their own ``state-dir``."""
        _, meta = load_checkpoint(path)
        stored, now = meta.get("identity", {}), cfg.identity()
        if simulated and not stored.get("client-state-dir"):
            raise ValueError(f"cannot resume {path.parent.name}: it ran without client-state-dir, "
                             "so its users' private parameters lived only in the simulation's "
                             "memory and are gone; resumed, every user would restart from the "
                             "initial model under the trained shared model. Start it again "
                             f"(delete {path.parent} or choose another run-name), and set "
                             "client-state-dir on runs you may want to resume.")
        differ = {k: (v, now[k]) for k, v in stored.items()
                  if k in now and k != "client-state-dir" and now[k] != v}
        if differ:
            shown = ", ".join(f"{k}={old!r} (now {new!r})" for k, (old, new) in differ.items())
            raise ValueError(f"cannot resume {path.parent.name}: its checkpoint was made with "
                             f"{shown}. Resume with the same values, or start a new run with "
                             "another run-name.")
        if stored.get("client-state-dir") and not cfg.client_state_dir:
            raise ValueError(f"cannot resume {path.parent.name} without client-state-dir: the "
                             f"run kept users' private parameters in "
                             f"{stored['client-state-dir']!r}; without it every user would "
                             "restart from the initial model. Set client-state-dir to it.")
        return meta

    def resume(self) -> tuple[int, dict[str, np.ndarray]]:
        """Load the checkpoint: returns (last completed round, the global shared parts)."""
        arrays, meta = load_checkpoint(self.checkpoint_path)
        self.restore(arrays, meta)
        self.round_offset = int(meta["round"])
        return self.round_offset, strip_prefix("shared", arrays)

    # --- Flower hooks ---------------------------------------------------------------------------
    def summary(self) -> None:
        log(INFO, "\t├──> %s: %d users, fraction-train %.2f, eval every %d round(s)",
            type(self).__name__, len(self.users), self.cfg.fraction_train, self.cfg.eval_every)
        log(INFO, "\t└──> shared parameters: %s",
            ", ".join(f"{k}{list(v)}" for k, v in self.shared_shapes.items()))

    def configure_train(self, server_round: int, arrays: ArrayRecord, config: ConfigRecord,
                        grid: Grid) -> Iterable[Message]:
        server_round += self.round_offset
        self._round_start = time.perf_counter()
        if self.history.stopped_after is not None:
            return []
        self.broadcast = from_record(arrays)
        arrays = self._on_wire(arrays)
        nodes = sorted(self.users, key=self.users.get)
        count = max(1, round(len(nodes) * self.cfg.fraction_train))
        sampled = set(self._rng.sample(nodes, count)) if count < len(nodes) else set(nodes)
        evaluate = self._evaluation_due(server_round - 1)
        secure = self._start_secure_round(server_round, sampled, grid)
        messages = []
        for node in nodes:
            masking = secure.collect_config(node) if secure is not None else None
            if secure is not None and masking is None:
                sampled.discard(node)  # dropped out of the key exchange: it cannot train now
            if node not in sampled and not evaluate:
                continue
            train = node in sampled
            content = RecordDict({
                p.SHARED: arrays,
                p.CONFIG: ConfigRecord({p.SERVER_ROUND: server_round, p.DO_TRAIN: train,
                                        p.DO_EVALUATE: evaluate,
                                        p.STATE_ROUND: server_round - 1}),
            })
            # the group payload also scores new items when evaluating (cold start)
            wanted = train or (evaluate and self.cfg.cold_items > 0)
            extra = self.payload(server_round, self.users[node]) if wanted else None
            if extra is not None:
                content[p.GROUP] = extra
            if train and masking is not None:
                content[CONFIGS] = masking
            kind = MessageType.TRAIN if train else MessageType.EVALUATE
            messages.append(Message(content, dst_node_id=node, message_type=kind))
        return messages

    def cohorts(self, nodes: set[int]) -> dict[int, list[int]]:
        """The trainers whose updates secure aggregation sums together (GFMFR: by group)."""
        return {0: sorted(nodes)}

    def _start_secure_round(self, server_round: int, sampled: set[int], grid: Grid
                            ) -> SecAggPlusRound | None:
        """Steps 0-1 of SecAgg+ with this round's trainers (None when it is off). With fewer
        trainers than a secure sum needs, nobody trains (``sampled`` is emptied): the round counts
        as one without updates, never as one that shows the server a single update."""
        self._secure = None
        if not self.cfg.secure:
            return None
        if len(sampled) < MIN_COHORT:
            log(WARNING, "round %d: %d clients sampled; secure aggregation needs at least %d, so "
                "nobody trains this round (raise fraction-train, connect more nodes, or set "
                "secure-aggregation=false)", server_round, len(sampled), MIN_COHORT)
            sampled.clear()
            return None
        tic = time.perf_counter()
        self._secure = SecAggPlusRound(grid, self.cohorts(sampled), server_round,
                                       self.cfg.round_timeout, self._rng.getrandbits(64))
        self._secure.setup_and_share_keys()
        record = self.history.at(server_round)
        record.server_seconds["secure-setup"] = time.perf_counter() - tic
        return self._secure

    def _secure_sums(self, server_round: int, mean: UpdateMean
                     ) -> dict[int, tuple[int, dict[str, np.ndarray], dict[str, np.ndarray]]]:
        """Step 3 of SecAgg+: every cohort's (trainers, summed changes, trained-row counts),
        added to ``mean``; empty when the masks could not be removed (logged)."""
        tic = time.perf_counter()
        try:
            sums = self._secure.unmask()
        except SecureAggregationFailed as error:
            log(WARNING, "round %d: secure aggregation failed: %s; the model is left unchanged",
                server_round, error)
            return {}
        finally:
            self.history.at(server_round).server_seconds["secure-unmask"] = (
                time.perf_counter() - tic)
        out = {}
        for cohort, (n, vector) in sums.items():
            changes, trained = decode(vector, self.shared_shapes, self.item_tables)
            mean.add_sums(n, changes, trained)
            out[cohort] = (n, changes, trained)
        return out

    def aggregate_train(self, server_round: int, replies: Iterable[Message]
                        ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        server_round += self.round_offset
        if self.history.stopped_after is not None and server_round > self.history.stopped_after + 1:
            return None, None  # early-stopped: the remaining rounds are empty
        record = self.history.at(server_round)
        mean = UpdateMean(self.broadcast, self.item_tables, self.cfg.item_aggregation == "rows",
                          self.cfg.dense_weights == "examples")
        kept, evaluations, losses = {}, {}, {}
        masked: dict[int, Reply] = {}  # secure aggregation: replies whose masked update counts
        first_cause = None
        for reply in replies:  # one at a time: a round never holds every upload
            if reply.has_error():
                record.failed += 1
                first_cause = first_cause or reply.error.reason
                if record.failed <= LOGGED_PER_ROUND:
                    log(WARNING, "round %d: node %d failed: %s", server_round,
                        reply.metadata.src_node_id, reply.error.reason)
                continue
            got = read_reply(reply, self.users, self.broadcast, self.shared_shapes,
                             self.cfg.update_norm_limit, self.cfg.update_clip)
            for key in (p.TRAIN_SECONDS, p.EVAL_SECONDS):
                record.client_seconds[key] = (record.client_seconds.get(key, 0.0)
                                              + got.metrics.get(key, 0.0))
            if got.evaluation is not None and got.user is not None:
                evaluations[got.user] = got.evaluation
            if got.problem:
                record.rejected += 1
                first_cause = first_cause or f"update rejected: {got.problem}"
                if record.rejected <= LOGGED_PER_ROUND:
                    log(WARNING, "round %d: rejected the update of user %s (node %d): %s",
                        server_round, got.user, reply.metadata.src_node_id, got.problem)
            if self._secure is not None and got.problem is None and self._secure.add(reply):
                masked[got.user] = got
                continue
            if got.upload is None:
                continue
            tic = time.perf_counter()
            mean.add(got.upload, got.weight, got.rows)
            record.server_seconds["aggregate"] = (record.server_seconds.get("aggregate", 0.0)
                                                  + time.perf_counter() - tic)
            part = self.kept_from(got.upload)
            if part is not None:
                kept[got.user] = part
            losses[got.user] = _losses(got)
        if max(record.failed, record.rejected) > LOGGED_PER_ROUND:
            log(WARNING, "round %d: %d clients failed and %d updates were rejected in all (the "
                "first %d of each are shown above)", server_round, record.failed,
                record.rejected, LOGGED_PER_ROUND)
        self.history.record_evaluation(server_round - 1, evaluations)
        cohort_sums = self._secure_sums(server_round, mean) if masked else {}
        if cohort_sums:
            for user, got in masked.items():
                if got.descriptor is not None:
                    kept[user] = got.descriptor
                losses[user] = _losses(got)
        self._empty_rounds = 0 if mean.count else self._empty_rounds + 1
        if self._empty_rounds > self.cfg.max_failed_rounds:
            self.save_checkpoint(server_round, self.broadcast)
            raise RunFailed(f"round {server_round}: no client update was accepted in "
                            f"{self._empty_rounds} consecutive round(s) (this round: "
                            f"{record.failed} failed, {record.rejected} rejected); the run "
                            f"stops instead of reporting an untrained model. First cause: "
                            f"{first_cause or 'no replies arrived'}. (max-failed-rounds="
                            f"{self.cfg.max_failed_rounds}; resume=true continues from the last "
                            "checkpoint once the cause is fixed.)")
        if mean.count < self.cfg.min_replies:
            log(WARNING, "round %d: %d accepted updates, fewer than min-replies %d: the model "
                "is left unchanged", server_round, mean.count, self.cfg.min_replies)
            record.seconds = time.perf_counter() - self._round_start
            self._log_round(server_round)
            self.save_checkpoint(server_round, self.broadcast)
            return None, None
        aggregated = mean.result(self.cfg.server_lr_at(server_round))
        self.after_aggregate(server_round, kept, aggregated, cohort_sums)
        record.trained = mean.count
        record.train_loss, record.kd_loss, record.kd_weight = (
            float(v) for v in np.mean([losses[u] for u in sorted(losses)], 0))
        record.seconds = time.perf_counter() - self._round_start
        self._log_round(server_round)
        self.save_checkpoint(server_round, aggregated)
        return to_record(aggregated), MetricRecord({p.TRAIN_LOSS: record.train_loss})

    def configure_evaluate(self, server_round: int, arrays: ArrayRecord, config: ConfigRecord,
                           grid: Grid) -> Iterable[Message]:
        """Evaluate the final model (or the last one before early stopping) on every user."""
        server_round += self.round_offset
        last = self.cfg.num_server_rounds if self.history.stopped_after is None else None
        if server_round != last:
            return []
        self._round_start = time.perf_counter()
        self.final_shared = from_record(arrays)
        config = ConfigRecord({p.SERVER_ROUND: server_round, p.DO_TRAIN: False,
                               p.DO_EVALUATE: True, p.STATE_ROUND: server_round})
        arrays = self._on_wire(arrays)
        messages = []
        for node in self.users:
            content = RecordDict({p.SHARED: arrays, p.CONFIG: config})
            # GFMFR scores new items (cold start) with its group payload
            extra = self.payload(server_round, self.users[node]) if self.cfg.cold_items else None
            if extra is not None:
                content[p.GROUP] = extra
            messages.append(Message(content, dst_node_id=node,
                                    message_type=MessageType.EVALUATE))
        return messages

    def aggregate_evaluate(self, server_round: int, replies: Iterable[Message]
                           ) -> MetricRecord | None:
        server_round += self.round_offset
        evaluations = {}
        for reply in replies:
            if reply.has_error():
                log(WARNING, "final evaluation: node %d failed: %s", reply.metadata.src_node_id,
                    reply.error.reason)
                continue
            got = read_reply(reply, self.users, self.broadcast, self.shared_shapes,
                             self.cfg.update_norm_limit, self.cfg.update_clip)
            if got.evaluation is not None:
                evaluations[got.user] = got.evaluation
        self.history.record_evaluation(server_round, evaluations)
        record = self.history.rounds.get(server_round)
        if record is None or record.val is None:
            return None
        self._log_evaluation(server_round, time.perf_counter() - self._round_start)
        self.save_checkpoint(server_round, self.final_shared)
        return MetricRecord({p.metric_key(p.VAL, k): v for k, v in record.val.items()})

    # --- helpers --------------------------------------------------------------------------------
    def _on_wire(self, arrays: ArrayRecord) -> ArrayRecord:
        """The shared parts as sent: one record for all nodes, in ``wire-dtype``."""
        if self.cfg.wire_dtype == "float32":
            return arrays
        return to_record({k: v.astype(self.cfg.wire_dtype) for k, v in from_record(arrays).items()})

    def _evaluation_due(self, after_round: int) -> bool:
        return after_round % self.cfg.eval_every == 0 and after_round < self.cfg.num_server_rounds

    def _log_round(self, server_round: int) -> None:
        record = self.history.rounds[server_round]
        line = (f"[round {server_round}/{self.cfg.num_server_rounds}] {record.seconds:.2f} s | "
                f"{record.trained} trained")
        if record.failed or record.rejected:
            line += f", {record.failed} failed, {record.rejected} rejected"
        if record.train_loss is not None:
            line += f" | loss {record.train_loss:.4f}"
            if record.kd_loss:
                line += f" kd {record.kd_loss:.4f} x {record.kd_weight:.3f}"
        previous = self.history.rounds.get(server_round - 1)
        if previous is not None and previous.val is not None:
            line += " | " + _metrics_line(previous.val, f"val after round {server_round - 1}")
        left = self.history.seconds_left(server_round, self.cfg.num_server_rounds)
        if left is not None:
            line += f" | {tqdm.format_interval(left)} left"
        log(INFO, line)
        if self.history.stopped_after is not None and self.history.stopped_after == server_round - 1:
            log(INFO, "early stopping: no %s improvement in %d evaluations; best round %s",
                self.cfg.select_metric, self.cfg.patience, self.history.best_round)

    def _log_evaluation(self, server_round: int, seconds: float) -> None:
        record = self.history.rounds[server_round]
        log(INFO, "[final evaluation] %.2f s | %s", seconds,
            _metrics_line(record.val, f"val after round {server_round}"))


def _losses(got: Reply) -> list[float]:
    return [got.metrics.get(k, 0.0) for k in (p.TRAIN_LOSS, p.KD_LOSS, p.KD_WEIGHT)]


def shared_item_tables(model: Backbone) -> tuple[str, ...]:
    return tuple(t for t in model.ITEM_TABLES if t in model.SHARED)


def _rng_state(rng: random.Random) -> list:
    version, internal, gauss = rng.getstate()
    return [version, list(internal), gauss]


def _rng_from_state(state: list) -> tuple:
    return state[0], tuple(state[1]), state[2]


def _metrics_line(metrics: dict[str, float], label: str) -> str:
    shown = ("HR@10", "HR@50", "NDCG@10", "NDCG@50")
    return f"{label}: " + " ".join(f"{k} {metrics[k]:.4f}" for k in shown)
