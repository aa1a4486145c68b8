"""The client's side of secure aggregation: Flower's SecAgg+ client mod, and the update it masks.

``secure_aggregation_mod`` hands a training message to Flower's ``secaggplus_mod`` when the server
runs SecAgg+ for it (the message carries the protocol's record) and passes every other message on
untouched. At the protocol's collect step the mod calls the app, which then replies in the layout
the mod reads (``secure_reply``): the update as one vector (``strategies.secure_update``), weight 1.
The mod masks the vector and clears every array record of the reply, so only the masked vector,
the metrics and, for GFMFR, the grouping descriptor leave the device.
"""

from __future__ import annotations

import numpy as np
from flwr.app import ConfigRecord, Context, Message, MessageType, RecordDict
from flwr.client.mod import secaggplus_mod
from flwr.clientapp.typing import ClientAppCallable
from flwr.common import Code, FitRes, Status, ndarray_to_bytes, ndarrays_to_parameters
from flwr.compat.common import recorddict_compat as compat

from strategies import protocol as p
from strategies.secure_aggregation import CONFIGS
from strategies.secure_update import encode


def requested(msg: Message) -> bool:
    return msg.metadata.message_type == MessageType.TRAIN and CONFIGS in msg.content.config_records


def secure_aggregation_mod(msg: Message, context: Context, call_next: ClientAppCallable
                           ) -> Message:
    if not requested(msg):
        return call_next(msg, context)
    return secaggplus_mod(msg, context, call_next)


def secure_reply(change: dict[str, np.ndarray], trained: dict[str, np.ndarray],
                 tables: tuple[str, ...], metrics: RecordDict,
                 descriptor: dict[str, np.ndarray] | None) -> RecordDict:
    """``change``: the dense change of every shared parameter; ``trained``: per shared item table
    the ids of the rows trained; ``descriptor``: what GFMFR groups this client by (sent in the
    clear, docs/privacy.md)."""
    shapes = {k: v.shape for k, v in change.items()}
    vector = encode(change, trained, shapes, tables)
    fitres = FitRes(Status(Code.OK, ""), ndarrays_to_parameters(vector), 1, {})
    content = compat.fitres_to_recorddict(fitres, keep_input=False)
    for name, record in metrics.metric_records.items():
        content[name] = record
    if descriptor is not None:
        content[p.DESCRIPTOR] = ConfigRecord({k: ndarray_to_bytes(np.asarray(v, np.float32))
                                              for k, v in descriptor.items()})
    return content
