"""`python tools/proxy_screenshots.py [DIR]`: SVG screenshots of the proxy from a real run.

An echo engine stands in for the upstream; a second engine proxies to it with a 100 ms
latency toxic while a client thread keeps eight connections in ping-pong through it: the
dashboard (pairs of rows, the ~ flag, the toxics panel; at 160×48 and 80×24), one pair in
detail, the toxics menu. Then a proxy to an
upstream that accepts and never reads, with clients sending into it: the upstream's legs fill,
the clients' reading stops, and the findings name the side that does not read.
"""

from __future__ import annotations

import asyncio
import selectors
import socket
import sys
import threading
import time
from pathlib import Path

from muxtop.engine import Engine, EngineConfig
from muxtop.engine.source import EngineSource
from muxtop.proxy.registry import Registry
from muxtop.ui.app import MuxtopApp
from muxtop.ui.screens.detail import DetailScreen
from muxtop.ui.screens.toxics_menu import ToxicsMenu

SIZE = (160, 48)
SMALL = (80, 24)
PAYLOAD = b"p" * 256


class PingPong:
    """Echo round trips on `count` connections until stopped."""

    def __init__(self, address, count: int) -> None:
        self.socks = [socket.create_connection(address, timeout=5) for _ in range(count)]
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        sel = selectors.DefaultSelector()
        for sock in self.socks:
            sock.setblocking(False)
            sel.register(sock, selectors.EVENT_READ, [0])
            sock.send(PAYLOAD)
        while not self.stop.is_set():
            for key, _ in sel.select(0.1):
                try:
                    got = key.fileobj.recv(65536)
                except BlockingIOError:
                    continue
                key.data[0] += len(got)
                if key.data[0] >= len(PAYLOAD):
                    key.data[0] = 0
                    key.fileobj.send(PAYLOAD)

    def close(self) -> None:
        self.stop.set()
        self.thread.join(5)
        for sock in self.socks:
            sock.close()


async def shoot(app: MuxtopApp, pilot, out: Path, name: str, saved: list[Path]) -> None:
    await pilot.pause()
    path = out / f"{name}.svg"
    path.write_text(app.export_screenshot(title=f"muxtop — {name}"), encoding="utf-8")
    saved.append(path)


async def latency(out: Path) -> list[Path]:
    echo = Engine(EngineConfig(port=0)).start()
    registry = Registry()
    proxy = Engine(EngineConfig(port=0, upstream=echo.address, registry=registry)).start()
    registry.add_toxic("muxtop", {"type": "latency", "stream": "downstream",
                                  "attributes": {"latency": 100, "jitter": 10}})
    saved: list[Path] = []
    traffic = PingPong(proxy.address, 8)
    app = MuxtopApp(EngineSource(proxy))
    try:
        async with app.run_test(size=SIZE) as pilot:
            await pilot.pause(2.5)
            await shoot(app, pilot, out, "proxy-latency", saved)
            table = app.dashboard.table
            table.move_to(next(i for i, v in enumerate(table.rows) if v.kind == "conn"))
            await pilot.press("enter")
            await pilot.pause(0.6)
            assert isinstance(app.screen, DetailScreen)
            app.screen.query_one("#detail-panel").scroll_to(y=18, animate=False)
            await pilot.pause(0.3)
            await shoot(app, pilot, out, "proxy-pair-detail", saved)
            await pilot.press("escape")
            await pilot.press("T")
            await pilot.pause(0.6)
            assert isinstance(app.screen, ToxicsMenu)
            await shoot(app, pilot, out, "proxy-toxics", saved)
            await pilot.press("escape")
        app = MuxtopApp(EngineSource(proxy))  # the same at 80×24: the toxics panel narrow
        async with app.run_test(size=SMALL) as pilot:
            await pilot.pause(2.0)
            await shoot(app, pilot, out, "proxy-latency-80x24", saved)
    finally:
        traffic.close()
        proxy.stop()
        echo.stop()
    return saved


async def stuck_upstream(out: Path) -> list[Path]:
    deaf = socket.create_server(("127.0.0.1", 0))  # accepts (the backlog) and never reads
    deaf.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 32768)
    proxy = Engine(EngineConfig(port=0, upstream=deaf.getsockname(), stuck_after=1.0,
                                sndbuf=32768)).start()
    saved: list[Path] = []
    held = [deaf]
    clients = [socket.create_connection(proxy.address, timeout=5) for _ in range(4)]
    app = MuxtopApp(EngineSource(proxy))
    try:
        async with app.run_test(size=SIZE) as pilot:
            for client in clients:
                client.setblocking(False)
            deadline = time.monotonic() + 3.0
            while time.monotonic() < deadline:
                for client in clients:
                    try:
                        client.send(b"w" * 65536)
                    except BlockingIOError:
                        pass
                held.extend(s for s, _ in [_accept(deaf)] if s is not None)
                await pilot.pause(0.1)
            await pilot.pause(2.0)
            await shoot(app, pilot, out, "proxy-stuck-upstream", saved)
    finally:
        proxy.stop()
        for sock in clients + held:
            sock.close()
    return saved


def _accept(listener: socket.socket):
    listener.setblocking(False)
    try:
        return listener.accept()
    except BlockingIOError:
        return None, None


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    out = Path(argv[0] if argv else "screenshots")
    out.mkdir(parents=True, exist_ok=True)
    for path in asyncio.run(latency(out)) + asyncio.run(stuck_upstream(out)):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
