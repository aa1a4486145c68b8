"""Learning which user each connected SuperNode holds, and failing fast when that cannot work."""

from __future__ import annotations

import time
from logging import INFO

from flwr.app import Message, RecordDict
from flwr.common import log
from flwr.serverapp import Grid

from strategies import protocol as p

INFO_MESSAGE = "query.info"


class FederationError(RuntimeError):
    """The connected SuperNodes do not fit the dataset."""


def connect_nodes(grid: Grid, n_users: int, dataset: str, required: int, wait: float,
                  timeout: float) -> dict[int, int]:
    """Wait for ``required`` SuperNodes, ask each for its user id, return node id -> user id.

    Every newly connected node is asked at once, so a simulated federation sized for another
    dataset fails in seconds. Raises FederationError, with both numbers, when there are more
    nodes than users, when a node was sized for another dataset, when two nodes claim one user,
    or when fewer than ``required`` nodes connect within ``wait`` seconds.
    """
    deadline = time.monotonic() + wait
    users: dict[int, int] = {}
    while True:
        nodes = list(grid.get_node_ids())
        if len(nodes) > n_users:
            raise FederationError(_size_message(len(nodes), n_users, dataset))
        new = [node for node in nodes if node not in users]
        if new:
            _ask_users(grid, new, users, n_users, dataset, timeout)
        if len(users) >= required or time.monotonic() > deadline:
            break
        log(INFO, "waiting for SuperNodes: %d connected, %d needed", len(users), required)
        time.sleep(2.0)
    if len(users) < required:
        raise FederationError(f"only {len(users)} SuperNodes answered within {wait:.0f} s but "
                              f"{required} are needed (one per user of {dataset}: {n_users}). "
                              "Start more SuperNodes, or lower min-nodes.")
    log(INFO, "%d SuperNodes connected, one user each (%s has %d users)", len(users), dataset,
        n_users)
    return users


def _ask_users(grid: Grid, nodes: list[int], users: dict[int, int], n_users: int, dataset: str,
               timeout: float) -> None:
    """Query ``nodes`` for the user they hold; add them to ``users``."""
    replies = grid.send_and_receive(
        [Message(RecordDict(), dst_node_id=node, message_type=INFO_MESSAGE) for node in nodes],
        timeout=timeout)
    for reply in replies:
        if reply.has_error():
            raise FederationError(f"SuperNode {reply.metadata.src_node_id} could not load its "
                                  f"data: {reply.error.reason}")
        info = reply.content.metric_records[p.METRICS]
        partitions = int(info["num-partitions"])
        if partitions and partitions != n_users:
            raise FederationError(_size_message(partitions, n_users, dataset))
        user = int(info[p.USER_ID])
        if user in users.values():
            raise FederationError(f"two SuperNodes hold user {user}: give every SuperNode its "
                                  "own partition-id.")
        users[reply.metadata.src_node_id] = user


def _size_message(nodes: int, n_users: int, dataset: str) -> str:
    return (f"the federation has {nodes} SuperNodes but {dataset} has {n_users} users; each "
            f"SuperNode is one user. Run the federation sized for it (e.g. `flwr run . "
            f"<federation>` with num-supernodes={n_users}; see flower.toml) or pick the dataset "
            "the federation was sized for.")
