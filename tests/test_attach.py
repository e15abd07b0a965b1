"""`muxtop attach`: real child processes with real loopback sockets, read through /proc.

Each test starts a small server script (written below) in a mode that shows one behaviour,
points an Attacher or the CLI at it, and kills it afterwards.
"""

from __future__ import annotations

import json
import os
import select
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from muxtop.attach.reader import Attacher, AttachError
from muxtop.cli import attach as cli
from muxtop.kernel import epoll, procfs
from muxtop.snapshot import HALF_CLOSED, KIND_CONN, KIND_EPOLL, KIND_LISTENER, KIND_OTHER

pytestmark = pytest.mark.timeout(30)

REPO = Path(__file__).resolve().parents[1]

SERVER = r'''
import json, select, socket, sys, time

mode = sys.argv[1]
backlog = int(sys.argv[2]) if len(sys.argv) > 2 else 16

def say(**fields):
    print(json.dumps(fields), flush=True)

listener = socket.socket()
listener.bind(("127.0.0.1", 0))
listener.listen(backlog)
listener.setblocking(False)
ep = select.epoll()
ep.register(listener.fileno(), select.EPOLLIN)
info = {"port": listener.getsockname()[1], "listener": listener.fileno(), "epoll": ep.fileno()}
keep = []
if mode == "families":
    l6 = socket.socket(socket.AF_INET6)
    l6.bind(("::1", 0))
    l6.listen(4)
    ep.register(l6.fileno(), select.EPOLLIN)
    ul = socket.socket(socket.AF_UNIX)
    ul.bind(sys.argv[3])
    ul.listen(4)
    ep.register(ul.fileno(), select.EPOLLIN | select.EPOLLEXCLUSIVE)
    a, b = socket.socketpair()
    ep.register(a.fileno(), select.EPOLLIN)
    b.send(b"hello")
    keep += [l6, ul, a, b]
    info.update(listener6=l6.fileno(), unix_listener=ul.fileno(), pair=a.fileno(),
                unwatched=b.fileno())
say(**info)
if mode in ("noaccept", "families"):
    time.sleep(120)
    sys.exit()

CONN_MASK = {"stuck": select.EPOLLIN | select.EPOLLET, "drain": select.EPOLLIN | select.EPOLLET,
             "oneshot": select.EPOLLIN | select.EPOLLONESHOT}
conns = {}
while True:
    for fd, _ in ep.poll(0.05):
        if fd == listener.fileno():
            c, _ = listener.accept()
            c.setblocking(False)
            conns[c.fileno()] = c
            if mode in CONN_MASK:  # "hold" and "flood" never read
                ep.register(c.fileno(), CONN_MASK[mode])
            say(accepted=c.fileno())
        elif mode in ("stuck", "oneshot"):
            # The bug: one small read per event, never until EAGAIN.
            say(read=fd, n=len(conns[fd].recv(16)))
        elif mode == "drain":
            c = conns[fd]
            while True:
                try:
                    data = c.recv(65536)
                except BlockingIOError:
                    break
                if not data:
                    ep.unregister(fd)
                    del conns[fd]
                    c.close()
                    break
    if mode == "flood":  # write to clients that never read
        for c in conns.values():
            try:
                c.send(b"x" * 65536)
            except BlockingIOError:
                pass
'''


class Server:
    """A server script in a child process; its stdout is a stream of JSON lines."""

    def __init__(self, script: Path, mode: str, *args: str) -> None:
        self.proc = subprocess.Popen([sys.executable, "-u", str(script), mode, *args],
                                     stdout=subprocess.PIPE, bufsize=0)
        self.pid = self.proc.pid
        self.info = self.expect("port")

    def expect(self, key: str, timeout: float = 5.0) -> dict:
        """The next line that has `key` (unbuffered reads, so select() tells the truth)."""
        deadline = time.monotonic() + timeout
        while (remaining := deadline - time.monotonic()) > 0:
            if not select.select([self.proc.stdout], [], [], remaining)[0]:
                break
            line = self.proc.stdout.readline()
            if not line:
                break
            message = json.loads(line)
            self.heard(message)
            if key in message:
                return message
        raise AssertionError(f"server never said {key!r}")

    def heard(self, message: dict) -> None:
        """Every line the server says, as it is read (a subclass may keep some)."""

    def stop(self) -> None:
        self.proc.kill()
        self.proc.wait(5)
        self.proc.stdout.close()


