"""`muxtop attach --trace`: the wait calls of child servers (tests/mux_servers.py), traced by
strace and, where it can run, by bpftrace, against what each server says it received.

Every test starts its own server on 127.0.0.1 port 0 and kills it in a finally; tracing is
bounded to a few seconds. A tracer that cannot run here skips its tests with the reason.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import test_attach

from muxtop.attach.reader import Attacher
from muxtop.findings import BUSY_WAITS_PER_S
from muxtop.trace import bpftrace, strace
from muxtop.trace.choose import open_tracer
from muxtop.trace.permissions import tracer_of
from muxtop.trace.session import Trace
from muxtop.traced import with_trace

pytestmark = pytest.mark.timeout(60)

SERVERS = Path(__file__).with_name("mux_servers.py")
REPO = Path(__file__).resolve().parents[1]
TRACERS = ["strace", "bpftrace"]


def can_trace(tool: str, pid: int) -> None:
    problem = bpftrace.problem() if tool == "bpftrace" else strace.problem(pid)
    if problem:
        pytest.skip(f"{tool} cannot run here: {problem}")


class Server(test_attach.Server):
    """A tests/mux_servers.py server; `ready` keeps what each of its non-empty waits got."""

    def __init__(self, mode: str) -> None:
        self.ready: list[list[list[int]]] = []
        super().__init__(SERVERS, mode)

    def heard(self, message: dict) -> None:
        if "ready" in message:
            self.ready.append(sorted(message["ready"]))

    def said(self, count: int, timeout: float = 5.0) -> list:
        """Its ready lists, once it has said at least `count` of them (or the timeout)."""
        deadline = time.monotonic() + timeout
        while len(self.ready) < count and (remaining := deadline - time.monotonic()) > 0:
            try:
                self.expect("ready", remaining)
            except AssertionError:
                break
        return self.ready

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.pid, signal.SIGCONT)  # a stopped process dies only once resumed
        super().stop()


@pytest.fixture
def spawn():
    servers = []

    def start(mode: str) -> Server:
        servers.append(Server(mode))
        return servers[-1]

    yield start
    for server in servers:
        server.stop()


@contextlib.contextmanager
def traced(server: Server, tool: str, io: bool = True, stuck_after: float = 0.5):
    can_trace(tool, server.pid)
    attacher = Attacher(server.pid, stuck_after=stuck_after)
    with_trace(attacher, Trace(open_tracer(server.pid, tool, io=io)))
    try:
        # The tracer sees the process once two of its wait calls are traced (each server
        # waits 0.1 s at most): the second began after the tracer came, so what a test makes
        # the server do next is traced whole, however long the tracer took to attach.
        read_until(attacher, lambda s: len(s.waits) >= 2)
        yield attacher
    finally:
        attacher.close()
    # Detached: the server is no one's tracee any more.
    assert tracer_of(server.pid) in (0, -1)


def read_until(attacher: Attacher, found):
    return test_attach.read_until(attacher, found, timeout=20.0)


def traced_ready(snapshot) -> list:
    return [sorted([fd, events] for fd, events in w.pairs()) for w in snapshot.waits
            if w.count]


def talk(port: int) -> None:
    """Two clients, three short messages each, then both close (EOF is readable too)."""
    clients = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(2)]
    try:
        for round_ in range(3):
            for client in clients:
                client.sendall(f"m{round_}".encode())
                time.sleep(0.03)
    finally:
        for client in clients:
            client.close()


# -- what the servers received is what the trace shows --------------------------------------

@pytest.mark.parametrize("tool", TRACERS)
@pytest.mark.parametrize("mode", ["epoll-level", "epoll-edge", "epoll-pointer", "poll",
                                  "select"])
def test_traced_ready_lists_match_what_the_server_received(mode, tool, spawn):
    server = spawn(mode)
    with traced(server, tool) as attacher:
        talk(server.info["port"])
        said = server.said(8)
        # bpftrace sums reads and writes in the kernel and tells them every 200 ms
        snapshot = read_until(attacher, lambda s: len(traced_ready(s)) >= len(said)
                              and s.trace.io_calls >= 6)
        said = server.said(len(traced_ready(snapshot)), timeout=0.5)
        assert traced_ready(snapshot) == said, (mode, tool)
        # 2 accepts, 6 messages and 2 EOFs, in 10 ready lists or fewer (a busy machine lets
        # some share a wait): the listener and both clients, each seen ready.
        assert len({fd for ready in said for fd, _ in ready}) >= 3, said
        assert snapshot.source == "traced" and snapshot.trace.tracer == tool
        calls = snapshot.wait_calls
        assert len(calls) == len(snapshot.waits)
        assert {c.tid for c in calls} == {server.pid}
        if mode.startswith("epoll"):
            assert {c.epfd for c in calls} == {server.info["epoll"]}
            assert all(not c.unmapped for c in calls)
            assert {c.syscall for c in calls} <= {"epoll_wait", "epoll_pwait"}
        else:
            assert {c.epfd for c in calls} == {-1}
            assert snapshot.backend == mode
        assert snapshot.rates.waits > 0 and snapshot.totals.waits == len(snapshot.waits)
        assert snapshot.trace.io and snapshot.trace.io_calls >= 6  # its reads are traced too


def test_pointer_data_maps_to_fds_through_fdinfo(spawn):
    """The pointer server's epoll data are heap addresses: the trace gets them back, and only
    the traced epoll_ctl calls and /proc/PID/fdinfo's data: column turn them into fds."""
    server = spawn("epoll-pointer")
    with traced(server, "strace") as attacher:
        client = socket.create_connection(("127.0.0.1", server.info["port"]), timeout=5)
        try:
            client.sendall(b"hi")
            # Both its waits traced, and an interest list read after the accept.
            snapshot = read_until(attacher, lambda s: len(traced_ready(s)) >= 2 and
                                  sum(len(e.watches) for e in s.epoll) == 2)
        finally:
            client.close()
    [epoll_set] = snapshot.epoll
    data = {w.fd: w.data for w in epoll_set.watches}
    assert all(value > 0xFFFF for value in data.values())  # addresses, not fd numbers
    fds = {fd for w in snapshot.waits for fd, _ in w.pairs()}
    assert fds == set(data) and server.info["listener"] in fds


