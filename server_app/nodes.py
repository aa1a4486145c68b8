"""Learning which user each connected SuperNode holds, and failing fast when that cannot work."""

from __future__ import annotations

import json
import time
from logging import INFO, WARNING
from pathlib import Path

from flwr.app import Message, RecordDict
from flwr.common import log
from flwr.serverapp import Grid

from strategies import protocol as p

INFO_MESSAGE = "query.info"


class FederationError(RuntimeError):
    """The connected SuperNodes do not fit the dataset."""


NOT_REGISTERED = "its key is not in the node registry"


def connect_nodes(grid: Grid, n_users: int, dataset: str, required: int, wait: float,
                  timeout: float, registry: dict[int, int] | None = None) -> dict[int, int]:
    """Wait for ``required`` SuperNodes, ask each for its user id, return node id -> user id.

    Every newly connected node is asked at once, so a simulated federation sized for another
    dataset fails in seconds. Raises FederationError, with both numbers, when there are more
    nodes than users, when a node was sized for another dataset, when two nodes claim one user,
    or when fewer than ``required`` nodes connect within ``wait`` seconds.

    With a ``registry`` (node id -> the user its registered key was issued for, see
    ``load_registry``) a node outside it, or one claiming another user, is refused and logged,
    and the run goes on without it: it is never asked again and never counted.
    """
    deadline = time.monotonic() + wait
    users: dict[int, int] = {}
    refused: set[int] = set()
    while True:
        nodes = [node for node in grid.get_node_ids() if node not in refused]
        for node in nodes:  # keys outside the registry: refused before asking
            if registry is not None and node not in registry:
                refused.add(node)
                log(WARNING, "refused SuperNode %d: %s", node, NOT_REGISTERED)
        nodes = [node for node in nodes if node not in refused]
        if len(nodes) > n_users:
            raise FederationError(_size_message(len(nodes), n_users, dataset))
        new = [node for node in nodes if node not in users]
        if new:
            _ask_users(grid, new, users, n_users, dataset, timeout, registry, refused)
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
               timeout: float, registry: dict[int, int] | None, refused: set[int]) -> None:
    """Query ``nodes`` for the user they hold; add them to ``users`` (or to ``refused``)."""
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
        node, user = reply.metadata.src_node_id, int(info[p.USER_ID])
        reason = claim_refused(node, user, registry)
        if reason:
            refused.add(node)
            log(WARNING, "refused SuperNode %d: %s", node, reason)
            continue
        if user in users.values():
            raise FederationError(f"two SuperNodes hold user {user}: give every SuperNode its "
                                  "own partition-id (a node registry, run-config node-registry, "
                                  "refuses the one whose key was issued for another user).")
        users[node] = user


def claim_refused(node: int, user: int, registry: dict[int, int] | None) -> str:
    """Why node ``node`` may not hold ``user`` ("" if it may): the registry binds keys to users."""
    if registry is None:
        return ""
    if node not in registry:
        return NOT_REGISTERED
    if registry[node] != user:
        return (f"it declares partition-id {user}, but its key was registered for user "
                f"{registry[node]}")
    return ""


def load_registry(path: str) -> dict[int, int] | None:
    """Node registry file (``node-registry``): JSON ``{"<node id>": <partition-id>, ...}``, as
    ``gfmfr deploy up`` writes it; "" = none. One user per node id and one node id per user."""
    if not path:
        return None
    where = Path(path).expanduser()
    try:
        raw = json.loads(where.read_text())
        registry = {int(node): int(user) for node, user in raw.items()}
    except (OSError, ValueError, AttributeError, TypeError) as error:
        raise FederationError(f"node-registry {where} is not a JSON object of node id -> "
                              f"partition-id ({error}); `gfmfr deploy up` writes one to "
                              ".deploy/<name>/node-registry.json") from None
    if len(set(registry.values())) != len(registry):
        raise FederationError(f"node-registry {where} gives one user to several node ids.")
    return registry


def _size_message(nodes: int, n_users: int, dataset: str) -> str:
    return (f"the federation has {nodes} SuperNodes but {dataset} has {n_users} users; each "
            f"SuperNode is one user. Run the federation sized for it (e.g. `flwr run . "
            f"<federation>` with num-supernodes={n_users}; see flower.toml) or pick the dataset "
            "the federation was sized for.")
