"""The protections, each off by default: --idle-timeout, --header-timeout (http) and
--max-out-buffer close a connection, count the close and say why; others are untouched."""

from __future__ import annotations

import socket
import time

import pytest
from echo_client import wait_for

from muxtop.snapshot import CLOSED, KIND_CONN

pytestmark = pytest.mark.timeout(60)


def closed_views(engine):
    return [c for c in engine.snapshot().connections
            if c.kind == KIND_CONN and c.state == CLOSED]


def test_idle_timeout_closes_the_idle_only(make_engine):
    engine = make_engine(idle_timeout=0.4, publish_interval=0.05)
    with socket.create_connection(engine.address, timeout=5) as idle, \
            socket.create_connection(engine.address, timeout=5) as busy:
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline:  # busy talks every 0.1 s; idle says nothing
            busy.sendall(b"x")
            assert busy.recv(1) == b"x"
            time.sleep(0.1)
        assert idle.recv(1) == b""  # closed by the server
        busy.sendall(b"still")
        assert busy.recv(5) == b"still"
        (view,) = wait_for(lambda: closed_views(engine))
        assert "idle" in view.note and "--idle-timeout" in view.note
        snapshot = engine.snapshot()
        assert snapshot.totals.closed_idle == 1 and snapshot.totals.closed_header == 0
        assert any("--idle-timeout" in n.text for n in snapshot.notices)


def test_no_limit_by_default(make_engine):
    engine = make_engine(protocol="http", publish_interval=0.05)
    with socket.create_connection(engine.address, timeout=5) as slow:
        slow.sendall(b"GET / HTTP/1.1\r\n")
        time.sleep(0.5)
        slow.sendall(b"\r\n")
        assert slow.recv(1000).startswith(b"HTTP/1.1 200 OK")


def test_header_timeout_closes_a_slowloris_not_a_keep_alive_client(make_engine):
    engine = make_engine(protocol="http", header_timeout=0.4, publish_interval=0.05)
    with socket.create_connection(engine.address, timeout=5) as loris, \
            socket.create_connection(engine.address, timeout=5) as polite:
        polite.sendall(b"GET / HTTP/1.1\r\n\r\n")
        assert polite.recv(1000).startswith(b"HTTP/1.1 200 OK")
        loris.sendall(b"GET / HTTP/1.1\r\n")
        closed = b"x"
        for _ in range(20):  # a header line every 0.1 s: never idle, never done
            try:
                loris.sendall(b"X-a: b\r\n")
            except OSError:
                closed = b""  # reset: the server closed it while we were sending
                break
            loris.settimeout(0.1)
            try:
                closed = loris.recv(1)
                break
            except TimeoutError:
                pass
        assert closed == b""
        # polite sat idle between requests all this while: that is not a slow head.
        polite.sendall(b"GET / HTTP/1.1\r\n\r\n")
        assert polite.recv(1000).startswith(b"HTTP/1.1 200 OK")
        (view,) = wait_for(lambda: closed_views(engine))
        assert "--header-timeout" in view.note
        assert engine.snapshot().totals.closed_header == 1


def test_header_timeout_also_bounds_the_next_head_of_a_keep_alive_client(make_engine):
    engine = make_engine(protocol="http", header_timeout=0.3, publish_interval=0.05)
    with socket.create_connection(engine.address, timeout=5) as client:
        client.sendall(b"GET / HTTP/1.1\r\n\r\n")
        assert client.recv(1000).startswith(b"HTTP/1.1 200 OK")
        time.sleep(0.5)  # idle between requests: allowed
        client.sendall(b"GET / HTTP/1.1\r\n")  # a head begun, never finished
        assert client.recv(1) == b""
    # The EOF can come before the Snapshot that counts the close is published.
    (view,) = wait_for(lambda: closed_views(engine))
    assert "--header-timeout" in view.note
    assert engine.snapshot().totals.closed_header == 1


def test_max_out_buffer_closes_a_client_that_does_not_read(make_engine):
    engine = make_engine(max_out_buffer=200_000, sndbuf=4096, publish_interval=0.05)
    with socket.socket() as reader:
        reader.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        reader.settimeout(5)
        reader.connect(engine.address)
        sent = 0
        try:
            while sent < 4_000_000:  # sends, never reads: the echo piles up in the server
                sent += reader.send(b"y" * 65536)
        except OSError:
            pass  # reset once the server closed it
        (view,) = wait_for(lambda: closed_views(engine))
    assert "--max-out-buffer" in view.note
    totals = engine.snapshot().totals
    assert totals.closed_out_buffer == 1 and totals.closed_idle == 0
    assert any("--max-out-buffer" in n.text for n in engine.snapshot().notices)


def test_max_out_buffer_leaves_a_reading_client_alone(make_engine):
    engine = make_engine(max_out_buffer=200_000)
    payload = b"z" * 1_000_000
    with socket.create_connection(engine.address, timeout=5) as client:
        client.setblocking(True)
        got = bytearray()
        view = memoryview(payload)
        sent = 0
        while len(got) < len(payload):
            if sent < len(payload):
                sent += client.send(view[sent:sent + 16384])
            got += client.recv(65536)
        assert bytes(got) == payload
    assert engine.snapshot().totals.closed_out_buffer == 0