@pytest.fixture
def spawn(tmp_path):
    script = tmp_path / "server.py"
    script.write_text(SERVER)
    servers = []

    def start(mode: str, *args: str) -> Server:
        servers.append(Server(script, mode, *args))
        return servers[-1]

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def connect():
    opened = []

    def open_client(port: int, *, blocking: bool = True) -> socket.socket:
        if blocking:
            client = socket.create_connection(("127.0.0.1", port), timeout=5)
        else:
            client = socket.socket()
            client.setblocking(False)
            client.connect_ex(("127.0.0.1", port))
        opened.append(client)
        return client

    yield open_client
    for client in opened:
        client.close()


def read_until(attacher: Attacher, found, timeout: float = 15.0, every: float = 0.15):
    """Read every `every` s until `found(snapshot)` holds, and return that snapshot; fail
    saying what the last one held if it does not within `timeout` s (a bound for a loaded
    machine, not a measure)."""
    deadline = time.monotonic() + timeout
    while True:
        snapshot = attacher.read()
        if found(snapshot):
            return snapshot
        if time.monotonic() > deadline:
            # Everything the last look held, so that a failure seen once can be understood.
            raise AssertionError(
                f"not in {timeout:g} s; the last look found "
                f"{[(d.kind, d.fd, d.explanation, d.evidence) for d in snapshot.diagnoses]}; "
                f"trace {snapshot.trace}; fd_io {snapshot.fd_io}")
        time.sleep(every)


def kinds(snapshot, kind: str) -> list:
    return [d for d in snapshot.diagnoses if d.kind == kind]


def view(snapshot, fd: int):
    return next(v for v in snapshot.connections if v.fd == fd)


# -- decoding, no processes -------------------------------------------------------------------

def test_masks_decode_to_words():
    assert epoll.decode(0x19) == "IN|ERR|HUP"
    assert epoll.decode(0x80000019) == "IN|ERR|HUP|ET"
    assert epoll.decode(0x1000001D) == "IN|OUT|ERR|HUP|EXCLUSIVE"
    assert epoll.decode(0x40000019) == "IN|ERR|HUP|ONESHOT"
    # A fired oneshot keeps only the private bits: ONESHOT alone, or with ET.
    assert epoll.decode(0x40000000) == "ONESHOT (disarmed)"
    assert epoll.decode(0xC0000000) == "ET|ONESHOT (disarmed)"
    assert epoll.is_disarmed(0x40000000) and not epoll.is_disarmed(0x40000019)
    assert not epoll.is_disarmed(0x80000000)
    assert epoll.interest(0x8000001D) == 0x5  # READ|WRITE; ERR/HUP are always there
    assert epoll.words(0xC0000000) == "ET disarmed" and epoll.words(0x2019) == "IN RDHUP"
    assert epoll.summarize_triggers([0x19, 0x19]) == "level"
    assert epoll.summarize_triggers([0x80000019]) == "edge"
    assert epoll.summarize_triggers([0xC0000019]) == "oneshot"
    assert epoll.summarize_triggers([0x19, 0x80000019]) == "mixed"
    assert epoll.summarize_triggers([]) == "-"


def test_epoll_fdinfo_and_addresses_parse():
    # Copied from this kernel's /proc/self/fdinfo/<epfd>.
    text = ("pos:\t0\nflags:\t02000002\nmnt_id:\t17\nino:\t18\n"
            "tfd:        3 events: 80000019 data:     7fa000000003  pos:0 ino:1297 sdev:9\n"
            "tfd:       13 events: 40000000 data:     7fa00000000d  pos:0 ino:12a1 sdev:9\n")
    assert epoll.parse_fdinfo(5, text) == [
        epoll.Registration(5, 3, 0x80000019, 0x7FA000000003, 0x1297),
        epoll.Registration(5, 13, 0x40000000, 0x7FA00000000D, 0x12A1)]
    if sys.byteorder == "little":
        assert procfs.decode_address("0100007F:1F90") == "127.0.0.1:8080"
        assert procfs.decode_address("00000000000000000000000001000000:0050") == "[::1]:80"
    assert procfs.decode_address("00000000:0000") == ""
    assert procfs.socket_inode("socket:[4769]") == 4769
    assert procfs.socket_inode("anon_inode:[eventpoll]") is None


