"""attach, round two (issue 29): the stalls that grow no queue, the true ages tcp_info gives,
and no false alarm from sockets that live between two reads. Each against a real program:
nginx proxying to a backend that never answers, an asyncio server that stops reading, a
Python epoll server; every finding checked to name the right fd."""

from __future__ import annotations

import json
import os
import select
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from muxtop.attach.reader import Attacher

pytestmark = pytest.mark.timeout(40)


class Child:
    """A child that prints JSON lines (the first when it is ready); killed by stop()."""

    def __init__(self, argv: list[str], **popen) -> None:
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stdin=subprocess.PIPE,
                                     bufsize=0, **popen)
        self.pid = self.proc.pid

    def expect(self, key: str, timeout: float = 10.0) -> dict:
        deadline = time.monotonic() + timeout
        while (remaining := deadline - time.monotonic()) > 0:
            if not select.select([self.proc.stdout], [], [], remaining)[0]:
                break
            line = self.proc.stdout.readline()
            if not line:
                break
            message = json.loads(line)
            if key in message:
                return message
        raise AssertionError(f"the child never said {key!r}")

    def tell(self, line: str) -> None:
        self.proc.stdin.write(line.encode() + b"\n")

    def stop(self) -> None:
        self.proc.kill()
        self.proc.wait(5)
        self.proc.stdout.close()
        self.proc.stdin.close()


@pytest.fixture
def child():
    children = []

    def start(*argv: str, **popen) -> Child:
        children.append(Child(list(argv), **popen))
        return children[-1]

    yield start
    for c in children:
        c.stop()


@pytest.fixture
def opened():
    """Sockets the test opens, closed at its end whatever happens."""
    sockets: list[socket.socket] = []
    yield sockets
    for s in sockets:
        s.close()


def read_until(attacher: Attacher, found, timeout: float = 20.0, every: float = 0.1):
    deadline = time.monotonic() + timeout
    while True:
        snapshot = attacher.read()
        if found(snapshot):
            return snapshot
        if time.monotonic() > deadline:
            raise AssertionError(f"not in {timeout:g} s; the last look found "
                                 f"{[(d.kind, d.fd, d.explanation) for d in snapshot.diagnoses]}")
        time.sleep(every)


def kinds(snapshot, kind: str) -> list:
    return [d for d in snapshot.diagnoses if d.kind == kind]


def fd_of(snapshot, peer: str) -> int:
    """The target's fd whose remote address is `peer`."""
    [fd] = [v.fd for v in snapshot.connections if v.peer == peer]
    return fd


def address(pair) -> str:
    return f"{pair[0]}:{pair[1]}"


# A Python epoll server: edge-triggered connections read 16 bytes per event (the seed's bug),
# or, "hold", accepted and never read; "close" on stdin closes every held connection.
EPOLL_SERVER = r'''
import json, select, socket, sys
mode = sys.argv[1]
listener = socket.socket()
listener.bind(("127.0.0.1", 0))
listener.listen(64)
ep = select.epoll()
ep.register(listener.fileno(), select.EPOLLIN)
ep.register(sys.stdin.fileno(), select.EPOLLIN)
print(json.dumps({"port": listener.getsockname()[1]}), flush=True)
conns = {}
while True:
    for fd, _ in ep.poll():
        if fd == listener.fileno():
            c, _ = listener.accept()
            conns[c.fileno()] = c
            if mode == "stuck":
                ep.register(c.fileno(), select.EPOLLIN | select.EPOLLET)
            print(json.dumps({"accepted": c.fileno()}), flush=True)
        elif fd == sys.stdin.fileno():
            sys.stdin.readline()
            for c in conns.values():
                c.close()
            print(json.dumps({"closed": len(conns)}), flush=True)
            conns = {}
        else:
            print(json.dumps({"read": fd, "n": len(conns[fd].recv(16))}), flush=True)
'''


@pytest.fixture
def epoll_server(tmp_path, child):
    script = tmp_path / "epoll_server.py"
    script.write_text(EPOLL_SERVER)

    def start(mode: str) -> Child:
        server = child(sys.executable, "-u", str(script), mode)
        server.info = server.expect("port")
        return server

    return start


