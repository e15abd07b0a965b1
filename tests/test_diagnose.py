"""Bug lab and detectors: each lab switch makes the engine misbehave the classic way, the
matching detector names the right fds, and turning the switch off recovers every byte."""

from __future__ import annotations

import json
import os
import re
import select
import socket
import subprocess
import sys
import textwrap
import time

import pytest
from echo_client import stop_child, stream_echo, wait_for
from fake_tracer import FakeTracer

from muxtop.engine import SetLab, Switch
from muxtop.events import READ, WRITE
from muxtop.findings import busy_loop
from muxtop.snapshot import KIND_CONN, Totals, WaitRecord

pytestmark = pytest.mark.timeout(60)


def findings(engine, kind):
    return [d for d in engine.snapshot().diagnoses if d.kind == kind]


def conn_fds(engine):
    return {c.fd for c in engine.snapshot().connections if c.kind == KIND_CONN
            and c.state != "closed"}


def read_exactly(sock, size, timeout=10.0):
    data = bytearray()
    deadline = time.monotonic() + timeout
    while len(data) < size and time.monotonic() < deadline:
        if select.select([sock], [], [], 0.2)[0]:
            chunk = sock.recv(size - len(data))
            if not chunk:
                break
            data += chunk
    return bytes(data)


def test_naive_edge_is_a_stuck_read_until_switched_off(make_engine):
    engine = make_engine(trigger="edge", read_size=1024, lab=frozenset({"naive-edge"}),
                         stuck_after=0.5, publish_interval=0.1)
    with socket.create_connection(engine.address, timeout=10) as client:
        payload = os.urandom(100_000)
        client.sendall(payload)  # far more than one 1 KiB read per edge can take
        (finding,) = wait_for(lambda: findings(engine, "stuck-read"), timeout=10)
        assert finding.fd in conn_fds(engine)
        evidence = dict(finding.evidence)
        assert evidence["rx_queue"] > 0 and evidence["trigger"] == "edge"
        assert "EAGAIN" in finding.explanation
        assert engine.submit(SetLab("naive-edge", False)).result(5).ok
        assert read_exactly(client, len(payload)) == payload
        wait_for(lambda: not findings(engine, "stuck-read"), timeout=5)


def test_busy_writable_is_a_busy_loop_until_switched_off(make_engine):
    engine = make_engine(lab=frozenset({"busy-writable"}), publish_interval=0.1)
    clients = [socket.create_connection(engine.address, timeout=5) for _ in range(3)]
    try:
        (finding,) = wait_for(lambda: findings(engine, "busy-loop"), timeout=10)
        named = set(dict(finding.evidence)["fds"])
        assert named & conn_fds(engine)
        wait_for(lambda: [v for v in engine.snapshot().connections
                          if v.fd in named and v.kind == KIND_CONN and "!" in v.flags])
        assert "writable" in finding.explanation
        assert engine.submit(SetLab("busy-writable", False)).result(5).ok
        wait_for(lambda: not findings(engine, "busy-loop"), timeout=5)
        for client in clients:
            client.sendall(b"still echoing")
            assert read_exactly(client, 13) == b"still echoing"
    finally:
        for client in clients:
            client.close()


def test_no_backpressure_grows_the_out_buffer_a_stuck_write(make_engine):
    engine = make_engine(lab=frozenset({"no-backpressure"}), stuck_after=0.5,
                         publish_interval=0.1, sndbuf=8192)
    high_water = engine.config.high_water
    with socket.socket() as client:
        client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8192)
        client.settimeout(10)
        client.connect(engine.address)
        payload = os.urandom(4_000_000)
        client.sendall(payload)  # the server keeps reading: nothing pushes back
        view = wait_for(lambda: [c for c in engine.snapshot().connections
                                 if c.kind == KIND_CONN and c.out_buffer > 4 * high_water])[0]
        assert "B" not in view.flags
        (finding,) = wait_for(lambda: findings(engine, "stuck-write"), timeout=10)
        assert finding.fd == view.fd
        assert engine.submit(SetLab("no-backpressure", False)).result(5).ok
        assert read_exactly(client, len(payload), timeout=30) == payload
        wait_for(lambda: not findings(engine, "stuck-write"), timeout=5)


