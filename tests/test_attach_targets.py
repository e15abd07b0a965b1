"""attach as an agent for many processes: `--name NAME` and several PIDs, `--headless` with
`--metrics`, following small epoll servers in child processes (named with prctl, as nginx's
workers share a name) as they come and go, each checked against /proc; names that are hostile
text; and the dashboard listing several processes and switching between them."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.parse

import pytest
from test_metrics import (  # noqa: F401 - processes: a fixture
    NO_PROMETHEUS,
    OPENMETRICS,
    PROMETHEUS,
    PROMTOOL,
    processes,
    prometheus_scraping,
    query,
    samples,
    scrape,
    wait_for,
)
from ui_helpers import until

from muxtop.attach.reader import Attacher
from muxtop.attach.source import TargetsSource
from muxtop.attach.targets import COMM_BYTES, Targets, processes_named
from muxtop.ui import actions
from muxtop.ui.app import MuxtopApp
from muxtop.ui.widgets.key_bar import KeyBar
from muxtop.ui.widgets.target_bar import TargetBar

pytestmark = pytest.mark.timeout(120)

# An epoll echo server that names itself (comm) with prctl(PR_SET_NAME), as a worker would;
# it prints its port once it listens.
SERVER = """
import ctypes, selectors, socket, sys
ctypes.CDLL(None).prctl(15, sys.argv[1].encode("utf-8", "surrogateescape"), 0, 0, 0)
listener = socket.create_server(("127.0.0.1", 0))
listener.setblocking(False)
watch = selectors.EpollSelector()
watch.register(listener, selectors.EVENT_READ)
print(listener.getsockname()[1], flush=True)
while True:
    for key, _ in watch.select():
        if key.fileobj is listener:
            conn, _ = listener.accept()
            watch.register(conn, selectors.EVENT_READ)
        elif data := key.fileobj.recv(65536):
            key.fileobj.sendall(data)
        else:
            watch.unregister(key.fileobj)
            key.fileobj.close()
"""


def unique(prefix: str) -> str:
    """A name no other test run on this machine uses (other suites may run beside this one)."""
    return f"{prefix}{os.getpid() % 100_000}"[:COMM_BYTES]


@pytest.fixture
def named(tmp_path):
    """start(name) -> a child server whose comm is `name`, listening; all killed at teardown."""
    script = tmp_path / "named.py"
    script.write_text(SERVER)
    started: list[subprocess.Popen] = []

    def start(name: str) -> subprocess.Popen:
        proc = subprocess.Popen([sys.executable, str(script), name], stdout=subprocess.PIPE,
                                stdin=subprocess.DEVNULL, text=True)
        started.append(proc)
        assert proc.stdout.readline().strip().isdigit()  # listening, and named
        return proc

    yield start
    for proc in started:
        if proc.poll() is None:
            proc.kill()
        proc.wait(5)
        proc.stdout.close()


def comm(pid: int) -> str:
    with open(f"/proc/{pid}/comm", "rb") as f:
        return os.fsdecode(f.read().removesuffix(b"\n"))


def watched_fds(pid: int) -> int:
    """The fds the process's epoll sets watch, as /proc/PID/fdinfo lists them."""
    watched = 0
    for fd in os.listdir(f"/proc/{pid}/fd"):
        if os.readlink(f"/proc/{pid}/fd/{fd}") == "anon_inode:[eventpoll]":
            with open(f"/proc/{pid}/fdinfo/{fd}") as info:
                watched += sum(line.startswith("tfd:") for line in info)
    return watched


def targets_in(found: dict) -> dict[str, str]:
    """{pid: process} of the series of /metrics that name a process."""
    return {dict(pairs)["pid"]: dict(pairs)["process"] for (name, pairs) in found
            if name == "muxtop_up"}


