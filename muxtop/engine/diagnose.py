"""Detectors of stuck connections and misbehaving loops, run in the engine at publish time.

Each finding says in plain words what is wrong and carries the numbers behind it. They read
only what the engine already keeps (counters, the last kernel probes, the wait ring), plus
one read of /proc/self/fdinfo/<epfd> for the kernel's view of the interest list, and they run
at most twice a second: their cost is O(connections) per run, never per event.
"""

from __future__ import annotations

import re
import resource
import select
import time
from collections import Counter
from typing import TYPE_CHECKING

from muxtop.backends import FD_SETSIZE, ONESHOT
from muxtop.events import READ, WRITE, long
from muxtop.snapshot import CLOSED, Diagnosis, ProcessStats, Rates

if TYPE_CHECKING:
    from muxtop.engine.connection import Connection
    from muxtop.engine.loop import Engine

EVERY = 0.5  # seconds between runs
MISMATCH_EVERY = 2.0  # the kernel's interest list is read less often: it costs O(registered)
BUSY_WAITS_PER_S = 1000  # a loop this busy that moves no bytes is spinning
FD_PRESSURE = 0.8  # share of the fd limit (or of FD_SETSIZE on select) that raises a finding
MASK_BITS = READ | WRITE
MODE_BITS = {"level": 0, "edge": select.EPOLLET, "oneshot": select.EPOLLONESHOT}


