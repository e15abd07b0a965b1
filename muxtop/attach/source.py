"""Another process as a Source: one read of /proc every `interval` seconds, on a thread; and
several (attach --name, several PIDs) as one Source that shows one of them at a time.

One read walks /proc/PID/fd, the epoll fdinfo and the socket tables: milliseconds, more with
thousands of fds. Each Snapshot is published by swapping one reference, as the engine does;
the UI polls `latest()` and never waits for /proc. It is read-only. When the process exits
the last picture stays (Snapshot.running False) and reading stops.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from concurrent.futures import Future
from typing import Self

from muxtop.attach.reader import Attacher
from muxtop.attach.targets import CAME, REFUSED, Change, Target, Targets
from muxtop.commands import Outcome
from muxtop.printable import printable
from muxtop.snapshot import SOURCE_TRACED, Notice, Snapshot
from muxtop.source import Source, answered

DEFAULT_INTERVAL = 0.5
READ_ONLY = "attached to another process: muxtop only looks"
# Reading /proc may take at most this share of a core (drawing takes about one more percent):
# with thousands of sockets a read costs tens of milliseconds, and the refreshes then come less
# often than --interval asks.
READ_SHARE = 0.04


class _Reading(Source):
    """What both attach sources share: read-only, and read on a thread of their own. `start()`
    takes the first look at once (so the first frame has rows) and starts the thread, which
    calls `read_now()` every `period` seconds until `done()`; `stop()` ends it."""

    shares_gil = False  # the process we look at has a GIL of its own
    announces_refusals = False
    read_only = READ_ONLY
    flood_target = None

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self.period = interval  # seconds between reads now: more when reads are costly
        self._error: BaseException | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def latest(self) -> Snapshot | None:
        if self._error is not None:
            raise self._error  # the app shows SOURCE FAILED and keeps the last picture
        return self._picture()

    def submit(self, command: object) -> Future:
        return answered(Outcome(False, READ_ONLY))

    def start(self) -> Self:
        self.read_now()
        self._thread = threading.Thread(target=self._run, daemon=True, name=self._thread_name())
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self.done() and not self._stop.wait(self.period):
            try:
                self.read_now()
            except Exception as exc:  # noqa: BLE001 - a read should not raise; show it
                self._error = exc
                return

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.interval + 5)
        self._close()

    def done(self) -> bool:
        """Nothing more to read (the process has exited: every read is the same picture)."""
        return False

    def read_now(self) -> object:
        raise NotImplementedError

    def _picture(self) -> Snapshot | None:
        raise NotImplementedError

    def _thread_name(self) -> str:
        raise NotImplementedError

    def _close(self) -> None:
        raise NotImplementedError


class AttachSource(_Reading):
    """One process."""

    def __init__(self, attacher: Attacher, interval: float = DEFAULT_INTERVAL) -> None:
        super().__init__(interval)
        self.attacher = attacher
        # A traced process draws with its ready lists: another kind of picture.
        self.kind = SOURCE_TRACED if attacher.trace is not None else "attach"
        self.reads = 0
        self.read_seconds = 0.0  # CPU time of all reads so far
        self._snapshot: Snapshot | None = None

    def _picture(self) -> Snapshot | None:
        return self._snapshot

    def read_now(self) -> Snapshot:
        started = time.thread_time()
        self._snapshot = snapshot = self.attacher.read()
        cost = time.thread_time() - started
        self.reads += 1
        self.read_seconds += cost
        if self.reads == 1:
            return snapshot  # the first read learns what later ones reuse: not their cost
        period = max(self.interval, cost / READ_SHARE)
        if period > self.interval * 1.5 and self.period <= self.interval * 1.5:
            self.attacher.notice("info", f"a read of /proc takes {cost * 1e3:.0f} ms of CPU "
                                 f"here: refreshing every {period:.1f} s, not "
                                 f"{self.interval:g} s, so that muxtop takes at most "
                                 f"{READ_SHARE:.0%} of a core")
        self.period = period
        return snapshot

    def done(self) -> bool:
        return self.attacher.exited

    def _thread_name(self) -> str:
        return f"attach-{self.attacher.pid}"

    def _close(self) -> None:
        self.attacher.close()


class TargetList:
    """The processes a TargetsSource watches, as the dashboard lists them, and which one it
    shows. The source's thread hands it each read (`update`); the UI reads `entries` and
    calls `switch`. A shown process that exits stays, its last picture on screen, until the
    user switches away from it."""

    def __init__(self, name: str | None) -> None:
        self.name = name  # attach --name NAME, else None
        self.read: tuple[Target, ...] = ()  # the last read, published by swapping it
        self.selected: int | None = None  # the key of the target shown
        self._gone: Target | None = None  # the one shown, since it exited
        self.switches = 0  # how many times the target shown changed
        self.notices: deque[Notice] = deque(maxlen=32)  # who came and went, for the app
        self._seq = 0
        self._updated = False  # the first read came

    def update(self, read: tuple[Target, ...], changes: list[Change]) -> None:
        first, self._updated = not self._updated, True
        live = tuple(t for t in read if t.snapshot.running)
        shown = next((t for t in read if t.key == self.selected), None)
        if shown is not None and not shown.snapshot.running:
            self._gone = shown
        self.read = live
        if self.selected is None and live:
            self.selected = live[0].key
            self.switches += 1
        for change in changes:
            if change.kind != CAME or not first:  # those there from the start are listed
                self._tell(change)

    def entries(self) -> tuple[Target, ...]:
        """The processes to list, in the order they came; the one shown among them even if
        it has exited."""
        gone = self._gone
        if gone is None or gone.key != self.selected:
            return self.read
        return tuple(sorted((*self.read, gone), key=lambda t: t.key))

    def shown(self) -> Snapshot | None:
        return next((t.snapshot for t in self.entries() if t.key == self.selected), None)

    def switch(self, step: int) -> None:
        """Show the next (step 1) or previous (-1) process in the list."""
        entries = self.entries()
        if not entries:
            return
        keys = [t.key for t in entries]
        here = keys.index(self.selected) if self.selected in keys else -1
        self.selected = keys[(here + step) % len(keys)]
        if self._gone is not None and self._gone.key != self.selected:
            self._gone = None  # switched away from it: forgotten
        self.switches += 1

    def _tell(self, change: Change) -> None:
        self._seq += 1
        name = printable(change.name)
        if change.kind == CAME:
            text, level = f"watching {name} (pid {change.pid})", "info"
        elif change.kind == REFUSED:
            text, level = f"cannot watch {name} (pid {change.pid}): {change.reason}", "warning"
        else:
            text, level = f"{name} (pid {change.pid}) exited", "info"
        self.notices.append(Notice(self._seq, time.monotonic(), level, text))


class TargetsSource(_Reading):
    """Several processes (attach --name, several PIDs), read together every `interval`
    seconds on one thread; `latest()` is the one `targets` (a TargetList) shows."""

    kind = "attach"

    def __init__(self, followed: Targets, interval: float = DEFAULT_INTERVAL) -> None:
        super().__init__(interval)
        self.followed = followed
        self.targets = TargetList(followed.name)

    def _picture(self) -> Snapshot | None:
        return self.targets.shown()

    def read_now(self) -> None:
        read = self.followed.read()
        self.targets.update(read, self.followed.take_changes())
        # Every target's read together may take at most READ_SHARE of a core, as one does.
        self.period = max(self.interval, self.followed.read_seconds / READ_SHARE)

    def _thread_name(self) -> str:
        return "attach-targets"

    def _close(self) -> None:
        self.followed.close()
