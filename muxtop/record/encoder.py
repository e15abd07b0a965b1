"""What goes into a recording, frame by frame, from what a source shows: wait records in runs
of consecutive seqs (a seq that jumps is a GAP), each Snapshot, and an EVENT for each thing
that changed from one Snapshot to the next (a notice, a finding that appeared or went, a
switch, the bug lab, new connections, the source stopping) or that was done to the source (a
command and its outcome). It decides what to write; RecordingWriter writes it; the recorder
thread (recorder.py) feeds it what it polls, and the replay bench what it makes up."""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import socket
import time
from bisect import bisect_right
from collections.abc import Callable, Iterator
from operator import itemgetter

from muxtop import __version__
from muxtop.plain import PLAIN_VERSION, diagnosis_to_plain
from muxtop.record import format as fmt
from muxtop.record.pictures import PictureEncoder
from muxtop.record.waits import WaitColumns
from muxtop.record.writer import RecordingWriter, RecordWriteError
from muxtop.snapshot import KIND_CONN, Snapshot, WaitRecord

CHUNK = 4096  # wait records per WAITS frame at most
_SEQ = itemgetter(0)
_ENCODE = json.JSONEncoder(separators=(",", ":"), check_circular=False).encode
GapSink = Callable[[int, float], None]  # (wait records lost, when): a seq jumped


def recording_header(kind: str, command_line: list[str]) -> dict:
    """The HEADER frame: what made the recording, where and when."""
    uname = os.uname()
    return {
        "format": fmt.FORMAT_VERSION, "plain": PLAIN_VERSION, "muxtop": __version__,
        "source": kind, "host": socket.gethostname(),
        "kernel": f"{uname.sysname} {uname.release} {uname.machine}",
        "python": platform.python_version(), "command": list(command_line),
        "started": time.time(), "monotonic": time.monotonic(), "pid": os.getpid(),
    }


def command_event(command: object, ok: bool, message: str, sent_at: float) -> dict:
    args = dataclasses.asdict(command) if dataclasses.is_dataclass(command) else {}
    return {"type": "command", "command": type(command).__name__,
            "args": {k: list(v) if isinstance(v, tuple) else v for k, v in args.items()},
            "ok": bool(ok), "message": str(message), "sent": sent_at}


