"""Index Flower 1.42's in-memory LinkState by destination node for the simulation engine.

Flower's simulation engine asks the in-memory LinkState, every 0.1 s and for every SuperNode,
for that node's next message (``vce_api.add_messages_to_queue``), and each ask walks every stored
message with a TTL and federation check per message: nodes x stored messages checks per pass,
under the GIL the ClientApp threads need. With 943 SuperNodes that was about 1.5 s of a
ml-100k round, and it grows with the square of the SuperNodes (docs/performance.md).
``install()`` keeps, per destination node, the ids of its stored messages, so an ask checks only
that node's messages. Same answers as Flower's own method: the same checks on the same messages
in the same order (``tests/test_linkstate_index.py`` compares both on one sequence of stores,
asks, expiries and deletions). Other nodes' expired messages are found when those nodes are
asked, as the engine asks every node each pass.

Installed by the ServerApp module, so it only changes the process that runs the ServerApp: the
simulation (engine and ServerApp share one in-memory LinkState there). A deployed SuperLink
never imports this code. Set ``GFMFR_STOCK_LINKSTATE=1`` to measure Flower's own scan.
"""

from __future__ import annotations

import os
from importlib.metadata import version
from logging import WARNING

from flwr.common import log, now
from flwr.server.superlink.linkstate.in_memory_linkstate import InMemoryLinkState

FLOWER_VERSION = "1.42.0"  # the methods replaced below are Flower 1.42.0's; see pyproject's pin
STOCK_STORE = InMemoryLinkState.store_message_ins
STOCK_GET = InMemoryLinkState.get_message_ins


def install() -> bool:
    """Replace the two methods on the class; idempotent. False where left stock (and why, logged)."""
    if os.environ.get("GFMFR_STOCK_LINKSTATE") == "1":
        return False
    if version("flwr") != FLOWER_VERSION:
        log(WARNING, "flwr %s is not the pinned %s: Flower's simulation message scan is left "
            "as is (slower with many SuperNodes)", version("flwr"), FLOWER_VERSION)
        return False
    InMemoryLinkState.store_message_ins = store_message_ins
    InMemoryLinkState.get_message_ins = get_message_ins
    return True


def _by_node(state: InMemoryLinkState) -> dict[int, dict[str, None]]:
    """node id -> ids of its stored messages, oldest first; built once from what is stored."""
    index = state.__dict__.get("_gfmfr_by_node")
    if index is None:
        index = {}
        for message_id, message in state.message_ins_store.items():
            index.setdefault(message.metadata.dst_node_id, {})[message_id] = None
        state.__dict__["_gfmfr_by_node"] = index
    return index


def store_message_ins(self: InMemoryLinkState, message):  # noqa: ANN001, ANN201 (Flower's)
    with self.lock:
        message_id = STOCK_STORE(self, message)
        if message_id is not None:
            _by_node(self).setdefault(message.metadata.dst_node_id, {})[message_id] = None
        return message_id


def get_message_ins(self: InMemoryLinkState, node_id: int, limit: int | None, *,
                    run_id: int | None = None) -> list:
    if limit is not None and limit < 1:
        raise AssertionError("`limit` must be >= 1")
    found = []
    with self.lock:
        ids = _by_node(self).get(node_id)
        for message_id in list(ids or ()):
            self._check_stored_messages({message_id})
            message = self.message_ins_store.get(message_id)
            if message is None:  # expired, deleted or its run stopped
                del ids[message_id]
                continue
            if (message.metadata.dst_node_id == node_id
                    and (run_id is None or message.metadata.run_id == run_id)
                    and message.metadata.delivered_at == ""):
                found.append(message)
            if limit and len(found) == limit:
                break
    delivered_at = now().isoformat()
    for message in found:
        message.metadata.delivered_at = delivered_at
    return found
