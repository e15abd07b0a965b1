"""Positions in a recording and the picture at each: what the dashboard showed right after any
one wait call.

A position is a wait call, or a recorded Snapshot. The engine publishes a Snapshot right after
handling a wait call (its `taken_at` is that wait's end), so where one was recorded the picture
is that Snapshot. Between two Snapshots the picture after wait k is built from the Snapshot
before it: its ring moves on to end at k, each connection a wait reported gets that wait's
events as its last events, the wait and event totals count the waits since, and the clock
reads the end of wait k. Byte counters and kernel queues move only from one Snapshot to the
next (4 a second): the engine measures them no more often.

A recording without wait calls (another process, attached) steps from Snapshot to Snapshot.
"""

from __future__ import annotations

import dataclasses
from bisect import bisect_left, bisect_right
from collections import OrderedDict
from collections.abc import Callable
from typing import NamedTuple

from muxtop.record.reader import FrameError, Recording
from muxtop.snapshot import KIND_CONN, Snapshot, WaitRecord

NO_SEQ = -1  # the seq of a position before any wait call was recorded


class Position(NamedTuple):
    index: int  # the Snapshot the picture is built from: the last recorded one at or before
    seq: int  # the wait call the picture is right after (NO_SEQ: before any)
    t: float  # seconds since the recording's first Snapshot