def test_attach_name_follows_processes_as_they_come_and_go(processes, named):  # noqa: F811
    alpha, beta = unique("mta"), unique("mtb")
    a1, a2, b = named(alpha), named(alpha), named(beta)
    agent = processes("attach", "--name", alpha, "--headless", "--interval", "0.1",
                      "--metrics", "127.0.0.1:0")
    url = agent.metrics_url()

    def watching(pids) -> dict:
        found = samples(scrape(url)[1])
        return found if set(targets_in(found)) == {str(p) for p in pids} else None

    found = wait_for(lambda: watching({a1.pid, a2.pid}), timeout=30)
    # As /proc says: each target's name is its comm, and its figures are its own.
    assert sorted(processes_named(alpha)) == sorted([a1.pid, a2.pid])
    for pid, name in targets_in(found).items():
        assert name == comm(int(pid)) == alpha
        labels = {"pid": pid, "process": alpha}
        assert found["muxtop_process_threads", tuple(sorted(labels.items()))] == 1
        assert found["muxtop_process_open_fds", tuple(sorted(labels.items()))] == \
            len(os.listdir(f"/proc/{pid}/fd"))
        assert found["muxtop_registered_fds", tuple(sorted(labels.items()))] == \
            watched_fds(int(pid)) == 1  # the listener
    assert str(b.pid) not in targets_in(found)  # another name
    assert found["muxtop_attach_targets", ()] == 2
    # No label holds an fd or a peer: pid and process, and the families' own few.
    keys = {key for _, pairs in found for key, _ in pairs}
    assert keys <= {"pid", "process", "backend", "trigger", "source", "protocol", "syscall",
                    "state", "kind", "direction", "reason", "limit", "le"}, keys

    a3 = named(alpha)  # a new worker: it appears
    wait_for(lambda: watching({a1.pid, a2.pid, a3.pid}), timeout=30)
    a1.kill()
    a1.wait(5)  # reaped: gone from /proc, as a worker its master reaps
    found = wait_for(lambda: watching({a2.pid, a3.pid}), timeout=30)  # its series go
    assert found["muxtop_attach_targets", ()] == 2

    agent.proc.send_signal(signal.SIGTERM)
    assert agent.proc.wait(10) == 0
    lines = agent.stderr().splitlines()
    said = [line.removeprefix("muxtop attach: ") for line in lines[1:]  # after the URL
            if "refreshing every" not in line]  # how a busy machine paces the reads
    assert sorted(said[:2]) == sorted([f"watching {alpha} (pid {a1.pid})",
                                       f"watching {alpha} (pid {a2.pid})"])
    assert said[2:] == [f"watching {alpha} (pid {a3.pid})", f"{alpha} (pid {a1.pid}) exited",
                        "SIGTERM: no longer watching 2 processes"], lines


def test_several_pids_each_with_its_name_until_the_last_exits(processes, named):  # noqa: F811
    alpha, beta = unique("mta"), unique("mtb")
    a, b = named(alpha), named(beta)
    agent = processes("attach", str(a.pid), str(b.pid), "--headless", "--interval", "0.1",
                      "--metrics", "127.0.0.1:0")
    url = agent.metrics_url()
    found = wait_for(lambda: len(targets_in(f := samples(scrape(url)[1]))) == 2 and f,
                     timeout=30)
    assert targets_in(found) == {str(a.pid): alpha, str(b.pid): beta}
    b.kill()
    b.wait(5)
    wait_for(lambda: targets_in(samples(scrape(url)[1])) == {str(a.pid): alpha}, timeout=30)
    a.kill()
    a.wait(5)
    assert agent.proc.wait(30) == 1  # no pid given is left, and none can come back
    assert agent.stderr().splitlines()[-1] == \
        "muxtop attach: every process watched has exited"


@pytest.mark.skipif(PROMTOOL is None, reason=NO_PROMETHEUS)
def test_several_processes_pass_promtool_check_metrics(processes, named):  # noqa: F811
    # Each family once, with a series per process: the linter refuses a family written twice.
    alpha, beta = unique("mta"), unique("mtb")
    a, b = named(alpha), named(beta)
    agent = processes("attach", str(a.pid), str(b.pid), "--headless", "--interval", "0.1",
                      "--metrics", "127.0.0.1:0")
    url = agent.metrics_url()
    wait_for(lambda: len(targets_in(samples(scrape(url)[1]))) == 2, timeout=30)
    lint = subprocess.run([PROMTOOL, "check", "metrics"], input=scrape(url)[1],
                          capture_output=True, text=True, timeout=30)
    assert lint.returncode == 0 and not lint.stdout.strip() and not lint.stderr.strip(), \
        (lint.stdout, lint.stderr)
    # promtool reads only the classic format: OpenMetrics through its strict parser, which
    # refuses a family that comes twice.
    from prometheus_client.openmetrics.parser import (
        text_string_to_metric_families as openmetrics_families,
    )

    families = list(openmetrics_families(scrape(url, OPENMETRICS)[1]))
    assert len({f.name for f in families}) == len(families)
    up = next(f for f in families if f.name == "muxtop_up")
    assert {s.labels["process"] for s in up.samples} == {alpha, beta}


