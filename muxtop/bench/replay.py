"""`muxtop bench replay`: what opening a long recording and moving through it cost, and what a
recording holds per wait call and per connection-second (also used by `bench echo`).

Unless `--file` names a recording, it first writes one of a made-up run through the
recorder's own encoder: `--minutes` of `--conns` busy connections at `--waits` wait calls a
second (each returning up to 64 ready fds), a Snapshot every 0.25 s. Then, each beside a
baseline from the same run:
- opening it (the frame index, the timeline, its events) against reading the whole file once,
  and opening it and jumping with the file dropped from the page cache (posix_fadvise);
- jumping to its middle (the picture there, with its ring of 4,096 wait calls) against
  decoding that one Snapshot frame alone;
- one step forward (.) and back (,) at random places, median and worst, against the same.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import random
import statistics
import sys
import tempfile
from collections import deque
from itertools import chain
from time import perf_counter

from muxtop.arguments import Parser, positive_float, positive_int
from muxtop.bench import machine, synthetic
from muxtop.record.encoder import RecordingEncoder
from muxtop.record.reader import FrameError, Recording
from muxtop.replay.source import ReplaySource
from muxtop.snapshot import READY_KEPT, WaitRecord, wait_record

PUBLISH = 0.25  # seconds between made-up Snapshots, as the engine publishes
RING = 4096
TARGET_OPEN_JUMP, TARGET_STEP = 1.0, 0.050  # seconds, from the issue


def write_made_up(path: str, seconds: float, conns: int, waits_per_s: int,
                  progress=None) -> None:
    """A recording of a made-up busy server: what the engine would have published."""
    encoder = RecordingEncoder(path, "engine", ["muxtop", "bench", "replay"])
    ring: deque[WaitRecord] = deque(maxlen=RING)
    per_tick = max(1, round(waits_per_s * PUBLISH))
    # A few ready lists, taken in turn: epoll hands back the same busy fds wait after wait.
    kept = min(conns, READY_KEPT)
    lists = [tuple(chain.from_iterable((7 + (i * 7 + j) % conns, 1) for j in range(kept)))
             for i in range(16)]
    seq = 0
    ticks = round(seconds / PUBLISH)
    for tick in range(ticks + 1):
        shot = synthetic.snapshot(conns, tick, wait_count=0)
        end = shot.taken_at
        spacing = PUBLISH / per_tick
        start = end - PUBLISH
        for j in range(per_tick if tick else 0):
            seq += 1
            at = start + j * spacing
            duration = spacing / 2 if j < per_tick - 1 else end - at
            ring.append(wait_record((seq, at, PUBLISH, duration, conns + 2,
                                     lists[seq % 16], min(conns, 80),
                                     2e-6 if seq % 50 == 0 else None)))
        encoder.add_snapshot(dataclasses.replace(shot, waits=tuple(ring)))
        if tick % 40 == 0:
            encoder.flush()
            if progress:
                progress(tick, ticks)
    encoder.end(encoder.end_record("stopped"))


def recording_figures(path: str) -> dict:
    """What a recording holds against what it cost: its bytes per wait call and per
    connection-second (open connections integrated over the Snapshots' times)."""
    size = os.path.getsize(path)
    with Recording.open(path) as rec:
        waits = sum(f.b - f.a + 1 for f in rec.runs)
        conn_seconds = 0.0
        previous = None
        for i, frame in enumerate(rec.snapshots):
            try:
                open_now = rec.snapshot(i, connections=False).open_connections
            except FrameError:
                continue
            if previous is not None:
                conn_seconds += previous[1] * (frame.t - previous[0])
            previous = (frame.t, open_now)
        lost = sum(1 for f in rec.gaps)
        return {
            "record_bytes": size, "record_waits": waits, "record_seconds": round(rec.duration, 3),
            "record_gaps": lost, "record_conn_seconds": round(conn_seconds, 1),
            "bytes_per_wait": round(size / waits, 1) if waits else None,
            "bytes_per_conn_s": round(size / conn_seconds, 1) if conn_seconds else None,
        }


def _timed(action) -> float:
    started = perf_counter()
    action()
    return perf_counter() - started


def _drop_cached(path: str) -> bool:
    """Drop the file's pages from the page cache (this file's only), so the next open reads
    from the disk; False where the system cannot."""
    try:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)
    except (OSError, AttributeError):
        return False
    return True


def _cold_open_and_jump(path: str) -> float | None:
    """Open and jump to the middle with the file out of the page cache."""
    if not _drop_cached(path):
        return None

    def go() -> None:
        source = ReplaySource(Recording.open(path))
        source.player.seek(source.player.duration / 2)
        source.latest()
        source.recording.close()

    return _timed(go)