# -- true ages from tcp_info -------------------------------------------------------------------

def test_a_stall_older_than_the_attach_reads_its_true_age(epoll_server, opened):
    """The bytes waited long before muxtop attached: the finding and the row say so."""
    server = epoll_server("stuck")
    client = socket.create_connection(("127.0.0.1", server.info["port"]), timeout=5)
    opened.append(client)
    fd = server.expect("accepted")["accepted"]
    client.sendall(b"x" * 1000)
    sent = time.monotonic()
    assert server.expect("read")["n"] == 16
    while time.monotonic() - sent < 1.5:  # the stall's age is what is measured
        time.sleep(0.1)

    attacher = Attacher(server.pid, stuck_after=0.3)
    snapshot = read_until(attacher, lambda s: kinds(s, "stuck-read"))
    [finding] = kinds(snapshot, "stuck-read")
    assert finding.fd == fd
    assert dict(finding.evidence)["seconds"] >= 1.5, finding.explanation
    [row] = [v for v in snapshot.connections if v.fd == fd]
    assert snapshot.taken_at - row.last_io_at >= 1.5  # idle since the bytes came
    assert snapshot.taken_at - row.opened_at >= 1.5  # open since the handshake at least


def test_bytes_in_count_data_not_the_fin(epoll_server, opened):
    server = epoll_server("hold")
    client = socket.create_connection(("127.0.0.1", server.info["port"]), timeout=5)
    opened.append(client)
    fd = server.expect("accepted")["accepted"]
    client.sendall(b"x" * 1000)
    client.shutdown(socket.SHUT_WR)
    attacher = Attacher(server.pid)
    snapshot = read_until(attacher, lambda s: any(
        v.fd == fd and v.tcp is not None and v.tcp.state == "CLOSE_WAIT"
        for v in s.connections))
    [row] = [v for v in snapshot.connections if v.fd == fd]
    assert (row.bytes_in, row.rx_queue) == (1000, 1000)  # was 1,001 and 1,001: the FIN
    client_view = Attacher(os.getpid()).read()
    [mine] = [v for v in client_view.connections if v.fd == client.fileno()]
    assert mine.bytes_out == 1000  # our SYN and FIN are no bytes sent


# -- CLOSE_WAIT: the same socket across reads ------------------------------------------------

def test_close_wait_sockets_that_live_between_two_reads_raise_nothing(epoll_server, opened):
    """A busy server that closes each connection soon after its peer did (redis under
    redis-benchmark -k 0) has a dozen in CLOSE_WAIT at any instant, never the same ones."""
    server = epoll_server("hold")
    attacher = Attacher(server.pid, stuck_after=60)
    seen = []
    for _ in range(3):
        batch = [socket.create_connection(("127.0.0.1", server.info["port"]), timeout=5)
                 for _ in range(12)]
        opened.extend(batch)
        for _ in batch:
            server.expect("accepted")
        for client in batch:
            client.close()
        snapshot = read_until(attacher, lambda s: sum(
            1 for v in s.connections if v.tcp is not None and v.tcp.state == "CLOSE_WAIT") >= 12)
        seen.append([(d.kind, d.explanation) for d in snapshot.diagnoses])
        server.tell("close")  # the server closes them: the next batch are new sockets
        server.expect("closed")
    assert seen == [[], [], []]

    # The same dozen at two reads is a pile, however young.
    batch = [socket.create_connection(("127.0.0.1", server.info["port"]), timeout=5)
             for _ in range(12)]
    opened.extend(batch)
    for _ in batch:
        server.expect("accepted")
    for client in batch:
        client.close()
    read_until(attacher, lambda s: kinds(s, "close-wait"))


# -- unread bytes on an fd no epoll set will report --------------------------------------------

