"""Recordings made up for tests: consistent with what the engine records (each Snapshot taken
as its last wait call returns, its ring the last 4,096 wait records), and a clock to play by."""

from __future__ import annotations

import dataclasses
from collections import deque

from muxtop.bench import synthetic
from muxtop.record.encoder import RecordingEncoder
from muxtop.record.reader import Recording
from muxtop.snapshot import WaitRecord


def wait(seq: int, ready=(7, 1, 8, 5), timeout=0.25, cpu=None, start: float | None = None,
         duration: float | None = None) -> WaitRecord:
    return WaitRecord(seq, 1000.0 + seq * 0.001 if start is None else start, timeout,
                      3e-6 + seq * 1e-9 if duration is None else duration, 12, tuple(ready),
                      len(ready) // 2, cpu)


def write(path, ticks: int = 6, per_tick: int = 50, skip: range = range(0)) -> list[WaitRecord]:
    """A recording of `ticks` synthetic Snapshots, `per_tick` wait calls apart, the last of
    each ending as its Snapshot is taken, as the engine's do (the seqs in `skip` never reach
    the recorder); the wait records it holds, in order: those from the one its first Snapshot
    was taken after (seq `per_tick`) on, as a recording begins."""
    encoder = RecordingEncoder(str(path), "engine", ["test"])
    given: list[WaitRecord] = []
    ring: deque[WaitRecord] = deque(maxlen=4096)  # as the engine's: what each Snapshot holds
    seq = 0
    for tick in range(ticks):
        shot = synthetic.snapshot(10, tick, wait_count=0)
        batch = []
        for i in range(per_tick):
            seq += 1
            start = shot.taken_at - 0.25 + i * 0.25 / per_tick
            end = shot.taken_at - (per_tick - 1 - i) * 0.25 / per_tick
            if seq not in skip:
                batch.append(wait(seq, cpu=1e-6 if seq % 3 == 0 else None,
                                  timeout=None if seq % 7 == 0 else 0.25,
                                  start=start, duration=end - start))
        given += batch
        ring.extend(batch)
        encoder.add_snapshot(dataclasses.replace(shot, waits=tuple(ring)))
        encoder.flush()
    encoder.end(encoder.end_record("stopped"))
    return [w for w in given if w.seq >= per_tick]


def recorded_waits(rec: Recording) -> list[WaitRecord]:
    return [w for i in range(len(rec.runs)) for w in rec.run(i)]


class Clock:
    """A clock that moves only when a test moves it."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now
