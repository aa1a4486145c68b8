"""Reading a client's reply defensively: what it uploads, reports and why it may be refused.

Replies come from devices the server does not control: any field may be missing, mistyped,
non-finite or absurd. Nothing here raises on bad content; a refused upload or evaluation carries
the reason, which the strategy logs and counts.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from flwr.app import ConfigRecord, Message
from flwr.common import bytes_to_ndarray

from strategies import protocol as p
from strategies.aggregation import densify, screen_upload
from strategies.privacy import clip_update, update_norm
from strategies.records import from_record

EVALUATION_KEYS = tuple(p.metric_key(s, m) for s in (p.VAL, p.TEST) for m in p.RANKING_METRICS)


@dataclass
class Reply:
    user: int | None
    metrics: dict[str, float] = field(default_factory=dict)  # finite scalar metrics only
    evaluation: dict[str, float] | None = None  # complete, valid ranking metrics
    upload: dict[str, np.ndarray] | None = None  # accepted (dense, clipped) shared parts
    weight: float = 0.0
    rows: dict[str, np.ndarray] = field(default_factory=dict)  # item-table rows the client trained
    problem: str | None = None  # why the upload was refused
    descriptor: dict[str, np.ndarray] | None = None  # secure aggregation: GFMFR's grouping input


def read_reply(reply: Message, users: dict[int, int], broadcast: dict[str, np.ndarray],
               shapes: dict[str, tuple[int, ...]], norm_limit: float, clip: float) -> Reply:
    """Parse one successful reply (``reply.has_error()`` is False)."""
    node = reply.metadata.src_node_id
    out = Reply(users.get(node))
    record = reply.content.metric_records.get(p.METRICS)
    raw = dict(record) if record is not None else {}
    out.metrics = {k: float(v) for k, v in raw.items()
                   if isinstance(v, int | float) and math.isfinite(float(v))}
    if out.user is None:
        out.problem = f"node {node} is not a known SuperNode of this run"
        return out
    if all(k in out.metrics and 0.0 <= out.metrics[k] <= 1.0 for k in EVALUATION_KEYS):
        out.evaluation = {k: out.metrics[k] for k in EVALUATION_KEYS}
        cold = [p.metric_key(p.COLD, m) for m in p.RANKING_METRICS]  # only users with new items
        if all(k in out.metrics and 0.0 <= out.metrics[k] <= 1.0 for k in cold):
            out.evaluation.update({k: out.metrics[k] for k in cold})
    if p.DESCRIPTOR in reply.content.config_records:
        out.descriptor, out.problem = _descriptor(reply.content.config_records[p.DESCRIPTOR])
    if p.SHARED not in reply.content.array_records:
        return out
    raw_arrays = from_record(reply.content.array_records[p.SHARED])
    arrays, problem = densify(raw_arrays, broadcast)
    out.weight = out.metrics.get(p.NUM_EXAMPLES, 0.0)
    problem = problem or screen_upload(arrays, shapes, out.weight)
    if problem is None:
        norm = update_norm(arrays, broadcast)
        if norm > norm_limit:
            problem = f"update norm {norm:.3g} exceeds update-norm-limit {norm_limit:.3g}"
    if problem is None:
        out.upload = clip_update(arrays, broadcast, clip)
        out.rows = {k[: -len(p.ROWS)]: v for k, v in raw_arrays.items() if k.endswith(p.ROWS)}
    out.problem = problem
    return out


def _descriptor(record: ConfigRecord) -> tuple[dict[str, np.ndarray] | None, str | None]:
    """The grouping descriptor a client sent in the clear, or the reason it is unusable."""
    try:
        out = {k: bytes_to_ndarray(v) for k, v in record.items()}
    except Exception as error:  # noqa: BLE001 - bytes from a device: anything can be wrong
        return None, f"unreadable grouping descriptor ({type(error).__name__})"
    bad = [k for k, v in out.items() if v.dtype.kind != "f" or not np.isfinite(v).all()]
    if bad:
        return None, f"grouping descriptor {', '.join(bad)} is not finite floats"
    return out, None
