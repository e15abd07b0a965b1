"""The dashboard over a traced process: the ready-list log with each call's thread and
syscall, the wait figures and the tracer in the header, the "last ev" column, the Traced
detail section; a stopped target's badge; where the queue figures of an attached socket came
from. Fixed Snapshots (frozen clock), then a live strace of a child server."""

from __future__ import annotations

import dataclasses
import io
import json
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from test_attach_ui import fixed_attach_snapshot, screen_text
from ui_helpers import until

from muxtop.attach.reader import Attacher
from muxtop.attach.source import AttachSource
from muxtop.plain import from_plain, to_plain
from muxtop.snapshot import (
    SOURCE_TRACED,
    STATUS_STOPPED,
    TRACE_STOPPED,
    TRACE_TRACING,
    FdIo,
    Snapshot,
    TraceInfo,
    WaitCall,
    wait_record,
)
from muxtop.source import FixedSource
from muxtop.trace import strace
from muxtop.trace.choose import open_tracer
from muxtop.trace.session import Trace
from muxtop.traced import with_trace
from muxtop.ui.app import MuxtopApp
from muxtop.ui.screens.detail import describe
from muxtop.ui.views import PROCESS, TRACED, view_for

pytestmark = pytest.mark.timeout(30)
SIZE = (160, 48)
SERVERS = Path(__file__).with_name("mux_servers.py")


def traced_snapshot(**changes) -> Snapshot:
    """The fixed attach Snapshot, traced by strace: fd 7 reported IN, read 16 of 16 bytes."""
    base = fixed_attach_snapshot()
    waits = tuple(wait_record((seq, 90.0 + seq / 10, 0.2, 0.001 * seq, 4, ready, len(ready) // 2,
                               None))
                  for seq, ready in ((1, (3, 1)), (2, (7, 1)), (3, ()), (4, (8, 1, 9, 0x11))))
    calls = tuple(WaitCall(w.seq, 4242, "epoll_wait", 5) for w in waits)
    views = tuple(v._replace(last_events=1, last_ready=90.2) if v.fd == 7 else v
                  for v in base.connections)
    fields = dict(
        source=SOURCE_TRACED, waits=waits, wait_calls=calls, connections=views,
        trace=TraceInfo("strace", TRACE_TRACING, strace.SLOWDOWN, 88.0, 4, 2, True, 0),
        fd_io=(FdIo(7, 1, 16, 90.21, 16, 16, None, 0, 0, None, None),),
        rates=base.rates._replace(waits=10.0, events=12.0, ready_per_wait=1.2,
                                  wait_p50=0.002, wait_p99=0.004))
    fields.update(changes)
    return dataclasses.replace(base, **fields)


def test_a_traced_snapshot_round_trips_and_an_older_form_still_reads():
    snapshot = traced_snapshot()
    back = from_plain(json.loads(json.dumps(to_plain(snapshot))))
    for name in ("wait_calls", "trace", "fd_io", "waits", "source", "process"):
        assert getattr(back, name) == getattr(snapshot, name), name
    assert type(back.trace) is TraceInfo and type(back.fd_io[0]) is FdIo
    assert type(back.wait_calls[0]) is WaitCall
    old = to_plain(fixed_attach_snapshot())
    for key in ("wait_calls", "trace", "fd_io"):
        del old[key]
    old["process"] = old["process"][:7]  # before ProcessStats.status
    old["target"] = old["target"][:3]  # before ProcessInfo.netns
    read = from_plain(old)
    assert read.wait_calls == () and read.trace is None and read.process.status == ""
    assert read.target.netns == ""


def test_the_traced_kind_has_its_own_view():
    assert view_for(SOURCE_TRACED) is TRACED and view_for("attach") is PROCESS
    assert TRACED.has_waits and TRACED.interest_lists and TRACED.wait_label is not None
    assert not PROCESS.has_waits and "events" in {c.id for c in TRACED.columns}
    assert "events" not in {c.id for c in PROCESS.columns}


