"""An in-process Grid: the real ServerApp and strategies against the real ClientApp, in one process.

Every message and reply goes through Flower's own serialisation (RecordDict -> protobuf -> back),
each node keeps its own Context (kept only when its handler returns, as in Flower's simulation),
and a handler that raises becomes an error reply. There is no Ray and no SuperLink: a small
federation runs in about a second, so contract tests cover every strategy, and large comparisons
use one core per run. ``gfmfr run`` (Ray simulation) and deployments run the very same code.
Building messages outside a Flower process needs a task identity, which this sets as Flower's
own runtime does.

``python -m server_app.inprocess -c "key=value ..."`` runs the app once this way, one SuperNode per
user of the dataset (``gfmfr compare --engine inprocess`` runs each of its runs so).
"""

from __future__ import annotations

import argparse
import importlib
import random
import uuid
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from flwr.app import Context, Message, RecordDict
from flwr.app.error import Error
from flwr.clientapp import ClientApp
from flwr.common.serde import recorddict_from_proto, recorddict_to_proto
from flwr.serverapp import Grid
from flwr.supercore.task_identity import TaskIdentity

from strategies import shamir
from strategies.config import parse_overrides

# node_id, message -> replacement reply content (or raise) for fault injection
Fault = Callable[[int, Message, Message], Message | None]

# Flower's SecAgg+ client module (its package exports the mod function under the same name)
SECAGGPLUS_CLIENT = importlib.import_module("flwr.client.mod.secure_aggregation.secaggplus_mod")


def _roundtrip(content: RecordDict) -> tuple[RecordDict, int]:
    """Serialise and parse back; also return the serialised size in bytes."""
    proto = recorddict_to_proto(content)
    return recorddict_from_proto(proto), proto.ByteSize()


class InProcessGrid(Grid):
    SIMULATED = True  # every node's data is in this process (server_app.app.simulated)

    def __init__(self, client_app: ClientApp, n_nodes: int, run_config: dict[str, Any],
                 state_dirs: Path | None = None, fault: Fault | None = None, seed: int = 0,
                 record: bool = True):
        rng = random.Random(seed)
        self.client_app = client_app
        self.fault = fault
        self.record = record  # keep every message and reply for inspection (tests)
        self.contexts: dict[int, Context] = {}
        self.sent: list[Message] = []  # every delivered message, for inspection
        self.replies_seen: list[Message] = []
        # (server round, message type) -> [messages, bytes down, bytes up]
        self.traffic: dict[tuple[int, str], list[int]] = {}
        for partition in range(n_nodes):
            node_id = rng.getrandbits(63)
            config: dict[str, Any] = {"partition-id": partition, "num-partitions": n_nodes}
            if state_dirs is not None:
                config["state-dir"] = str(state_dirs / f"node-{partition}")
            self.contexts[node_id] = Context(run_id=1, node_id=node_id, node_config=config,
                                             state=RecordDict(), run_config=dict(run_config))
        self._replies: dict[str, Message] = {}
        TaskIdentity.task_id, TaskIdentity.run_id, TaskIdentity.node_id = 1, 1, 0
        # SecAgg+ clients split their key shares with the same field and layout, 12x faster:
        # here every client's split runs one after another (strategies/shamir.py)
        SECAGGPLUS_CLIENT.create_shares = shamir.create_shares

    def set_run(self, run: Any) -> None:
        pass

    @property
    def run(self) -> Any:
        raise NotImplementedError("InProcessGrid has no Run")

    def create_message(self, content: RecordDict, message_type: str, dst_node_id: int,
                       group_id: str, ttl: float | None = None) -> Message:
        return Message(content, dst_node_id, message_type, ttl=ttl, group_id=group_id)

    def get_node_ids(self) -> Iterable[int]:
        return list(self.contexts)

    def push_messages(self, messages: Iterable[Message]) -> Iterable[str]:
        ids = []
        for message in messages:
            message.metadata.__dict__["_message_id"] = str(uuid.uuid4())
            ids.append(message.metadata.message_id)
            self._replies[message.metadata.message_id] = self._deliver(message)
        return ids

    def pull_messages(self, message_ids: Iterable[str]) -> Iterable[Message]:
        return [self._replies.pop(i) for i in list(message_ids) if i in self._replies]

    def send_and_receive(self, messages: Iterable[Message], *, timeout: float | None = None
                         ) -> Iterator[Message]:
        """Deliver one message at a time and hand its reply on (as ``WindowedGrid`` streams)."""
        for message in messages:
            yield from self.pull_messages(self.push_messages([message]))

    def _deliver(self, message: Message) -> Message:
        node = message.metadata.dst_node_id
        context = self.contexts[node]
        content, down = _roundtrip(message.content)
        received = Message(content, dst_node_id=node, message_type=message.metadata.message_type)
        received.metadata.__dict__["_message_id"] = message.metadata.message_id
        if self.record:
            self.sent.append(received)
        saved, _ = _roundtrip(context.state)
        up = 0
        try:
            reply = self.client_app(received, context)
            if self.fault is not None:
                reply = self.fault(node, received, reply) or reply
            content, up = _roundtrip(reply.content)
            reply = Message(content, reply_to=message)
        except Exception as error:  # noqa: BLE001 - any handler failure becomes an error reply
            context.state = saved  # Flower keeps the Context only when the handler returns
            reply = Message(Error(code=0, reason=f"{type(error).__name__}: {error}"),
                            reply_to=message)
        config = content_round(received.content)
        entry = self.traffic.setdefault((config, received.metadata.message_type), [0, 0, 0])
        entry[0] += 1
        entry[1] += down
        entry[2] += up
        if self.record:
            self.replies_seen.append(reply)
        return reply


def content_round(content: RecordDict) -> int:
    """The server round a message belongs to (0 for messages without a round, e.g. queries)."""
    config = content.config_records.get("config")
    return int(config.get("server-round", 0)) if config is not None else 0


def run_inprocess(run_config: dict[str, Any], n_nodes: int, **grid_options: Any
                  ) -> tuple[InProcessGrid, Any]:
    """Run the real ServerApp main on an in-process federation; return (grid, strategy)."""
    from client_app.app import app as client_app
    from server_app import app as server_module

    grid = InProcessGrid(client_app, n_nodes, run_config, **grid_options)
    context = Context(run_id=1, node_id=0, node_config={}, state=RecordDict(),
                      run_config=dict(run_config))
    strategy = server_module.main(grid, context)
    return grid, strategy


def run_dataset_inprocess(run_config: dict[str, Any]) -> Any:
    """One SuperNode per user of the run's dataset, every message at once; returns the strategy."""
    from datasets.registry import load_dataset
    from strategies.config import RunConfig

    cfg = RunConfig.from_run_config(run_config)
    users = load_dataset(cfg.dataset, cfg.data_path(), cfg.cache_path(),
                         cfg.synthetic_spec()).n_users
    return run_inprocess({**run_config, "max-in-flight": 0}, users, record=False)[1]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Run the app once in one process (no Ray, "
                                     "no SuperLink), one SuperNode per user of the dataset.")
    parser.add_argument("-c", "--run-config", default="", help='overrides, e.g. "seed=1"')
    args = parser.parse_args(argv)
    run_dataset_inprocess(parse_overrides(args.run_config))


if __name__ == "__main__":
    main()
