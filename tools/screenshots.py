"""`python tools/screenshots.py [DIR]`: SVG screenshots of the dashboard from a real run.

Starts an engine on an ephemeral loopback port, drives bounded echo traffic at it from a
client thread (a few busy connections, some idle ones, one whose reading is paused so its
kernel receive queue fills), and saves what the dashboard shows: idle, under load on epoll,
the same load on select, a connection's detail view, the help screen; then the flood form,
floods running (the default one done, a steady one going, its connections flagged F), the
bug-lab menu, and the naive-edge lab's stuck read named in the diagnoses panel.
"""

from __future__ import annotations

import asyncio
import selectors
import socket
import sys
import threading
import time
from pathlib import Path

from muxtop.commands import PauseReading, Switch
from muxtop.engine import Engine, EngineConfig
from muxtop.engine.source import EngineSource
from muxtop.limits import raise_fd_limit
from muxtop.ui.app import MuxtopApp
from muxtop.ui.screens.detail import DetailScreen
from muxtop.ui.screens.flood_form import FloodForm
from muxtop.ui.screens.lab_menu import LabMenu

SIZE = (160, 48)
BUSY, IDLE = 24, 12  # echo connections kept busy, and connections that only sit there
PAYLOAD = b"m" * 512


class Traffic:
    """Echo round trips on BUSY connections until stopped (or `limit` seconds pass)."""

    def __init__(self, address, limit: float = 60.0) -> None:
        self.address = address
        self.limit = limit
        self.stop = threading.Event()
        self.socks: list[socket.socket] = []
        self.thread = threading.Thread(target=self._run, daemon=True)

    def connect(self, count: int) -> list[socket.socket]:
        opened = [socket.create_connection(self.address, timeout=5) for _ in range(count)]
        self.socks.extend(opened)
        return opened

    def start(self) -> None:
        self.busy = self.connect(BUSY)
        self.thread.start()

    def _run(self) -> None:
        sel = selectors.DefaultSelector()
        deadline = time.monotonic() + self.limit
        for sock in self.busy:
            sock.setblocking(False)
            sel.register(sock, selectors.EVENT_READ)
            sock.send(PAYLOAD)
        try:
            while not self.stop.is_set() and time.monotonic() < deadline:
                for key, _ in sel.select(0.1):
                    sock = key.fileobj
                    try:
                        if sock.recv(65536):
                            sock.send(PAYLOAD)
                    except (BlockingIOError, InterruptedError):
                        pass
                    except OSError:
                        sel.unregister(sock)
        finally:
            sel.close()

    def close(self) -> None:
        self.stop.set()
        if self.thread.is_alive():
            self.thread.join(5)
        for sock in self.socks:
            sock.close()


async def load(app: MuxtopApp, engine: Engine, traffic: Traffic, pilot) -> int:
    """Busy and idle connections, and one whose reading is paused while 100 kB wait in its
    kernel receive queue (rx-q), sorted first; its fd."""
    traffic.connect(IDLE)
    traffic.start()
    stuck = traffic.connect(1)[0]
    await pilot.pause(0.6)
    stuck_fd = max(v.fd for v in engine.snapshot().connections if v.kind == "conn")
    engine.submit(PauseReading(stuck_fd, True)).result(5)
    stuck.sendall(b"s" * 100_000)
    sort_by(app, "rx_queue", descending=True)
    await pilot.pause(2.5)
    return stuck_fd