async def test_traced_dashboard_shows_ready_lists_threads_figures_and_last_events():
    app = MuxtopApp(FixedSource(traced_snapshot(), commands=False), interval=None)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        text = screen_text(app)
        header = app.dashboard.header.render().plain
        assert "trace strace" in header and "SLOWS THE TARGET" in header
        assert "waits/s 10" in header and "ready/wait 1.2" in header
        assert "cpu/call" not in header  # the engine's figure: a trace has none
        assert "last ev" in text
        row = next(line for line in text.splitlines() if "51514" in line)
        assert " R " in row  # fd 7's last reported events
        log = app.dashboard.ready_log
        lines = [log.render_line(y).text for y in range(6)]
        assert "thread call(epfd)" in lines[0]
        assert any("4242 epoll_wait(5)" in line and "8:R" in line for line in lines[1:])
        assert app.dashboard.interest_lists is not None
        detail = describe(TRACED, app.latest.connections[2], app.latest).plain
        assert "Traced" in detail and "1 (16 B)" in detail and "16 B of 16 asked" in detail
        assert "Last wait calls that reported it" in detail
        await pilot.press("question_mark")
        await pilot.pause()
        from rich.console import Console
        console = Console(width=110, record=True, file=io.StringIO())
        console.print(app.screen._text())
        assert "(bpftrace or strace)" in console.export_text()


async def test_a_stopped_tracer_and_a_stopped_target_are_in_the_header():
    stopped = traced_snapshot(
        trace=TraceInfo("bpftrace", TRACE_STOPPED, "bpftrace exited with status 1", 88.0, 4,
                        2, True, 0),
        process=fixed_attach_snapshot().process._replace(status=STATUS_STOPPED))
    app = MuxtopApp(FixedSource(stopped, commands=False), interval=None)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        header = app.dashboard.header.render().plain
        assert "TRACE STOPPED: bpftrace exited with status 1" in header
        assert " STOPPED " in header


def test_queue_figures_say_where_they_came_from():
    s = fixed_attach_snapshot()
    conn = s.connections[2]
    text = describe(PROCESS, conn, s).plain
    assert "FIONREAD" not in text and "SIOCOUTQ" not in text
    assert "arrived, not yet read (sock_diag)" in text
    elsewhere = dataclasses.replace(s, target=s.target._replace(netns="net:[4026532999]"))
    text = describe(PROCESS, conn, elsewhere).plain
    assert "(/proc/net/tcp)" in text and "bytes in / out" not in text
    assert "backlog 128" in describe(PROCESS, s.connections[0], s).plain
    unknown = dataclasses.replace(elsewhere, sockets=(
        elsewhere.sockets[0]._replace(backlog=None), *elsewhere.sockets[1:]))
    listener = describe(PROCESS, s.connections[0], unknown).plain
    assert "backlog ? (unknown: the process is in another network namespace" in listener


@pytest.mark.timeout(60)
async def test_live_strace_of_a_naive_edge_server_in_the_dashboard():
    server = subprocess.Popen([sys.executable, "-u", str(SERVERS), "epoll-edge"],
                              stdout=subprocess.PIPE, text=True)
    try:
        info = json.loads(server.stdout.readline())
        if strace.problem(server.pid):
            pytest.skip(f"strace cannot run here: {strace.problem(server.pid)}")
        attacher = Attacher(server.pid, stuck_after=0.4)
        with_trace(attacher, Trace(open_tracer(server.pid, "strace")))
        source = AttachSource(attacher, interval=0.2).start()
        assert source.kind == SOURCE_TRACED
        client = socket.create_connection(("127.0.0.1", info["port"]), timeout=5)
        app = MuxtopApp(source, interval=0.1)
        try:
            async with app.run_test(size=SIZE) as pilot:
                # strace sees the server once two of its waits (0.1 s each) are traced: what
                # the server reads next is traced whole, however long strace took to attach.
                await until(lambda: app.latest is not None and len(app.latest.waits) >= 2,
                            pilot, timeout=20, what="strace attached")
                client.sendall(b"e" * 500)
                deadline = time.monotonic() + 20  # a bound for a busy machine
                while not (app.latest and any(dict(d.evidence).get("proven")
                                              for d in app.latest.diagnoses)):
                    assert time.monotonic() < deadline, "no proven stuck read on screen"
                    await pilot.pause(0.1)
                await pilot.pause(0.2)
                assert app.view is TRACED
                log = app.dashboard.ready_log
                lines = [log.render_line(y).text for y in range(log.size.height)]
                assert any(f"{server.pid} epoll_wait({info['epoll']})" in line
                           for line in lines)
                assert "proven by the trace" in str(app.dashboard.interest_lists.render())
        finally:
            client.close()
            source.stop()
    finally:
        server.kill()
        server.wait(5)
        server.stdout.close()
