"""The engine on uring: byte-exact echo across live switches epoll <-> uring (readiness in
every trigger mode, and completion), a verifying flood across them, completion mode's
operations in flight per fd, cancelled by a pause and by a switch away without a byte lost,
the ring's figures in the Snapshot agreeing with /proc/self/fdinfo of the ring fd, and a
server told --backend uring under a seccomp filter that refuses io_uring: one line saying
why, while epoll serves."""

from __future__ import annotations

import random
import select
import socket
import subprocess
import sys
import time

import pytest
from echo_client import stream_echo, wait_for
from test_uring_ring import SECCOMP_CHILD

from muxtop.commands import Continue, PauseReading, Step, Switch
from muxtop.engine import EngineStartError
from muxtop.flood.process import FloodProcess, FloodSettings
from muxtop.kernel import uring

pytestmark = [pytest.mark.timeout(60),
              pytest.mark.skipif(uring.unavailable() is not None,
                                 reason=f"io_uring: {uring.unavailable()}")]
CYCLE = [("uring", "level"), ("uring", "completion"), ("epoll", "edge"), ("uring", "edge"),
         ("uring", "completion"), ("uring", "oneshot"), ("epoll", "level"),
         ("uring", "completion"), ("uring", "level"), ("epoll", "oneshot"), ("uring", "edge"),
         ("poll", "level"), ("uring", "oneshot"), ("uring", "completion"), ("epoll", "level")]


def test_streams_echo_byte_exact_across_switches_epoll_uring(make_engine):
    engine = make_engine(backend="epoll", trigger="level")
    done = 0
    outcomes = []

    def switch():  # once per client pass: every switch lands mid-stream
        nonlocal done
        if done < 40:
            outcomes.append(engine.submit(Switch(*CYCLE[done % len(CYCLE)])).result(5))
            done += 1

    rng = random.Random(27)
    payloads = [rng.randbytes(rng.randrange(200_000, 400_000)) for _ in range(40)]
    assert stream_echo(engine.address, payloads, chunk=4096, between=switch,
                       timeout=40) == payloads
    assert done == 40 and all(o.ok for o in outcomes), [o for o in outcomes if not o.ok]
    assert engine.running, engine.error


def test_a_verifying_flood_across_live_switches_loses_nothing(make_engine):
    engine = make_engine(backend="epoll", trigger="level")
    host, port = engine.address
    settings = FloodSettings(host, port, pattern="echo", clients=40, messages=0, size=2048)
    with FloodProcess(settings) as flood:
        for backend, trigger in CYCLE * 2:
            before = engine.snapshot().totals.bytes_out
            assert engine.submit(Switch(backend, trigger)).result(5).ok
            # Bytes move on the new backend before the next switch.
            wait_for(lambda b=before: engine.snapshot().totals.bytes_out > b + 100_000, 10)
        summary = flood.stop()
    assert summary is not None, list(flood.errors)
    assert summary["mismatches"] == 0 and summary["failed"] == {}, summary
    assert summary["messages_echoed"] > 1000, summary
    assert engine.running, engine.error


def test_ring_figures_in_the_snapshot_agree_with_proc_fdinfo(make_engine):
    engine = make_engine(backend="uring", trigger="edge", publish_interval=0.05)
    with socket.create_connection(engine.address, timeout=5) as client:
        client.sendall(b"ping")
        assert client.recv(4) == b"ping"
        assert engine.submit(Step()).result(5).ok  # the loop holds between two wait calls
        shot = wait_for(lambda: (s := engine.snapshot()).step is not None and
                        s.rings and s)
        (ring,) = shot.rings
        proc = uring.read_fdinfo(ring.fd)
        assert proc is not None
        assert (ring.sq_head, ring.sq_tail, ring.cq_head, ring.cq_tail) == \
            (proc["SqHead"], proc["SqTail"], proc["CqHead"], proc["CqTail"])
        assert ring.sq_entries == proc["SqMask"] + 1 and ring.cq_entries == proc["CqMask"] + 1
        # Multishot polls on the listener, the control fd and the connection.
        assert ring.in_flight == proc["PollList"] == 3
        assert ring.mode == "readiness" and ring.enters > 0 and ring.submitted >= 3
        assert any(v.fd == ring.fd and v.peer == "io_uring instance"
                   for v in shot.connections)
        assert engine.submit(Continue()).result(5).ok


def run_refused(*args: str) -> subprocess.CompletedProcess:
    child = SECCOMP_CHILD.replace(
        "from muxtop.kernel import uring\nprint(uring.unavailable())\n",
        "import os\nos.execv(sys.executable, [sys.executable, '-m', 'muxtop', *sys.argv[1:]])\n")
    return subprocess.run([sys.executable, "-c", child, *args], capture_output=True,
                          text=True, timeout=20)


def test_under_a_seccomp_filter_uring_is_refused_with_the_reason_and_epoll_serves():
    refused = run_refused("--headless", "--backend", "uring", "--port", "0",
                          "--duration", "0.3")
    assert refused.returncode != 0
    lines = refused.stderr.strip().splitlines()
    assert len(lines) == 1 and "uring is unavailable" in lines[0] and "seccomp" in lines[0], \
        refused.stderr
    served = run_refused("--headless", "--backend", "epoll", "--port", "0", "--duration", "0.3")
    assert served.returncode == 0, served.stderr
    assert "epoll/level" in served.stdout


def conn_row(engine):
    return next((v for v in engine.snapshot().connections if v.kind == "conn"), None)