@pytest.mark.parametrize("tool", TRACERS)
def test_the_naive_edge_servers_stuck_read_is_proven(tool, spawn):
    server = spawn("epoll-edge")
    with traced(server, tool, stuck_after=0.5) as attacher:
        client = socket.create_connection(("127.0.0.1", server.info["port"]), timeout=5)
        try:
            client.sendall(b"x" * 1000)  # one edge; the server reads 16 bytes of it, once
            snapshot = read_until(attacher, lambda s: any(
                dict(d.evidence).get("proven") for d in s.diagnoses))
        finally:
            client.close()
    [finding] = [d for d in snapshot.diagnoses if d.kind == "stuck-read"]
    evidence = dict(finding.evidence)
    assert evidence["proven"] is True and evidence["last_read_bytes"] == 16
    assert evidence["last_read_asked"] == 16 and evidence["rx_queue"] == 1000 - 16
    assert evidence["waits_since"] >= 1 and evidence["epoll_fd"] == server.info["epoll"]
    assert "never saw EAGAIN" in finding.explanation and "proven" in finding.explanation
    conn = next(v for v in snapshot.connections if v.fd == finding.fd)
    assert conn.last_events & select.EPOLLIN and conn.last_ready is not None
    io = next(io for io in snapshot.fd_io if io.fd == finding.fd)
    assert io.reads == 1 and io.read_bytes == 16 and io.eagain_at is None


def poke_until(server: Server, attacher: Attacher, kind: str):
    """Connect, send four bytes the server will never read, read until a `kind` finding."""
    client = socket.create_connection(("127.0.0.1", server.info["port"]), timeout=5)
    try:
        client.sendall(b"ping")
        snapshot = read_until(attacher, lambda s: any(d.kind == kind for d in s.diagnoses))
    finally:
        client.close()
    [finding] = [d for d in snapshot.diagnoses if d.kind == kind]
    return snapshot, finding, dict(finding.evidence)


def test_an_fd_reported_again_and_again_and_never_read_is_found(spawn):
    server = spawn("ignore")
    with traced(server, "strace", stuck_after=0.5) as attacher:
        snapshot, finding, evidence = poke_until(server, attacher, "never-read")
    assert evidence["reports"] >= 5 and evidence["seconds"] >= 0.5
    assert evidence["rx_queue"] == 4 and "never read it" in finding.explanation


@pytest.mark.parametrize("tool", TRACERS)
def test_a_busy_loop_in_the_target_is_found(tool, spawn):
    server = spawn("spin")  # every wait(0) reports the fd, readable for ever
    with traced(server, tool, io=False) as attacher:
        snapshot, finding, evidence = poke_until(server, attacher, "busy-loop")
    assert evidence["waits_per_s"] >= BUSY_WAITS_PER_S
    assert evidence["bytes_per_s"] < evidence["events_per_s"]
    assert finding.named_fds() and snapshot.trace.io is False