def test_interest_mismatch_when_the_kernel_lost_a_registration(make_engine):
    engine = make_engine(publish_interval=0.1)
    with socket.create_connection(engine.address, timeout=5) as client:
        client.sendall(b"x")
        assert client.recv(1) == b"x"
        (fd,) = wait_for(lambda: conn_fds(engine))
        engine.state.backend._epoll.unregister(fd)  # behind the engine's back
        (finding,) = wait_for(lambda: findings(engine, "interest-mismatch"))
        assert finding.fd == fd and "no such fd" in finding.explanation
        # A switch re-registers every fd from the engine's own table: healed.
        assert engine.submit(Switch(backend="poll")).result(5).ok
        assert engine.submit(Switch(backend="epoll")).result(5).ok
        wait_for(lambda: not findings(engine, "interest-mismatch"))
        client.sendall(b"y")
        assert client.recv(1) == b"y"


def test_oneshot_never_rearmed_is_an_interest_mismatch(make_engine):
    engine = make_engine(trigger="oneshot", publish_interval=0.1)
    with socket.create_connection(engine.address, timeout=5) as client:
        (fd,) = wait_for(lambda: conn_fds(engine))
        engine.state.backend._epoll.modify(fd, select.EPOLLONESHOT)  # looks like a fired oneshot
        (finding,) = wait_for(lambda: findings(engine, "interest-mismatch"))
        assert finding.fd == fd and "re-armed" in finding.explanation
        client.sendall(b"z")  # the echo is lost until re-armed...
        assert engine.submit(Switch(trigger="level")).result(5).ok  # ...a switch re-arms
        assert read_exactly(client, 1) == b"z"


def test_healthy_echo_of_1000_clients_has_no_finding(make_engine):
    engine = make_engine(publish_interval=0.1, stuck_after=1.0)
    seen = []

    def watch():
        seen.extend(engine.snapshot().diagnoses)

    payloads = [os.urandom(20_000) for _ in range(1000)]
    assert stream_echo(engine.address, payloads, chunk=2048, between=watch, timeout=50) \
        == payloads
    # Detectors run every 0.5 s: every Snapshot until one taken 1.5 s after the load (a few
    # runs of each, whatever the machine's load), none with a finding.
    after = time.monotonic() + 1.5

    def settled() -> bool:
        snapshot = engine.snapshot()
        seen.extend(snapshot.diagnoses)
        return snapshot.taken_at > after

    wait_for(settled, timeout=30)
    assert seen == []


SPIN_SERVER = textwrap.dedent("""
    import json, resource, sys
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (64, hard))
    from muxtop.engine import Engine, EngineConfig, SetLab
    engine = Engine(EngineConfig(port=0, publish_interval=0.1,
                                 lab=frozenset({"emfile-spin"}))).start()
    listener = next(c for c in engine.snapshot().connections if c.kind == "listener")
    print(engine.address[1], listener.fd, flush=True)
    for line in sys.stdin:
        if line.strip() == "off":
            engine.submit(SetLab("emfile-spin", False)).result(5)
        print(json.dumps([d.as_json() for d in engine.snapshot().diagnoses]), flush=True)
    engine.stop()
""")


