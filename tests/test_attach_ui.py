"""The dashboard over `muxtop attach`: a real buggy edge-triggered server in a child process,
read by an AttachSource on its thread, shown by the dashboard; plus a render of a fixed attach
Snapshot (frozen clock) and the CLI's choice between the dashboard and the text table."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import test_attach

from muxtop.attach.reader import Attacher
from muxtop.attach.source import AttachSource
from muxtop.cli import attach as cli
from muxtop.snapshot import (
    KIND_CONN,
    KIND_EPOLL,
    KIND_LISTENER,
    LISTENING,
    OPEN,
    ConnView,
    Diagnosis,
    EpollSet,
    Notice,
    ProcessInfo,
    ProcessStats,
    Rates,
    Snapshot,
    SocketInfo,
    TcpInfo,
    Totals,
    Watch,
)
from muxtop.source import FixedSource
from muxtop.ui.app import MuxtopApp
from muxtop.ui.screens.detail import DetailScreen
from muxtop.ui.screens.help import HelpScreen
from muxtop.ui.widgets.key_bar import KeyBar

pytestmark = pytest.mark.timeout(30)
SIZE = (160, 48)
SNAPSHOTS = Path(__file__).parent / "snapshots"
# Keys that only look: everything else steers an engine and must be greyed out when attached.
LOOKING = {"toggle_pause", "help", "quit", "details", "cycle_sort", "reverse_sort", "filter",
           "freeze", "clear_filter", "toggle_empty"}


@pytest.fixture
def server(tmp_path):
    script = tmp_path / "server.py"
    script.write_text(test_attach.SERVER)
    started = test_attach.Server(script, "stuck")
    yield started
    if started.proc.poll() is None or not started.proc.stdout.closed:
        started.stop()


@pytest.fixture
def client():
    opened = []

    def open_client(port: int) -> socket.socket:
        opened.append(socket.create_connection(("127.0.0.1", port), timeout=5))
        return opened[-1]

    yield open_client
    for sock in opened:
        sock.close()


async def wait_for(pilot, found, timeout: float = 8.0) -> None:
    deadline = time.monotonic() + timeout
    while not found():
        assert time.monotonic() < deadline, "timed out"
        await pilot.pause(0.05)


def screen_text(app: MuxtopApp) -> str:
    table = app.dashboard.table
    lines = [table.render_line(y).text for y in range(table.size.height)]
    return app.dashboard.header.render().plain + "\n" + "\n".join(lines)


async def test_attached_buggy_server_shows_sockets_stuck_read_and_exit(server, client):
    conn = client(server.info["port"])
    fd = server.expect("accepted")["accepted"]
    conn.sendall(b"x" * 1000)
    assert server.expect("read")["n"] == 16  # one small read, never until EAGAIN: the bug

    source = AttachSource(Attacher(server.pid, stuck_after=0.3), interval=0.1).start()
    app = MuxtopApp(source, interval=0.05)
    try:
        async with app.run_test(size=SIZE) as pilot:
            await wait_for(pilot, lambda: app.shown is not None)
            table = app.dashboard.table
            kinds = {v.fd: v.kind for v in table.rows}
            assert kinds[server.info["listener"]] == KIND_LISTENER
            assert kinds[server.info["epoll"]] == KIND_EPOLL
            assert kinds[fd] == KIND_CONN
            text = screen_text(app)
            assert f"pid {server.pid}" in text and "server.py stuck" in text
            assert "READ-ONLY" in text and "EXITED" not in text
            assert "LISTEN" in text and "ESTABLISHED" in text and "IN ET" in text
            assert "epoll: 2 fds" in text and "(1 edge, 1 level)" in text

            # The finding, in the table's last column once the queue has stayed stuck.
            def stuck_row() -> bool:
                rows = [line for line in screen_text(app).splitlines()
                        if line.lstrip(" │").startswith(f"{fd} ")]
                return bool(rows) and "! stuck-read" in rows[0]

            await wait_for(pilot, stuck_row)
            assert "1 finding" in app.dashboard.header.render().plain
            panel = str(app.dashboard.interest_lists.render())
            assert "stuck-read" in panel and "0x80000019" in panel

            # The filter finds TCP states and local addresses too.
            await pilot.press("slash", *"establ")
            await wait_for(pilot, lambda: [v.fd for v in table.rows] == [fd])
            await pilot.press("escape")
            await wait_for(pilot, lambda: len(table.rows) == 3)

            # Read-only: every key that would steer an engine is greyed out.
            table.move_to(next(i for i, v in enumerate(table.rows) if v.fd == fd))
            await pilot.pause()
            for owner in (app, app.dashboard):
                for binding in type(owner).BINDINGS:
                    action = binding.action.removeprefix("app.")
                    target = app if binding.action.startswith("app.") else owner  # as Textual
                    if action not in LOOKING:
                        assert not target.check_action(action, ()), binding.action
            await pilot.press("b", "t", "k", "p")  # nothing happens, nothing breaks
            await pilot.press("question_mark")
            await wait_for(pilot, lambda: isinstance(app.screen, HelpScreen))
            assert app.screen.view.help_title == "Attached to another process"
            await pilot.press("escape")

            # The detail view: raw mask, decoded words, TCP state, inode, the evidence.
            await pilot.press("enter")
            await wait_for(pilot, lambda: isinstance(app.screen, DetailScreen))
            body = str(app.screen.query_one("#detail-body").render())
            for expected in ("epoll fd", "0x80000019", "IN|ERR|HUP|ET", "edge-triggered",
                             "ESTABLISHED", "inode", "stuck-read", "kernel rx queue (bytes): 984",
                             # where the server waits, with no tracer; true ages from tcp_info
                             "Threads, blocked now", f"tid {server.pid} (", "epoll_",
                             "at least this old (tcp_info's earliest time)"):
                assert expected in body, expected
            assert "Last wait calls" not in body and "app out-buffer" not in body
            await pilot.press("escape")

            server.stop()  # the process vanishes: shown, not a crash
            await wait_for(pilot, lambda: "EXITED" in app.dashboard.header.render().plain)
            assert app.is_running and len(table.rows) >= 3  # the last picture stays
            assert "1 finding" in app.dashboard.header.render().plain  # with its findings
            shown = {c.id for c in app.view.columns}
            cycle = app.view.sort_cycle
            # attach cannot see an application's buffers
            assert set(cycle) <= shown and "out_buffer" not in cycle
            for _ in cycle:  # one full cycle: only columns attach shows, then back to fd
                await pilot.press("s")
                assert table.model.sort in shown
            assert table.model.sort == "fd"
            await pilot.press("space", "space")
            assert app.is_running
    finally:
        source.stop()
    assert not source._thread.is_alive()


async def test_attach_source_reads_off_the_ui_thread(server):
    source = AttachSource(Attacher(server.pid), interval=0.05).start()
    try:
        first = source.latest()
        assert first.source == "attach" and source.reads == 1
        await asyncio.sleep(0.4)  # the UI's loop is free while the thread reads
        assert source.reads > 2 and source.latest() is not first
    finally:
        source.stop()


async def test_a_reader_that_fails_shows_source_failed_not_a_crash():
    class Broken:
        """An Attacher whose reads raise once told to (Attacher.read itself never should)."""

        pid, exited, trace = 1, False, None
        fail = threading.Event()

        def read(self) -> Snapshot:
            if self.fail.is_set():
                raise RuntimeError("boom")
            return fixed_attach_snapshot()

        def close(self) -> None:
            pass

    broken = Broken()
    source = AttachSource(broken, interval=0.05).start()
    app = MuxtopApp(source, interval=0.05)
    try:
        async with app.run_test(size=SIZE) as pilot:
            await wait_for(pilot, lambda: app.shown is not None)
            broken.fail.set()
            await wait_for(pilot, lambda: "SOURCE FAILED" in app.dashboard.header.render().plain)
            assert len(app.dashboard.table.rows) == 5 and app.is_running
    finally:
        source.stop()


# ---- a fixed attach Snapshot: the render ---------------------------------------------------

def fixed_attach_snapshot(*, exited: bool = False) -> Snapshot:
    """A made-up edge-triggered server with one stuck connection; the clock stands at 100 s."""
    now, start = 100.0, 40.0

    def view(fd, kind, peer, state, interest, rx, tx, flags, note, watched_by=(5,), tcp=None):
        return ConnView(
            cid=1000 + fd if kind != KIND_EPOLL else -1 - fd, fd=fd, kind=kind, peer=peer,
            state=state, interest=interest, last_events=0, last_ready=None, out_buffer=0,
            rx_queue=rx, tx_queue=tx, bytes_in=4096 if kind == KIND_CONN else 0, bytes_out=0,
            msgs_in=0, msgs_out=0, opened_at=70.0, last_io_at=90.0, closed_at=None, tcp=tcp,
            flags=flags, history=((70.0, "ESTABLISHED"),), note=note, watched_by=watched_by)

    established = TcpInfo("ESTABLISHED", 45, 20, 204000, 0, 0, 0)
    connections = (
        view(3, KIND_LISTENER, "", LISTENING, 1, None, None, "", "tcp 127.0.0.1:8080",
             tcp=TcpInfo("LISTEN", 0, 0, 0, 0, 2, 128)),
        view(5, KIND_EPOLL, "", OPEN, 0, None, None, "", "epoll: 4 fds, 3 edge, 1 disarmed",
             watched_by=()),
        view(7, KIND_CONN, "127.0.0.1:51514", OPEN, 1, 3072, 0, "!T", "tcp 127.0.0.1:8080",
             tcp=established),
        view(8, KIND_CONN, "[bold]127.0.0.1:51516", OPEN, 1, 0, 0, "T",
             "tcp 127.0.0.1:8080", tcp=established),
        view(9, KIND_CONN, "127.0.0.1:51518", OPEN, 0, 0, 0, "D",
             "tcp 127.0.0.1:8080", tcp=established),
    )
    sockets = (
        SocketInfo(3, 4101, "tcp", "127.0.0.1:8080", "", "LISTEN", 2, 128),
        *(SocketInfo(c.fd, 4100 + c.fd, "tcp", "127.0.0.1:8080", c.peer, "ESTABLISHED",
                     None, None) for c in connections[2:]),
    )
    stuck = Diagnosis(
        "stuck-read", 7, "fd 7 is edge-triggered and 3072 bytes wait in its receive queue, "
        "the oldest for 12.0 s: the app stopped reading before EAGAIN, and epoll will not "
        "report the fd again until more data arrives (unless the app paused reading on "
        "purpose)", (("rx_queue", 3072), ("seconds", 12.0), ("samples", 25),
                     ("app_read_bytes", 1024), ("epoll_fd", 5), ("mask", 0x80000019)), 96.0)
    return Snapshot(
        source="attach", taken_at=now, wall_time=1_790_000_000.0, started_at=start,
        backend="epoll", trigger="mixed", protocol="?", listen="127.0.0.1:8080",
        connections=connections, waits=(), totals=Totals(0, 0, 0, 0, 0, 0, 0, 0),
        rates=Rates(0.0, 0.0, 2048.0, 0.0, 0.0, 0.0, 0.0, 0.0),
        process=ProcessStats(4242, "ets-server", 1.5, 12_300_000, 9, 1024, 1),
        registered=4, open_connections=3,
        notices=(Notice(1, now, "error", "process 4242 (ets-server) exited"),) if exited else (),
        diagnoses=(stuck,), running=not exited,
        target=ProcessInfo(4242, "ets-server --port 8080 [edge] \x1b[2J", 2.0),
        epoll=(EpollSet(5, (Watch(3, 0x19, 3, ""), Watch(7, 0x80000019, 7, ""),
                            Watch(8, 0x80000019, 8, ""), Watch(9, 0xC0000000, 9, ""))),),
        sockets=sockets)


async def test_attach_view_snapshot(tmp_path):
    app = MuxtopApp(FixedSource(fixed_attach_snapshot(), commands=False), interval=None)
    async with app.run_test(size=SIZE) as pilot:
        # Without the footer: the keys other work adds must not change this picture.
        app.dashboard.query_one(KeyBar).display = False
        await pilot.pause()
        svg = app.export_screenshot()
        text = screen_text(app)
        # Markup-looking and control characters from the process stay plain text.
        assert "[edge] ?[2J" in text and "[bold]127.0.0.1:51516" in text
        assert "ET disarmed" in text and "2/128" in text and "! stuck-read" in text
    expected = SNAPSHOTS / "attach_view.svg"
    if os.environ.get("MUXTOP_UPDATE_SNAPSHOTS") or not expected.exists():
        expected.write_text(svg, encoding="utf-8")
        if not os.environ.get("MUXTOP_UPDATE_SNAPSHOTS"):
            pytest.fail(f"created {expected}; look at it, then re-run")
    elif expected.read_text(encoding="utf-8") != svg:
        (tmp_path / "attach_view.svg").write_text(svg, encoding="utf-8")
        pytest.fail(f"attach_view differs: see {tmp_path / 'attach_view.svg'} "
                    "(MUXTOP_UPDATE_SNAPSHOTS=1 accepts it)")


async def test_exited_process_keeps_its_last_picture():
    source = FixedSource([fixed_attach_snapshot(), fixed_attach_snapshot(exited=True)],
                         commands=False)
    app = MuxtopApp(source, interval=None)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        assert "EXITED" not in app.dashboard.header.render().plain
        source.advance()
        app.tick()
        await pilot.pause()
        assert "EXITED" in app.dashboard.header.render().plain
        assert len(app.dashboard.table.rows) == 5
        assert "exited" in str(app.dashboard.interest_lists.render())
        assert any("exited" in n.message for n in app._notifications)


# ---- the CLI's live view ------------------------------------------------------------------

def test_cli_opens_the_dashboard_on_a_terminal_and_fails_before_it(monkeypatch, capsys):
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    opened, texts = [], []
    monkeypatch.setattr(cli, "dashboard", lambda attacher, args: opened.append(args) or 0)
    monkeypatch.setattr(cli, "text_loop", lambda attacher, args: texts.append(args) or 0)
    monkeypatch.setattr(sys.stdout, "isatty", lambda: True)
    try:
        assert cli.main([str(proc.pid)]) == 0
        assert len(opened) == 1 and opened[0].interval == 0.5 and not texts
        assert cli.main([str(proc.pid), "--text"]) == 0
        assert len(opened) == 1 and len(texts) == 1
    finally:
        proc.kill()
        proc.wait(5)
    capsys.readouterr()
    opened.clear()
    # No such process: one line, exit 1, and the screen never changes.
    assert cli.main([str(proc.pid)]) == 1
    assert not opened
    assert capsys.readouterr().err == f"muxtop attach: no process with PID {proc.pid}\n"


def test_facts_of_a_first_picture_with_no_sockets_or_epoll_sets():
    """The by-fd tables are made even for an empty first picture: a process attached with
    no sockets open once drew its table from None."""
    from muxtop.ui.views.process import _ByIdentity

    made = []
    by_identity = _ByIdentity(lambda parts: made.append(parts) or {len(parts): parts})
    assert by_identity(()) == {0: ()}
    assert by_identity(()) == {0: ()} and made == [()]  # kept: the same parts


async def test_detail_view_does_not_offer_keys_that_cannot_act_and_says_why():
    source = FixedSource(fixed_attach_snapshot(), commands=False)
    app = MuxtopApp(source, interval=None)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: app.shown is not None)
        table = app.dashboard.table
        table.move_to(next(i for i, v in enumerate(table.rows) if v.fd == 7))
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, DetailScreen))
        screen = app.screen
        offered = [key for key, active in screen.active_bindings.items() if active.binding.show]
        assert "escape" in offered and "k" not in offered and "p" not in offered
        for key in ("k", "p"):  # each says why, in the words of the main view
            await pilot.press(key)
            await wait_for(pilot, lambda key=key: [
                n for n in app._notifications if n.title == f"{key}: not now"
                and n.message == source.read_only])
        assert source.sent == [] and isinstance(app.screen, DetailScreen)
