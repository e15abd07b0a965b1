"""What `muxtop attach` got wrong on real servers, each shown on a child process: a zombie
taken for no process, a rewritten command line, unix sockets' queues never read, a pipelined
request behind a blocked answer worded as the edge trap, and a listener in another network
namespace with no word. (A stopped target: tests/test_trace.py; internal socketpairs:
tests/test_attach.py.)"""

from __future__ import annotations

import json
import os
import select
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from test_attach import read_until

from muxtop.attach import report
from muxtop.attach.reader import Attacher, AttachError, command_line
from muxtop.cli import attach as cli

pytestmark = pytest.mark.timeout(30)

SERVERS = Path(__file__).with_name("mux_servers.py")


class Child:
    """A child that prints one JSON line when ready; killed and reaped by stop()."""

    def __init__(self, argv: list[str]) -> None:
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, bufsize=0)
        self.pid = self.proc.pid
        ready = select.select([self.proc.stdout], [], [], 10)[0]
        line = self.proc.stdout.readline() if ready else b""
        assert line, f"{argv} said nothing"
        self.info = json.loads(line)

    def stop(self) -> None:
        self.proc.kill()
        self.proc.wait(5)
        self.proc.stdout.close()


@pytest.fixture
def child():
    children = []

    def start(*argv: str) -> Child:
        children.append(Child(list(argv)))
        return children[-1]

    yield start
    for c in children:
        c.stop()


def test_a_zombie_is_an_exited_process_not_no_process(capsys):
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    try:
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:  # exited, and not reaped: a zombie
            with open(f"/proc/{proc.pid}/stat") as f:
                if f.read().rsplit(")", 1)[1].split()[0] == "Z":
                    break
            time.sleep(0.02)
        with pytest.raises(AttachError, match="has exited .a zombie its parent has not reaped"):
            Attacher(proc.pid)
        assert cli.main([str(proc.pid), "--once"]) == 1
        err = capsys.readouterr().err
        assert "zombie" in err and "no process" not in err and err.count("\n") == 1
    finally:
        proc.wait(5)


def test_a_kernel_thread_is_refused_in_one_line(capsys):
    """Was: 'thread tid 2 (kthreadd): read(fd 0)', from a /proc/2/syscall of zeros."""
    from muxtop.kernel import procfs

    kernel = next((int(p) for p in os.listdir("/proc")
                   if p.isdigit() and procfs.is_kernel_thread(int(p))), None)
    if kernel is None:
        pytest.skip("no kernel thread is visible in this PID namespace (a container's own)")
    with pytest.raises(AttachError, match="is a kernel thread"):
        Attacher(kernel)
    assert cli.main([str(kernel), "--once"]) == 1
    err = capsys.readouterr().err
    assert "kernel thread" in err and err.count("\n") == 1
    assert not procfs.is_kernel_thread(os.getpid()) and not procfs.is_kernel_thread(2 ** 30)


def test_the_kernel_thread_flag_is_read_past_a_name_with_spaces_and_parentheses():
    """Runs where no kernel thread is visible too (a container's own PID namespace)."""
    from muxtop.kernel.procfs import PF_KTHREAD, stat_is_kernel_thread

    fields = "S 0 0 0 0 -1 {flags} 0 0 0 0 0 0 0 0 20 0 1 0 35 0 0"
    assert stat_is_kernel_thread(f"2 (kthreadd) {fields.format(flags=PF_KTHREAD | 0x40)}")
    assert not stat_is_kernel_thread(f"77 (a (b) c) {fields.format(flags=0x400100)}")
    assert stat_is_kernel_thread(f"9 (x) y) {fields.format(flags=PF_KTHREAD)}")  # ") " in it
    assert not stat_is_kernel_thread("") and not stat_is_kernel_thread("1 (init) S 0")


SELECTOR_SERVER = r"""
import json, selectors, socket, sys
watch = getattr(selectors, sys.argv[1])()  # PollSelector or SelectSelector: no epoll fd
listener = socket.create_server(("127.0.0.1", 0))
watch.register(listener, selectors.EVENT_READ)
print(json.dumps({"port": listener.getsockname()[1]}), flush=True)
while True:
    watch.select()
"""


@pytest.mark.parametrize(("selector", "backend"), [("PollSelector", "poll"),
                                                   ("SelectSelector", "select")])
def test_a_process_with_no_epoll_fd_is_named_by_the_call_it_waits_in(child, selector, backend):
    """python3 -m http.server (a PollSelector) read 'backend ?' over a thread in poll()."""
    server = child(sys.executable, "-c", SELECTOR_SERVER, selector)
    attacher = Attacher(server.pid)
    try:
        deadline = time.monotonic() + 20
        while (found := attacher.read().backend) == "?" and time.monotonic() < deadline:
            time.sleep(0.05)  # until its thread is seen in the call, not on its way there
        assert found == backend
    finally:
        attacher.close()


