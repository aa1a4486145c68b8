"""The per-node index answers the simulation engine's asks exactly as Flower's own scan does."""

from __future__ import annotations

from dataclasses import replace
from uuid import uuid4

from flwr.app import Message, RecordDict
from flwr.common.constant import SUPERLINK_NODE_ID
from flwr.proto.task_pb2 import Task  # pylint: disable=no-name-in-module
from flwr.server.superlink.fleet.vce.vce_api import _register_nodes
from flwr.server.superlink.linkstate import InMemoryLinkState, LinkStateFactory
from flwr.server.superlink.linkstate.in_memory_linkstate import RunRecord
from flwr.supercore.constant import FLWR_IN_MEMORY_DB_NAME, NOOP_FEDERATION_ID
from flwr.supercore.object_store import ObjectStoreFactory
from flwr.supercore.run import Run
from flwr.superlink.federation import NoOpFederationManager

from server_app import linkstate_index

RUNS = (7, 8)


def _state() -> tuple[InMemoryLinkState, list[int]]:
    factory = LinkStateFactory(FLWR_IN_MEMORY_DB_NAME, NoOpFederationManager(),
                               ObjectStoreFactory())
    state = factory.state()
    for run_id in RUNS:  # registered as Flower's run_simulation registers its run
        state.run_ids[run_id] = RunRecord(
            run=replace(Run.create_empty(run_id), primary_task_id=100 + run_id,
                        federation_id=NOOP_FEDERATION_ID))
        state.task_store[100 + run_id] = Task(task_id=100 + run_id, run_id=run_id)
    return state, sorted(_register_nodes(5, factory))


def _message(message_id: str, node: int, run_id: int, ttl: float) -> Message:
    message = Message(RecordDict(), node, "train", ttl=ttl)
    fields = message.metadata.__dict__  # set by the SuperLink in a run; no public setters
    fields["_message_id"], fields["_run_id"] = message_id, run_id
    fields["_src_node_id"] = SUPERLINK_NODE_ID
    return message


def _ids(messages: list[Message]) -> list[str]:
    return [m.metadata.message_id for m in messages]


def test_index_answers_like_flowers_scan(flower_task):
    """One sequence of stores, asks, deletions and expiries on twin states, stock and indexed."""
    (stock, stock_nodes), (indexed, indexed_nodes) = _state(), _state()
    plan = [(str(uuid4()), i % 5, RUNS[i % 2], 600.0) for i in range(24)]

    def store(message_id, node, run_id, ttl):
        assert (linkstate_index.STOCK_STORE(stock, _message(message_id, stock_nodes[node],
                                                            run_id, ttl))
                == linkstate_index.store_message_ins(
                    indexed, _message(message_id, indexed_nodes[node], run_id, ttl)))

    def ask(node, limit, run_id=None):
        want = _ids(linkstate_index.STOCK_GET(stock, stock_nodes[node], limit, run_id=run_id))
        got = _ids(linkstate_index.get_message_ins(indexed, indexed_nodes[node], limit,
                                                   run_id=run_id))
        assert got == want
        return got

    for spec in plan[:12]:
        store(*spec)
    assert ask(0, 1) == [plan[0][0]]  # oldest first
    assert ask(0, 1) == [plan[5][0]]  # delivered ones are skipped
    assert len(ask(1, None)) == 3
    assert ask(2, None, run_id=RUNS[1]) == [plan[7][0]]
    assert ask(4, 1, run_id=RUNS[1]) == [plan[9][0]]
    assert ask(3, None, run_id=999) == []  # no message of that run
    for state in (stock, indexed):
        state.delete_messages({plan[2][0], plan[10][0]})
    for spec in plan[12:]:
        store(*spec)
    for state in (stock, indexed):  # plan[3] and plan[11] expire: created past their TTL
        for message_id in (plan[3][0], plan[11][0]):
            state.message_ins_store[message_id].metadata.created_at -= 601.0
    assert [len(ask(node, None)) for node in range(5)] == [2, 2, 3, 4, 3]
    assert [ask(node, 1) for node in range(5)] == [[]] * 5
    assert stock.message_ins_store.keys() == indexed.message_ins_store.keys()
    assert plan[3][0] not in indexed.message_ins_store


def test_install_replaces_flowers_methods_and_can_be_switched_off(monkeypatch):
    monkeypatch.setattr(InMemoryLinkState, "get_message_ins", linkstate_index.STOCK_GET)
    monkeypatch.setattr(InMemoryLinkState, "store_message_ins", linkstate_index.STOCK_STORE)
    monkeypatch.setenv("GFMFR_STOCK_LINKSTATE", "1")
    assert not linkstate_index.install()
    assert InMemoryLinkState.get_message_ins is linkstate_index.STOCK_GET
    monkeypatch.delenv("GFMFR_STOCK_LINKSTATE")
    assert linkstate_index.install()
    assert InMemoryLinkState.get_message_ins is linkstate_index.get_message_ins
    assert InMemoryLinkState.store_message_ins is linkstate_index.store_message_ins
