"""Detectors of stuck connections and misbehaving loops, run in the engine at publish time.

Each finding says in plain words what is wrong and carries the numbers behind it. They read
only what the engine already keeps (counters, the last kernel probes, the wait ring), plus
one read of /proc/self/fdinfo/<epfd> for the kernel's view of the interest list, and they run
at most twice a second: their cost is O(connections) per run, never per event.
"""

from __future__ import annotations

import resource
import time
from collections import deque
from typing import TYPE_CHECKING

from muxtop.backends import FD_SETSIZE, ONESHOT
from muxtop.engine import pair_findings
from muxtop.engine.state import EngineState
from muxtop.events import READ, WRITE, long
from muxtop.findings import (
    BUSY_WAITS_LOOKED_AT,
    FD_PRESSURE,
    FD_PRESSURE_SHARE,
    INTEREST_MISMATCH,
    STUCK_READ,
    STUCK_WRITE,
    FirstSeen,
    busy_loop,
)
from muxtop.kernel import epoll
from muxtop.snapshot import CLOSED, Diagnosis, ProcessStats, Rates, Totals, WaitRecord
from muxtop.units import size

if TYPE_CHECKING:
    from muxtop.engine.connection import Connection

EVERY = 0.5  # seconds between runs
MISMATCH_EVERY = 2.0  # the kernel's interest list is read less often: it costs O(registered)
SETTLED_WINDOW = 1.0  # seconds of accepts and closes the busy-loop check weighs (as the rates)