def test_read_findings_wait_while_the_target_is_stopped(spawn):
    """SIGSTOP: the queue stays full because nothing runs, not because the app forgot it."""
    server = spawn("epoll-edge")
    attacher = Attacher(server.pid, stuck_after=0.3)
    client = socket.create_connection(("127.0.0.1", server.info["port"]), timeout=5)
    try:
        time.sleep(0.2)
        os.kill(server.pid, signal.SIGSTOP)
        client.sendall(b"y" * 500)
        deadline = time.monotonic() + 1.5
        while time.monotonic() < deadline:
            snapshot = attacher.read()
            assert not [d for d in snapshot.diagnoses if d.kind == "stuck-read"]
            time.sleep(0.15)
        assert snapshot.process.status == "stopped"
        from muxtop.attach import report
        assert "STOPPED" in report.to_text(snapshot)
        os.kill(server.pid, signal.SIGCONT)  # now it reads 16 bytes and stops: stuck
        snapshot = read_until(attacher, lambda s: any(d.kind == "stuck-read"
                                                      for d in s.diagnoses))
        assert snapshot.process.status != "stopped"
        assert [d for d in snapshot.diagnoses if d.kind == "stuck-read"]
    finally:
        client.close()
        os.kill(server.pid, signal.SIGCONT)


# -- the command line ------------------------------------------------------------------------

def test_once_json_gathers_a_window_of_wait_calls(spawn):
    server = spawn("epoll-edge")
    can_trace("strace", server.pid)
    client = socket.create_connection(("127.0.0.1", server.info["port"]), timeout=5)
    try:
        command = subprocess.Popen(
            [sys.executable, "-m", "muxtop", "attach", str(server.pid), "--once", "--json",
             "--trace", "strace", "--window", "1.5", "--stuck-after", "0.5"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO)
        deadline = time.monotonic() + 20  # strace attached: its TracerPid is in /proc
        while tracer_of(server.pid) in (0, -1) and time.monotonic() < deadline:
            time.sleep(0.02)
        client.sendall(b"z" * 100)
        out, err = command.communicate(timeout=30)
    finally:
        client.close()
    assert command.returncode == 0, err
    assert "slower" in err  # strace's cost is said
    doc = json.loads(out)
    assert doc["trace"]["tracer"] == "strace" and doc["trace"]["state"] == "tracing"
    waits = doc["waits"]
    assert waits and all(w["syscall"] == "epoll_wait" for w in waits)
    assert all(w["epfd"] == server.info["epoll"] and w["tid"] == server.pid for w in waits)
    fds = {r["fd"] for w in waits for r in w["ready"]}
    assert {r["events"] for w in waits for r in w["ready"]} == {"IN"}
    conn = next(f["fd"] for f in doc["fds"] if f["kind"] == "conn")
    assert conn in fds
    assert any(io["fd"] == conn and io["read_bytes"] == 16 for io in doc["io"])
    assert tracer_of(server.pid) == 0


def test_no_tracer_is_one_line_that_names_what_is_missing(spawn):
    server = spawn("poll")
    env = dict(os.environ, PATH=str(REPO / "no-such-dir"))  # neither tool can be found
    result = subprocess.run(
        [sys.executable, "-m", "muxtop", "attach", str(server.pid), "--once", "--trace"],
        capture_output=True, text=True, timeout=30, cwd=REPO, env=env, check=False)
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert result.stderr.startswith(f"muxtop attach: cannot trace process {server.pid}: ")
    assert "bpftrace is not installed" in result.stderr
    assert "strace is not installed" in result.stderr
    assert "apt-get install" in result.stderr


def test_a_process_already_traced_is_refused_with_who_traces_it(spawn):
    server = spawn("poll")
    can_trace("strace", server.pid)
    other = subprocess.Popen(["strace", "-qq", "-o", os.devnull, "-p", str(server.pid)])
    try:
        deadline = time.monotonic() + 5
        while tracer_of(server.pid) != other.pid and time.monotonic() < deadline:
            time.sleep(0.02)
        result = subprocess.run(
            [sys.executable, "-m", "muxtop", "attach", str(server.pid), "--once", "--trace",
             "strace"], capture_output=True, text=True, timeout=30, cwd=REPO, check=False)
    finally:
        other.send_signal(signal.SIGINT)
        other.wait(5)
    assert result.returncode == 1
    assert f"already traced by PID {other.pid}" in result.stderr
    assert result.stderr.count("\n") == 1