REWRITE = r"""
import json, time
# What redis and nginx do: write a title over the argument area, NULs to its end.
fields = open("/proc/self/stat").read().rsplit(")", 1)[1].split()
start, end = int(fields[45]), int(fields[46])  # arg_start, arg_end (fields 48 and 49)
title = b"redis-server *:6379"
with open("/proc/self/mem", "r+b") as mem:
    mem.seek(start)
    mem.write(title + b"\0" * (end - start - len(title)))
print(json.dumps({"ready": True}), flush=True)
time.sleep(60)
"""


def test_a_command_line_the_process_rewrote_reads_as_it_wrote_it(child):
    c = child(sys.executable, "-c", REWRITE, "with", "some", "arguments", "to", "overwrite")
    snapshot = Attacher(c.pid).read()
    assert snapshot.target.cmdline == "redis-server *:6379"
    assert "''" not in report.to_text(snapshot)
    assert command_line(["nginx: master process", "", ""], "nginx") == "nginx: master process"
    assert command_line(["ls", "-l", "a b"], "ls") == "ls -l 'a b'"
    assert command_line(["", ""], "kworker") == "[kworker]"


def test_unix_socket_queues_are_read_and_a_stuck_read_on_one_is_found(child, tmp_path):
    path = str(tmp_path / "s.sock")
    server = child(sys.executable, "-u", str(SERVERS), "unix-edge", path)
    client = socket.socket(socket.AF_UNIX)
    client.connect(path)
    try:
        client.sendall(b"u" * 300)  # one edge: the server reads 16 bytes and stops
        attacher = Attacher(server.pid, stuck_after=0.4)
        snapshot = read_until(attacher, lambda s: any(d.kind == "stuck-read"
                                                      for d in s.diagnoses))
        [conn] = [v for v in snapshot.connections if v.kind == "conn"]
        assert conn.rx_queue == 300 - 16 and conn.tx_queue == 0
        [finding] = [d for d in snapshot.diagnoses if d.kind == "stuck-read"]
        assert finding.fd == conn.fd and "edge-triggered" in finding.explanation
        listener = next(k for k in snapshot.sockets if k.fd == server.info["listener"])
        assert (listener.accept_queue, listener.backlog) == (0, 16)
        assert snapshot.open_connections == 1
    finally:
        client.close()


def test_a_request_held_behind_a_blocked_answer_is_not_the_edge_trap(child):
    server = child(sys.executable, "-u", str(SERVERS), "pipelined")
    client = socket.create_connection(("127.0.0.1", server.info["port"]), timeout=5)
    try:
        client.sendall(b"q" * 16)  # an answer of 16 MiB that this client never reads...
        time.sleep(0.3)
        client.sendall(b"Q" * 16)  # ...and the next request, pipelined behind it
        attacher = Attacher(server.pid, stuck_after=0.4)
        snapshot = read_until(attacher, lambda s: {d.kind for d in s.diagnoses} >= {
            "stuck-read", "stuck-write"})
    finally:
        client.close()
    [read] = [d for d in snapshot.diagnoses if d.kind == "stuck-read"]
    assert dict(read.evidence)["behind_write"] is True
    assert "waiting for the peer to read first" in read.explanation
    assert "before EAGAIN" not in read.explanation
    assert [d.fd for d in snapshot.diagnoses if d.kind == "stuck-write"] == [read.fd]


def test_a_listener_in_another_network_namespace_says_why_its_backlog_is_unknown(child):
    probe = subprocess.run(["unshare", "-n", "true"], capture_output=True, check=False) \
        if os.path.exists("/usr/bin/unshare") else None
    if probe is None or probe.returncode != 0:
        pytest.skip("cannot make a network namespace here (unshare -n needs root)")
    server = child("unshare", "-n", sys.executable, "-u", str(SERVERS), "poll")
    snapshot = Attacher(server.pid).read()
    assert snapshot.target.netns.startswith("net:[")
    listener = next(k for k in snapshot.sockets if k.fd == server.info["listener"])
    assert listener.backlog is None and listener.tcp_state == "LISTEN"
    assert any("another network namespace" in n.text for n in snapshot.notices)
    text = report.to_text(snapshot)
    assert "0/?" in text and "another network namespace" in text


def test_costly_reads_come_less_often_so_attach_takes_a_bounded_share_of_a_core():
    """At thousands of sockets a read costs tens of milliseconds of CPU: the source spaces
    its reads so that reading takes at most READ_SHARE of a core, and says so once."""
    from test_attach_ui import fixed_attach_snapshot

    from muxtop.attach.source import READ_SHARE, AttachSource

    class Costly:
        pid, exited, trace = 1, False, None
        told: list = []

        def read(self):
            spent = time.thread_time()
            while time.thread_time() - spent < 0.01:  # 10 ms of CPU, like 1,000 sockets
                pass
            return fixed_attach_snapshot()

        def notice(self, level, text):
            self.told.append(text)

        def close(self):
            pass

    source = AttachSource(Costly(), interval=0.05)
    for _ in range(3):
        source.read_now()
    assert source.period >= 0.01 / READ_SHARE * 0.9  # about 0.25 s, not 0.05
    [told] = Costly.told
    assert "refreshing every" in told and f"at most {READ_SHARE:.0%} of a core" in told