def test_emfile_spin_is_a_busy_loop_on_the_listener_until_switched_off():
    server = subprocess.Popen([sys.executable, "-c", SPIN_SERVER], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    clients = []

    def report(command="report"):
        server.stdin.write(command + "\n")
        server.stdin.flush()
        return {d["kind"]: d for d in json.loads(server.stdout.readline())}

    try:
        port, listen_fd = map(int, server.stdout.readline().split())
        for _ in range(100):
            clients.append(socket.create_connection(("127.0.0.1", port), timeout=5))
        found = wait_for(lambda: (lambda r: r if "busy-loop" in r else None)(report()), 10)
        busy = found["busy-loop"]
        assert listen_fd in busy["evidence"]["fds"]
        assert "accept() fails" in busy["explanation"]
        assert "fd-pressure" in found
        report("off")
        wait_for(lambda: "busy-loop" not in report(), timeout=10)
        for client in clients[:60]:
            client.close()
        del clients[:60]
        clients[-1].sendall(b"served at last")
        assert read_exactly(clients[-1], 14) == b"served at last"
    finally:
        for client in clients:
            client.close()
        stop_child(server)


def test_the_busy_loop_finding_reads_alike_from_every_source():
    """One function words it (findings.busy_loop) for the engine and for a traced process:
    the cause it names comes from the most often ready fds alone."""
    def waits(*pairs):
        flat = tuple(x for pair in pairs for x in pair)
        return [WaitRecord(seq, 0.0, 0.0, 0.0, 3, flat, len(pairs)) for seq in range(50)]

    spin = (1000, 2000, 2.0, 10, 0.0001)  # waits/s, ready fds/s, per wait, bytes/s, p50
    assert busy_loop(100, 200, 2.0, 10, 0.0001, waits((5, READ))) is None  # not spinning
    kind, fd, explanation, evidence = busy_loop(*spin, waits((5, WRITE), (6, WRITE)))
    assert (kind, fd) == ("busy-loop", None)
    assert explanation == ("1,000 wait calls/s return 2.0 ready fds each but only 10 bytes/s "
                           "move: fds are reported writable with nothing to write (WRITE "
                           "interest left on)")
    assert dict(evidence) == {"waits_per_s": 1000, "events_per_s": 2000, "bytes_per_s": 10,
                              "fds": (5, 6), "events": ("WRITE", "WRITE")}
    assert busy_loop(*spin, waits((3, READ)), failing_listener=3)[2].endswith(
        "the listener stays readable while accept() fails (out of fds, no back-off)")
    assert busy_loop(*spin, waits((5, READ | WRITE)))[2].endswith(
        "the same fds are reported ready again and again, and nothing is read")


@pytest.mark.parametrize("events", [WRITE, READ, READ | WRITE])
def test_the_engine_and_a_trace_word_a_busy_loop_alike_for_the_same_figures(events):
    """A loop spinning on two fds, traced in another process (attach --trace's detector) and
    as the engine's own telemetry would give the same figures (the engine's detector): the
    same finding, word for word, whichever source found it."""
    from types import SimpleNamespace

    from muxtop.engine.diagnose import Detector
    from muxtop.snapshot import Rates, Totals
    from muxtop.trace.calls import TracedWait
    from muxtop.trace.diagnose import TraceDiagnoser
    from muxtop.trace.session import Trace

    spins = [TracedWait(1, "poll", i / 1000, 0.0001, 0.1, -1, 2, (5, events, 6, events), 2)
             for i in range(1000)]  # a second of polls returning at once, fds 5 and 6 ready
    trace = Trace(FakeTracer(spins, name="bpftrace", io=False))  # type: ignore[arg-type]
    trace.observe(1.0, {}, {})
    found, _ = TraceDiagnoser(2.0).review(1.0, trace, [], 0.0, held=False)
    [traced] = [f for f in found if f[0] == "busy-loop"]

    waits_per_s, events_per_s, per_wait, p50, p99, bytes_per_s = trace.rates()
    rates = Rates(waits_per_s, events_per_s, bytes_per_s, 0.0, 0.0, per_wait, p50, p99)
    engine = SimpleNamespace(conns={}, proxy=None, out_of_fds=False, accept_held=False,
                             listen_fd=3, backend=SimpleNamespace(name="poll",
                                                                  fileno=lambda: None))
    diagnoses = Detector(2.0).review(engine, 1.0, rates, None,  # type: ignore[arg-type]
                                     Totals(1000, 2000, 0, 0, 0, 0, 0, 0), tuple(trace.ring))
    [own] = [d for d in diagnoses if d.kind == "busy-loop"]

    assert (own.kind, own.fd, own.explanation, own.evidence) == traced
    assert own.explanation.startswith("1,000 wait calls/s return 2.0 ready fds each but only 0 "
                                      "bytes/s move: ")
    assert dict(own.evidence)["fds"] == (5, 6)


def test_a_stall_has_one_length_and_its_bytes_a_unit(make_engine):
    # A client that sends and never reads: "has not shrunk below 278016 bytes for 4.5 s"
    # beside "stuck-write fd 9 for 2.5s" (the finding's age from when the detector first
    # crossed the threshold). The finding now begins when the stall did, says its bytes in
    # B/KiB/MiB, and leaves the length to `since`.
    engine = make_engine(stuck_after=0.5, publish_interval=0.1, sndbuf=8192)
    with socket.socket() as client:
        client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8192)
        client.connect(engine.address)
        client.setblocking(False)
        payload = os.urandom(1 << 20)
        sent = 0
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not findings(engine, "stuck-write"):
            try:
                sent += client.send(payload[sent % len(payload):])
            except BlockingIOError:
                select.select([], [client], [], 0.05)
        (finding,) = wait_for(lambda: findings(engine, "stuck-write"), timeout=10)
        assert "peer is not reading" in finding.explanation
        assert re.search(r"below [\d.]+(B|KiB|MiB)\b", finding.explanation), finding.explanation
        assert not re.search(r"\d s\b", finding.explanation)  # no second length
        lasted = dict(finding.evidence)["seconds_without_progress"]
        assert lasted >= 0.5
        # since is the stall's start: the detector's now minus what it lasted, not its now
        assert engine.snapshot().taken_at - finding.since >= lasted - 0.05