def test_interest_masks_read_what_the_full_parse_reads():
    ep = select.epoll()
    a, b = socket.socketpair()
    try:
        ep.register(a.fileno(), select.EPOLLIN | select.EPOLLET)
        ep.register(b.fileno(), select.EPOLLOUT)
        full = {r.tfd: r.mask for r in epoll.read_interest_list(ep.fileno())}
        assert epoll.read_interest_masks(ep.fileno()) == full
        assert set(full) == {a.fileno(), b.fileno()}
    finally:
        ep.close()
        a.close()
        b.close()


# -- diagnoses on live processes --------------------------------------------------------------

def test_stuck_read_on_edge_triggered_fd_is_found(spawn, connect):
    server = spawn("stuck")
    client = connect(server.info["port"])
    fd = server.expect("accepted")["accepted"]
    client.sendall(b"x" * 1000)
    assert server.expect("read")["n"] == 16

    attacher = Attacher(server.pid, stuck_after=0.5)
    first = attacher.read()
    assert kinds(first, "stuck-read") == []  # one look cannot tell stuck from busy
    conn = view(first, fd)
    assert conn.kind == KIND_CONN and conn.tcp.state == "ESTABLISHED"
    assert conn.rx_queue == 1000 - 16
    assert conn.watched_by == (server.info["epoll"],)
    assert "T" in conn.flags and conn.interest == 0x1
    assert first.backend == "epoll" and first.trigger == "mixed"  # ET conn, level listener
    assert first.waits == () and first.source == "attach"

    snapshot = read_until(attacher, lambda s: kinds(s, "stuck-read"))
    [finding] = kinds(snapshot, "stuck-read")
    assert finding.fd == fd
    evidence = dict(finding.evidence)
    assert evidence["rx_queue"] == 984 and evidence["seconds"] >= 0.5
    assert evidence["mask"] == 0x80000019 and evidence["epoll_fd"] == server.info["epoll"]
    assert "edge-triggered" in finding.explanation
    assert "!" in view(snapshot, fd).flags


def test_stuck_read_through_the_cli_json(spawn, connect):
    server = spawn("stuck")
    client = connect(server.info["port"])
    fd = server.expect("accepted")["accepted"]
    client.sendall(b"y" * 500)
    server.expect("read")

    result = subprocess.run(
        [sys.executable, "-m", "muxtop", "attach", str(server.pid), "--once", "--json",
         "--window", "1.2", "--stuck-after", "1"],
        capture_output=True, text=True, timeout=20, cwd=REPO, check=False)
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["pid"] == server.pid and doc["exited"] is False
    assert doc["process"]["num_fds"] >= 5 and doc["process"]["fd_limit"] > 0
    assert "server.py stuck" in doc["cmdline"]
    [finding] = [d for d in doc["diagnoses"] if d["kind"] == "stuck-read"]
    assert finding["fd"] == fd and finding["evidence"]["rx_queue"] == 500 - 16
    [epoll_set] = doc["epoll"]
    assert epoll_set["fd"] == server.info["epoll"]
    watch = next(w for w in epoll_set["watches"] if w["fd"] == fd)
    assert watch["mask"] == "0x80000019" and watch["decoded"] == "IN|ERR|HUP|ET"
    listener = next(f for f in doc["fds"] if f["fd"] == server.info["listener"])
    assert listener["kind"] == "listener" and listener["backlog"] == 16
    assert listener["accept_queue"] == 0 and listener["tcp_state"] == "LISTEN"


