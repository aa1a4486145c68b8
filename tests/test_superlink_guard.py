"""`gfmfr superlink`'s Control API guard (server_app/superlink.py): who counts as the operator,
and what an outsider still reaches. The real SuperLink is attacked in tests/test_deployment.py."""

from __future__ import annotations

import asyncio

import pytest

from server_app.superlink import OperatorOnly, allowed, parse_networks


def test_networks_addresses_and_mapped_ipv6():
    nets = parse_networks("127.0.0.1, ::1,10.0.0.0/24")
    assert allowed("127.0.0.1", nets) and allowed("::1", nets) and allowed("10.0.0.77", nets)
    assert allowed("::ffff:10.0.0.5", nets)  # an IPv4 client on a dual-stack socket
    assert not allowed("127.0.0.2", nets) and not allowed("10.0.1.1", nets)
    assert not allowed(None, nets) and not allowed("testclient", nets)
    for bad in ("", "server.example.org", "10.0.0.0/99"):
        with pytest.raises(ValueError):
            parse_networks(bad)


def call(path: str, peer: str) -> tuple[int, bool]:
    """(status, reached Flower's app) for one request through the guard."""
    reached, sent = [], []

    async def app(scope, receive, send):
        reached.append(scope["path"])
        await send({"type": "http.response.start", "status": 200, "headers": []})

    async def send(message):
        sent.append(message)

    async def receive():
        return {"type": "http.request", "body": b""}

    guard = OperatorOnly(app, parse_networks("127.0.0.1"))
    asyncio.run(guard({"type": "http", "path": path, "client": (peer, 5000)}, receive, send))
    return sent[0]["status"], bool(reached)


@pytest.mark.parametrize("path", ["/v1/control/register-node", "/v1/control/stop-run",
                                  "/docs", "/openapi.json", "/v1/anything-new"])
def test_only_the_operator_reaches_everything_but_fleet_runtime_and_health(path):
    assert call(path, "192.0.2.9") == (403, False)  # deny by default
    assert call(path, "127.0.0.1") == (200, True)


@pytest.mark.parametrize("path", ["/v1/fleet/pull-messages", "/v1/runtime/acquire-task",
                                  "/health"])
def test_supernodes_and_superexecs_connect_from_anywhere(path):
    assert call(path, "192.0.2.9") == (200, True)


def test_refuses_to_start_when_flower_no_longer_builds_its_app_by_that_name(monkeypatch):
    """Fail closed: without ``create_app`` to wrap, the Control API would be open."""
    from flwr.superlink import main as superlink_main

    from server_app.superlink import install

    monkeypatch.delattr(superlink_main, "create_app")
    with pytest.raises(SystemExit, match="refusing to start"):
        install(parse_networks("127.0.0.1"))
