"""The dashboard driven by keys against a real engine on an ephemeral loopback port."""

from __future__ import annotations

import os
import pty
import select
import socket
import subprocess
import sys
import time

import pytest
from ui_helpers import detail_body
from ui_helpers import until as ui_until

from muxtop.engine import Engine, EngineConfig, Watch
from muxtop.engine.source import EngineSource
from muxtop.kernel import uring
from muxtop.ui.app import MuxtopApp

pytestmark = pytest.mark.timeout(60)
SIZE = (160, 48)


@pytest.fixture
def engine():
    engine = Engine(EngineConfig(port=0, publish_interval=0.05)).start()
    yield engine
    engine.stop()


@pytest.fixture
def clients():
    """Loopback client sockets, all closed at teardown."""
    opened: list[socket.socket] = []

    def connect(address) -> socket.socket:
        sock = socket.create_connection(address, timeout=5)
        opened.append(sock)
        return sock

    yield connect
    for sock in opened:
        sock.close()


async def until(predicate, pilot, timeout: float = 5.0):
    """ui_helpers.until, saying on failure what the app last saw."""
    def seen() -> str:
        app = pilot.app
        latest = app.latest
        return (f"app saw {latest.backend}/{latest.trigger} "
                f"{[(v.fd, v.kind, v.state, v.bytes_in) for v in latest.connections]} "
                f"at {latest.taken_at:.3f}, now {time.monotonic():.3f}, "
                f"table {[(v.fd, v.state) for v in app.dashboard.table.rows]}")
    return await ui_until(predicate, pilot, timeout, what=seen)


def app_for(engine: Engine) -> MuxtopApp:
    return MuxtopApp(EngineSource(engine), interval=0.05)


URING = uring.unavailable() is None  # b passes over uring where io_uring is unavailable


async def test_keys_cycle_backend_and_trigger(engine):
    app = app_for(engine)
    async with app.run_test(size=SIZE) as pilot:
        for expected in ("uring", "select", "poll", "epoll")[0 if URING else 1:]:
            await pilot.press("b")
            await until(lambda want=expected: engine.snapshot().backend == want, pilot)
        for expected in ("edge", "oneshot", "level"):
            await pilot.press("t")
            await until(lambda want=expected: engine.snapshot().trigger == want, pilot)
        # On select, only level exists: t is greyed out.
        await pilot.press(*["b"] * (2 if URING else 1))
        await until(lambda: app.latest.backend == "select", pilot)
        assert app.check_action("cycle_trigger", ()) is None


async def test_backend_key_explains_when_no_backend_takes_the_trigger(engine):
    app = app_for(engine)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("t")
        await until(lambda: app.latest.trigger == "edge", pilot)
        if URING:  # uring takes edge too; completion only uring
            await pilot.press("b")
            await until(lambda: app.latest.backend == "uring", pilot)
            await pilot.press("t", "t")
            await until(lambda: app.latest.trigger == "completion", pilot)
        await pilot.press("b")
        await until(lambda: any("level" in n.message and "select" in n.message
                                for n in app._notifications), pilot)
        # No switch went out: the engine has answered a command sent after the key.
        assert engine.submit(Watch(())).result(5).ok
        assert engine.state.backend.name == ("uring" if URING else "epoll")
        if URING:
            assert any("completion → level), then b" in str(n.message)
                       for n in app._notifications)


async def test_pause_freezes_the_display_not_the_engine(engine):
    app = app_for(engine)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("space")
        assert app.paused
        shown = app.shown
        await until(lambda: app.latest is not shown and app.latest.taken_at > shown.taken_at,
                    pilot)
        assert app.shown is shown  # the table and log stay put...
        assert "PAUSED" in app.dashboard.header.render().plain  # ...the header says so
        await pilot.press("space")
        assert not app.paused and app.shown is app.latest


async def test_close_key_closes_the_selected_connection(engine, clients):
    sock = clients(engine.address)
    sock.sendall(b"hello")
    assert sock.recv(5) == b"hello"
    app = app_for(engine)
    async with app.run_test(size=SIZE) as pilot:
        table = app.dashboard.table
        await until(lambda: any(v.kind == "conn" for v in table.rows), pilot)
        index = next(i for i, v in enumerate(table.rows) if v.kind == "conn")
        assert app.dashboard.check_action("close_connection", ()) is None  # listener row
        table.move_to(index)
        await pilot.pause()
        assert app.dashboard.check_action("close_connection", ()) is True
        fd = table.selected.fd
        await pilot.press("k")
        await until(lambda: any(v.fd == fd and v.state == "closed"
                                for v in engine.snapshot().connections), pilot)
        sock.settimeout(5)
        assert sock.recv(10) == b""  # EOF
        await until(lambda: table.selected is not None and table.selected.state == "closed",
                    pilot)
        assert app.dashboard.check_action("close_connection", ()) is None