@pytest.mark.parametrize("mode", ["drain", "stuck"])
def test_steady_load_flags_only_the_server_that_does_not_drain(mode, spawn, connect):
    """Under steady load both queues are often non-empty; only unread old bytes count."""
    server = spawn(mode)
    clients = [connect(server.info["port"]) for _ in range(3)]
    fds = [server.expect("accepted")["accepted"] for _ in clients]
    # Generous margins: on a loaded machine a healthy server may lag a few hundred ms.
    attacher = Attacher(server.pid, stuck_after=0.8)
    found = set()
    deadline = time.monotonic() + 2.0
    while time.monotonic() < deadline:
        for client in clients:
            client.sendall(b"z" * 1000)  # each burst wakes the edge-triggered fd again
        snapshot = attacher.read()
        found |= {d.fd for d in kinds(snapshot, "stuck-read")}
        if mode == "drain":
            assert snapshot.diagnoses == (), snapshot.diagnoses
        time.sleep(0.1)
    assert snapshot.open_connections == 3
    assert snapshot.rates.bytes_in > 0
    assert found == (set() if mode == "drain" else set(fds))


def test_close_wait_pile_up_is_found(spawn, connect):
    server = spawn("hold")
    for _ in range(4):
        connect(server.info["port"]).close()
        server.expect("accepted")
    attacher = Attacher(server.pid, stuck_after=0.3)
    snapshot = read_until(attacher, lambda s: kinds(s, "close-wait"))
    [finding] = kinds(snapshot, "close-wait")
    assert finding.fd is None
    evidence = dict(finding.evidence)
    assert evidence["count"] == 4 and evidence["lingering"] >= 1
    assert evidence["oldest_seconds"] >= 0.3
    conns = [v for v in snapshot.connections if v.kind == KIND_CONN]
    assert len(conns) == 4
    assert all(v.tcp.state == "CLOSE_WAIT" and v.state == HALF_CLOSED for v in conns)
    assert all(v.watched_by == () for v in conns)  # "hold" never registers them


def test_full_accept_queue_is_found(spawn, connect):
    server = spawn("noaccept", "2")
    listener_fd = server.info["listener"]
    connect(server.info["port"], blocking=False)
    attacher = Attacher(server.pid)
    snapshot = read_until(attacher, lambda s: view(s, listener_fd).tcp.unacked == 1)
    assert kinds(snapshot, "accept-queue-full") == []  # 1 of 2: not full

    for _ in range(4):
        connect(server.info["port"], blocking=False)
    snapshot = read_until(attacher, lambda s: kinds(s, "accept-queue-full"))
    [finding] = kinds(snapshot, "accept-queue-full")
    assert finding.fd == listener_fd
    # The kernel queues backlog + 1 connections before it drops handshakes.
    assert dict(finding.evidence) == {"accept_queue": 3, "backlog": 2}
    listener = view(snapshot, listener_fd)
    assert listener.kind == KIND_LISTENER and listener.rx_queue is None
    assert (listener.tcp.unacked, listener.tcp.sacked) == (3, 2)


def test_send_queue_that_only_grows_is_found(spawn, connect):
    server = spawn("flood")
    connect(server.info["port"])  # and never read
    fd = server.expect("accepted")["accepted"]
    attacher = Attacher(server.pid, stuck_after=0.5)
    snapshot = read_until(attacher, lambda s: kinds(s, "stuck-write"), every=0.2)
    [finding] = kinds(snapshot, "stuck-write")
    assert finding.fd == fd and "peer is not reading" in finding.explanation
    evidence = dict(finding.evidence)
    assert evidence["tx_queue"] >= evidence["tx_queue_at_start"] > 0
    # With the kernel's ack counter two samples spanning stuck_after prove it
    # (diagnose._write_blocked): on a loaded machine two reads 0.2 s apart can span 0.5 s.
    assert evidence["bytes_acked"] is not None and evidence["samples"] >= 2


def test_fired_oneshot_shows_disarmed(spawn, connect):
    server = spawn("oneshot")
    client = connect(server.info["port"])
    fd = server.expect("accepted")["accepted"]
    client.sendall(b"o" * 100)
    server.expect("read")
    attacher = Attacher(server.pid, stuck_after=0.3)
    snapshot = attacher.read()
    [epoll_set] = [e for e in snapshot.epoll if e.fd == server.info["epoll"]]
    entry = next(w for w in epoll_set.watches if w.fd == fd)
    assert entry.mask == 0x40000000 and epoll.decode(entry.mask) == "ONESHOT (disarmed)"
    conn = view(snapshot, fd)
    assert conn.flags == "D" and conn.interest == 0
    epoll_view = view(snapshot, server.info["epoll"])
    assert epoll_view.kind == KIND_EPOLL and "1 disarmed" in epoll_view.note

    snapshot = read_until(attacher, lambda s: kinds(s, "stuck-read"))
    [finding] = kinds(snapshot, "stuck-read")
    assert finding.fd == fd and "never re-armed" in finding.explanation