ASYNCIO_SERVER = r'''
import asyncio, json

async def handle(reader, writer):
    # Never reads: asyncio's StreamReader buffers 128 KiB, then stops reading the socket
    # (flow control removes it from epoll) and the kernel queue fills.
    print(json.dumps({"accepted": writer.get_extra_info("socket").fileno()}), flush=True)
    await asyncio.sleep(3600)

async def main():
    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    print(json.dumps({"port": server.sockets[0].getsockname()[1]}), flush=True)
    await asyncio.sleep(3600)

asyncio.run(main())
'''


def test_an_asyncio_handler_that_never_reads_is_found_on_its_fd(tmp_path, child, opened):
    script = tmp_path / "asyncio_server.py"
    script.write_text(ASYNCIO_SERVER)
    server = child(sys.executable, "-u", str(script))
    port = server.expect("port")["port"]
    client = socket.create_connection(("127.0.0.1", port), timeout=5)
    opened.append(client)
    fd = server.expect("accepted")["accepted"]
    client.setblocking(False)
    sent = 0
    deadline = time.monotonic() + 10
    while sent < 400_000 and time.monotonic() < deadline:
        try:
            sent += client.send(b"x" * 65536)
        except BlockingIOError:
            select.select([], [client], [], 0.2)

    attacher = Attacher(server.pid, stuck_after=0.5)
    snapshot = read_until(attacher, lambda s: kinds(s, "unread"))
    [finding] = kinds(snapshot, "unread")
    assert finding.fd == fd
    assert "no epoll set watches it" in finding.explanation
    evidence = dict(finding.evidence)
    assert evidence["rx_queue"] > 0 and evidence["app_read_bytes"] >= 65536
    assert [d.kind for d in snapshot.diagnoses] == ["unread"]


# -- the proxy whose backend never answers -----------------------------------------------------

