"""Secure aggregation of uploads: the server learns the sum of a cohort's updates, never one.

The clients run Flower's own SecAgg+ client (``flwr.client.mod.secaggplus_mod``, unchanged; see
``client_app.secure``). This module is the server's side of the same protocol, written for the
Message-API strategy of this app: Flower 1.42's ``SecAggPlusWorkflow`` drives a legacy
``Strategy`` (``FitIns``/``FitRes`` of one flat parameter list) from a ``LegacyContext``, while
``FedRecStrategy`` sends named tables, evaluates in the same exchange and aggregates replies as
they arrive. The protocol is Bonawitz et al.'s with SecAgg+'s neighbour rings (Bell et al. 2020):

0. setup: every trainer of a cohort makes two key pairs and sends the public halves;
1. share keys: each gets its ring neighbours' public keys and returns, encrypted for each
   neighbour, Shamir shares of its private-mask seed and of its mask key;
2. collect: the training message carries the shares meant for the node; the client trains and
   returns its quantised update plus a private mask plus pairwise masks (one per neighbour,
   opposite signs on the two ends), which the server sums as replies arrive;
3. unmask: every surviving node returns the shares it holds; the server rebuilds the private
   masks of those who answered and the pairwise masks that point to those who dropped in step
   2, removes them, and only the sum remains.

Several cohorts (GFMFR's groups) run in the same exchanges, each on its own ring: the server
learns each cohort's sum. A cohort smaller than ``MIN_COHORT`` is never summed alone.

What it costs and what the server still learns: docs/privacy.md.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import cast

import numpy as np
from flwr.app import ConfigRecord, Message, MessageType, RecordDict
from flwr.common import bytes_to_ndarray
from flwr.common.secure_aggregation.crypto.symmetric_encryption import generate_shared_key
from flwr.common.secure_aggregation.ndarrays_arithmetic import (
    factor_extract,
    parameters_addition,
    parameters_mod,
    parameters_subtraction,
)
from flwr.common.secure_aggregation.quantization import dequantize
from flwr.common.secure_aggregation.secaggplus_constants import RECORD_KEY_CONFIGS, Key, Stage
from flwr.common.secure_aggregation.secaggplus_utils import pseudo_rand_gen
from flwr.serverapp import Grid
from flwr.supercore.primitives.asymmetric import bytes_to_private_key, bytes_to_public_key

from strategies.shamir import combine_shares

CONFIGS = RECORD_KEY_CONFIGS  # the record the SecAgg+ client reads and writes
MIN_COHORT = 3  # fewer trainers would let the server subtract one user's update from a sum
MOD_RANGE = 1 << 32  # the ring the masked vectors live in (Flower's default)
CLIPPING_RANGE = 2.0  # every entry of an update is clipped to [-2, 2] before quantisation
# Setup, share keys and unmask are seconds of work on a node: such a stage stops waiting once
# no reply has come for this long (never longer than round-timeout), and the nodes still silent
# count as dropped. Training (collect) keeps round-timeout. A message that a SuperNode pulled and
# then died on is answered NODE_UNAVAILABLE only if the ServerApp polls while the SuperLink
# counts the node offline; restarted with the same key first, the node counts as online again and
# the message is never answered (docs/privacy.md, "Secure aggregation").
STAGE_IDLE_TIMEOUT = 30.0
POLL_SECONDS = 0.2  # how often a stage asks the SuperLink for replies


class SecureAggregationFailed(RuntimeError):
    """Too few nodes survived for the masks to be removed: the round keeps the model unchanged."""


def quantization_range(n: int) -> int:
    """The largest power of two such that ``n`` quantised vectors sum without wrapping round."""
    return 1 << int(math.floor(math.log2((MOD_RANGE - 1) // max(n, 1))))


def ring_size(n: int) -> int:
    """Neighbours per node, itself included (odd, about ``2 log2 n``; all when ``n`` is small):
    SecAgg+'s logarithmic rings keep each client's work and the server's unmasking cheap."""
    if n <= 7:
        return n
    k = 2 * math.ceil(math.log2(n)) + 1
    return min(n, k)


