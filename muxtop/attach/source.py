"""Another process as a Source: one read of /proc every `interval` seconds, on a thread.

One read walks /proc/PID/fd, the epoll fdinfo and the socket tables: milliseconds, more with
thousands of fds. Each Snapshot is published by swapping one reference, as the engine does;
the UI polls `latest()` and never waits for /proc. It is read-only. When the process exits
the last picture stays (Snapshot.running False) and reading stops.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import Future

from muxtop.attach.reader import Attacher
from muxtop.commands import Outcome
from muxtop.snapshot import SOURCE_TRACED, Snapshot
from muxtop.source import Source, answered

DEFAULT_INTERVAL = 0.5
READ_ONLY = "attached to another process: muxtop only looks"
# Reading /proc may take at most this share of a core (drawing takes about one more percent):
# with thousands of sockets a read costs tens of milliseconds, and the refreshes then come less
# often than --interval asks.
READ_SHARE = 0.04


class AttachSource(Source):
    """`start()` takes the first look at once (so the first frame has rows) and starts the
    reader thread; `stop()` ends it."""

    shares_gil = False  # the process we look at has a GIL of its own
    announces_refusals = False
    read_only = READ_ONLY
    flood_target = None

    def __init__(self, attacher: Attacher, interval: float = DEFAULT_INTERVAL) -> None:
        self.attacher = attacher
        # A traced process draws with its ready lists: another kind of picture.
        self.kind = SOURCE_TRACED if attacher.trace is not None else "attach"
        self.interval = interval
        self.period = interval  # seconds between reads now: more when reads are costly
        self.reads = 0
        self.read_seconds = 0.0  # CPU time of all reads so far
        self._snapshot: Snapshot | None = None
        self._error: BaseException | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def latest(self) -> Snapshot | None:
        if self._error is not None:
            raise self._error  # the app shows SOURCE FAILED and keeps the last picture
        return self._snapshot

    def submit(self, command: object) -> Future:
        return answered(Outcome(False, READ_ONLY))

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

    def start(self) -> AttachSource:
        self.read_now()
        self._thread = threading.Thread(target=self._run, daemon=True,
                                        name=f"attach-{self.attacher.pid}")
        self._thread.start()
        return self

    def _run(self) -> None:
        # Once the process has exited every read returns the same picture: stop reading.
        while not self.attacher.exited and not self._stop.wait(self.period):
            try:
                self.read_now()
            except Exception as exc:  # noqa: BLE001 - Attacher.read should not raise; show it
                self._error = exc
                return

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.interval + 5)
        self.attacher.close()
