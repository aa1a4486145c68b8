"""The wire protocol between ServerApp and ClientApp, written down once.

Every message name, record name and metric name that crosses the wire lives here; client and server
import these constants instead of spelling strings.
"""

from __future__ import annotations

# Record names inside a message's RecordDict
SHARED = "shared"  # ArrayRecord: shared model parts (server -> client, and the client's upload)
GROUP = "group"  # ArrayRecord: GFMFR distillation payload for the client's group (server -> client)
CONFIG = "config"  # ConfigRecord: per-round instructions (server -> client)
METRICS = "metrics"  # MetricRecord: training/evaluation results (client -> server)
DESCRIPTOR = "grouping"  # ConfigRecord: under secure aggregation, what GFMFR groups a client by
CHANGE_SUMMARY = "change-summary"  # in DESCRIPTOR: column sums of the item-table change (d,)

# Config keys (server -> client)
SERVER_ROUND = "server-round"
DO_TRAIN = "train"  # bool: train this round (False: evaluate only)
DO_EVALUATE = "evaluate"  # bool: evaluate the received model before training
STATE_ROUND = "state-round"  # int: the model to use is the one after this round (private parts)

# Metric keys (client -> server)
NUM_EXAMPLES = "num-examples"  # weight of the client's update
USER_ID = "user-id"  # pairs every metric with its user; never a node id
TRAIN_LOSS = "train-loss"
KD_LOSS = "kd-loss"
KD_WEIGHT = "kd-weight"
TRAIN_SECONDS = "train-seconds"  # local training time (for the benchmarks)
EVAL_SECONDS = "eval-seconds"  # local evaluation time

# GFMFR payload keys inside GROUP
GROUP_ID = "group-id"  # (1,) int
TEACHER_PROBS = "teacher-probs"  # (n_items,) p_k(i), when the backbone's head is shared
ITEM_CONTENT = "item-content"  # (n_items, 64) content vectors, sent with new items (cold start)
GROUP_ITEMS = "group-items"  # (n_items, d) Q_k, when the head is private (client applies its own)

# A sparse upload of item table T carries rows T (k, d) and their item ids under T + ROWS
ROWS = "@rows"

KS = (10, 20, 50)
RANKING_METRICS = tuple(f"{m}@{k}" for m in ("HR", "NDCG") for k in KS)
VAL = "val"
TEST = "test"
COLD = "cold"  # held-out interactions with new items (cold start), ranked among new items
SPLITS = (VAL, TEST, COLD)


def metric_key(split: str, metric: str) -> str:
    """Wire name of a ranking metric on a split, e.g. ``val-HR@10``."""
    return f"{split}-{metric}"


# Everything a client may report: counts, losses, timings and its own ranking metrics; never an
# item id, a score or a parameter (tests check every reply of every strategy against this).
CLIENT_METRICS = frozenset({USER_ID, NUM_EXAMPLES, TRAIN_LOSS, KD_LOSS, KD_WEIGHT, TRAIN_SECONDS,
                            EVAL_SECONDS, "num-users", "num-partitions",
                            *(metric_key(s, m) for s in SPLITS for m in RANKING_METRICS)})


