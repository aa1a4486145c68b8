"""Joining a Ray cluster (``[simulation] ray-address``): check it before a run starts.

Flower's Ray backend joins the cluster with ``ray.init()`` and sizes its pool of ClientApps from
the nodes' CPUs (``client-cpus`` each; ``ray-cpus`` plays no part). What it cannot set from here
is how each node's Ray workers pass objects: ``RAY_max_direct_call_object_size`` is read by every
worker from the environment of the ``ray start`` that started its node. ``check`` connects once
(about 2 s), runs one zero-CPU task on every alive node and turns what is wrong into one line:
no cluster at the address, no node with ``client-cpus`` CPUs, a node that cannot run this
project's code, or a node started without the inline limit.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass

INLINE_ENV = "RAY_max_direct_call_object_size"
RAY_DEFAULT_INLINE_BYTES = 100 * 1024  # Ray's own max_direct_call_object_size
PROBE_TIMEOUT_S = 60.0  # a fresh node starts its first Python worker in a few seconds


@dataclass(frozen=True)
class RayNode:
    """One alive node of the cluster, as a ClientApp on it would see it."""

    node_id: str
    ip: str
    cpus: float
    inline_bytes: int  # objects up to this size travel inline, larger ones via the object store


def check(address: str, client_cpus: float, inline_bytes: int) -> list[RayNode]:
    """Probe the cluster at ``address``; raise RuntimeError with the fix when a run cannot work.

    Returns the nodes; ``describe`` and ``warnings`` say the rest.
    """
    _check_reachable(address)
    nodes = probe(address)
    error = fit_error(nodes, address, client_cpus)
    if error:
        raise RuntimeError(error)
    return nodes


def _check_reachable(address: str) -> None:
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise RuntimeError(f"[simulation] ray-address = {address!r} is not HOST:PORT (the "
                           "address `ray start --head --port PORT` prints).")
    try:
        socket.create_connection((host, int(port)), timeout=5).close()
    except OSError as error:
        raise RuntimeError(f"no Ray cluster answers at {address} ({error}): start its head with "
                           f"`ray start --head --port {port}` or fix [simulation] ray-address in "
                           "flower.toml.") from None


def probe(address: str, timeout: float = PROBE_TIMEOUT_S) -> list[RayNode]:
    """Connect as a short-lived driver and ask every alive node what its workers see."""
    os.environ.setdefault("RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO", "0")
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    ray.init(address=address, logging_level="ERROR", log_to_driver=False)
    try:
        alive = [n for n in ray.nodes() if n["Alive"]]
        task = ray.remote(num_cpus=0, max_retries=0)(_worker_inline_setting)
        refs = [task.options(scheduling_strategy=NodeAffinitySchedulingStrategy(
            n["NodeID"], soft=False)).remote() for n in alive]
        ready, _ = ray.wait(refs, num_returns=len(refs), timeout=timeout)
        nodes = []
        for node, ref in zip(alive, refs, strict=True):
            ip = node["NodeManagerAddress"]
            if ref not in ready:
                raise RuntimeError(f"Ray node {ip} ({node['NodeID'][:8]}) ran no Python task "
                                   f"within {timeout:.0f} s: is its raylet healthy?")
            try:
                value = ray.get(ref)
            except ray.exceptions.RayError as error:
                reason = str(error).strip().splitlines()[-1]
                raise RuntimeError(f"Ray node {ip} ({node['NodeID'][:8]}) cannot run this "
                                   f"project's code ({reason}): every node needs this project and "
                                   "its venv at the same path.") from None
            nodes.append(RayNode(node["NodeID"], ip, float(node["Resources"].get("CPU", 0)),
                                 _inline_bytes(value)))
        return nodes
    finally:
        ray.shutdown()


def _worker_inline_setting() -> str | None:
    """Runs on a node: the inline limit its workers inherited from ``ray start``."""
    return os.environ.get(INLINE_ENV)


def _inline_bytes(value: str | None) -> int:
    try:
        return int(value) if value else RAY_DEFAULT_INLINE_BYTES
    except ValueError:
        return RAY_DEFAULT_INLINE_BYTES


def parallel_clientapps(nodes: list[RayNode], client_cpus: float) -> int:
    """ClientApps Flower runs at once: it fills every node with ``client-cpus``-sized actors."""
    return sum(int(node.cpus // client_cpus) for node in nodes)


def fit_error(nodes: list[RayNode], address: str, client_cpus: float) -> str | None:
    """Why no ClientApp can start on these nodes, or None. A ClientApp's CPUs must all be on one
    node, so a cluster of many small nodes can still be too small."""
    if not nodes:
        return f"the Ray cluster at {address} has no alive node."
    if parallel_clientapps(nodes, client_cpus):
        return None
    cpus = ", ".join(f"{node.cpus:g}" for node in nodes)
    return (f"the Ray cluster at {address} has {len(nodes)} node(s) with {cpus} CPUs but "
            f"client-cpus = {client_cpus:g}: no node fits one ClientApp; lower [simulation] "
            "client-cpus or start nodes with more --num-cpus.")


def warnings(nodes: list[RayNode], inline_bytes: int) -> list[str]:
    """Nodes whose workers pass fewer bytes inline than ``ray-inline-bytes`` asks (runs work,
    but every message over the node's limit takes the object store: rounds 2-3x slower)."""
    slow = [node for node in nodes if node.inline_bytes < inline_bytes]
    if not slow:
        return []
    names = ", ".join(f"{node.ip} ({node.node_id[:8]}, {node.inline_bytes} B)" for node in slow)
    return [f"[simulation] ray-inline-bytes = {inline_bytes} has not reached Ray node(s) {names}: "
            f"restart them with {INLINE_ENV}={inline_bytes} set before `ray start` (without it "
            "every larger message goes through the object store: rounds 2-3x slower)."]


def describe(nodes: list[RayNode], address: str, client_cpus: float) -> str:
    cpus = sum(node.cpus for node in nodes)
    return (f"Ray cluster {address}: {len(nodes)} node(s), {cpus:g} CPUs, "
            f"{parallel_clientapps(nodes, client_cpus)} ClientApps at once "
            f"(client-cpus = {client_cpus:g}; ray-cpus is not used on a cluster)")
