"""The dashboard in any room: from 80x24 to 220x60 the columns that matter, the ready fds and
`? help` stay on screen and the header loses nothing it must say; keys that cannot act say
why; the ready log's Home is the newest wait; findings lead to their fd; and the live cost of
a wait call shows select and poll paying for an idle herd that epoll does not see."""

from __future__ import annotations

import re
import socket
import time

import pytest
from ui_helpers import until

from muxtop.bench import synthetic
from muxtop.engine import Engine, EngineConfig
from muxtop.engine.source import EngineSource
from muxtop.limits import raise_fd_limit
from muxtop.snapshot import Diagnosis
from muxtop.source import FixedSource
from muxtop.ui.app import MuxtopApp
from muxtop.ui.widgets.key_bar import KeyBar

pytestmark = pytest.mark.timeout(60)

SIZES = [(80, 24), (100, 30), (160, 48), (220, 60)]


@pytest.mark.parametrize("size", SIZES, ids=[f"{w}x{h}" for w, h in SIZES])
async def test_every_size_keeps_what_matters_on_screen(size):
    width, _ = size
    snapshot = synthetic.snapshot(40, 3)
    app = MuxtopApp(FixedSource(snapshot), interval=None)
    async with app.run_test(size=size) as pilot:
        await pilot.pause()
        table = app.dashboard.table
        shown = table.shown_ids()
        assert {"fd", "state", "flags", "rx_queue", "tx_queue"} <= shown, shown
        assert table.virtual_size.width <= table.scrollable_content_region.width  # no sideways
        # The ready fds of the newest wait that returned some are on screen.
        log = app.dashboard.ready_log
        newest = next(w for w in reversed(snapshot.waits) if w.ready)
        line = next(log.render_line(y).text for y in range(1, log.size.height)
                    if log.render_line(y).text.strip().startswith(f"{newest.seq:,}"))
        first_fd, first_events = next(newest.pairs())
        assert f"{first_fd}:" in line, line
        # The header: three lines, none wider than the screen, each with its key figures.
        lines = app.dashboard.header.render().plain.split("\n")
        assert len(lines) == 3 and all(len(text) <= width for text in lines), lines
        for needed, text in zip((("epoll/level", "conns"), ("waits/s", "cpu/call"),
                                 ("in", "out", "cpu")), lines):
            assert all(word in text for word in needed), (needed, text)
        # `? help` is the first key of the footer, whatever the width, and the two keys
        # muxtop is about (backend, trigger) are never cut off.
        # The footer is laid out after the first frame: wait for its keys to have a place.
        bar = app.dashboard.query_one(KeyBar)

        def on_screen() -> set[str]:
            return {a.name for line in bar.lines()[:bar.size.height] for a in line}

        await until(lambda: {"help", "cycle_backend", "cycle_trigger"} <= on_screen(), pilot,
                    what=lambda: f"footer keys on screen: {sorted(on_screen())}")
        assert bar.lines()[0][0].name == "help"
        # A wide screen uses its width: the note column comes in.
        assert ("note" in shown) == (width >= 200)


async def test_a_screen_below_the_minimum_says_so():
    app = MuxtopApp(FixedSource(synthetic.snapshot(10, 0)), interval=None)
    async with app.run_test(size=(50, 14)) as pilot:
        await pilot.pause()
        notice = app.dashboard.query_one("#too-small")
        assert notice.display and "at least 60×16" in str(notice.render())
        assert not app.dashboard.table.display


async def test_keys_that_cannot_act_say_why():
    # poll is level-triggered only: t explains instead of doing nothing.
    source = FixedSource(synthetic.snapshot(10, 0, backend="poll"))
    app = MuxtopApp(source, interval=None)
    async with app.run_test(size=(160, 48)) as pilot:
        await pilot.pause()
        await pilot.press("t")

        def said() -> list[str]:
            return [n.message for n in app._notifications]

        # A notification is a message of its own, handled after the key's.
        await until(lambda: any("level-triggered only" in m and "epoll" in m for m in said()),
                    pilot, what=lambda: f"said {said()}")
        assert not source.sent or all(type(c).__name__ == "Watch" for c in source.sent)
    # A read-only source: b, k and f say what the source says.
    app = MuxtopApp(FixedSource(synthetic.snapshot(10, 0), commands=False), interval=None)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        app.dashboard.table.move_to(4)
        await pilot.press("b", "k", "f")
        await until(lambda: any("no server of our own to flood" in m for m in said()), pilot,
                    what=lambda: f"said {said()}")  # f's, after b's and k's
        assert said().count("this view is read-only") == 2, said()
        # Narrow: the keys that cannot act leave the footer to those that can.
        footer = {a.name for a in app.dashboard.query_one(KeyBar).actions}
        assert "cycle_backend" not in footer and "help" in footer


async def test_home_in_the_ready_log_is_the_newest_wait_and_it_says_live():
    snapshots = [synthetic.snapshot(20, t, wait_count=400) for t in range(4)]
    source = FixedSource(snapshots)
    app = MuxtopApp(source, interval=None)
    async with app.run_test(size=(160, 48)) as pilot:
        await pilot.pause()
        log = app.dashboard.ready_log
        log.focus()
        assert "LIVE" in log.border_title
        await pilot.press("pagedown", "pagedown")
        await pilot.pause()
        assert "SCROLLED" in log.border_title
        top = log._top_seq()
        source.advance()
        app.tick()  # new waits arrive: a scrolled view stays on its records
        await pilot.pause()
        assert log._top_seq() == top
        for _ in range(3):
            await pilot.press("home")
            source.advance()
            app.tick()
            await pilot.pause()
            assert log._top_seq() == source.latest().waits[-1].seq  # the newest, every time
            assert "LIVE" in log.border_title
            await pilot.press("pagedown")