@pytest.mark.skipif(PROMETHEUS is None, reason=NO_PROMETHEUS)
def test_a_real_prometheus_sees_processes_come_and_go(processes, named):  # noqa: F811
    alpha = unique("mtp")
    a1, a2 = named(alpha), named(alpha)
    agent = processes("attach", "--name", alpha, "--headless", "--interval", "0.2",
                      "--metrics", "127.0.0.1:0")
    with prometheus_scraping(urllib.parse.urlsplit(agent.metrics_url()).netloc) as api:
        def up() -> set[int]:
            found = query(api, f'muxtop_up{{process="{alpha}"}} == 1', time.time())
            return {int(r["metric"]["pid"]) for r in found}

        wait_for(lambda: up() == {a1.pid, a2.pid}, timeout=60, every=0.5)
        a3 = named(alpha)
        wait_for(lambda: up() == {a1.pid, a2.pid, a3.pid}, timeout=60, every=0.5)
        a1.kill()
        a1.wait(5)
        # Gone from the scrape: Prometheus marks its series stale, and they leave the query.
        wait_for(lambda: up() == {a2.pid, a3.pid}, timeout=60, every=0.5)
        [targets] = query(api, "muxtop_attach_targets", time.time())
        assert float(targets["value"][1]) == 2


def test_a_name_with_no_process_yet_is_waited_for(processes, named):  # noqa: F811
    alpha = unique("mtw")
    agent = processes("attach", "--name", alpha, "--headless", "--interval", "0.1")
    wait_for(lambda: agent.stderr().splitlines() == [
        f"muxtop attach: no process named {alpha} yet: waiting"], timeout=30)
    a = named(alpha)
    wait_for(lambda: f"muxtop attach: watching {alpha} (pid {a.pid})"
             in agent.stderr().splitlines(), timeout=30,  # failed once in CI, on a busy machine:
             what=lambda: f"the agent said {agent.stderr()!r}; "  # its words, if it fails again
             f"agent alive: {agent.proc.poll() is None}; pid {a.pid}'s comm: {comm(a.pid)!r}")
    agent.proc.send_signal(signal.SIGINT)  # Ctrl-C ends it as SIGTERM does
    assert agent.proc.wait(10) == 0
    assert agent.stderr().splitlines()[-1] == \
        "muxtop attach: SIGINT: no longer watching 1 process"


def test_the_agent_says_when_reads_cost_more_than_its_share(processes, named):  # noqa: F811
    # --interval 0.01: a read of /proc (milliseconds) would take far more than 4% of a core.
    a = named(unique("mts"))
    agent = processes("attach", str(a.pid), "--headless", "--interval", "0.01")
    line = wait_for(lambda: next((x for x in agent.stderr().splitlines()
                                  if "refreshing every" in x), None), timeout=30)
    assert line.startswith("muxtop attach: a read of every process takes ") and \
        line.endswith("so that muxtop takes at most 4% of a core"), line