async def take(out: Path) -> list[Path]:
    engine = Engine(EngineConfig(port=0)).start()
    traffic = Traffic(engine.address)
    saved: list[Path] = []
    app = MuxtopApp(EngineSource(engine))
    try:
        async with app.run_test(size=SIZE) as pilot:

            async def shot(name: str) -> None:
                await pilot.pause()
                path = out / f"{name}.svg"
                path.write_text(app.export_screenshot(title=f"muxtop — {name}"),
                                encoding="utf-8")
                saved.append(path)

            await pilot.pause(1.2)
            await shot("idle")

            stuck_fd = await load(app, engine, traffic, pilot)
            await shot("epoll-under-load")

            await pilot.press("b")  # epoll -> select, live
            await pilot.pause(2.5)
            await shot("select-under-load")

            table = app.dashboard.table
            table.move_to(next(i for i, v in enumerate(table.rows) if v.fd == stuck_fd))
            await pilot.press("enter")
            await pilot.pause(0.6)
            assert isinstance(app.screen, DetailScreen)
            await shot("detail")
            await pilot.press("escape")

            await pilot.press("question_mark")
            await pilot.pause(0.3)
            await shot("help")
            await pilot.press("escape")

            # The idle herd (h) on poll, then on epoll: the cost of a wait call, live.
            engine.submit(Switch(backend="poll")).result(5)
            await pilot.press("h")
            await wait_for(lambda: engine.snapshot().open_connections > 1000, pilot, 20)
            await pilot.pause(2.5)
            await shot("idle-herd-poll")
            await pilot.press("b")  # poll -> epoll
            await wait_for(lambda: engine.snapshot().backend == "epoll", pilot, 5)
            await pilot.pause(2.5)
            await shot("idle-herd-epoll")
            await pilot.press("h")  # let the herd go
            await wait_for(lambda: engine.snapshot().open_connections < 100, pilot, 20)

            # Floods: the default one (f), then a steady one chosen in the form (F).
            await pilot.press("f")
            await pilot.pause(3.0)
            await pilot.press("x")
            await wait_for(lambda: all(not f.running for f in app.floods.floods), pilot, 20)
            await pilot.press("F")
            await pilot.pause(0.3)
            form = app.screen
            assert isinstance(form, FloodForm)
            for field, value in (("clients", "200"), ("messages", "0"), ("rate", "20"),
                                 ("duration", "60")):
                form.query_one(f"#{field}").value = value
            await shot("flood-form")
            await pilot.click("#launch")
            await pilot.pause(1.5)
            sort_by(app, "age", descending=True)  # the newest first: the flood's connections
            table.move_to(next(i for i, v in enumerate(table.rows) if v.kind == "conn"))
            await pilot.pause(1.5)
            await shot("flood-running")
            await pilot.press("x")
            await wait_for(lambda: all(not f.running for f in app.floods.floods), pilot, 10)

            # The bug lab: edge-triggered with the naive reader, and a stuck read.
            await pilot.press("t")  # level -> edge
            await wait_for(lambda: engine.snapshot().trigger == "edge", pilot, 5)
            await pilot.press("l")
            await pilot.pause(0.3)
            assert isinstance(app.screen, LabMenu)
            await pilot.press("enter")  # naive-edge on
            await wait_for(lambda: "naive-edge" in engine.snapshot().lab, pilot, 5)
            await pilot.pause(0.5)
            await shot("lab-menu")
            await pilot.press("escape")
            victim = traffic.connect(1)[0]
            victim.sendall(b"n" * 1_000_000)  # one 64 KiB read per edge: the rest sits
            sort_by(app, "rx_queue", descending=True)  # the stuck connection first
            await wait_for(lambda: any(d.kind == "stuck-read"
                                       for d in engine.snapshot().diagnoses), pilot, 10)
            await pilot.pause(1.0)
            stuck = next(d.fd for d in app.latest.diagnoses if d.kind == "stuck-read")
            table.move_to(next(i for i, v in enumerate(table.rows)
                               if v.fd == stuck and v.kind == "conn"))  # in view, selected
            await pilot.pause(0.3)
            await shot("diagnosis")
            await pilot.press("q")
    finally:
        app.floods.close()
        traffic.close()
        engine.stop()
    return saved


async def take_small(out: Path) -> list[Path]:
    """The dashboard at 80x24, under load with a stuck connection, as in an ssh window."""
    engine = Engine(EngineConfig(port=0)).start()
    traffic = Traffic(engine.address)
    app = MuxtopApp(EngineSource(engine))
    path = out / "small-80x24.svg"
    try:
        async with app.run_test(size=(80, 24)) as pilot:
            await load(app, engine, traffic, pilot)
            path.write_text(app.export_screenshot(title="muxtop — 80×24"), encoding="utf-8")
            await pilot.press("q")
    finally:
        traffic.close()
        engine.stop()
    return [path]


def sort_by(app: MuxtopApp, column: str, descending: bool) -> None:
    table = app.dashboard.table
    table.model.set_sort(column, descending)
    table.rebuild()


async def wait_for(predicate, pilot, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise RuntimeError("the dashboard did not get there in time")
        await pilot.pause(0.1)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    out = Path(argv[0] if argv else "screenshots")
    out.mkdir(parents=True, exist_ok=True)
    raise_fd_limit(4096)  # the idle herd: 1,000 connections, both ends in this process
    for path in asyncio.run(take(out)) + asyncio.run(take_small(out)):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