def test_registration_that_outlives_its_fd_is_marked_stale():
    """epoll watches the open file, not the fd number: close the fd while a dup lives on."""
    a, b = socket.socketpair()
    ep = select.epoll()
    try:
        ep.register(a.fileno(), select.EPOLLIN)
        dup = os.dup(a.fileno())
        closed_fd = a.fileno()
        a.close()
        snapshot = Attacher(os.getpid()).read()  # attach to this very process
        [epoll_set] = [e for e in snapshot.epoll if e.fd == ep.fileno()]
        entry = next(w for w in epoll_set.watches if w.fd == closed_fd)
        assert entry.mask == 0x19 and entry.stale == "fd closed, file still open elsewhere"
        assert view(snapshot, dup).watched_by == ()  # the dup itself was never registered
    finally:
        os.close(dup)
        b.close()
        ep.close()


def test_ipv6_and_unix_sockets_show_up(spawn, tmp_path):
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
    except OSError:
        pytest.skip("no IPv6 loopback here")
    path = str(tmp_path / "u.sock")
    server = spawn("families", "16", path)
    info = server.info
    snapshot = Attacher(server.pid).read()
    sockets = {k.fd: k for k in snapshot.sockets}

    v6 = view(snapshot, info["listener6"])
    assert v6.kind == KIND_LISTENER and v6.note.startswith("tcp6 [::1]:")
    assert sockets[v6.fd].backlog == 4

    unix_listener = view(snapshot, info["unix_listener"])
    assert unix_listener.kind == KIND_LISTENER and unix_listener.rx_queue is None
    assert sockets[unix_listener.fd].local == path
    assert "X" in unix_listener.flags
    # Both ends of the socketpair are the process's own: no connection, but its queues show
    # (sock_diag's unix_diag: "hello" waits in one end, unread by the process).
    pair = view(snapshot, info["pair"])
    assert pair.kind == KIND_OTHER and pair.rx_queue == 5 and pair.tx_queue == 0
    assert f"socketpair with fd {info['unwatched']}" in pair.note
    assert view(snapshot, info["unwatched"]).tx_queue == 5
    assert sockets[pair.fd].proto == "unix" and pair.watched_by == (info["epoll"],)
    assert view(snapshot, info["unwatched"]).watched_by == ()
    assert "[::1]:" in snapshot.listen and path in snapshot.listen

    # The whole picture survives JSON, and the text report names each socket.
    from muxtop.attach import report
    json.dumps(report.to_json(snapshot))
    text = report.to_text(snapshot)
    assert path in text and "tcp6" in text


def test_fds_near_the_limit_are_found():
    code = ("import os, resource, time; resource.setrlimit(resource.RLIMIT_NOFILE, (20, 20)); "
            "fds = [os.open(os.devnull, os.O_RDONLY) for _ in range(15)]; "
            "print('ready', flush=True); time.sleep(60)")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline() == "ready\n"
        snapshot = Attacher(proc.pid).read()
    finally:
        proc.kill()
        proc.wait(5)
        proc.stdout.close()
    [finding] = kinds(snapshot, "fd-pressure")
    evidence = dict(finding.evidence)
    assert finding.fd is None and evidence["fd_limit"] == 20 and evidence["num_fds"] >= 16
    assert snapshot.process.fd_limit == 20 and snapshot.backend == "?"


# -- processes that are not there -------------------------------------------------------------

def _sleeper() -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])


def test_vanished_process_reads_as_exited_and_cli_says_so(capsys):
    proc = _sleeper()
    try:
        attacher = Attacher(proc.pid)
        assert attacher.read().running
    finally:
        proc.kill()
        proc.wait(5)
    snapshot = attacher.read()  # must not raise
    assert not snapshot.running and attacher.exited
    assert "exited" in snapshot.notices[-1].text
    assert not attacher.read().running

    assert cli.main([str(proc.pid), "--once", "--json"]) == 1
    err = capsys.readouterr().err
    assert err == f"muxtop attach: no process with PID {proc.pid}\n"
    with pytest.raises(AttachError):
        Attacher(proc.pid)