class Detector:
    def __init__(self, stuck_after: float) -> None:
        self.stuck_after = stuck_after
        self._since: dict[tuple[str, int | None], float] = {}  # first seen, per finding
        self._out_low: dict[Connection, tuple[int, float]] = {}  # smallest out, since when
        self._mismatch: list = []  # the interest-list check runs less often: its last findings
        self._mismatch_at = -MISMATCH_EVERY
        self._last_run = -EVERY
        self._last: tuple[Diagnosis, ...] = ()
        self._accept_errors = 0  # accept failures counted at the last run
        self.runs, self.seconds = 0, 0.0  # what the detectors cost so far

    def review(self, engine: Engine, now: float, rates: Rates,
               process: ProcessStats | None) -> tuple[Diagnosis, ...]:
        if now - self._last_run < EVERY:
            return self._last
        self._last_run = now
        started = time.perf_counter()
        found: list[tuple[str, int | None, str, tuple]] = []
        for conn in engine._conns.values():  # most are idle: two attribute tests each
            if conn.rx_since is not None:
                self._stuck_read(conn, engine, now, found)
            if conn.out:
                self._stuck_write(conn, now, found)
        for conn in [c for c in self._out_low if not c.out or c.state is CLOSED]:
            del self._out_low[conn]
        self._busy_loop(engine, rates, found)
        self._fd_pressure(engine, process, found)
        if now - self._mismatch_at >= MISMATCH_EVERY:
            self._mismatch_at = now
            self._mismatch = []
            self._interest_mismatch(engine, self._mismatch)
        found.extend(self._mismatch)
        since = {}
        diagnoses = []
        for kind, fd, text, evidence in found:
            key = (kind, fd)
            since[key] = self._since.get(key, now)
            diagnoses.append(Diagnosis(kind, fd, text, evidence, since[key]))
        self._since = since
        diagnoses.sort(key=lambda d: d.since, reverse=True)  # newest first
        self._last = tuple(diagnoses)
        self.runs += 1
        self.seconds += time.perf_counter() - started
        return self._last

    def _stuck_read(self, conn: Connection, engine: Engine, now: float, found: list) -> None:
        """Bytes wait in the kernel, the engine means to read, and nothing read for T s: the
        edge-trigger trap (one recv per edge, the rest never announced again)."""
        since = conn.rx_since  # first probe that saw these bytes, with no read after it
        if not conn.interest & READ or since is None or conn.last_read_at > since:
            return
        quiet = now - since  # bytes leave the queue only when we read: they waited this long
        if quiet < self.stuck_after:
            return
        found.append(("stuck-read", conn.fd,
                      f"{conn.rx_queue} bytes wait in the kernel receive queue but nothing was "
                      f"read for {quiet:.1f} s while READ is registered"
                      + (" — edge-triggered: the reader stopped before EAGAIN, so no new edge "
                         "will announce them" if engine._edge else ""),
                      (("rx_queue", conn.rx_queue), ("seconds_since_read", round(quiet, 1)),
                       ("interest", long(conn.interest)), ("trigger", engine._backend.trigger),
                       ("last_events", long(conn.last_events)))))

    def _stuck_write(self, conn: Connection, now: float, found: list) -> None:
        """Output waits but nobody will send it (no WRITE interest), or it has not shrunk
        for T s (the peer is not reading)."""
        out = len(conn.out)
        if not conn.interest & WRITE:
            found.append(("stuck-write", conn.fd,
                          f"{out} bytes wait in the out-buffer but WRITE is not registered: "
                          "nothing will ever send them",
                          (("out_buffer", out), ("interest", long(conn.interest)))))
            return
        low, since = self._out_low.get(conn, (out + 1, now))
        if out < low:
            low, since = out, now
            self._out_low[conn] = (low, since)
        stalled = now - since
        if stalled >= self.stuck_after:
            found.append(("stuck-write", conn.fd,
                          f"the out-buffer has not shrunk below {low} bytes for {stalled:.1f} s: "
                          "the peer is not reading"
                          + (" and the kernel send queue is full too" if conn.tx_queue else ""),
                          (("out_buffer", out), ("tx_queue", conn.tx_queue),
                           ("seconds_without_progress", round(stalled, 1)))))

    def _busy_loop(self, engine: Engine, rates: Rates, found: list) -> None:
        """Many wait calls a second that report ready fds while no bytes move."""
        if rates.waits < BUSY_WAITS_PER_S or rates.events < rates.waits * 0.5:
            return
        moved = rates.bytes_in + rates.bytes_out
        if moved > rates.events:  # at least a byte per event: real work
            return
        counts: Counter = Counter()
        for record in list(engine.telemetry.ring)[-200:]:
            counts.update(record.pairs())
        # sorted, not most_common(n): that imports heapq lazily, which fails once out of fds
        top = sorted(counts.items(), key=lambda item: item[1], reverse=True)[:5]
        named = [(fd, long(events)) for (fd, events), _ in top]
        if engine._listen_fd in {fd for fd, _ in named} and engine.telemetry.accept_errors:
            why = "the listener stays readable while accept() fails (out of fds, no back-off)"
        elif any("WRITE" in events for _, events in named):
            why = "fds are reported writable with nothing to write (WRITE interest left on)"
        else:
            why = "the same fds are reported ready again and again"
        found.append(("busy-loop", None,
                      f"{rates.waits:,.0f} waits/s return {rates.ready_per_wait:.1f} ready fds "
                      f"each but only {moved:,.0f} bytes/s move: {why}",
                      (("waits_per_s", round(rates.waits)), ("events_per_s", round(rates.events)),
                       ("bytes_per_s", round(moved)), ("fds", tuple(fd for fd, _ in named)),
                       ("events", tuple(events for _, events in named)))))

    def _fd_pressure(self, engine: Engine, process: ProcessStats | None, found: list) -> None:
        errors = engine.telemetry.accept_errors
        failing = errors > self._accept_errors
        self._accept_errors = errors
        if failing:
            # Counting open fds needs an fd (psutil lists /proc/self/fd): trust accept() instead.
            limit = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
            found.append(("fd-pressure", None,
                          f"accept() fails for lack of fds: the fd table is full (limit {limit},"
                          f" {len(engine._conns)} connections open); new clients wait in the "
                          "backlog",
                          (("accept_errors", errors), ("fd_limit", limit),
                           ("connections", len(engine._conns)))))
        elif process is not None and process.fd_limit and \
                process.num_fds >= FD_PRESSURE * process.fd_limit:
            found.append(("fd-pressure", None,
                          f"{process.num_fds} of {process.fd_limit} fds are open "
                          "(RLIMIT_NOFILE): accept() will soon fail with EMFILE",
                          (("open_fds", process.num_fds), ("fd_limit", process.fd_limit))))
        if engine._backend.name == "select" and engine._conns:
            top = max(engine._conns)
            if top >= FD_PRESSURE * FD_SETSIZE:
                found.append(("fd-pressure", None,
                              f"fd {top} is near select's FD_SETSIZE ({FD_SETSIZE}): new "
                              "connections past it must be refused",
                              (("highest_fd", top), ("fd_setsize", FD_SETSIZE))))

    def _interest_mismatch(self, engine: Engine, found: list) -> None:
        """Compare the kernel's interest list (/proc/self/fdinfo/<epfd>) with the engine's."""
        backend = engine._backend
        epfd = backend.fileno()
        if epfd is None:
            return
        kernel = read_epoll_interest(epfd)
        if kernel is None:
            return
        mode = MODE_BITS[backend.trigger]
        table = dict(engine._registrations())
        for fd, interest in table.items():
            mask = kernel.pop(fd, None)
            if mask is None:
                found.append(("interest-mismatch", fd,
                              f"the engine watches fd {fd} for {long(interest)} but the kernel's "
                              "epoll interest list has no such fd: its events are lost",
                              (("engine", long(interest)), ("kernel", "-"))))
            elif backend.trigger == ONESHOT and mask & MASK_BITS == 0:
                found.append(("interest-mismatch", fd,
                              f"fd {fd} is a fired oneshot never re-armed: the engine expects "
                              f"{long(interest)}, the kernel will report nothing",
                              (("engine", long(interest)), ("kernel", hex(mask)))))
            elif mask & MASK_BITS != interest & MASK_BITS or mask & MODE_BITS["edge"] != \
                    mode & MODE_BITS["edge"]:
                found.append(("interest-mismatch", fd,
                              f"fd {fd}: the engine expects {long(interest)}, the kernel has "
                              f"{long(mask & MASK_BITS)} ({hex(mask)})",
                              (("engine", long(interest)), ("kernel", hex(mask)))))
        for fd, mask in kernel.items():
            found.append(("interest-mismatch", fd,
                          f"the kernel still watches fd {fd} ({hex(mask)}) but the engine does "
                          "not: a leaked registration",
                          (("engine", "-"), ("kernel", hex(mask)))))


_TFD = re.compile(r"^tfd:\s*(\d+)\s+events:\s*([0-9a-fA-F]+)", re.MULTILINE)


def read_epoll_interest(epfd: int, pid: int | str = "self") -> dict[int, int] | None:
    """{watched fd: event mask} from /proc/PID/fdinfo/EPFD, or None if unreadable."""
    try:
        with open(f"/proc/{pid}/fdinfo/{epfd}") as f:
            text = f.read()
    except OSError:
        return None
    return {int(fd): int(mask, 16) for fd, mask in _TFD.findall(text)}