async def test_p_pauses_and_resumes_reading(engine, clients):
    clients(engine.address)
    app = app_for(engine)
    async with app.run_test(size=SIZE) as pilot:
        table = app.dashboard.table
        await until(lambda: any(v.kind == "conn" for v in table.rows), pilot)
        table.move_to(next(i for i, v in enumerate(table.rows) if v.kind == "conn"))
        fd = table.selected.fd

        def flags():
            return next(v.flags for v in engine.snapshot().connections if v.fd == fd)

        await pilot.press("p")
        await until(lambda: "P" in flags(), pilot)
        await until(lambda: "P" in table.selected.flags, pilot)
        await pilot.press("p")
        await until(lambda: "P" not in flags(), pilot)


async def test_detail_view_follows_its_connection(engine, clients):
    clients(engine.address).sendall(b"x" * 10)
    app = app_for(engine)
    async with app.run_test(size=SIZE) as pilot:
        table = app.dashboard.table
        await until(lambda: any(v.kind == "conn" and v.bytes_in == 10 for v in table.rows),
                    pilot)
        table.move_to(next(i for i, v in enumerate(table.rows) if v.kind == "conn"))
        await pilot.press("enter")
        body = await until(lambda: detail_body(app), pilot)
        assert "bytes in / out" in body and "10 / 10" in body
        await pilot.press("escape")
        await until(lambda: app.screen is app.dashboard, pilot)


async def test_q_quits_and_the_port_is_free_after_stop(engine):
    port = engine.address[1]
    app = app_for(engine)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("q")
        await until(lambda: not app.is_running, pilot)
    engine.stop()
    with socket.socket() as again:
        again.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        again.bind(("127.0.0.1", port))


async def test_help_screen_opens_and_closes(engine):
    app = app_for(engine)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("question_mark")
        from muxtop.ui.screens.help import HelpScreen

        await until(lambda: isinstance(app.screen, HelpScreen), pilot)
        await pilot.press("escape")
        await until(lambda: app.screen is app.dashboard, pilot)


async def test_a_tick_after_the_screens_are_gone_does_nothing(engine):
    """The tick timer can fire once more while the app shuts down (seen as a flaky
    ScreenStackError): by then the screen stack is empty."""
    app = app_for(engine)
    async with app.run_test(size=SIZE) as pilot:
        await until(lambda: app.shown is not None, pilot)
    assert not app.screen_stack
    deadline = time.monotonic() + 5
    while engine.snapshot() is app.latest and time.monotonic() < deadline:
        time.sleep(0.01)  # a new Snapshot: the tick would redraw
    assert engine.snapshot() is not app.latest
    app.tick()


def test_muxtop_with_dashboard_exits_cleanly_in_a_terminal(tmp_path):
    """The real command under a pseudo-terminal: quits after --duration, status 0, and
    leaves the alternate screen (the terminal is restored)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    main, child = pty.openpty()
    env = dict(os.environ, TERM="xterm-256color", COLUMNS="120", LINES="40")
    proc = subprocess.Popen(
        [sys.executable, "-m", "muxtop", "--port", str(port), "--duration", "1.5"],
        stdin=child, stdout=child, stderr=child, env=env, close_fds=True)
    os.close(child)
    output = bytearray()
    deadline = time.monotonic() + 30
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([main], [], [], 0.2)
            if ready:
                try:
                    chunk = os.read(main, 65536)
                except OSError:
                    break  # EIO: the child closed the terminal
                if not chunk:
                    break
                output += chunk
            elif proc.poll() is not None:
                break
        assert proc.wait(timeout=10) == 0, output[-2000:].decode(errors="replace")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(main)
    assert b"\x1b[?1049h" in output and b"\x1b[?1049l" in output  # entered and left
    with socket.socket() as again:  # the server let the port go
        again.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        again.bind(("127.0.0.1", port))

