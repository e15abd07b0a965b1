"""Reading a recording: `Recording.open` walks the frame headers (never the payloads, so a long
recording opens in milliseconds) into an index of Snapshots, runs of wait records and events,
and notes what it could not read: a file that ends early, a frame cut short, corrupted bytes
(skipped to the next intact frame). Payloads are checked and decoded when asked for: their
CRC, then what they hold (schema.py: a file from anywhere may say anything); a payload that
fails either is a corrupt frame, noted in `problems` and skipped.

What cannot be read at all (no such file, not a recording, a newer format, no Snapshot in it)
raises RecordingError with one plain line; everything else reads as far as it can, with
`problems` saying what was lost.
"""

from __future__ import annotations

import math
import os
import stat
import struct
import zlib
from bisect import bisect_right
from collections.abc import Callable

from muxtop.plain import PLAIN_VERSION
from muxtop.record import format as fmt
from muxtop.record import pictures, schema, waits
from muxtop.record.format import Frame, RecordingError
from muxtop.snapshot import Snapshot, WaitRecord

RESYNC_BLOCK = 1 << 20  # bytes read at a time while looking for the next intact frame


class FrameError(Exception):
    """One frame's payload does not check out (the rest of the file may still read)."""


class Recording:
    """An open recording. `snapshots`, `runs` (WAITS frames, by seq), `event_frames` and
    `gaps` index the file; `t0` is the first Snapshot's moment, from which every offset in
    seconds counts."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.name = os.path.basename(path) or path
        try:
            # O_NONBLOCK: opening a FIFO waits for a writer, forever; a regular file ignores it.
            self.fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
        except OSError as exc:
            raise RecordingError(f"cannot read {path}: {exc.strerror or exc}") from None
        try:
            self._open()
        except BaseException:
            self.close()
            raise

    @classmethod
    def open(cls, path: str) -> Recording:
        return cls(path)

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __enter__(self) -> Recording:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- the index ---------------------------------------------------------------------

    def _open(self) -> None:
        info = os.fstat(self.fd)
        if not stat.S_ISREG(info.st_mode):
            raise RecordingError(f"{self.path} is not a file")
        self.size = info.st_size
        if not self.size:
            raise RecordingError(f"{self.path} is empty: not a muxtop recording")
        fmt.check_preamble(os.pread(self.fd, fmt.PREAMBLE.size, 0), self.path)
        self.problems: list[str] = []
        self.snapshots: list[Frame] = []
        self.runs: list[Frame] = []
        self.event_frames: list[Frame] = []
        self.gaps: list[Frame] = []
        self.end_frame: Frame | None = None
        self.header: dict | None = None
        self._bad: set[int] = set()
        self._header_problem = ""
        cut_at = self._scan()
        if self.header is None:
            damage = "truncated" if cut_at is not None and cut_at <= fmt.PREAMBLE.size \
                else "corrupted"
            why = f" ({self._header_problem})" if self._header_problem else ""
            raise RecordingError(f"{self.path} is {damage}: its header frame does not read{why}")
        plain = self.header.get("plain", PLAIN_VERSION)
        if not isinstance(plain, int) or plain > PLAIN_VERSION:
            raise RecordingError(f"{self.path} holds Snapshots in plain form {plain}, newer "
                                 f"than this muxtop reads ({PLAIN_VERSION}): upgrade muxtop")
        if not self.snapshots:
            why = " (it is truncated)" if cut_at is not None else ""
            raise RecordingError(f"{self.path} holds no Snapshot{why}")
        self.kind = str(self.header.get("source") or "engine")
        self.t0 = self.snapshots[0].t
        last = self.snapshots[-1].t
        if self.runs:
            last = max(last, self.runs[-1].t)
        self.duration = max(0.0, last - self.t0)
        self.end = self._end_record()
        if cut_at is not None:
            self.problems.append(f"{self.name} is truncated: the frame at byte {cut_at:,} is "
                                 f"cut short; it reads up to +{self.duration:.2f} s")
        elif self.end is None:
            self.problems.append(f"{self.name} has no end record (its recorder was killed, "
                                 f"or the file was cut): it reads up to +{self.duration:.2f} s")
        self.ring = max((f.b - f.a + 1 for f in self.snapshots if f.a >= 0), default=0)
        self.run_firsts = [f.a for f in self.runs]  # for bisecting by seq

    def _scan(self) -> int | None:
        """Index every frame; the offset of a frame cut short by the end of the file, if
        one is."""
        pos = fmt.PREAMBLE.size
        size = self.size
        while pos < size:
            head = os.pread(self.fd, fmt.HEADER.size, pos)
            if len(head) < fmt.HEADER.size:
                return pos  # the file ends inside a frame's header
            frame = fmt.parse_header(head, pos + fmt.HEADER.size)
            if frame is None:
                found = self._resync(pos + 1)
                self.problems.append(
                    f"{self.name}: bytes {pos:,}–{(found or size):,} are corrupted"
                    + (" and were skipped" if found else ": the rest does not read"))
                if found is None:
                    return None
                pos = found
                continue
            end = frame.offset + frame.length
            if end > size:
                return pos
            why = _implausible(frame)
            if why:
                self.problems.append(f"{self.name}: the {fmt.KIND_NAMES[frame.kind]} frame at "
                                     f"byte {frame.offset:,} {why}; skipped")
            else:
                self._add(frame)
            pos = end
        return None

    def _resync(self, start: int) -> int | None:
        """The offset of the next intact frame header at or after `start`, if any."""
        pos = start
        while pos < self.size:
            block = os.pread(self.fd, RESYNC_BLOCK + fmt.HEADER.size, pos)
            at = block.find(fmt.SYNC)
            while at != -1:
                head = block[at:at + fmt.HEADER.size]
                if len(head) < fmt.HEADER.size:
                    head = os.pread(self.fd, fmt.HEADER.size, pos + at)
                frame = fmt.parse_header(head, pos + at + fmt.HEADER.size)
                if frame is not None and frame.offset + frame.length <= self.size:
                    return pos + at
                at = block.find(fmt.SYNC, at + 1)
            pos += RESYNC_BLOCK
        return None

    def _add(self, frame: Frame) -> None:
        kind = frame.kind
        if kind == fmt.SNAPSHOT:
            self.snapshots.append(frame)
        elif kind == fmt.WAITS:
            if self.runs and frame.a <= self.runs[-1].b or frame.b < frame.a:
                self.problems.append(f"{self.name}: wait records at byte {frame.offset:,} "
                                     "are out of order; skipped")
                return
            self.runs.append(frame)
        elif kind == fmt.EVENT:
            self.event_frames.append(frame)
        elif kind == fmt.GAP:
            self.gaps.append(frame)
        elif kind == fmt.END:
            self.end_frame = frame
        elif kind == fmt.HEADER_FRAME and self.header is None:
            try:
                self.header = self.read_json(frame, schema.check_header)
            except FrameError as exc:
                self._header_problem = str(exc)

    def _end_record(self) -> dict | None:
        if self.end_frame is None:
            return None
        try:
            return self.read_json(self.end_frame, schema.check_end)
        except FrameError:
            return None

    # ---- payloads ----------------------------------------------------------------------

    def read(self, frame: Frame) -> bytes:
        """The payload of `frame`, checked; FrameError (and a problem noted once) if it does
        not check out."""
        data = os.pread(self.fd, frame.length, frame.offset)
        if len(data) != frame.length or zlib.crc32(data) != frame.pcrc:
            self._frame_problem(frame, "does not match its checksum")
            raise FrameError(f"the {fmt.KIND_NAMES[frame.kind]} frame at byte "
                             f"{frame.offset:,} is corrupted")
        return data

    def read_json(self, frame: Frame, check: Callable[[object], None]) -> dict:
        """The JSON payload of `frame`, checked by `check` (schema); FrameError (and a problem
        noted once) if it does not check out."""
        try:
            doc = schema.load_json(self.read(frame))
            check(doc)
        except schema.SchemaError as exc:
            self._frame_problem(frame, f"does not decode ({exc})")
            raise FrameError(str(exc)) from None
        return doc

    def _frame_problem(self, frame: Frame, what: str) -> None:
        if frame.offset not in self._bad:
            self._bad.add(frame.offset)
            self.problems.append(f"{self.name}: the {fmt.KIND_NAMES[frame.kind]} frame at "
                                 f"byte {frame.offset:,} {what}; skipped")

    def snapshot(self, index: int, *, connections: bool = True) -> Snapshot:
        """Snapshot `index` as recorded, with an empty wait ring (see the wait runs); without
        `connections`, only its header figures (cheap: for trends and status lines)."""
        frame = self.snapshots[index]
        data = self.read(frame)
        try:
            return pictures.decode(data, connections=connections)
        except (ValueError, zlib.error, struct.error, KeyError, TypeError) as exc:
            self._frame_problem(frame, f"does not decode ({exc})")
            raise FrameError(str(exc)) from None

    def run(self, index: int) -> tuple[WaitRecord, ...]:
        """The wait records of run `index`."""
        frame = self.runs[index]
        data = self.read(frame)
        try:
            records = waits.decode(data, frame.a)
        except (ValueError, zlib.error, struct.error) as exc:
            self._frame_problem(frame, f"does not decode ({exc})")
            raise FrameError(str(exc)) from None
        if len(records) != frame.b - frame.a + 1:
            self._frame_problem(frame, "holds another number of records than its header")
            raise FrameError("wait records do not match their header")
        return records

    def run_of(self, seq: int) -> int | None:
        """The index of the run holding `seq`, or None (before the first, in a gap)."""
        i = bisect_right(self.run_firsts, seq) - 1
        if i >= 0 and self.runs[i].b >= seq:
            return i
        return None

    def events(self, but: tuple[str, ...] = ()) -> list[tuple[float, dict]]:
        """Every EVENT (but those of the types in `but`, left unread) and GAP as (moment,
        event), in file order; those that do not read are skipped (noted in `problems`)."""
        skip = {fmt.EVENT_TYPES.index(kind) for kind in but}
        frames = [f for f in self.event_frames if f.a not in skip] + self.gaps
        found = []
        for frame in sorted(frames, key=lambda f: f.offset):
            check = schema.check_gap if frame.kind == fmt.GAP else schema.check_event
            try:
                event = self.read_json(frame, check)
            except FrameError:
                continue
            if frame.kind == fmt.GAP:
                event = {"type": "gap", "after": frame.a, "before": frame.b, **event}
            found.append((frame.t, event))
        return found

    def verify(self) -> None:
        """Check every payload against its checksum, noting what does not."""
        for frame in (*self.snapshots, *self.runs):
            try:
                self.read(frame)
            except FrameError:
                continue


def _implausible(frame: Frame) -> str:
    """Why a frame whose header checks out is still none muxtop wrote ("" if it may be)."""
    if not math.isfinite(frame.t) or abs(frame.t) > schema.MAX_FLOAT:
        return "has no moment a clock gives"
    if frame.length > schema.MAX_INFLATED:
        return f"is larger than any muxtop writes ({frame.length:,} bytes)"
    return ""