class Detector:
    def __init__(self, stuck_after: float) -> None:
        self.stuck_after = stuck_after
        self._first_seen = FirstSeen()
        self._out_low: dict[Connection, tuple[int, float]] = {}  # smallest out, since when
        self._mismatch: list = []  # the interest-list check runs less often: its last findings
        self._mismatch_at = -MISMATCH_EVERY
        self._last_run = -EVERY
        self._last: tuple[Diagnosis, ...] = ()
        self._accept_errors = 0  # accept failures counted at the last run
        # (moment, connections accepted + closed so far) over the last second or so
        self._settled: deque[tuple[float, int]] = deque()
        self.runs, self.seconds = 0, 0.0  # what the detectors cost so far

    def review(self, state: EngineState, now: float, rates: Rates, process: ProcessStats | None,
               totals: Totals, waits: tuple[WaitRecord, ...]) -> tuple[Diagnosis, ...]:
        if now - self._last_run < EVERY:
            return self._last
        self._last_run = now
        started = time.perf_counter()
        found: list[tuple[str, int | None, str, tuple]] = []
        for conn in state.conns.values():  # most are idle: two attribute tests each
            if conn.rx_since is not None:
                self._stuck_read(conn, state, now, found)
            if conn.out:
                self._stuck_write(conn, now, found)
        for conn in [c for c in self._out_low if not c.out or c.state is CLOSED]:
            del self._out_low[conn]
        if state.proxy is not None:
            pair_findings.upstream_failures(state, now, found)
            pair_findings.one_way(state, now, self.stuck_after, found)
        self._busy_loop(state, rates, totals, waits, self._settled_per_s(now, totals), found)
        self._fd_pressure(state, process, totals, found)
        if now - self._mismatch_at >= MISMATCH_EVERY:
            self._mismatch_at = now
            self._mismatch = []
            self._interest_mismatch(state, self._mismatch)
        found.extend(self._mismatch)
        diagnoses = list(self._first_seen.stamp(now, found))
        diagnoses.sort(key=lambda d: d.since, reverse=True)  # newest first
        self._last = tuple(diagnoses)
        self.runs += 1
        self.seconds += time.perf_counter() - started
        return self._last

    def _stuck_read(self, conn: Connection, state: EngineState, now: float,
                    found: list) -> None:
        """Bytes wait in the kernel, the engine means to read, and nothing read for T s: the
        edge-trigger trap (one recv per edge, the rest never announced again)."""
        since = conn.rx_since  # first probe that saw these bytes, with no read after it
        if not conn.interest & READ or since is None or conn.last_read_at > since:
            return
        quiet = now - since  # bytes leave the queue only when we read: they waited this long
        if quiet < self.stuck_after:
            return
        found.append((STUCK_READ, conn.fd,
                      f"{size(conn.rx_queue)} wait in the kernel receive queue, unread while "
                      "READ is registered"
                      + (" — edge-triggered: the reader stopped before EAGAIN, so no new edge "
                         "will announce them" if state.edge else ""),
                      (("rx_queue", conn.rx_queue), ("seconds_since_read", round(quiet, 1)),
                       ("interest", long(conn.interest)), ("trigger", state.backend.trigger),
                       ("last_events", long(conn.last_events)))))

    def _stuck_write(self, conn: Connection, now: float, found: list) -> None:
        """Output waits but nobody will send it (no WRITE interest), or it has not shrunk
        for T s (the peer is not reading)."""
        out = len(conn.out)
        if not conn.interest & WRITE:
            found.append((STUCK_WRITE, conn.fd,
                          f"{size(out)} wait in the out-buffer but WRITE is not registered: "
                          "nothing will ever send them",
                          (("out_buffer", out), ("interest", long(conn.interest)))))
            return
        low, since = self._out_low.get(conn, (out + 1, now))
        if out < low:
            low, since = out, now
            self._out_low[conn] = (low, since)
        stalled = now - since
        if stalled >= self.stuck_after and getattr(conn, "role", None) is not None:
            kind, why = pair_findings.not_reading(conn, low, stalled)
            found.append((kind, conn.fd, why, (
                ("out_buffer", out), ("tx_queue", conn.tx_queue),
                ("seconds_without_progress", round(stalled, 1)))))
        elif stalled >= self.stuck_after:
            found.append((STUCK_WRITE, conn.fd,
                          f"the out-buffer has not shrunk below {size(low)}: the peer is not "
                          "reading"
                          + (" and the kernel send queue is full too" if conn.tx_queue else ""),
                          (("out_buffer", out), ("tx_queue", conn.tx_queue),
                           ("seconds_without_progress", round(stalled, 1)))))

    def _settled_per_s(self, now: float, totals: Totals) -> float:
        """Connections accepted or closed a second, over the last second or so."""
        history = self._settled
        history.append((now, totals.accepted + totals.closed))
        while len(history) > 2 and now - history[1][0] >= SETTLED_WINDOW:
            history.popleft()
        then, before = history[0]
        return (history[-1][1] - before) / (now - then) if now > then else 0.0

    def _busy_loop(self, state: EngineState, rates: Rates, totals: Totals,
                   waits: tuple[WaitRecord, ...], settled_per_s: float, found: list) -> None:
        """Many wait calls a second that report ready fds while no bytes move (an accept or
        a close is work done, though no byte moves)."""
        finding = busy_loop(rates.waits, rates.events, rates.ready_per_wait,
                            rates.bytes_in + rates.bytes_out, rates.wait_p50,
                            waits[-BUSY_WAITS_LOOKED_AT:],
                            state.listen_fd if totals.accept_errors else None, settled_per_s)
        if finding is not None:
            found.append(finding)

    def _fd_pressure(self, state: EngineState, process: ProcessStats | None, totals: Totals,
                     found: list) -> None:
        errors = totals.accept_errors
        failing = errors > self._accept_errors
        self._accept_errors = errors
        # For as long as it holds, not only in the run after an error: the last accept failed
        # for lack of fds until one succeeds (or the engine finds the backlog empty).
        if failing or state.out_of_fds:
            # Counting open fds needs an fd (psutil lists /proc/self/fd): trust accept() instead.
            limit = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
            found.append((FD_PRESSURE, None,
                          f"accept() fails for lack of fds: the fd table is full (limit {limit},"
                          f" {len(state.conns)} connections open); new clients wait in the "
                          "backlog",
                          (("accept_errors", errors), ("fd_limit", limit),
                           ("connections", len(state.conns)))))
        elif process is not None and process.fd_limit and \
                process.num_fds >= FD_PRESSURE_SHARE * process.fd_limit:
            found.append((FD_PRESSURE, None,
                          f"{process.num_fds} of {process.fd_limit} fds are open "
                          "(RLIMIT_NOFILE): accept() will soon fail with EMFILE",
                          (("open_fds", process.num_fds), ("fd_limit", process.fd_limit))))
        if state.backend.name == "select" and state.accept_held:
            found.append((FD_PRESSURE, None,
                          f"every fd below select's FD_SETSIZE ({FD_SETSIZE}) is taken: accept "
                          "is paused and new clients wait in the backlog until a connection "
                          "closes (poll and epoll have no such limit)",
                          (("fd_setsize", FD_SETSIZE), ("connections", len(state.conns)))))
        elif state.backend.name == "select" and state.conns:
            top = max(state.conns)
            if top >= FD_PRESSURE_SHARE * FD_SETSIZE:
                found.append((FD_PRESSURE, None,
                              f"fd {top} is near select's FD_SETSIZE ({FD_SETSIZE}): past it, "
                              "accept pauses and new clients wait in the backlog",
                              (("highest_fd", top), ("fd_setsize", FD_SETSIZE))))

    def _interest_mismatch(self, state: EngineState, found: list) -> None:
        """Compare the kernel's interest list (/proc/self/fdinfo/<epfd>) with the engine's."""
        backend = state.backend
        epfd = backend.fileno()
        if epfd is None or backend.ring_figures() is not None:
            return  # no kernel list (select, poll), or a ring's polls: no interest list
        try:
            kernel = epoll.read_interest_masks(epfd)
        except OSError:
            return
        edge = epoll.MODE_BITS[backend.trigger] & epoll.EPOLLET
        for fd, interest in state.registrations():  # the engine's table, not copied
            mask = kernel.pop(fd, None)
            if mask is None:
                found.append((INTEREST_MISMATCH, fd,
                              f"the engine watches fd {fd} for {long(interest)} but the kernel's "
                              "epoll interest list has no such fd: its events are lost",
                              (("engine", long(interest)), ("kernel", None))))
            elif backend.trigger == ONESHOT and not epoll.interest(mask):
                found.append((INTEREST_MISMATCH, fd,
                              f"fd {fd} is a fired oneshot never re-armed: the engine expects "
                              f"{long(interest)}, the kernel will report nothing",
                              (("engine", long(interest)), ("kernel", mask))))
            elif epoll.interest(mask) != epoll.interest(interest) or \
                    mask & epoll.EPOLLET != edge:
                found.append((INTEREST_MISMATCH, fd,
                              f"fd {fd}: the engine expects {long(interest)}, the kernel has "
                              f"{long(epoll.interest(mask))} ({hex(mask)})",
                              (("engine", long(interest)), ("kernel", mask))))
        for fd, mask in kernel.items():
            found.append((INTEREST_MISMATCH, fd,
                          f"the kernel still watches fd {fd} ({hex(mask)}) but the engine does "
                          "not: a leaked registration",
                          (("engine", None), ("kernel", mask))))