class Lru:
    """A few decoded things, the most recently used kept."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.items: OrderedDict = OrderedDict()

    def get(self, key, make: Callable):
        items = self.items
        if key in items:
            items.move_to_end(key)
            return items[key]
        value = items[key] = make()
        if len(items) > self.size:
            items.popitem(last=False)
        return value


class Timeline:
    def __init__(self, recording: Recording) -> None:
        self.recording = rec = recording
        self.t0 = rec.t0
        self.duration = rec.duration
        self.times = [f.t - rec.t0 for f in rec.snapshots]
        uptos, upto = [], NO_SEQ
        for frame in rec.snapshots:  # the wait call each Snapshot was taken after
            upto = max(upto, frame.b)
            uptos.append(upto)
        self.uptos = uptos
        self.has_waits = bool(rec.runs)
        self.unit = "wait call" if self.has_waits else "snapshot"
        self.first_seq = rec.runs[0].a if rec.runs else NO_SEQ
        self.last_seq = rec.runs[-1].b if rec.runs else NO_SEQ
        self._run_ends = [f.t for f in rec.runs]
        self._snapshots = Lru(8)
        self._rests = Lru(512)
        self._runs = Lru(32)
        self._pictures = Lru(8)
        self._history: tuple[int, tuple[Snapshot, ...]] | None = None

    # ---- positions ---------------------------------------------------------------------

    def at_snapshot(self, index: int) -> Position:
        return Position(index, self.uptos[index], self.times[index])

    def _after_wait(self, index: int, seq: int) -> Position:
        return Position(index, seq, self.end_of(seq) - self.t0)

    def first(self) -> Position:
        return self.at_snapshot(0)

    def last(self) -> Position:
        index = len(self.uptos) - 1
        if self.last_seq > self.uptos[index]:  # wait calls after the last Snapshot
            return self._after_wait(index, self.last_seq)
        return self.at_snapshot(index)

    def is_snapshot(self, p: Position) -> bool:
        return p.seq == self.uptos[p.index]

    def at(self, t: float) -> Position:
        """The last position at or before `t` seconds into the recording."""
        t = min(max(t, 0.0), self.duration)
        index = max(0, bisect_right(self.times, t) - 1)
        seq = self._last_wait_by(self.t0 + t) if self.has_waits else None
        if seq is None or seq <= self.uptos[index]:
            return self.at_snapshot(index)
        return self._position_of(seq, index)

    def _position_of(self, seq: int, at_least: int) -> Position:
        """The position of wait call `seq`: a Snapshot's if one was taken right after it."""
        index = max(at_least, bisect_right(self.uptos, seq) - 1)
        if self.uptos[index] == seq:
            return self.at_snapshot(bisect_left(self.uptos, seq))
        return self._after_wait(index, seq)

    def step(self, p: Position, n: int) -> Position:
        """`n` positions on (back, if negative), stopping at either end."""
        for _ in range(abs(n)):
            moved = self._forward(p) if n > 0 else self._back(p)
            if moved == p:
                break
            p = moved
        return p

    def _forward(self, p: Position) -> Position:
        following = p.index + 1
        if following < len(self.uptos) and self.uptos[following] <= p.seq:
            return self.at_snapshot(following)  # another Snapshot after the same wait call
        seq = self.next_seq(p.seq)
        if seq is None:
            return p
        return self._position_of(seq, p.index)

    def _back(self, p: Position) -> Position:
        if self.is_snapshot(p) and p.index > 0 and self.uptos[p.index - 1] == p.seq:
            return self.at_snapshot(p.index - 1)
        seq = self.prev_seq(p.seq)
        if seq is None or seq < self.uptos[0]:
            return self.first()
        index = bisect_right(self.uptos, seq) - 1
        if self.uptos[index] == seq:
            return self.at_snapshot(index)
        return self._after_wait(index, seq)

    # ---- wait records ------------------------------------------------------------------

    def next_seq(self, seq: int) -> int | None:
        """The first recorded seq after `seq`."""
        rec = self.recording
        run = rec.run_of(seq)
        if run is not None and seq < rec.runs[run].b:
            return seq + 1
        following = bisect_right(rec.run_firsts, seq)
        return rec.runs[following].a if following < len(rec.runs) else None

    def prev_seq(self, seq: int) -> int | None:
        """The last recorded seq before `seq`."""
        rec = self.recording
        run = rec.run_of(seq)
        if run is not None and seq > rec.runs[run].a:
            return seq - 1
        before = bisect_left(rec.run_firsts, seq) - 1
        return rec.runs[before].b if before >= 0 else None

    def _run(self, index: int) -> tuple[tuple[WaitRecord, ...], list[float]]:
        """Run `index`'s records and their end times (empty if it does not read)."""
        def decode():
            try:
                records = self.recording.run(index)
            except FrameError:
                records = ()
            return records, [w.start + w.duration for w in records]
        return self._runs.get(index, decode)

    def record(self, seq: int) -> WaitRecord | None:
        run = self.recording.run_of(seq)
        if run is None:
            return None
        records, _ = self._run(run)
        offset = seq - self.recording.runs[run].a
        return records[offset] if offset < len(records) else None

    def end_of(self, seq: int) -> float:
        """When wait call `seq` returned (monotonic)."""
        w = self.record(seq)
        if w is not None:
            return w.start + w.duration
        run = self.recording.run_of(seq)
        return self.recording.runs[run].t if run is not None else self.t0

    def _last_wait_by(self, moment: float) -> int | None:
        """The last recorded wait call that had returned by `moment` (monotonic)."""
        rec = self.recording
        run = bisect_left(self._run_ends, moment)
        if run == len(rec.runs):
            return self.last_seq
        records, ends = self._run(run)
        inside = bisect_right(ends, moment) - 1
        if inside >= 0:
            return rec.runs[run].a + inside
        return rec.runs[run - 1].b if run > 0 else None

    def waits_between(self, lo: int, hi: int) -> tuple[WaitRecord, ...]:
        """The recorded wait records with seq lo..hi, in order."""
        rec = self.recording
        if hi < lo or not rec.runs:
            return ()
        run = rec.run_of(lo)
        if run is None:
            run = bisect_right(rec.run_firsts, lo)
        found: list[WaitRecord] = []
        while run < len(rec.runs) and rec.runs[run].a <= hi:
            first = rec.runs[run].a
            records, _ = self._run(run)
            found.extend(records[max(0, lo - first):max(0, hi - first + 1)])
            run += 1
        return tuple(found)

    # ---- pictures ----------------------------------------------------------------------

    def snapshot(self, index: int) -> tuple[int, Snapshot]:
        """Snapshot `index` as recorded (no ring), or the nearest earlier one that reads."""
        for i in range(index, -1, -1):
            try:
                return i, self._snapshots.get(i, lambda i=i: self.recording.snapshot(i))
            except FrameError:
                continue
        raise FrameError(f"no Snapshot up to number {index + 1} reads")

    def picture(self, p: Position) -> Snapshot:
        """What the dashboard showed at `p` (the same object for the same position)."""
        return self._pictures.get(p[:2], lambda: self._picture(p))

    def _picture(self, p: Position) -> Snapshot:
        index, base = self.snapshot(p.index)
        frame = self.recording.snapshots[index]
        if index == p.index and self.is_snapshot(p):
            ring = self.waits_between(frame.a, frame.b) if frame.a >= 0 else ()
            return dataclasses.replace(base, waits=ring)
        upto = self.uptos[index]
        ring = self.waits_between(max(p.seq - self.recording.ring + 1, self.first_seq), p.seq)
        since = ring[bisect_right(ring, upto, key=_seq):]
        last: dict[int, tuple[int, float]] = {}
        for w in since:
            end = w.start + w.duration
            it = iter(w.ready)
            for fd, events in zip(it, it):
                last[fd] = (events, end)
        views = tuple(
            v._replace(last_events=last[v.fd][0], last_ready=last[v.fd][1])
            if v.fd in last and v.kind == KIND_CONN and v.closed_at is None else v
            for v in base.connections)
        taken_at = self.end_of(p.seq)
        totals = base.totals._replace(waits=base.totals.waits + p.seq - max(upto, 0),
                                      events=base.totals.events + sum(w.count for w in since),
                                      probes=base.totals.probes
                                      + sum(w.cpu is not None for w in since))
        return dataclasses.replace(
            base, connections=views, waits=ring, totals=totals, taken_at=taken_at,
            wall_time=base.wall_time + (taken_at - base.taken_at))

    def history(self, p: Position, count: int) -> tuple[Snapshot, ...]:
        """The figures of up to `count` Snapshots up to `p`, oldest first, without their
        connections (the trends' samples, as the live dashboard had them)."""
        if self._history is not None and self._history[0] == p.index:
            return self._history[1]
        found = []
        for i in range(max(0, p.index - count + 1), p.index + 1):
            try:
                found.append(self._rests.get(
                    i, lambda i=i: self.recording.snapshot(i, connections=False)))
            except FrameError:
                continue
        self._history = (p.index, tuple(found))
        return self._history[1]


def _seq(w: WaitRecord) -> int:
    return w.seq
