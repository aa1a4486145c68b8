"""``gfmfr superlink --control-from NETWORKS <flower-superlink arguments>``: Flower's SuperLink
whose Control API answers only the operator's machines (issue 26).

Flower 1.42 serves the Fleet API (SuperNodes), the Control API (the ``flwr`` CLI: start and stop
runs, register and unregister node keys, read logs) and the Runtime API on one HTTPS port, and
the open-source SuperLink has no account authentication for the Control API (OIDC is not in this
distribution): TLS keeps out eavesdroppers, not callers, and every client machine reaches that
port. So anyone with the address and ``ca.crt`` could register a key, unregister a genuine node
or stop a run.

This wraps Flower's own ``flower-superlink`` and adds one ASGI middleware to the FastAPI app it
builds: a request from outside ``NETWORKS`` (default: the server itself) is answered ``403`` unless it is
for the Fleet API (``/v1/fleet/``: SuperNodes), the Runtime API (``/v1/runtime/``: guarded by
the SuperExec secret and task tokens) or ``/health``. Everything else, the Control API and any
route a later Flower adds, is the operator's (deny by default). The operator runs ``flwr`` on the
server, from an address in ``NETWORKS``, or through ``ssh -L``. The check uses the TCP peer
address, so behind a reverse proxy it sees the proxy (then filter there).

How the middleware is injected: ``flower_superlink`` imports ``create_app`` from
``flwr.superlink.main`` when it starts its HTTP service; we wrap that module attribute in this
process only, then run Flower's entry point with the remaining arguments. If a Flower upgrade
removes ``create_app``, this refuses to start instead of serving an open Control API.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import sys
from collections.abc import Awaitable, Callable, Iterable
from logging import INFO, WARN
from typing import Any

from flwr.supercore import log

PREFIX = "[gfmfr]"
OPEN_TO_ALL = ("/v1/fleet/", "/v1/runtime/", "/health")
CONTROL_FROM = "127.0.0.1,::1"  # the default: the server itself
Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


def parse_networks(text: str) -> list[Network]:
    """``"127.0.0.1,10.0.0.0/24"`` -> networks (a bare address is a /32 or /128)."""
    networks = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        try:
            networks.append(ipaddress.ip_network(part, strict=False))
        except ValueError:
            raise ValueError(f"--control-from: {part!r} is not an IP address or network (e.g. "
                             "127.0.0.1 or 10.0.0.0/24; names are not resolved)") from None
    if not networks:
        raise ValueError("--control-from needs at least one address or network")
    return networks


def allowed(host: str | None, networks: Iterable[Network]) -> bool:
    """True if ``host`` (a peer address, IPv4-mapped IPv6 included) lies in ``networks``."""
    try:
        address = ipaddress.ip_address((host or "").split("%")[0])
    except ValueError:
        return False  # a Unix socket or an unknown peer: not the operator's
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return any(address in network for network in networks)


class OperatorOnly:
    """ASGI middleware: requests other than ``OPEN_TO_ALL`` only from ``networks``."""

    def __init__(self, app: Callable[[Scope, Receive, Send], Awaitable[None]],
                 networks: list[Network]) -> None:
        self.app = app
        self.networks = networks

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            path = scope.get("path", "")
            peer = (scope.get("client") or (None, None))[0]
            if not path.startswith(OPEN_TO_ALL) and not allowed(peer, self.networks):
                log(WARN, "%s refused %s from %s: the Control API answers only %s", PREFIX, path,
                    peer, ", ".join(map(str, self.networks)))
                body = json.dumps({"detail": "this SuperLink's Control API answers only its "
                                   "operator's machines: run flwr on the server (or through "
                                   "ssh -L)"}).encode()
                await send({"type": "http.response.start", "status": 403,
                            "headers": [(b"content-type", b"application/json"),
                                        (b"content-length", str(len(body)).encode())]})
                await send({"type": "http.response.body", "body": body})
                return
        await self.app(scope, receive, send)


def install(networks: list[Network]) -> None:
    """Make Flower's SuperLink add ``OperatorOnly`` to its FastAPI app (this process only)."""
    from flwr.superlink import main as superlink_main

    original = getattr(superlink_main, "create_app", None)
    if not callable(original):
        raise SystemExit("gfmfr superlink: flwr.superlink.main no longer has create_app (Flower "
                         "changed): refusing to start a SuperLink with an open Control API")

    def create_app(*args: Any, **kwargs: Any) -> Any:
        fastapi_app = original(*args, **kwargs)
        fastapi_app.add_middleware(OperatorOnly, networks=networks)
        return fastapi_app

    superlink_main.create_app = create_app


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="gfmfr superlink",
        description="Flower's SuperLink whose Control API answers only the operator's machines.",
        epilog="Every other argument goes to flower-superlink (see flower-superlink --help).")
    parser.add_argument("--control-from", default=CONTROL_FROM, metavar="NETWORKS",
                        help="comma-separated addresses or networks allowed to use the Control "
                             "API (flwr run, stop, log, supernode register ...); default "
                             f"{CONTROL_FROM}")
    args, rest = parser.parse_known_args(argv)
    try:
        networks = parse_networks(args.control_from)
    except ValueError as error:
        print(f"gfmfr superlink: {error}", file=sys.stderr)
        return 2
    install(networks)
    from flwr.superlink.cli.flower_superlink import flower_superlink

    log(INFO, "%s the Control API answers only %s", PREFIX, ", ".join(map(str, networks)))
    sys.argv = ["gfmfr superlink", *rest]
    flower_superlink()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