class RecordingEncoder:
    """A new recording file at `path` for a source of `kind`, its header written at once
    (RecordWriteError says why it cannot be). Add to it in order; `flush()` writes what was
    added; `end(reason)` closes it with an END frame."""

    def __init__(self, path: str, kind: str, command_line: list[str],
                 on_gap: GapSink | None = None) -> None:
        self.path = path
        self.writer = RecordingWriter(path)
        self.on_gap = on_gap or (lambda lost, at: None)
        self.header = recording_header(kind, command_line)
        self.writer.add(fmt.HEADER_FRAME, _ENCODE(self.header).encode(), self.header["monotonic"])
        try:
            self.writer.flush()
        except RecordWriteError:
            self.writer.close()
            raise
        self._columns = WaitColumns()
        self._pictures = PictureEncoder()
        self.started = False  # by the first Snapshot: the wait calls before it are left out
        self.last_seq = -1
        self.last: Snapshot | None = None
        self.first_t: float | None = None
        self.last_t: float | None = None
        self._notice_seq = -1
        self.snapshots = self.waits = self.gaps = self.lost = 0

    @property
    def size(self) -> int:
        """Bytes in the file, with what is still to be written."""
        return self.writer.size + self.writer.pending

    # ---- wait records ------------------------------------------------------------------

    def add_waits(self, records: tuple[WaitRecord, ...]) -> int:
        """Add the records newer than the last added (`records` in seq order, as a ring is);
        how many were new. None before the first Snapshot (see _start)."""
        last = self.last_seq
        if not self.started or not records or records[-1].seq <= last:
            return 0
        new = records[bisect_right(records, last, key=_SEQ):] if last >= 0 else records
        for run in _runs(new):
            if self.last_seq >= 0 and run[0].seq != self.last_seq + 1:
                self._gap(run[0])
            self._columns.add(run)
            self.last_seq = run[-1].seq
        self.waits += len(new)
        if len(self._columns) >= CHUNK:
            self.end_run()
        return len(new)

    def _gap(self, first: WaitRecord) -> None:
        self.end_run()
        lost = first.seq - self.last_seq - 1
        self.gaps += 1
        self.lost += lost
        self.writer.add(fmt.GAP, _ENCODE({"lost": lost}).encode(), first.start,
                        self.last_seq, first.seq)
        self.on_gap(lost, first.start)

    def end_run(self) -> None:
        """The wait records added so far become one WAITS frame."""
        if len(self._columns):
            payload, first, last, end = self._columns.take()
            self.writer.add(fmt.WAITS, payload, end, first, last, fmt.ZLIB)
            self.last_t = max(self.last_t or end, end)

    # ---- Snapshots and what changed ----------------------------------------------------

    def add_snapshot(self, s: Snapshot) -> None:
        """Add a Snapshot: first the waits of its ring not added yet, then the Snapshot,
        then what changed since the one before."""
        if not self.started:
            self._start(s.waits)
        self.add_waits(s.waits)
        self.end_run()
        waits = s.waits
        a, b = (waits[0].seq, waits[-1].seq) if waits else (-1, -1)
        self.writer.add(fmt.SNAPSHOT, self._pictures.encode(s), s.taken_at, a, b, fmt.ZLIB)
        if self.first_t is None:
            self.first_t = s.taken_at
        self.last_t = max(self.last_t or s.taken_at, s.taken_at)
        self.snapshots += 1
        for t, event in self._changes(self.last, s):
            self.add_event(event, t)
        self.last = s

    def _start(self, ring: tuple[WaitRecord, ...]) -> None:
        """A recording holds the wait calls from its first Snapshot on: the one that Snapshot
        was taken after, and every later one. The ring's older records (4,096, minutes old on
        an idle server) came before the recording began: a replay has no picture before its
        first Snapshot to show them in, and a 3-second recording said it held 4,121."""
        self.started = True
        if ring:
            self.last_seq = ring[-1].seq - 1

    def add_event(self, event: dict, t: float) -> None:
        kind = event.get("type")
        code = fmt.EVENT_TYPES.index(kind) if kind in fmt.EVENT_TYPES else -1
        self.writer.add(fmt.EVENT, _ENCODE(event).encode(), t, code)

    def _changes(self, old: Snapshot | None, new: Snapshot) -> Iterator[tuple[float, dict]]:
        """(moment, event) for what differs from the Snapshot before (None: the first, whose
        findings and connections are news, but whose notices are from before)."""
        t = new.taken_at
        for notice in new.notices:
            if notice.seq > self._notice_seq and old is not None:
                yield notice.at, {"type": "notice", "seq": notice.seq, "level": notice.level,
                                  "text": notice.text}
        self._notice_seq = max((n.seq for n in new.notices), default=self._notice_seq)
        before = {(d.kind, d.fd) for d in old.diagnoses} if old is not None else set()
        now = {(d.kind, d.fd): d for d in new.diagnoses}
        for key, d in now.items():
            if key not in before:
                yield t, {"type": "finding", "finding": diagnosis_to_plain(d)}
        for kind, fd in before - now.keys():
            yield t, {"type": "finding-end", "kind": kind, "fd": fd}
        if old is not None and (old.backend, old.trigger) != (new.backend, new.trigger):
            yield t, {"type": "switch", "from": f"{old.backend}/{old.trigger}",
                      "to": f"{new.backend}/{new.trigger}"}
        if old is not None and old.lab != new.lab:
            yield t, {"type": "lab", "on": sorted(new.lab)}
        seen = {v.cid for v in old.connections} if old is not None else set()
        fresh = [[v.cid, v.fd, v.peer, v.opened_at] for v in new.connections
                 if v.kind == KIND_CONN and v.cid not in seen]
        if fresh:
            yield t, {"type": "connections", "new": fresh}
        if (old is None or old.running) and not new.running:
            yield t, {"type": "stopped", "error": new.error}

    # ---- writing -----------------------------------------------------------------------

    def flush(self) -> None:
        """Write everything added so far (RecordWriteError: the file keeps its whole frames)."""
        self.end_run()
        self.writer.flush()

    def end(self, record: dict) -> None:
        """The END frame, written; then the file is closed. Safe to call after a failure:
        if even that does not fit, the file still reads up to its last whole frame."""
        try:
            self.end_run()
            self.writer.add(fmt.END, _ENCODE(record).encode(), time.monotonic())
            self.writer.flush()
        finally:
            self.writer.close()

    def end_record(self, reason: str) -> dict:
        return {"reason": reason, "snapshots": self.snapshots, "waits": self.waits,
                "gaps": self.gaps, "lost": self.lost}


def _runs(records: tuple[WaitRecord, ...]) -> Iterator[tuple[WaitRecord, ...]]:
    """Runs of consecutive seqs (a ring is one run; anything else is split)."""
    if records[-1].seq - records[0].seq + 1 == len(records):
        yield records
        return
    start = 0
    for i in range(1, len(records)):
        if records[i].seq != records[i - 1].seq + 1:
            yield records[start:i]
            start = i
    yield records[start:]