NGINX_CONF = """
daemon off;
master_process off;
worker_processes 1;
pid {tmp}/nginx.pid;
error_log {tmp}/error.log;
events {{ worker_connections 64; }}
http {{
    access_log off;
    client_body_temp_path {tmp}/body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    server {{
        listen 127.0.0.1:{port};
        location / {{ proxy_pass http://127.0.0.1:{backend}; proxy_read_timeout 120s; }}
    }}
}}
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_for_port(port: int, proc: subprocess.Popen, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"nginx exited ({proc.returncode})")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise AssertionError("nginx never listened")


@pytest.mark.skipif(shutil.which("nginx") is None and not Path("/usr/sbin/nginx").exists(),
                    reason="nginx is not installed (apt-get install nginx-light)")
def test_nginx_waiting_on_a_silent_backend_is_blamed_on_the_upstream_fd(tmp_path, opened):
    backend = socket.socket()
    opened.append(backend)
    backend.bind(("127.0.0.1", 0))
    backend.listen(8)
    port = _free_port()
    conf = tmp_path / "nginx.conf"
    conf.write_text(NGINX_CONF.format(tmp=tmp_path, port=port,
                                      backend=backend.getsockname()[1]))
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    proc = subprocess.Popen([nginx, "-c", str(conf), "-p", str(tmp_path), "-e",
                             str(tmp_path / "error.log")], stderr=subprocess.DEVNULL)
    try:
        _wait_for_port(port, proc)
        client = socket.create_connection(("127.0.0.1", port), timeout=5)
        opened.append(client)
        request = b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n"
        client.sendall(request)
        backend.settimeout(10)
        upstream, _ = backend.accept()  # accepts, reads the request, never answers
        opened.append(upstream)
        got = b""
        while b"\r\n\r\n" not in got:
            got += upstream.recv(4096)
        client.sendall(b"GET /b HTTP/1.1\r\nHost: x\r\n\r\n")  # pipelined behind the first

        attacher = Attacher(proc.pid, stuck_after=0.5)
        snapshot = read_until(attacher, lambda s: kinds(s, "no-reply"))
        [finding] = kinds(snapshot, "no-reply")
        upstream_fd = fd_of(snapshot, address(upstream.getsockname()))
        client_fd = fd_of(snapshot, address(client.getsockname()))
        assert finding.fd == upstream_fd
        evidence = dict(finding.evidence)
        assert evidence["client_fd"] == client_fd
        assert evidence["peer"] == address(backend.getsockname())
        assert f"to {evidence['peer']}" in finding.explanation
        # The client's pipelined request waits unread, and that is not the client fd's stall.
        later = read_until(attacher, lambda s: s.taken_at - finding.since >= 1.0)
        assert [(d.kind, d.fd) for d in later.diagnoses] == [("no-reply", upstream_fd)]
        assert [v.rx_queue for v in later.connections if v.fd == client_fd] == [28]
    finally:
        proc.kill()
        proc.wait(5)


# -- where each thread waits -------------------------------------------------------------------

def test_each_thread_says_where_it_is_blocked(epoll_server):
    """/proc/PID/task/*/syscall, no tracer: the server waits in epoll_wait(epfd, …, -1)."""
    from muxtop.attach import report

    server = epoll_server("hold")
    attacher = Attacher(server.pid)
    snapshot = read_until(attacher, lambda s: s.epoll and any(
        "epoll_wait" in line or "epoll_pwait" in line for line in s.target.threads))
    epfd = snapshot.epoll[0].fd
    [line] = snapshot.target.threads
    assert line.startswith(f"tid {server.pid} (python")
    assert f"({epfd}, …, " in line and line.rstrip().split(" in ")[0].endswith("-1 (forever))")
    assert f"thread {line}" in report.header_lines(snapshot)
    assert report.to_json(snapshot)["threads"] == [line]


# -- what is not a connection ------------------------------------------------------------------

CHANNEL = r'''
import json, os, socket, time
parent, child = socket.socketpair()
if os.fork() == 0:  # the child keeps its end, as an nginx worker does its master's channel
    parent.close()
    time.sleep(60)
    os._exit(0)
child.close()
print(json.dumps({"channel": parent.fileno()}), flush=True)
time.sleep(60)
'''


def test_a_socketpair_shared_with_another_process_is_no_connection(tmp_path, child):
    script = tmp_path / "channel.py"
    script.write_text(CHANNEL)
    # its own session, so that the kill reaps the forked child too
    proc = child(sys.executable, "-u", str(script), start_new_session=True)
    try:
        fd = proc.expect("channel")["channel"]
        snapshot = Attacher(proc.pid).read()
        [row] = [v for v in snapshot.connections if v.fd == fd]
        assert row.kind == "other" and "other end in another process" in row.note
        assert snapshot.open_connections == 0
        # a master's workers serve the connections: the child is offered
        [kid] = psutil.Process(proc.pid).children()
        assert any(f"child process(es) ({kid.pid})" in n.text and "attach --name" in n.text
                   for n in snapshot.notices)
    finally:
        os.killpg(proc.pid, 9)


# -- a tracer that loses lines -----------------------------------------------------------------

def test_rates_are_scaled_up_for_the_lines_the_tracer_lost():
    """bpftrace's "Lost N events": a quarter of the lines gone takes a quarter of the waits
    with them; the rates are corrected and the trace line says so."""
    from muxtop.attach.traced import trace_line
    from muxtop.snapshot import Rates
    from muxtop.trace.calls import TracedWait
    from muxtop.trace.session import Trace

    class LossyTracer:
        name, state, note, io, since, ended = "bpftrace", "tracing", "", False, 0.0, ""
        waits = io_calls = 0

        def __init__(self) -> None:
            self.calls: list = []
            self.lines_seen = self.dropped = 0

        def drain(self) -> list:
            calls, self.calls = self.calls, []
            return calls

        def lost(self) -> int:
            return self.dropped

        def stop(self) -> None:
            pass

    tracer = LossyTracer()
    trace = Trace(tracer)  # type: ignore[arg-type]
    trace.observe(0.5, {}, {})
    # 300 waits seen in a second (one line each); 100 more lines were lost
    tracer.calls = [TracedWait(1, "poll", 0.5 + i / 300, 0.0001, 0.1, -1, 3, (), 0)
                    for i in range(300)]
    tracer.lines_seen, tracer.dropped = 300, 100
    trace.observe(1.5, {}, {})
    waits_per_s, *_ = trace.rates()
    assert waits_per_s == pytest.approx(400)
    info = trace.info()
    assert info.lost == 100 and info.loss_share == pytest.approx(0.25)
    line = trace_line(_traced_snapshot(info, Rates(400, 0, 0, 0, 0, 0, 0, 0)))
    assert "100 events lost (25.0% of the latest: the rates are scaled up" in line


def _traced_snapshot(info, rates):
    from muxtop.snapshot import Snapshot, Totals
    return Snapshot(source="attach", taken_at=2.0, wall_time=0.0, started_at=0.0, backend="?",
                    trigger="-", protocol="?", listen="", connections=(), waits=(),
                    totals=Totals(0, 0, 0, 0, 0, 0, 0, 0), rates=rates, process=None,
                    registered=0, open_connections=0, trace=info)


# -- attach --trace as a stream ------------------------------------------------------------------

def _stream(pid: int, *flags: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "muxtop", "attach", str(pid), "--trace",
                             "strace", "--interval", "0.2", *flags],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _traced(pid: int, command: subprocess.Popen) -> None:
    from muxtop.trace.permissions import tracer_of
    deadline = time.monotonic() + 20  # strace attached: its TracerPid is in /proc
    while tracer_of(pid) in (0, -1) and time.monotonic() < deadline:
        assert command.poll() is None, command.communicate()
        time.sleep(0.02)


def _line(command: subprocess.Popen, timeout: float = 10.0) -> str:
    assert select.select([command.stdout], [], [], timeout)[0], "attach printed nothing"
    return command.stdout.readline()


@pytest.mark.parametrize("mode", ["--json", "--text"])
def test_trace_streams_carry_each_wait_once_and_the_text_shows_the_trace(mode, epoll_server,
                                                                         opened):
    from muxtop.trace import strace
    server = epoll_server("stuck")
    if problem := strace.problem(server.pid):
        pytest.skip(f"strace cannot run here: {problem}")
    client = socket.create_connection(("127.0.0.1", server.info["port"]), timeout=5)
    opened.append(client)
    server.expect("accepted")
    command = _stream(server.pid, mode)
    try:
        _traced(server.pid, command)
        if mode == "--text":
            client.sendall(b"x" * 10)
            deadline, seen = time.monotonic() + 15, ""
            while "traced by strace" not in seen or "epoll_wait" not in seen.split(
                    "traced by strace", 1)[-1]:
                assert time.monotonic() < deadline, seen[-2000:]
                seen += _line(command)
            return
        seqs: list[int] = []
        for _ in range(12):  # a poke, then a line: some lines carry waits, none repeats one
            client.sendall(b"x" * 10)
            server.expect("read")
            doc = json.loads(_line(command))
            assert doc["trace"]["tracer"] == "strace"
            seqs += [w["seq"] for w in doc["waits"]]
        assert len(seqs) >= 4 and seqs == sorted(set(seqs)), seqs
    finally:
        command.terminate()
        command.communicate(timeout=10)


# -- byte rates of short connections -----------------------------------------------------------

def test_a_connection_that_lives_less_than_two_reads_counts_in_the_rates(epoll_server, opened):
    """nginx under ab read "in 0 B/s" at 13k requests/s: only sockets seen at two reads in a
    row counted. One new since the last read moved all its bytes since then."""
    server = epoll_server("hold")
    attacher = Attacher(server.pid)
    attacher.read()
    client = socket.create_connection(("127.0.0.1", server.info["port"]), timeout=5)
    opened.append(client)
    server.expect("accepted")
    client.sendall(b"x" * 100_000)
    snapshot = read_until(attacher, lambda s: any(v.bytes_in == 100_000
                                                  for v in s.connections))
    assert snapshot.rates.bytes_in > 0  # was 0: the socket was not there at the read before


LEVEL_SERVER = r'''
import json, selectors, socket, time
sel = selectors.DefaultSelector()  # epoll, level-triggered
listener = socket.create_server(("127.0.0.1", 0))
sel.register(listener, selectors.EVENT_READ)
print(json.dumps({"port": listener.getsockname()[1]}), flush=True)
while True:
    for key, _ in sel.select():
        if key.fileobj is listener:
            c, _ = listener.accept()
            sel.register(c, selectors.EVENT_READ)
            print(json.dumps({"accepted": c.fileno()}), flush=True)
        else:
            key.fileobj.recv(4096)
            time.sleep(600)  # a handler that blocks: the loop never waits again
'''


def test_bytes_on_a_level_triggered_fd_while_the_loop_is_stuck_elsewhere(tmp_path, child,
                                                                           opened):
    script = tmp_path / "level_server.py"
    script.write_text(LEVEL_SERVER)
    server = child(sys.executable, "-u", str(script))
    port = server.expect("port")["port"]
    first = socket.create_connection(("127.0.0.1", port), timeout=5)
    second = socket.create_connection(("127.0.0.1", port), timeout=5)
    opened += [first, second]
    server.expect("accepted")
    fd = server.expect("accepted")["accepted"]
    first.sendall(b"GET")  # its handler blocks
    attacher = Attacher(server.pid, stuck_after=0.5)
    read_until(attacher, lambda s: any("nanosleep" in line for line in s.target.threads))
    second.sendall(b"x" * 500)
    snapshot = read_until(attacher, lambda s: kinds(s, "unread"))
    [finding] = kinds(snapshot, "unread")
    assert finding.fd == fd and "watched level-triggered" in finding.explanation
    assert dict(finding.evidence)["rx_queue"] == 500


# -- sendfile ----------------------------------------------------------------------------------

SENDFILE_SERVER = r'''
import json, os, socket, sys, tempfile
listener = socket.create_server(("127.0.0.1", 0))
print(json.dumps({"port": listener.getsockname()[1]}), flush=True)
conn, _ = listener.accept()
print(json.dumps({"accepted": conn.fileno()}), flush=True)
with tempfile.TemporaryFile() as f:
    f.write(b"y" * 5000)
    f.flush()
    for _ in sys.stdin:  # nginx's file path: the bytes go from a file to the socket
        print(json.dumps({"sent": os.sendfile(conn.fileno(), f.fileno(), 0, 5000)}),
              flush=True)
'''


@pytest.mark.parametrize("tool", ["strace", "bpftrace"])
def test_sendfile_is_traced_as_a_write(tool, tmp_path, child, opened):
    from muxtop.trace import bpftrace, strace
    from muxtop.trace.choose import open_tracer
    from muxtop.trace.session import Trace

    script = tmp_path / "sendfile_server.py"
    script.write_text(SENDFILE_SERVER)
    server = child(sys.executable, "-u", str(script))
    client = socket.create_connection(("127.0.0.1", server.expect("port")["port"]), timeout=5)
    opened.append(client)
    fd = server.expect("accepted")["accepted"]
    problem = bpftrace.problem() if tool == "bpftrace" else strace.problem(server.pid)
    if problem:
        pytest.skip(f"{tool} cannot run here: {problem}")
    trace = Trace(open_tracer(server.pid, tool, io=True, warn=lambda text: None))
    try:
        server.tell("go")
        assert server.expect("sent")["sent"] == 5000
        deadline = time.monotonic() + 15
        while (state := trace.fds.get(fd)) is None or state.written < 5000:
            assert time.monotonic() < deadline, f"{tool} saw no sendfile on fd {fd}"
            time.sleep(0.1)
            trace.observe(time.monotonic(), {}, {fd: "socket:[0]"})
        assert state.writes == 1
    finally:
        trace.stop()


def test_bpftrace_says_it_is_starting_and_how_long_it_took(epoll_server):
    from muxtop.trace import bpftrace
    from muxtop.trace.choose import open_tracer

    if problem := bpftrace.problem():
        pytest.skip(f"bpftrace cannot run here: {problem}")
    server = epoll_server("hold")
    said: list[str] = []
    tracer = open_tracer(server.pid, "bpftrace", io=False, progress=said.append)
    tracer.stop()
    assert len(said) == 2
    assert said[0].startswith(f"starting bpftrace on process {server.pid}: compiling")
    assert said[1].startswith(f"bpftrace traces process {server.pid} (it took ")