def test_first_seen_dates_a_finding_from_what_it_has_lasted():
    from muxtop.findings import FirstSeen

    stamps = FirstSeen()
    found = ("stuck-write", 9, "x", (("seconds_without_progress", 2.5),))
    (first,) = stamps.stamp(10.0, [found])
    assert first.since == 7.5  # was 10.0: "for 0.0s" beside a stall of 2.5 s
    (later,) = stamps.stamp(12.0, [("stuck-write", 9, "x", (("seconds_without_progress", 4.5),))])
    assert later.since == 7.5
    (plain,) = FirstSeen().stamp(10.0, [("busy-loop", None, "x", (("waits_per_s", 9),))])
    assert plain.since == 10.0


def test_clients_hanging_up_together_are_not_a_busy_loop():
    """500 clients closing within a second: many wait calls, each returning FINs (ready, no
    byte), read as a spin for a second after a flood ended. A close, like an accept, is work
    done; the same figures without them still spin."""
    from types import SimpleNamespace

    from muxtop.engine.diagnose import EVERY, Detector
    from muxtop.snapshot import Rates

    fins = tuple(WaitRecord(seq, 0.0, 0.0, 0.0, 600, (7 + seq % 500, READ), 1)
                 for seq in range(400))
    rates = Rates(400, 500, 0.0, 0.0, 0.0, 1.25, 0.0001, 0.0002)  # waits, events, no bytes
    engine = SimpleNamespace(conns={}, proxy=None, out_of_fds=False, accept_held=False,
                             listen_fd=3, backend=SimpleNamespace(name="epoll",
                                                                  fileno=lambda: None))

    def busy(closed_then: int, closed_now: int) -> bool:
        detector = Detector(2.0)
        for now, closed in ((0.0, closed_then), (1.0 + EVERY, closed_now)):
            found = detector.review(engine, now, rates, None,  # type: ignore[arg-type]
                                    Totals(400, 500, 0, 0, 500, closed, 0, 0), fins)
        return any(d.kind == "busy-loop" for d in found)

    assert not busy(0, 500)  # they hung up: closes, not a spin
    assert busy(500, 500)  # the same FINs reported again and again, nobody closing: a spin