@dataclass
class Cohort:
    """One ring of trainers whose updates are summed together."""

    nodes: set[int]
    share_num: int = 0
    threshold: int = 0
    target_range: int = 0
    neighbours: dict[int, set[int]] = field(default_factory=dict)
    public_keys: dict[int, tuple[bytes, bytes]] = field(default_factory=dict)
    forward: dict[int, tuple[list[bytes], list[int]]] = field(default_factory=dict)
    shared: set[int] = field(default_factory=set)  # distributed their shares (step 1)
    active: set[int] = field(default_factory=set)  # sent a masked vector (step 2)
    masked: list[np.ndarray] | None = None


class SecAggPlusRound:
    """The server's side of one round of SecAgg+ over disjoint cohorts of node ids.

    ``setup_and_share_keys`` runs steps 0-1 (call it while configuring the round),
    ``collect_config`` is what each training message must carry, ``add`` takes each training
    reply, and ``unmask`` runs step 3 and returns every cohort's sum. ``timeout`` (round-timeout)
    bounds each of those stages; ``idle_timeout`` ends one early once no reply has come for that
    long (``stage_timeouts``).
    """

    def __init__(self, grid: Grid, cohorts: dict[int, Iterable[int]], server_round: int,
                 timeout: float | None = None, seed: int | None = None,
                 idle_timeout: float | None = None) -> None:
        self.grid = grid
        self.server_round = server_round
        self.timeout, self.idle_timeout = stage_timeouts(timeout, idle_timeout)
        self._rng = random.Random(seed)
        self.cohorts = {c: Cohort(set(nodes)) for c, nodes in cohorts.items()}
        self._cohort_of = {n: c for c, cohort in self.cohorts.items() for n in cohort.nodes}
        small = [c for c, cohort in self.cohorts.items() if len(cohort.nodes) < MIN_COHORT]
        if small:
            raise ValueError(f"secure aggregation needs at least {MIN_COHORT} trainers per "
                             f"cohort; cohorts {small} have fewer")

    # --- step 0 and 1 ---------------------------------------------------------------------------
    def setup_and_share_keys(self) -> None:
        for cohort in self.cohorts.values():
            n = len(cohort.nodes)
            cohort.share_num = ring_size(n)
            cohort.threshold = cohort.share_num // 2 + 1
            cohort.target_range = quantization_range(n)
            order = sorted(cohort.nodes)
            self._rng.shuffle(order)
            half = cohort.share_num // 2
            cohort.neighbours = {node: {order[(i + o) % n] for o in range(-half, half + 1)}
                                 for i, node in enumerate(order)}
        setup = {}
        for node, c in self._cohort_of.items():
            cohort = self.cohorts[c]
            setup[node] = ConfigRecord({
                Key.STAGE: Stage.SETUP, Key.SAMPLE_NUMBER: len(cohort.nodes),
                Key.SHARE_NUMBER: cohort.share_num, Key.THRESHOLD: cohort.threshold,
                Key.CLIPPING_RANGE: CLIPPING_RANGE, Key.TARGET_RANGE: cohort.target_range,
                Key.MOD_RANGE: MOD_RANGE, Key.MAX_WEIGHT: 1.0})
        for node, configs in self._exchange(setup):
            self.cohorts[self._cohort_of[node]].public_keys[node] = (
                cast(bytes, configs[Key.PUBLIC_KEY_1]), cast(bytes, configs[Key.PUBLIC_KEY_2]))

        share = {}
        for node, c in self._cohort_of.items():
            cohort = self.cohorts[c]
            if node not in cohort.public_keys:
                continue
            keys = {str(m): list(cohort.public_keys[m]) for m in cohort.neighbours[node]
                    if m in cohort.public_keys}
            share[node] = ConfigRecord({**keys, Key.STAGE: Stage.SHARE_KEYS})
        routed: dict[int, tuple[list[bytes], list[int]]] = {}
        for node, configs in self._exchange(share):
            self.cohorts[self._cohort_of[node]].shared.add(node)
            dsts = cast(list[int], configs[Key.DESTINATION_LIST])
            texts = cast(list[bytes], configs[Key.CIPHERTEXT_LIST])
            for dst, text in zip(dsts, texts, strict=True):
                if self._cohort_of.get(dst) == self._cohort_of[node]:
                    box = routed.setdefault(dst, ([], []))
                    box[0].append(text)
                    box[1].append(node)
        for cohort in self.cohorts.values():
            cohort.forward = {n: routed.get(n, ([], [])) for n in cohort.shared}

    def collect_config(self, node: int) -> ConfigRecord | None:
        """The SecAgg+ record a node's training message carries (None: it dropped out earlier,
        or too few of its neighbours are left, so it must not train this round)."""
        c = self._cohort_of.get(node)
        if c is None or node not in self.cohorts[c].shared:
            return None
        cohort = self.cohorts[c]
        texts, sources = cohort.forward[node]
        if len(texts) + 1 < cohort.threshold:
            return None
        return ConfigRecord({Key.STAGE: Stage.COLLECT_MASKED_VECTORS,
                             Key.CIPHERTEXT_LIST: texts, Key.SOURCE_LIST: sources})

    # --- step 2 ---------------------------------------------------------------------------------
    def add(self, reply: Message) -> bool:
        """Add a training reply's masked vector to its cohort's sum; False if it carries none."""
        node = reply.metadata.src_node_id
        c = self._cohort_of.get(node)
        if c is None or reply.has_error() or CONFIGS not in reply.content.config_records:
            return False
        raw = reply.content.config_records[CONFIGS].get(Key.MASKED_PARAMETERS)
        if not isinstance(raw, list):
            return False
        vector = [bytes_to_ndarray(b) for b in cast(list[bytes], raw)]
        cohort = self.cohorts[c]
        if cohort.masked is not None and [v.shape for v in vector] != [
                v.shape for v in cohort.masked]:
            return False
        cohort.masked = vector if cohort.masked is None else parameters_mod(
            parameters_addition(cohort.masked, vector), MOD_RANGE)
        cohort.active.add(node)
        return True

    # --- step 3 ---------------------------------------------------------------------------------
    def unmask(self) -> dict[int, tuple[int, list[np.ndarray]]]:
        """Every cohort's ``(number of updates, their sum)`` (cohorts where nobody sent an update
        are left out). Raises ``SecureAggregationFailed`` when a cohort's masks cannot be
        removed (too many nodes dropped)."""
        requests = {}
        for cohort in self.cohorts.values():
            if cohort.masked is None:
                continue
            dead = cohort.shared - cohort.active
            for node in cohort.active:
                ring = cohort.neighbours[node]
                requests[node] = ConfigRecord({
                    Key.STAGE: Stage.UNMASK, Key.ACTIVE_NODE_ID_LIST: sorted(ring & cohort.active),
                    Key.DEAD_NODE_ID_LIST: sorted(ring & dead)})
        shares: dict[int, list[bytes]] = {}
        for _, configs in self._exchange(requests):
            owners = cast(list[int], configs[Key.NODE_ID_LIST])
            for owner, piece in zip(owners, cast(list[bytes], configs[Key.SHARE_LIST]),
                                    strict=True):
                shares.setdefault(owner, []).append(piece)
        sums = {}
        for c, cohort in self.cohorts.items():
            if cohort.masked is None:
                continue
            sums[c] = (len(cohort.active), self._remove_masks(c, cohort, shares))
        return sums

    def _remove_masks(self, c: int, cohort: Cohort, shares: dict[int, list[bytes]]
                      ) -> list[np.ndarray]:
        vector = cohort.masked
        shapes = [v.shape for v in vector]
        for node in sorted(cohort.shared):
            pieces = shares.get(node, [])
            if len(pieces) < cohort.threshold:
                raise SecureAggregationFailed(
                    f"cohort {c}: {len(pieces)} key shares of node {node} came back, "
                    f"{cohort.threshold} are needed to remove its masks (too many nodes "
                    "dropped out during the round)")
            secret = combine_shares(pieces)
            if node in cohort.active:  # its private mask
                vector = parameters_subtraction(
                    vector, pseudo_rand_gen(secret, MOD_RANGE, shapes))
                continue
            for other in cohort.neighbours[node] & cohort.active:  # masks pointing to it
                key = generate_shared_key(bytes_to_private_key(secret),
                                          bytes_to_public_key(cohort.public_keys[other][0]))
                mask = pseudo_rand_gen(key, MOD_RANGE, shapes)
                vector = (parameters_addition(vector, mask) if node > other
                          else parameters_subtraction(vector, mask))
        vector = parameters_mod(vector, MOD_RANGE)
        factor, vector = factor_extract(vector)
        n = len(cohort.active)
        if int(factor) != n * cohort.target_range:  # every update carries weight 1
            raise SecureAggregationFailed(
                f"cohort {c}: the unmasked weight is {int(factor)}, expected "
                f"{n * cohort.target_range}: the masks did not cancel")
        offset = -(n - 1) * CLIPPING_RANGE
        return [v + offset for v in dequantize(vector, CLIPPING_RANGE, cohort.target_range)]

    # --- messages -------------------------------------------------------------------------------
    def _exchange(self, configs: dict[int, ConfigRecord]
                  ) -> list[tuple[int, ConfigRecord]]:
        """Send each node its SecAgg+ record; the ``(node, record)`` of every good reply that
        came before the stage ended (``wait_for_replies``). The records are small, so every
        message is pushed at once."""
        messages = [Message(RecordDict({CONFIGS: record}), dst_node_id=node,
                            message_type=MessageType.TRAIN, group_id=str(self.server_round))
                    for node, record in configs.items()]
        if not messages:
            return []
        pending = {i for i in self.grid.push_messages(messages) if i}
        out = []
        for reply in wait_for_replies(self.grid, pending, self.timeout, self.idle_timeout):
            if not reply.has_error() and CONFIGS in reply.content.config_records:
                out.append((reply.metadata.src_node_id, reply.content.config_records[CONFIGS]))
        return out