def measure(path: str, steps: int, seed: int = 1) -> dict:
    """Open, jump, step: each with its baseline, in seconds."""
    _read_all(path)  # into the page cache: the warm figures first, the cold one last
    read_all = _timed(lambda: _read_all(path))
    holder = {}
    open_s = _timed(lambda: holder.update(source=ReplaySource(Recording.open(path))))
    source: ReplaySource = holder["source"]
    player = source.player
    rec = source.recording
    middle = player.duration / 2
    jump_s = _timed(lambda: (player.seek(middle), source.latest()))
    index = player.position.index
    decode_one = statistics.median(
        _timed(lambda: rec.snapshot(index)) for _ in range(5))
    rng = random.Random(seed)
    forward, back = [], []
    for times, n in ((forward, 1), (back, -1)):
        for _ in range(steps):  # from a place of its own each time: no picture cached
            player.seek(rng.uniform(0, player.duration))
            source.latest()
            times.append(_timed(lambda n=n: (player.step(n), source.latest())))
    rec.close()
    cold = _cold_open_and_jump(path)
    return {
        "file": path, "bytes": os.path.getsize(path), "seconds": round(player.duration, 1),
        "snapshots": len(rec.snapshots), "wait_calls": sum(f.b - f.a + 1 for f in rec.runs),
        "open_s": open_s, "read_all_s": read_all, "jump_s": jump_s,
        "cold_open_and_jump_s": cold,
        "decode_one_snapshot_s": decode_one,
        "step_forward_median_s": statistics.median(forward), "step_forward_max_s": max(forward),
        "step_back_median_s": statistics.median(back), "step_back_max_s": max(back),
        "targets": {"open_and_jump_s": TARGET_OPEN_JUMP, "step_s": TARGET_STEP},
    }


def _read_all(path: str) -> None:
    with open(path, "rb") as f:
        while f.read(1 << 20):
            pass


def parser() -> argparse.ArgumentParser:
    p = Parser(prog="muxtop bench replay", description=__doc__.split("\n")[0])
    p.add_argument("--file", default=None, help="a recording to measure (default: write one)")
    p.add_argument("--minutes", type=positive_float, default=10.0,
                   help="length of the recording written (default 10)")
    p.add_argument("--conns", type=positive_int, default=100,
                   help="busy connections in it (default 100)")
    p.add_argument("--waits", type=positive_int, default=4000, metavar="N",
                   help="wait calls a second in it (default 4,000, as the C client's 100 "
                        "connections make)")
    p.add_argument("--steps", type=positive_int, default=20,
                   help="random places stepped from (default 20)")
    p.add_argument("--json", action="store_true", help="print one JSON document instead")
    return p


def main(argv: list[str]) -> int:
    args = parser().parse_args(argv)
    info = machine.describe()
    made = args.file is None
    folder = tempfile.mkdtemp(prefix="muxtop-bench-replay-") if made else None
    path = args.file or os.path.join(folder, "made-up.muxrec")
    try:
        if made:
            def progress(tick: int, ticks: int) -> None:
                if not args.json and sys.stderr.isatty():
                    print(f"  writing: {100 * tick / max(ticks, 1):.0f}%", end="\r",
                          file=sys.stderr, flush=True)

            write_s = _timed(lambda: write_made_up(path, args.minutes * 60, args.conns,
                                                   args.waits, progress))
        result = measure(path, args.steps)
    except (OSError, ValueError) as exc:
        print(f"muxtop bench replay: {exc}", file=sys.stderr)
        return 1
    finally:
        if made and os.path.exists(path):
            os.unlink(path)
        if folder:
            os.rmdir(folder)
    result["machine"] = info
    if made:
        result["written"] = {"minutes": args.minutes, "conns": args.conns,
                             "waits_per_s": args.waits, "write_s": round(write_s, 2)}
    if args.json:
        print(json.dumps({"bench": "replay", **result}, indent=1))
        return 0
    print(table(result, made, info))
    return 0


def _ms(seconds: float) -> str:
    return f"{seconds * 1e3:,.1f} ms"


def table(r: dict, made: bool, info: dict) -> str:
    what = (f"a made-up {r['written']['minutes']:g}-minute run of {r['written']['conns']:,} "
            f"busy connections, {r['written']['waits_per_s']:,} wait calls/s"
            if made else r["file"])
    lines = [
        "muxtop bench replay: opening a recording and moving through it",
        f"machine: {machine.header(info)}",
        f"recording: {what}: {r['bytes'] / 1e6:,.1f} MB, {r['seconds']:,.0f} s, "
        f"{r['snapshots']:,} Snapshots, {r['wait_calls']:,} wait calls",
        "",
        f"{'':<34}{'measured':>12}{'baseline':>12}  baseline is",
        f"{'open (index, timeline, events)':<34}{_ms(r['open_s']):>12}"
        f"{_ms(r['read_all_s']):>12}  reading the whole file once",
        f"{'jump to the middle':<34}{_ms(r['jump_s']):>12}"
        f"{_ms(r['decode_one_snapshot_s']):>12}  decoding that one Snapshot frame",
        f"{'open + jump, file not cached':<34}"
        f"{'—' if r['cold_open_and_jump_s'] is None else _ms(r['cold_open_and_jump_s']):>12}"
        f"{_ms(r['open_s'] + r['jump_s']):>12}  the same from the page cache",
        f"{'one step forward (.) median/max':<34}"
        f"{_ms(r['step_forward_median_s']):>12}{_ms(r['decode_one_snapshot_s']):>12}",
        f"{'':<34}{_ms(r['step_forward_max_s']):>12}",
        f"{'one step back (,) median/max':<34}"
        f"{_ms(r['step_back_median_s']):>12}{_ms(r['decode_one_snapshot_s']):>12}",
        f"{'':<34}{_ms(r['step_back_max_s']):>12}",
        "",
        f"targets: open + jump ≤ {TARGET_OPEN_JUMP:g} s (here {r['open_s'] + r['jump_s']:.3f} s); "
        f"a step ≤ {TARGET_STEP * 1e3:g} ms (here at most "
        f"{max(r['step_forward_max_s'], r['step_back_max_s']) * 1e3:.1f} ms).",
    ]
    return "\n".join(lines)
