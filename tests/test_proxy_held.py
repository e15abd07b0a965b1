"""What a toxic holds, on a live proxy: released at once when the toxic goes or changes (the
API's DELETE and PATCH, the T menu, /reset: all go through the registry), and never left
stranded when the leg it was for has gone."""

from __future__ import annotations

import socket
import time

import pytest

from muxtop.proxy.registry import Registry
from muxtop.snapshot import KIND_CONN

pytestmark = pytest.mark.timeout(60)

LONG = 600_000  # ms: a latency no test waits out (10 minutes)


def until(predicate, timeout: float = 10.0, what: str = ""):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or predicate}")
        time.sleep(0.02)


TCP_CLOSE = 7  # TCP_INFO's state byte


def tcp_state(sock: socket.socket) -> int:
    return sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 104)[0]


def legs(engine):
    return [v for v in engine.snapshot().connections if v.kind == KIND_CONN]


def held_reply(engine) -> bool:
    """The upstream leg has read the echo of a 4-byte request, and the client got none."""
    rows = legs(engine)
    up = [v for v in rows if v.peer.startswith("upstream") and v.bytes_in == 4]
    client = [v for v in rows if not v.peer.startswith("upstream")]
    return bool(up) and all(v.bytes_out == 0 for v in client)


@pytest.fixture
def latency_proxy(make_engine):
    """An echo upstream, a proxy with a registry whose downstream holds bytes 10 minutes."""
    echo = make_engine()
    registry = Registry()
    proxy = make_engine(upstream=echo.address, registry=registry)
    registry.add_toxic("muxtop", {"type": "latency", "name": "slow",
                                  "attributes": {"latency": LONG}})
    return proxy, registry


@pytest.mark.parametrize("change", [
    pytest.param(lambda r: r.remove_toxic("muxtop", "slow"), id="removed"),
    pytest.param(lambda r: r.reset(), id="reset"),
    pytest.param(lambda r: r.update_toxic("muxtop", "slow", {"attributes": {"latency": 0}}),
                 id="latency-0"),
])
def test_a_removed_or_changed_toxic_lets_go_at_once_of_what_it_held(latency_proxy, change):
    proxy, registry = latency_proxy
    with socket.create_connection(proxy.address, timeout=10) as client:
        client.sendall(b"PING")
        until(lambda: held_reply(proxy), what="the echo held by the latency toxic")
        change(registry)
        assert client.recv(4) == b"PING"  # within the 10 s timeout, not after 10 minutes
    assert proxy.running, proxy.error


@pytest.mark.parametrize(("backend", "trigger"), [("epoll", "level"), ("epoll", "edge"),
                                                  ("epoll", "oneshot"), ("poll", "level")])
def test_a_client_that_resets_after_its_fin_ends_the_pair_and_drops_what_was_held(
        make_engine, backend, trigger):
    upstream = socket.create_server(("127.0.0.1", 0))
    upstream.settimeout(10)
    registry = Registry()
    proxy = make_engine(backend=backend, trigger=trigger, upstream=upstream.getsockname(),
                        registry=registry)
    registry.add_toxic("muxtop", {"type": "latency", "attributes": {"latency": LONG}})
    client = socket.create_connection(proxy.address, timeout=10)
    server, _ = upstream.accept()
    server.settimeout(10)
    try:
        client.sendall(b"PING")
        assert server.recv(4) == b"PING"
        server.sendall(b"PONG")  # held 10 minutes for the client
        client.shutdown(socket.SHUT_WR)
        assert server.recv(1) == b""  # the client's FIN crossed; the upstream stays open
        until(lambda: [v for v in legs(proxy) if v.state == "half-closed"
                       and not v.peer.startswith("upstream")], what="the client half-closed")
        client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\0\0\0\0\0\0\0")
        client.close()  # the client leaves with a reset
        # Both legs close (they stayed half-closed, nothing registered, until the latency
        # ran out), and the reset crosses: the upstream's socket is closed by it.
        until(lambda: all(v.state == "closed" for v in legs(proxy)), what="both legs closed")
        until(lambda: tcp_state(server) == TCP_CLOSE, what="the reset crossed to the upstream")
    finally:
        client.close()
        server.close()
        upstream.close()