def stage_timeouts(round_timeout: float | None, idle_timeout: float | None = None
                   ) -> tuple[float | None, float]:
    """``(total, idle)`` limits of a setup, share-keys or unmask stage: the total is
    round-timeout; the idle limit is ``idle_timeout`` (default ``STAGE_IDLE_TIMEOUT``), never
    longer than round-timeout."""
    if idle_timeout is None:
        idle_timeout = STAGE_IDLE_TIMEOUT
    if round_timeout is not None and round_timeout <= 0:
        raise ValueError("round-timeout must be > 0")
    if idle_timeout <= 0:
        raise ValueError("a stage's idle timeout must be > 0")
    idle = idle_timeout if round_timeout is None else min(idle_timeout, round_timeout)
    return round_timeout, idle


def wait_for_replies(grid: Grid, pending: set[str], timeout: float | None, idle_timeout: float,
                     poll: float = POLL_SECONDS, clock=time.monotonic, sleep=time.sleep
                     ) -> list[Message]:
    """Pull the replies to ``pending`` message ids until every one came, ``timeout`` seconds
    passed, or none came for ``idle_timeout`` seconds; the replies that came (error replies
    included: a node the SuperLink knows is offline is answered at once)."""
    start = last = clock()
    out: list[Message] = []
    pending = set(pending)
    while pending:
        arrived = list(grid.pull_messages(pending))
        now = clock()
        if arrived:
            last = now
            out.extend(arrived)
            pending.difference_update(m.metadata.reply_to_message_id for m in arrived)
            continue
        if now - last >= idle_timeout or (timeout is not None and now - start >= timeout):
            break
        sleep(poll)
    return out