def test_process_exiting_while_attached_gives_one_line(capsys):
    # Not reaped until the end: a zombie must count as exited too.
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(0.4)"])
    try:
        assert cli.main([str(proc.pid), "--once", "--window", "5"]) == 1
        err = capsys.readouterr().err
        assert err.startswith(f"muxtop attach: process {proc.pid} (")
        assert err.endswith("exited while attached\n") and err.count("\n") == 1
    finally:
        proc.kill()
        proc.wait(5)


def test_live_view_is_pluggable_and_text_loop_ends_when_the_process_exits(capsys):
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(0.6)"])
    try:
        seen = []
        assert cli.main([str(proc.pid)], live=lambda a, args: seen.append(a) or 7) == 7
        assert isinstance(seen[0], Attacher) and seen[0].pid == proc.pid
        assert cli.main([str(proc.pid), "--interval", "0.2"]) == 1  # the text loop
        out, err = capsys.readouterr()
        assert f"PID {proc.pid} " in out and "FD  KIND" in out
        assert err.startswith(f"muxtop attach: process {proc.pid} (")
        assert err.endswith(") exited\n") and err.count("\n") == 1
    finally:
        proc.kill()
        proc.wait(5)


@pytest.mark.parametrize("text", ["abc", "0", "12x"])
def test_bad_pid_is_a_usage_error(text, capsys):
    with pytest.raises(SystemExit) as exited:
        cli.main([text, "--once"])
    assert exited.value.code == 2
    assert "usage: muxtop attach" in capsys.readouterr().err


def test_permission_denied_is_one_line():
    """Another user's process: run the CLI as `nobody` against a child of ours (root)."""
    system_python = Path(f"/usr/bin/python{sys.version_info.major}.{sys.version_info.minor}")
    if os.geteuid() != 0 or not system_python.exists():
        pytest.skip("needs root and a system Python of this version to run as nobody")
    proc = _sleeper()
    try:
        site = str(Path(psutil.__file__).parents[1])
        result = subprocess.run(
            [str(system_python), "-m", "muxtop", "attach", str(proc.pid), "--once"],
            user=65534, group=65534, extra_groups=[], cwd="/", timeout=20,
            env={"PYTHONPATH": site, "PATH": "/usr/bin:/bin"},  # the installed muxtop
            capture_output=True, text=True, check=False)
    finally:
        proc.kill()
        proc.wait(5)
    if "No module named" in result.stderr:
        pytest.skip("nobody cannot import muxtop or psutil here")
    assert result.returncode == 1
    assert result.stderr.startswith(
        f"muxtop attach: permission denied: cannot read process {proc.pid} (")
    assert "owned by root" in result.stderr
    assert "Traceback" not in result.stderr and result.stderr.count("\n") == 1


def test_attach_never_imports_textual():
    code = ("import sys, muxtop.cli.attach, muxtop.attach.reader, muxtop.attach.report; "
            "sys.exit(any(m.split('.')[0] == 'textual' for m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, timeout=20, check=False)
    assert result.returncode == 0


@pytest.mark.parametrize("mode", ["--text", "--json"])
@pytest.mark.parametrize("value", ["1e300", "1e10", "0.001"])
def test_the_refresh_interval_is_bounded(capsys, mode, value):
    # Was: time.sleep(1e300) raised OverflowError after the first look: a traceback.
    with pytest.raises(SystemExit) as stop:
        cli.main([str(os.getpid()), mode, "--interval", value])
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and "argument --interval" in err and "0.01 to 3600" in err


def test_a_level_registration_means_what_it_asks_for():
    """An IN-only registration was said to be reported 'while there is something to read or
    room to write'."""
    from muxtop.kernel import epoll

    assert epoll.meaning(epoll.EPOLLIN).endswith("while there is something to read")
    assert epoll.meaning(epoll.EPOLLOUT).endswith("while there is room to write")
    assert epoll.meaning(epoll.EPOLLIN | epoll.EPOLLOUT).endswith(
        "something to read or room to write")
    assert "only on an error or a hang-up" in epoll.meaning(0)
