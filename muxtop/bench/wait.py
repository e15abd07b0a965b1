"""`muxtop bench wait`: what one wait(0) call costs against the number of registered idle fds.

Each backend gets N idle fds (both ends of socketpairs, watched for READ, never readable) plus one
fd with a byte waiting, so every call does the same work: find the one ready fd. select and poll
hand the kernel every watched fd on every call and the kernel checks each one, so their cost grows
with N; epoll keeps the interest list in the kernel and copies out only the ready fd, so it stays
flat. Level trigger throughout: with edge, the ready fd would be reported only once. uring's
level is a single-shot poll request armed again on each call: the call submits it, the kernel
finds the fd ready at once and posts a completion, which the call reaps, one io_uring_enter in
all (its completion mode reads rather than waits: `bench echo` measures it).
"""

from __future__ import annotations

import gc
import os
import resource
import socket
import statistics
import time
from dataclasses import asdict, dataclass

from muxtop.backends import NAMES, BackendError, make_backend
from muxtop.events import READ
from muxtop.limits import raise_fd_limit

DEFAULT_FDS = (10, 100, 1000, 10000)
BATCH_SECONDS = 0.004  # one timed batch of calls; long enough that the clock's cost vanishes
REPEATS = 31  # batches per point: the median is the figure, the min shows the noise floor
FD_SLACK = 64  # files besides the idle fds: stdio, the ready pair, epoll's fd, imports


@dataclass(frozen=True)
class WaitPoint:
    """One measured point, or why it was skipped (``skipped`` set, figures None)."""

    backend: str
    fds: int
    median_us: float | None = None
    min_us: float | None = None
    calls: int = 0
    skipped: str | None = None


def open_file_count() -> int:
    try:
        return len(os.listdir("/proc/self/fd"))
    except OSError:
        return 16


def fd_limit_for(wanted: int) -> tuple[int, str | None]:
    """Raise the open-file limit toward ``wanted``; the limit now in force, and a plain note
    when the hard limit is too low."""
    soft, hard = raise_fd_limit(wanted)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        return soft, (f"open-file limit is {soft} (hard limit {hard}) but {wanted} are needed: "
                      f"raise the hard limit (as root: ulimit -Hn {wanted}, or nofile in "
                      "/etc/security/limits.conf) to measure more fds")
    return soft, None


class IdleFds:
    """``count`` idle fds from socketpairs (both ends count: each is watched for READ and
    neither ever receives), and one ``ready`` fd with a byte waiting. Close with ``close()``."""

    def __init__(self, count: int) -> None:
        self._socks: list[socket.socket] = []
        try:
            self._ready_pair = socket.socketpair()
            self._ready_pair[1].send(b"x")
            self.ready = self._ready_pair[0].fileno()
            while len(self._socks) < count:
                self._socks.extend(socket.socketpair())
        except BaseException:
            self.close()
            raise
        self.fds = [s.fileno() for s in self._socks[:count]]

    def close(self) -> None:
        for sock in self._socks:
            sock.close()
        for sock in getattr(self, "_ready_pair", ()):
            sock.close()
        self._socks = []


def calibrate(wait, batch_seconds: float = BATCH_SECONDS) -> int:
    """How many ``wait(0)`` calls make one batch of about ``batch_seconds``: doubled until
    it is, so a 0.5 µs call and a 500 µs call are both timed over many calls."""
    calls = 1
    while calls < 1 << 20:
        t0 = time.perf_counter_ns()
        for _ in range(calls):
            wait(0)
        if time.perf_counter_ns() - t0 >= batch_seconds * 1e9:
            break
        calls *= 2
    return calls


def time_batch(wait, calls: int) -> float:
    """µs per call over one batch of ``calls`` back-to-back ``wait(0)`` calls."""
    t0 = time.perf_counter_ns()
    for _ in range(calls):
        wait(0)
    return (time.perf_counter_ns() - t0) / calls / 1e3


def measure_count(backend_names: tuple[str, ...], idle: list[int], ready: int,
                  batch_seconds: float = BATCH_SECONDS,
                  repeats: int = REPEATS) -> list[WaitPoint]:
    """Every backend at one fd count. The backends are built side by side on the same fds and
    their batches interleaved (select, poll, epoll, select, ...), so a burst of other load on
    the machine hits each alike instead of one backend's whole run. The GC is off while
    timing: each call returns a new list, and a collection inside one batch is noise."""
    points: dict[str, WaitPoint] = {}
    live: dict[str, tuple[object, int]] = {}
    backends = []
    try:
        for name in backend_names:
            try:
                backend = make_backend(name)
            except BackendError as exc:  # uring where io_uring is unavailable
                points[name] = WaitPoint(name, len(idle), skipped=str(exc))
                continue
            backends.append(backend)
            try:
                backend.register(ready, READ)
                for fd in idle:
                    backend.register(fd, READ)
            except BackendError as exc:
                points[name] = WaitPoint(name, len(idle), skipped=str(exc))
                continue
            got = backend.wait(0)
            if [fd for fd, _ in got] != [ready]:  # fair only if each finds exactly the one
                raise RuntimeError(f"{name}: wait(0) returned {got}, expected fd {ready}")
            live[name] = (backend.wait, calibrate(backend.wait, batch_seconds))
        samples: dict[str, list[float]] = {name: [] for name in live}
        gc_was_on = gc.isenabled()
        gc.disable()
        try:
            for _ in range(repeats):
                for name, (wait, calls) in live.items():
                    samples[name].append(time_batch(wait, calls))
        finally:
            if gc_was_on:
                gc.enable()
        for name, (_, calls) in live.items():
            points[name] = WaitPoint(name, len(idle), round(statistics.median(samples[name]), 3),
                                     round(min(samples[name]), 3), calls * repeats)
    finally:
        for backend in backends:
            backend.close()
    return [points[name] for name in backend_names]


def run(fd_counts: list[int], backends: tuple[str, ...] = NAMES,
        batch_seconds: float = BATCH_SECONDS, repeats: int = REPEATS,
        progress=None) -> tuple[list[WaitPoint], list[str]]:
    """Measure every backend at every fd count; the points and notes for the reader."""
    notes: list[str] = []
    wanted = max(fd_counts) + open_file_count() + FD_SLACK
    limit, note = fd_limit_for(wanted)
    fit = max(0, limit - open_file_count() - FD_SLACK)
    if note:
        notes.append(note + f"; counts above {fit:,} idle fds are not measured")
    # Only as many fds as the largest count that fits: none if none does.
    pool = IdleFds(max((c for c in fd_counts if c <= fit), default=0))
    points: list[WaitPoint] = []
    stopped: dict[str, str] = {}  # backend -> why it cannot take more fds (select: fd 1024)
    try:
        for count in fd_counts:
            if count > fit:
                points += [WaitPoint(b, count, skipped=f"open-file limit {limit} too low")
                           for b in backends]
                continue
            todo = tuple(b for b in backends if b not in stopped)
            measured = {p.backend: p for p in measure_count(todo, pool.fds[:count], pool.ready,
                                                             batch_seconds, repeats)}
            for b in backends:
                point = measured.get(b) or WaitPoint(b, count, skipped=stopped[b])
                if point.skipped and b not in stopped:
                    stopped[b] = point.skipped
                    notes.append(point.skipped)
                points.append(point)
            if progress:
                progress(count)
    finally:
        pool.close()
    return points, notes


def as_json(points: list[WaitPoint]) -> list[dict]:
    return [asdict(p) for p in points]