async def test_enter_on_a_finding_selects_its_fd_and_cleared_ones_are_kept():
    now = synthetic.STARTED_AT + 60
    finding = Diagnosis("stuck-read", 30, "bytes wait and nobody reads " * 6,
                        (("rx_queue", 4096),), now - 4.0)
    source = FixedSource([synthetic.snapshot(40, 0, diagnoses=(finding,)),
                          synthetic.snapshot(40, 1, diagnoses=())])
    app = MuxtopApp(source, interval=None)
    async with app.run_test(size=(160, 48)) as pilot:
        await pilot.pause()
        panel = app.dashboard.diagnoses
        text = " ".join(str(panel.render()).split())
        assert text.count("nobody reads") == 6  # the whole explanation, wrapped
        panel.focus()
        await pilot.press("enter")  # the panel's message, then the dashboard's move
        table = app.dashboard.table
        await until(lambda: table.has_focus, pilot, what="the table takes the focus")
        assert table.selected.fd == 30
        source.advance()
        app.tick()
        await pilot.pause()
        text = str(panel.render())
        assert "cleared lately" in text and "stuck-read fd 30: lasted" in text
        assert panel.has_class("-shown")


async def test_a_finding_that_clears_twice_is_one_line_in_cleared_lately():
    # "cleared lately" listed fd-pressure process twice when it came, went, came and went.
    now = synthetic.STARTED_AT + 60
    pressure = Diagnosis("fd-pressure", None, "fds near the limit", (), now - 3.0)
    source = FixedSource([synthetic.snapshot(40, 0, diagnoses=(pressure,)),
                          synthetic.snapshot(40, 1, diagnoses=()),
                          synthetic.snapshot(40, 2, diagnoses=(pressure,)),
                          synthetic.snapshot(40, 3, diagnoses=())])
    app = MuxtopApp(source, interval=None)
    async with app.run_test(size=(160, 48)) as pilot:
        panel = app.dashboard.diagnoses
        await pilot.pause()
        for _ in range(3):
            shown = source.advance()
            app.tick()
            await until(lambda s=shown: panel.taken_at == s.taken_at, pilot,
                        what="the panel shows the Snapshot")
        lines = [line for line, _, _ in panel._build(200)]  # unclipped by the column
        assert lines[-1] == "fd-pressure process: lasted 3.8s, the last of 2 times", lines
        assert str(panel.render()).count("fd-pressure process") == 1


async def test_an_idle_herd_costs_poll_every_call_and_epoll_nothing():
    herd_size = 1000
    raise_fd_limit(4 * herd_size + 64)
    engine = Engine(EngineConfig(port=0, backend="poll", publish_interval=0.05)).start()
    herd: list[socket.socket] = []
    app = MuxtopApp(EngineSource(engine), interval=0.05)
    try:
        async with app.run_test(size=(160, 48)) as pilot:
            for _ in range(herd_size):
                herd.append(socket.create_connection(engine.address, timeout=5))
            await until(lambda: engine.snapshot().open_connections == herd_size, pilot,
                        what="the herd is in")
            # One busy client, so wait calls return at once and are many.
            busy = socket.create_connection(engine.address, timeout=5)
            herd.append(busy)

            def cost(backend: str, after: float = 0.0) -> float:
                """The median of 8 Snapshots' wait_cpu, from those taken after `after`."""
                deadline = max(time.monotonic(), after) + 3
                samples = []
                while time.monotonic() < deadline and len(samples) < 8:
                    busy.sendall(b"x" * 64)
                    busy.recv(64)
                    s = engine.snapshot()
                    if s.backend == backend and s.rates.wait_cpu and s.taken_at > after and \
                            s.rates.registered_per_wait > herd_size:
                        samples.append(s.rates.wait_cpu)
                return sorted(samples)[len(samples) // 2] if samples else 0.0

            await until(lambda: engine.snapshot().rates.wait_cpu, pilot, what="a cost")
            on_poll = cost("poll")

            def scanned() -> int:
                header = app.dashboard.header.render().plain.replace(",", "")
                found = re.search(r"cpu/call \S+µs  scans (\d+) fds", header)
                return int(found.group(1)) if found else 0

            await until(lambda: scanned() > herd_size, pilot, what="the header: poll scans "
                        "every registered fd, at a cost it shows")
            await pilot.press("b")  # poll -> epoll
            await until(lambda: engine.snapshot().backend == "epoll", pilot, what="epoll")
            # Rates are over the last second of waits: from Snapshots a second after the
            # switch they are all epoll's.
            on_epoll = cost("epoll", after=time.monotonic() + 1.0)
            assert on_poll and on_epoll and on_poll >= 5 * on_epoll, (on_poll, on_epoll)
    finally:
        for sock in herd:
            sock.close()
        app.floods.close()
        engine.stop()