def test_completion_shows_a_recv_in_flight_and_a_pause_cancels_it(make_engine):
    engine = make_engine(backend="uring", trigger="completion", publish_interval=0.05)
    with socket.create_connection(engine.address, timeout=5) as client:
        client.sendall(b"one")
        assert client.recv(3) == b"one"
        row = wait_for(lambda: (v := conn_row(engine)) and "<" in v.flags and v)
        ring = engine.snapshot().rings[0]
        assert ring.mode == "completion" and ring.in_flight >= 3  # 2 polls and the recv
        assert engine.submit(PauseReading(row.fd, True)).result(5).ok
        wait_for(lambda: "<" not in conn_row(engine).flags)  # the cancel completed
        client.sendall(b"held")  # the kernel keeps it: no recv in flight
        client.settimeout(0.2)
        with pytest.raises(TimeoutError):
            client.recv(4)
        client.settimeout(5)
        assert engine.submit(PauseReading(row.fd, False)).result(5).ok
        assert client.recv(4) == b"held"


def test_switching_away_from_completion_loses_no_byte_queued_or_in_flight(make_engine):
    """A client that sends without reading: the engine's out-buffer passes high water, its
    recv is cancelled and a send stays in flight on a full socket. Switching away cancels
    that send and reaps it; the new backend writes the rest; every byte comes back."""
    engine = make_engine(backend="uring", trigger="completion", publish_interval=0.05)
    payload = random.Random(5).randbytes(6_000_000)
    with socket.create_connection(engine.address, timeout=5) as client:
        client.setblocking(False)
        sent = 0

        def backpressured() -> bool:  # sending on while the kernel takes it
            nonlocal sent
            try:
                sent += client.send(payload[sent:sent + 65536])
            except BlockingIOError:
                pass
            row = conn_row(engine)
            return row is not None and "B" in row.flags

        wait_for(backpressured, 10)
        row = conn_row(engine)
        assert ">" in row.flags and "<" not in row.flags, row.flags  # backpressure
        assert engine.submit(Switch("epoll", "level")).result(5).ok
        assert engine.snapshot().rings == () or wait_for(lambda: not engine.snapshot().rings)
        got = bytearray()
        deadline = time.monotonic() + 30
        while len(got) < len(payload) and time.monotonic() < deadline:
            readable, writable, _ = select.select(
                [client], [client] if sent < len(payload) else [], [], 1.0)
            if writable:
                sent += client.send(payload[sent:sent + 65536])
            if readable:
                got += client.recv(1 << 20)
        assert bytes(got) == payload


def test_bytes_a_recv_completed_before_the_switch_are_echoed_after_it(make_engine):
    """Step mode holds the loop: a recv completes in the kernel (its CQE waits unreaped).
    Switching away reaps it while cancelling: its bytes go out on the next backend."""
    engine = make_engine(backend="uring", trigger="completion", publish_interval=0.05)
    with socket.create_connection(engine.address, timeout=5) as client:
        client.sendall(b"x")
        assert client.recv(1) == b"x"
        wait_for(lambda: (row := conn_row(engine)) is not None and "<" in row.flags)
        assert engine.submit(Step()).result(5).ok
        ring_fd = wait_for(lambda: engine.snapshot().step is not None and
                           engine.snapshot().rings[0].fd)

        def unreaped() -> int | None:
            proc = uring.read_fdinfo(ring_fd)  # None while the ring's lock is held
            return None if proc is None else (proc["CqTail"] - proc["CqHead"]) & 0xFFFFFFFF

        (before,) = wait_for(lambda: (n := unreaped()) is not None and (n,))
        client.sendall(b"caught in flight")
        # The recv's CQE: the bytes are in its buffer.
        wait_for(lambda: (n := unreaped()) is not None and n > before)
        assert engine.submit(Switch("epoll", "level")).result(5).ok
        assert engine.submit(Continue()).result(5).ok
        got = b""
        while len(got) < 16:
            got += client.recv(100)
        assert got == b"caught in flight"


def test_a_proxy_runs_on_uring_readiness_and_refuses_completion_with_the_reason(make_engine):
    echo = make_engine()
    proxy = make_engine(backend="uring", trigger="edge", upstream=echo.address)
    with socket.create_connection(proxy.address, timeout=5) as client:
        client.sendall(b"through the ring")
        got = b""
        while len(got) < 16:
            got += client.recv(100)
        assert got == b"through the ring"
        outcome = proxy.submit(Switch(trigger="completion")).result(5)
        assert not outcome.ok and "a proxy's legs forward" in outcome.message
        assert proxy.snapshot().trigger == "edge"
    with pytest.raises(EngineStartError, match="a proxy's legs forward"):
        make_engine(backend="uring", trigger="completion", upstream=echo.address)


def test_idle_connections_pin_small_recv_buffers_and_a_big_message_still_echoes(make_engine):
    """Every open connection has a recv in flight in completion mode: a full 64 KiB buffer
    each would let idle clients pin memory without bound (20,000 x 64 KiB = 1.3 GB)."""
    from muxtop.engine.completion import SMALL_RECV

    engine = make_engine(backend="uring", trigger="completion", publish_interval=0.05)
    clients = [socket.create_connection(engine.address, timeout=5) for _ in range(50)]
    try:
        wait_for(lambda: engine.snapshot().open_connections == 50)
        wait_for(lambda: engine.snapshot().rings[0].in_flight >= 50)
        held = engine._completion.held_bytes()
        assert 50 * SMALL_RECV <= held <= 50 * SMALL_RECV + 4 * 65536, held
        # A message far bigger than the small recv comes back whole (the recvs widen).
        message = bytes(range(256)) * 4096  # 1 MiB
        clients[0].sendall(message)
        got = bytearray()
        while len(got) < len(message):
            got += clients[0].recv(1 << 20)
        assert got == message
    finally:
        for client in clients:
            client.close()
