"""Recording a Source: a thread of its own polls it and hands what is new to the encoder.

Each poll takes
- the wait records newer than the last one written (the first: the one the first Snapshot was
  taken after; the ring's older backlog is not the recording's): from the live wait ring when it
  has one (`recent_waits()`, the engine's, read between two Snapshots, and more often while
  it fills fast), else from the latest Snapshot's ring. A seq that jumps (more wait calls than
  the ring holds went by between two polls) is a GAP frame and a notice: counted and shown,
  never silent;
- a new Snapshot (a new object), with what changed since the one before (encoder.py);
- the commands sent through the source (control.Recordable) answered since, with outcomes.
It writes with each Snapshot and at least every FLUSH_EVERY seconds, so a killed process
leaves a file that reads up to less than a second before it died. The engine never waits for
the recorder: the recorder only reads what the engine publishes.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from typing import NamedTuple

from muxtop.commands import Watch
from muxtop.record.encoder import RecordingEncoder, command_event
from muxtop.record.writer import RecordWriteError
from muxtop.source import Source
from muxtop.units import size

POLL_EVERY = 0.05  # seconds between polls while the ring fills slowly
FASTEST_POLL = 0.004  # ...and the shortest, while it fills fast
FLUSH_EVERY = 0.5  # seconds: a killed process loses less than this (plus one poll)
GAP_NOTICE_EVERY = 5.0  # seconds between two notices about lost wait records
NoticeSink = Callable[[str, str], None]  # (level, text), called on the recorder's thread


class RecorderStatus(NamedTuple):
    path: str
    bytes: int  # the file's size, with what is still to be flushed
    seconds: float  # from the first Snapshot to the last
    snapshots: int
    waits: int  # wait records written
    gaps: int  # seq jumps
    lost: int  # wait records the jumps skipped
    running: bool
    error: str | None  # why it stopped by itself


class Recorder:
    """One recording of `source` into a new file at `path`. The constructor creates the
    file and writes its header (RecordWriteError says why it cannot); `start()` starts the
    thread, `stop()` takes the last picture, closes the file with an END frame and ends it."""

    def __init__(self, source: Source, path: str, command_line: list[str],
                 on_notice: NoticeSink | None = None) -> None:
        self.source = source
        self.path = path
        self.on_notice = on_notice or (lambda level, text: None)
        self.encoder = RecordingEncoder(path, source.kind, command_line, self._lost)
        self._recent = source.recent_waits  # None: the Snapshots' rings only
        # A source that counts its publishes lets the END frame say how many were missed.
        self._published = source.published is not None
        self._published_before: int | None = None
        self._capacity = 0  # the most wait records the source's ring was seen to hold
        self._sent: deque[tuple[object, Future, float]] = deque()
        self._delay = POLL_EVERY
        self._flushed_at = time.monotonic()
        self._gap_told_at = -GAP_NOTICE_EVERY
        self._untold_lost = 0
        self.error: str | None = None
        self.running = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="muxtop-recorder", daemon=True)

    # ---- control (any thread) ----------------------------------------------------------

    def start(self) -> Recorder:
        self.running = True
        self._thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> RecorderStatus:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)
        return self.status()

    def sent(self, command: object, future: Future) -> None:
        """A command went to the source: record it with its outcome once it is answered.
        Watch (which rows are on screen) is not an action on the server: not recorded."""
        if self.running and not isinstance(command, Watch) and isinstance(future, Future):
            self._sent.append((command, future, time.monotonic()))

    def status(self) -> RecorderStatus:
        e = self.encoder
        seconds = e.last_t - e.first_t if e.first_t is not None and e.last_t else 0.0
        return RecorderStatus(self.path, e.size, seconds, e.snapshots, e.waits, e.gaps,
                              e.lost, self.running, self.error)

    # ---- the thread --------------------------------------------------------------------

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                self._poll()
                self._stop.wait(self._delay)
            self._poll()  # what the source published last (the engine's after it stopped)
            self._finish()
        except RecordWriteError as exc:
            self._failed(str(exc))
        except Exception as exc:  # noqa: BLE001 - a bug of ours must not take the server down
            self._failed(f"recording {self.path} stopped: {exc!r}")
        finally:
            self.running = False

    def _poll(self) -> None:
        now = time.monotonic()
        encoder = self.encoder
        try:
            snapshot = self.source.latest()
        except Exception:  # noqa: BLE001 - a failing source shows that itself; record on
            snapshot = None
        new = 0
        due = now - self._flushed_at >= FLUSH_EVERY
        if snapshot is not None and snapshot is not encoder.last:
            self._capacity = max(self._capacity, len(snapshot.waits))
            before = encoder.waits
            if encoder.first_t is None and self._published:
                self._published_before = self.source.published - 1
            encoder.add_snapshot(snapshot)
            new += encoder.waits - before
            due = True
        if self._recent is not None:
            ring = self._recent()
            self._capacity = max(self._capacity, len(ring))
            new += encoder.add_waits(ring)
        self._add_answers(now)
        if due:
            encoder.flush()
            self._flushed_at = now
        self._pace(new)

    def _pace(self, new: int) -> None:
        """Poll faster while a poll brings more than a quarter of the ring, slower again
        when it brings little: fast enough to lose nothing, and idle otherwise."""
        quarter = max(self._capacity // 4, 64)
        if new > quarter:
            self._delay = max(FASTEST_POLL, self._delay / 2)
        elif new < quarter // 4:
            self._delay = min(POLL_EVERY, self._delay * 1.5)

    def _lost(self, lost: int, at: float) -> None:
        self._untold_lost += lost
        if at - self._gap_told_at >= GAP_NOTICE_EVERY:
            self._gap_told_at = at
            self.on_notice("warning", f"recording lost {self._untold_lost:,} wait records "
                           "(more wait calls than the ring holds went by between two looks); "
                           "the replay marks each gap")
            self._untold_lost = 0

    def _add_answers(self, now: float) -> None:
        sent = self._sent
        for _ in range(len(sent)):
            command, future, at = sent.popleft()
            if not future.done():
                sent.append((command, future, at))
                continue
            try:
                outcome = future.result()
                ok, message = outcome.ok, outcome.message
            except Exception as exc:  # noqa: BLE001 - a failed command is an outcome too
                ok, message = False, f"{type(command).__name__} failed: {exc!r}"
            self.encoder.add_event(command_event(command, ok, message, at), now)

    # ---- the end -----------------------------------------------------------------------

    def _end_record(self, reason: str) -> dict:
        record = self.encoder.end_record(reason)
        if self._published_before is not None:
            record["published"] = self.source.published - self._published_before
        return record

    def _finish(self) -> None:
        self.encoder.end(self._end_record("stopped"))
        self.running = False
        s = self.status()
        lost = f", {s.lost:,} lost in {s.gaps:,} gaps" if s.gaps else ""
        self.on_notice("info", f"recorded {s.seconds:.1f} s to {self.path} "
                       f"({file_size(s.bytes)}, {s.waits:,} wait calls from its start on{lost})")

    def _failed(self, message: str) -> None:
        """Stop recording after an error; the file keeps its whole frames (the writer cut
        it back) and gets an END frame saying why, if there is room for one."""
        self.error = message
        self.running = False
        try:
            self.encoder.end(self._end_record(message))
        except (RecordWriteError, OSError):
            pass  # no room even for that: the file still reads up to its last whole frame
        self.on_notice("error", f"recording stopped: {message}")


def file_size(n: int) -> str:
    """A recording's size as every other byte count muxtop shows: 912B, 107KiB, 12.3MiB
    (the REC badge said 109.4 kB, in powers of ten, beside rss 50.0MiB)."""
    return size(n)
