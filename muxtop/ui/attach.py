"""The dashboard over another process: `muxtop attach PID` without --once or --text.

An `AttachSource` reads the process on a thread of its own every `interval` seconds (one read
walks /proc/PID/fd, the epoll fdinfo and the socket tables: milliseconds, more with thousands
of fds) and publishes each Snapshot by swapping one reference, as the engine does; the UI
polls `latest()` and never waits for /proc. It is read-only: there is nothing to command, so
the engine keys are greyed out. When the process exits the last picture stays, marked EXITED.

`python -m muxtop.ui.attach --screenshot FILE [--detail FILE]` starts a buggy edge-triggered
server, attaches to it and saves the dashboard (and the stuck fd's detail view) once the
findings are in: screenshots/attach.svg and screenshots/attach-detail.svg.
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from rich.console import Group
from rich.table import Table
from rich.text import Text
from textual.widgets import Static

from muxtop.attach.reader import Attacher
from muxtop.snapshot import Snapshot
from muxtop.ui import format as fmt
from muxtop.ui.app import POLL_INTERVAL, MuxtopApp
from muxtop.ui.screens.dashboard import DashboardScreen
from muxtop.ui.screens.detail import DetailScreen
from muxtop.ui.screens.help import HelpScreen
from muxtop.ui.source import SnapshotSource

DEFAULT_INTERVAL = 0.5
WATCHES_LISTED = 64  # registrations listed per epoll set in the panel; the table has them all


class AttachSource(SnapshotSource):
    """Snapshots of one process, read off the UI thread. `start()` takes the first look at
    once (so the first frame has rows) and starts the reader thread; `stop()` ends it."""

    def __init__(self, attacher: Attacher, interval: float = DEFAULT_INTERVAL) -> None:
        super().__init__(self._current)  # no submit: read-only
        self.attacher = attacher
        self.interval = interval
        self.reads = 0
        self._snapshot: Snapshot | None = None
        self._error: BaseException | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _current(self) -> Snapshot | None:
        if self._error is not None:
            raise self._error  # the app shows SOURCE FAILED and keeps the last picture
        return self._snapshot

    def read_now(self) -> Snapshot:
        self._snapshot = snapshot = self.attacher.read()
        self.reads += 1
        return snapshot

    def start(self) -> AttachSource:
        self.read_now()
        self._thread = threading.Thread(target=self._run, daemon=True,
                                        name=f"attach-{self.attacher.pid}")
        self._thread.start()
        return self

    def _run(self) -> None:
        # Once the process has exited every read returns the same picture: stop reading.
        while not self.attacher.exited and not self._stop.wait(self.interval):
            try:
                self.read_now()
            except Exception as exc:  # noqa: BLE001 - Attacher.read should not raise; show it
                self._error = exc
                return

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.interval + 5)


class AttachPanel(Static):
    """In place of the ready-list log (another process's wait calls cannot be seen): the
    epoll interest lists with their decoded masks, and the findings in plain words."""

    DEFAULT_CSS = """
    AttachPanel {
        width: 1fr;
        border: round $primary 40%;
        border-title-color: $text-accent;
        padding: 0 1;
        overflow-y: auto;
    }
    """

    def show(self, snapshot: Snapshot) -> None:
        self.update(describe_process(snapshot))
        count = len(snapshot.diagnoses)
        self.border_title = (f"epoll interest lists · {count} finding{'s' * (count != 1)}")


def describe_process(s: Snapshot) -> Text:
    """Findings first (they are why one attaches), then every epoll set with its watches."""
    text = Text(end="", no_wrap=True, overflow="ellipsis")
    for d in s.diagnoses:
        where = "process" if d.fd is None else f"fd {d.fd}"
        text.append(f"! {d.kind}", "bold red")
        text.append(f" ({where}, for {fmt.age(s.taken_at - d.since)})  ", "dim")
        text.append(fmt.plain(d.explanation) + "\n")
    if s.extra.get("exited"):
        text.append("the process has exited: this is the last picture\n", "bold red")
    elif not s.diagnoses:
        stuck_after = s.extra.get("stuck_after")
        text.append(f"no findings (a queue must stay stuck {stuck_after} s to count)\n", "dim")
    epoll = s.extra.get("epoll", {})
    if not epoll:
        text.append("no epoll instances: select, poll or blocking calls (cannot tell which)\n",
                    "dim")
    for epfd, watches in epoll.items():
        text.append(f"epoll fd {epfd}", "bold")
        text.append(f"  {len(watches)} watched\n", "dim")
        for tfd, mask, decoded in watches[:WATCHES_LISTED]:
            text.append(f"  fd {tfd:<6}", "bold")
            text.append(f"{mask}  ", "dim")
            text.append(f"{decoded}\n")
        if len(watches) > WATCHES_LISTED:
            text.append(f"  … and {len(watches) - WATCHES_LISTED:,} more (the table shows each "
                        "fd's mask)\n", "dim")
    return text


class AttachDashboard(DashboardScreen):
    """The dashboard, with the ready-list log and the wait-call trends (invisible from the
    outside) replaced by the interest lists and the findings."""

    def on_mount(self) -> None:
        # Runs before DashboardScreen.on_mount (Textual calls each class's handler, subclass
        # first), so the first Snapshot already finds the panel.
        self.attach_panel: AttachPanel | None = None
        for selector in ("#ready-log", "#trends"):
            for widget in self.query(selector):
                widget.display = False
        logs = self.query("#ready-log")
        if logs:
            self.attach_panel = AttachPanel(id="attach-panel")
            logs.first().parent.mount(self.attach_panel, before=logs.first())
        for side in self.query("#side"):
            if not any(child.display for child in side.children):
                side.display = False

    def show(self, snapshot: Snapshot) -> None:
        super().show(snapshot)
        if self.attach_panel is not None:
            self.attach_panel.show(snapshot)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "toggle_empty":
            return False  # there is no ready-list log to hide empty waits in
        return super().check_action(action, parameters)


ATTACH_COLUMNS_HELP = (
    ("fd", "the process's file descriptor"),
    ("local / what", "the socket's own address (with its protocol unless TCP), or what another "
     "fd is: an epoll set and how many fds it watches, an eventfd, a pipe"),
    ("peer", "the remote address"),
    ("tcp state", "from /proc/net/tcp: LISTEN, ESTABLISHED, CLOSE_WAIT (the peer closed, the "
     "app has not)...; a unix socket's state"),
    ("epoll mask", "what each epoll set watching the fd asks for, without ERR and HUP (the "
     "kernel adds those to every one): IN, OUT, RDHUP; ET edge-triggered, ONESHOT, EXCLUSIVE; "
     "disarmed: a oneshot that fired and was never re-armed"),
    ("by ep", "the epoll fd(s) watching it"),
    ("rx/accq", "kernel receive queue: bytes arrived, not yet read; on a listener, connections "
     "waiting for accept() / the backlog"),
    ("tx-q", "kernel send queue: bytes not yet acknowledged by the peer, or unsent"),
    ("in / out", "bytes received / acknowledged by the peer over the socket's life (sock_diag; "
     "same network namespace only)"),
    ("seen / idle", "since muxtop first saw the fd / since its queues or state last changed"),
    ("rtt", "smoothed round-trip time (sock_diag)"),
    ("finding", "the diagnoses that name the fd: stuck-read, stuck-write, accept-full, "
     "close-wait; details with enter"),
)
ATTACH_INTRO = (
    "muxtop reads the process from /proc every --interval seconds and changes nothing: the "
    "keys that steer muxtop's own engine (b t k p f F x l) are greyed out. Another process's "
    "wait calls cannot be seen, so the ready-list log and the wait trends give way to its "
    "epoll interest lists and the findings. A queue must stay stuck --stuck-after seconds "
    "to count.")


class AttachHelpScreen(HelpScreen):
    """The dashboard's help, with what the attach columns mean first."""

    def _text(self) -> Group:
        columns = Table.grid(padding=(0, 2))
        columns.add_column(style="bold", no_wrap=True)
        columns.add_column()
        for name, meaning in ATTACH_COLUMNS_HELP:
            columns.add_row(name, meaning)
        return Group(Text("Attached to another process", "bold underline"),
                     Text(ATTACH_INTRO), Text(""),
                     Text("Columns when attached", "bold underline"), columns, Text(""),
                     super()._text())


class AttachApp(MuxtopApp):
    """MuxtopApp over an AttachSource, titled with the process it watches."""

    TITLE = "muxtop attach"

    def __init__(self, source: SnapshotSource, **kwargs) -> None:
        super().__init__(source, **kwargs)
        self.dashboard = AttachDashboard()

    def action_help(self) -> None:
        if not isinstance(self.screen, HelpScreen):
            self.push_screen(AttachHelpScreen(self.key_help()))

    def _thin_out(self, snapshot: Snapshot) -> bool:
        # The live view skips frames while the server is busy to leave it the GIL; a process
        # we attach to has a GIL of its own.
        return False


def run_attach(attacher: Attacher, args: argparse.Namespace) -> int:
    """The live view `muxtop.attach.cli.main` plugs in: the dashboard until q."""
    interval = getattr(args, "interval", DEFAULT_INTERVAL)
    source = AttachSource(attacher, interval=interval)
    source.start()
    app = AttachApp(source, interval=min(POLL_INTERVAL, interval), handle_signals=True)
    try:
        app.run()
    finally:
        source.stop()
    return app.return_code or 0


# ---- screenshots ------------------------------------------------------------------------------

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
    app = AttachApp(source, interval=0.1)
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
    parser = argparse.ArgumentParser(prog="python -m muxtop.ui.attach",
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
