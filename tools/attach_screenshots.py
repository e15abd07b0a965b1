"""`python tools/attach_screenshots.py --screenshot FILE [--detail FILE]`: start a buggy
edge-triggered server, attach to it and save the dashboard (and the stuck fd's detail view)
once the findings are in: screenshots/attach.svg and screenshots/attach-detail.svg.
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from muxtop.attach.reader import Attacher
from muxtop.attach.source import AttachSource
from muxtop.ui.app import MuxtopApp
from muxtop.ui.screens.detail import DetailScreen

# Two classic bugs: one small read per edge-triggered event (never until EAGAIN), so a client
# that sends more than 16 bytes at once is left with bytes nobody reads; and EOF never closes
# the socket, so a client that hangs up leaves it in CLOSE_WAIT.
BUGGY_SERVER = r"""
import select, socket
listener = socket.create_server(("127.0.0.1", 0), backlog=16)
listener.setblocking(False)
ep = select.epoll()
ep.register(listener.fileno(), select.EPOLLIN)
print(listener.getsockname()[1], flush=True)
conns = {}
while True:
    for fd, _ in ep.poll():
        if fd == listener.fileno():
            c, _ = listener.accept()
            c.setblocking(False)
            conns[c.fileno()] = c
            ep.register(c.fileno(), select.EPOLLIN | select.EPOLLET)
        else:
            data = conns[fd].recv(16)
            if data:
                conns[fd].send(data)
"""


def screenshot(path: Path, detail: Path | None = None, timeout: float = 15.0) -> None:
    """Attach to a fresh BUGGY_SERVER with a few clients and save what the dashboard shows."""
    folder = tempfile.TemporaryDirectory(prefix="muxtop-")
    script = Path(folder.name) / "buggy_echo.py"
    script.write_text(BUGGY_SERVER, encoding="utf-8")
    server = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE,
                              stderr=subprocess.DEVNULL, text=True)
    clients: list[socket.socket] = []
    source = None
    try:
        port = int(server.stdout.readline())
        for _ in range(4):  # healthy: short messages, echoed back whole
            clients.append(socket.create_connection(("127.0.0.1", port), timeout=5))
            clients[-1].sendall(b"ping\n")
            clients[-1].recv(64)
        stuck = socket.create_connection(("127.0.0.1", port), timeout=5)
        stuck.sendall(b"s" * 4000)  # 16 bytes are read, 3984 wait forever
        clients.append(stuck)
        socket.create_connection(("127.0.0.1", port), timeout=5).close()  # hangs up at once
        time.sleep(0.2)
        source = AttachSource(Attacher(server.pid, stuck_after=1.0), interval=0.25).start()
        asyncio.run(_shoot(source, path, detail, timeout))
    finally:
        if source is not None:
            source.stop()
        for client in clients:
            client.close()
        server.kill()
        server.wait(5)
        server.stdout.close()
        folder.cleanup()


async def _shoot(source: AttachSource, path: Path, detail: Path | None,
                 timeout: float) -> None:
    app = MuxtopApp(source, interval=0.1)
    async with app.run_test(size=(160, 48)) as pilot:
        deadline = time.monotonic() + timeout
        while {"stuck-read", "close-wait"} - {d.kind for d in (app.shown.diagnoses
                                                               if app.shown else ())}:
            if time.monotonic() > deadline:
                raise RuntimeError("the findings never came")
            await pilot.pause(0.1)
        table = app.dashboard.table
        stuck = next(d.fd for d in app.shown.diagnoses if d.kind == "stuck-read")
        table.move_to(next(i for i, v in enumerate(table.rows) if v.fd == stuck))
        await pilot.pause(0.3)
        path.write_text(app.export_screenshot(
            title="muxtop attach — an edge-triggered server that stops reading"),
            encoding="utf-8")
        if detail is not None:
            await pilot.press("enter")
            while not isinstance(app.screen, DetailScreen):
                await pilot.pause(0.05)
            await pilot.pause(0.3)
            app.screen.query_one("#detail-panel").scroll_end(animate=False)  # the attach part
            await pilot.pause(0.1)
            detail.write_text(app.export_screenshot(
                title=f"muxtop attach — fd {stuck}, the stuck read"), encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python tools/attach_screenshots.py",
                                     description="Screenshots of the attach dashboard.")
    parser.add_argument("--screenshot", type=Path, required=True, metavar="FILE")
    parser.add_argument("--detail", type=Path, metavar="FILE",
                        help="also the stuck fd's detail view")
    args = parser.parse_args(argv)
    screenshot(args.screenshot, args.detail)
    print(f"wrote {args.screenshot}" + (f" and {args.detail}" if args.detail else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