def test_hostile_names_are_escaped_on_stderr_and_kept_in_json(named, tmp_path):
    hostile = "\x1b]0;pwn\x07\n"  # retitles a terminal, then forges a line
    proc = named(hostile)
    assert comm(proc.pid) == hostile
    agent = subprocess.Popen([sys.executable, "-m", "muxtop", "attach", "--name", hostile,
                              "--headless", "--json", "--interval", "0.1"], text=True,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        line = agent.stdout.readline()  # the first read's line
        assert json.loads(line)["name"] == hostile and json.loads(line)["pid"] == proc.pid
    finally:
        agent.send_signal(signal.SIGTERM)
        err = agent.communicate(timeout=10)[1]
    assert agent.returncode == 0
    assert "\x1b" not in err and "\x07" not in err
    assert f"watching \\x1b]0;pwn\\x07\\n (pid {proc.pid})" in err.splitlines()[0]


def test_once_with_a_name_reports_each_or_says_none(named):
    alpha = unique("mto")
    a1, a2 = named(alpha), named(alpha)
    run = subprocess.run([sys.executable, "-m", "muxtop", "attach", "--name", alpha, "--once",
                          "--json"], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    assert sorted(json.loads(line)["pid"] for line in run.stdout.splitlines()) == \
        sorted([a1.pid, a2.pid])
    none = subprocess.run([sys.executable, "-m", "muxtop", "attach", "--name", alpha + "-no",
                           "--once"], capture_output=True, text=True, timeout=60)
    assert (none.returncode, none.stdout) == (1, "")
    assert none.stderr == f"muxtop attach: no process named {alpha}-no\n"


@pytest.mark.parametrize("argv, says", [
    ([], "give a PID (or several), or --name NAME"),
    (["--name", ""], "--name needs a name"),
    (["1", "--headless", "--once"], "--headless runs until stopped and draws nothing: not "
                                    "with --once"),
    (["--name", "x", "--record", "f.muxrec"], "--record takes one process"),
    (["1", "2", "--trace"], "--trace takes one process"),
])
def test_several_process_usage_errors(argv, says):
    run = subprocess.run([sys.executable, "-m", "muxtop", "attach", *argv],
                         capture_output=True, text=True, timeout=30)
    assert run.returncode == 2 and says in run.stderr, run.stderr


async def test_the_dashboard_lists_the_processes_and_switches_between_them(named):
    alpha, beta = unique("mta"), unique("mtb")
    a, b = named(alpha), named(beta)
    targets = Targets((a.pid, b.pid), make=lambda pid: Attacher(pid))
    source = TargetsSource(targets, interval=0.1).start()
    app = MuxtopApp(source, interval=0.05)
    try:
        async with app.run_test(size=(160, 48)) as pilot:
            def shown() -> int | None:
                latest = app.shown
                return latest.target.pid if latest is not None else None

            def bar() -> str:
                return app.dashboard.query_one(TargetBar).render().plain

            await until(lambda: shown() == a.pid, pilot, what="the first process")
            assert bar().split() == ["1/2", alpha, str(a.pid), beta, str(b.pid)]
            assert f"pid {a.pid}" in app.dashboard.header.render().plain
            footer = app.dashboard.query_one(KeyBar)
            await until(lambda: "> next process" in footer.render().plain, pilot,
                        what="> in the footer")
            await pilot.press("greater_than_sign")
            await until(lambda: shown() == b.pid, pilot, what="the second process")
            assert bar().startswith("2/2")
            assert f"pid {b.pid}" in app.dashboard.header.render().plain
            await pilot.press("greater_than_sign")  # around to the first
            await until(lambda: shown() == a.pid, pilot, what="the first process again")
            await pilot.press("less_than_sign")
            await until(lambda: shown() == b.pid, pilot, what="back to the second")

            # The one shown exits: its last picture stays, said, until the user moves on.
            b.kill()
            b.wait(5)
            await until(lambda: not app.shown.running, pilot, what="the exit")
            assert shown() == b.pid
            await pilot.press("greater_than_sign")
            await until(lambda: shown() == a.pid, pilot, what="the one left")
            await until(lambda: bar().split() == ["1/1", alpha, str(a.pid)], pilot)
            # One process left: > and < are greyed out, and say why.
            assert app.check_action("next_target", ()) is None
            assert actions.why_not("next_target", app.now()) == \
                "no other process to show: only one is watched now"
    finally:
        source.stop()


def test_a_process_of_the_name_that_cannot_be_read_is_said_once(named, monkeypatch):
    # Another user's process, as a non-root agent meets nginx's master: said, not retried.
    from muxtop.attach.reader import AttachError

    alpha = unique("mtr")
    proc = named(alpha)
    tries = []

    def refuse(pid: int) -> Attacher:
        tries.append(pid)
        raise AttachError(f"permission denied: cannot read process {pid}")

    targets = Targets(name=alpha, make=refuse)
    for _ in range(3):
        assert targets.read() == ()
    assert tries == [proc.pid] and targets.refused == 1
    [change] = targets.take_changes()
    assert (change.kind, change.pid, change.name) == ("refused", proc.pid, alpha)


def test_the_agent_says_each_warning_of_a_process_once(capsys):
    # What the dashboard would show as a notification (here: a network namespace sock_diag
    # cannot see into), a line on stderr, once; the exit's own notice is said by the exit line.
    import dataclasses

    from test_attach_ui import fixed_attach_snapshot

    from muxtop.attach.targets import Target
    from muxtop.cli.attach import NoticeLog
    from muxtop.snapshot import Notice

    warning = Notice(1, 99.0, "warning", "process 4242 is in another network namespace")
    looked = dataclasses.replace(fixed_attach_snapshot(), notices=(warning,))
    exited = fixed_attach_snapshot(exited=True)
    log = NoticeLog()
    log.tell((Target(1, 4242, "ets\x1b[2J", looked),))
    log.tell((Target(1, 4242, "ets\x1b[2J", looked),))
    log.tell((Target(1, 4242, "ets\x1b[2J", dataclasses.replace(
        exited, notices=(warning, Notice(2, 100.0, "error", "process 4242 (ets) exited")))),))
    assert capsys.readouterr().err.splitlines() == [
        "muxtop attach: ets\\x1b[2J (pid 4242): warning: process 4242 is in another network "
        "namespace"]
