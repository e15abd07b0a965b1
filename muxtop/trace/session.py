"""A traced process's wait calls mapped onto its fds: the ready-list ring the dashboard shows,
what each fd was last reported with, and what the app then did with it (its reads and writes).

attach --trace (muxtop/traced.py) calls `observe()` at every read of /proc with the epoll
interest lists the Attacher just read. epoll returns the app's own `data` for each ready fd
(redis stores the fd, nginx a pointer, CPython the fd with garbage above it): the traced
epoll_ctl calls say which fd each value stands for as the app registers it, and the `data:`
column of /proc/PID/fdinfo/<epfd> says it for what was registered before tracing began. A
value removed since (the fd closed) is remembered a while, for the waits that returned it
before. Calls are applied in the order they returned, so "reported, then read, then reported
again" reads as it happened.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from operator import itemgetter

from muxtop.events import READ
from muxtop.kernel.epoll import Registration
from muxtop.snapshot import TRACE_STOPPED, FdIo, TraceInfo, WaitCall, WaitRecord, wait_record
from muxtop.trace.calls import (
    EPOLL_CTL_DEL,
    EPOLL_WAITS,
    NO_FD,
    TracedCtl,
    TracedIo,
    TracedIoSummary,
    TracedTotals,
    TracedWait,
)
from muxtop.trace.tracer import Tracer

RING_SIZE = 4096  # wait calls kept, as the engine keeps
RATE_WINDOW = 1.0  # seconds the per-second figures span (at least)
GONE_KEPT = 4096  # data values of closed registrations remembered per epoll fd
RATE_WAITS = 256  # the newest waits an average over them takes
_DURATION = itemgetter(3)


@dataclass(slots=True)
class FdState:
    """What the trace saw of one fd since it was opened (or since tracing began)."""

    reported: int = 0  # wait calls that returned it
    last_events: int = 0
    last_ready_at: float | None = None  # when the last of them returned
    reads: int = 0
    read_bytes: int = 0
    last_read_at: float | None = None
    last_read: int = 0  # bytes, 0 EOF, -1 error
    last_read_asked: int = -1
    eagain_at: float | None = None
    writes: int = 0
    written: int = 0
    last_write_at: float | None = None
    write_eagain_at: float | None = None
    # Reports of READ with no read in between, and when the first of them came: an fd the
    # app keeps being told about and never reads.
    unread_reports: int = 0
    unread_since: float | None = None

    def as_io(self, fd: int) -> FdIo:
        return FdIo(fd, self.reads, self.read_bytes, self.last_read_at, self.last_read,
                    self.last_read_asked, self.eagain_at, self.writes, self.written,
                    self.last_write_at, self.write_eagain_at)


Traced = TracedWait | TracedIo | TracedIoSummary | TracedCtl | TracedTotals


def _end(call: Traced) -> float:
    if isinstance(call, TracedWait):
        return call.start + call.duration
    # the kernel's counts are running totals: where they sort among the calls is no matter
    return 0.0 if isinstance(call, TracedTotals) else call.at


class Trace:
    """Owns a running Tracer; `observe()` takes what it traced since the last call."""

    def __init__(self, tracer: Tracer, ring_size: int = RING_SIZE) -> None:
        self.tracer = tracer
        self.ring: deque[WaitRecord] = deque(maxlen=ring_size)
        self.calls: deque[WaitCall] = deque(maxlen=ring_size)
        self.fds: dict[int, FdState] = {}
        self.seq = 0
        self.events = 0  # ready fds over every wait traced
        self.bytes_moved = 0  # read and written, over every call traced
        self._maps: dict[int, dict[int, int]] = {}  # epfd -> {data: fd}
        self._gone: dict[int, dict[int, int]] = {}  # epfd -> {data: fd} no longer registered
        self._lists: dict[int, list[Registration]] = {}  # the interest lists the maps are of
        self._files: dict[int, str] = {}
        # (when, waits, events, bytes, lines the tool printed that were read, lost, waits and
        # ready fds the kernel counted) at each observe, from when tracing began
        self._history: deque[tuple[float, int, int, int, int, int, int, int]] = deque(
            [(tracer.since, 0, 0, 0, 0, 0, 0, 0)])
        # What the kernel counted (bpftrace): every wait, the itemized and the rest
        self.counted = TracedTotals(0, 0)

    @property
    def name(self) -> str:
        return self.tracer.name

    def stop(self) -> None:
        self.tracer.stop()

    # ---- taking the trace in -------------------------------------------------------------

    def observe(self, now: float, epoll_sets: dict[int, list[Registration]],
                files: dict[int, str]) -> None:
        """Apply every call traced since the last observe. `epoll_sets`: the interest lists
        just read; `files`: fd -> what it is now (/proc/PID/fd links), so an fd number that
        now names another file starts a fresh history."""
        for fd in [fd for fd, link in self._files.items() if files.get(fd) != link]:
            self.fds.pop(fd, None)
        self._files = files
        if not self._lists:
            self._sync(epoll_sets)  # what was registered before tracing began
        calls = self.tracer.drain()
        calls.sort(key=_end)  # nearly sorted already: the tools print as calls return
        for call in calls:
            if isinstance(call, TracedWait):
                self._wait(call, epoll_sets)
            elif isinstance(call, TracedCtl):
                self._ctl(call)
            elif isinstance(call, TracedIoSummary):
                self._io_summary(call)
            elif isinstance(call, TracedTotals):
                self.counted = call
            else:
                self._io(call)
        self._sync(epoll_sets)  # the kernel's lists are the truth now
        history = self._history
        history.append((now, self.seq, self.events, self.bytes_moved,
                        getattr(self.tracer, "lines_seen", 0), self.tracer.lost(),
                        *self.counted))
        while len(history) > 2 and now - history[1][0] >= RATE_WINDOW:
            history.popleft()

    def _table(self, epfd: int) -> dict[int, int]:
        table = self._maps.get(epfd)
        if table is None:
            table = self._maps[epfd] = {}
        return table

    def _forget(self, epfd: int, data: int, fd: int) -> None:
        gone = self._gone.setdefault(epfd, {})
        gone[data] = fd
        while len(gone) > GONE_KEPT:
            del gone[next(iter(gone))]

    def _ctl(self, call: TracedCtl) -> None:
        table = self._table(call.epfd)
        if call.op == EPOLL_CTL_DEL:
            for data in [data for data, fd in table.items() if fd == call.fd]:
                del table[data]
                self._forget(call.epfd, data, call.fd)
            return
        for data in [data for data, fd in table.items() if fd == call.fd and data != call.data]:
            del table[data]  # a MOD with new data
        table[call.data] = call.fd
        self._gone.get(call.epfd, {}).pop(call.data, None)

    def _sync(self, epoll_sets: dict[int, list[Registration]]) -> None:
        for epfd, regs in epoll_sets.items():
            if self._lists.get(epfd) is regs:
                continue  # the same list as last time: nothing changed
            old = self._maps.get(epfd, {})
            new = {reg.data: reg.tfd for reg in regs}
            for data, fd in old.items():
                if data not in new:
                    self._forget(epfd, data, fd)
            gone = self._gone.get(epfd, {})
            for data in [data for data in gone if data in new]:
                del gone[data]
            self._maps[epfd], self._lists[epfd] = new, regs
        for epfd in [epfd for epfd in self._lists if epfd not in epoll_sets]:
            del self._lists[epfd]
            self._maps.pop(epfd, None)
            self._gone.pop(epfd, None)

    def _wait(self, call: TracedWait, epoll_sets: dict[int, list[Registration]]) -> None:
        self.seq += 1
        ready = call.ready
        unmapped: list[int] = []
        registered = call.registered
        if call.syscall in EPOLL_WAITS:
            table = self._maps.get(call.epfd, {})
            gone = self._gone.get(call.epfd, {})
            mapped = []
            for i in range(0, len(ready), 2):
                data = ready[i]
                fd = table.get(data)
                if fd is None:
                    fd = gone.get(data, NO_FD)
                    if fd == NO_FD:
                        unmapped.append(data)
                mapped += (fd, ready[i + 1])
            ready = tuple(mapped)
            registered = len(epoll_sets.get(call.epfd, ()))
        count = max(call.count, 0)
        self.events += count
        end = call.start + call.duration
        fds = self.fds
        for i in range(0, len(ready), 2):
            fd, events = ready[i], ready[i + 1]
            if fd == NO_FD:
                continue
            state = fds.get(fd)
            if state is None:
                state = fds[fd] = FdState()
            state.reported += 1
            state.last_events, state.last_ready_at = events, end
            if events & READ:
                if state.unread_reports == 0:
                    state.unread_since = end
                state.unread_reports += 1
        self.ring.append(wait_record((self.seq, call.start, call.timeout, call.duration,
                                      max(registered, 0), ready, count, None)))
        self.calls.append(WaitCall(self.seq, call.tid, call.syscall, call.epfd,
                                   tuple(unmapped), call.error))

    def _io(self, call: TracedIo) -> None:
        state = self.fds.get(call.fd)
        if state is None:
            state = self.fds[call.fd] = FdState()
        moved = max(call.result, 0)
        self.bytes_moved += moved
        if call.is_read:
            state.reads += 1
            state.read_bytes += moved
            state.last_read_at, state.last_read = call.at, call.result
            state.last_read_asked = call.asked
            state.unread_reports, state.unread_since = 0, None
            if call.error == "EAGAIN":
                state.eagain_at = call.at
        else:
            state.writes += 1
            state.written += moved
            state.last_write_at = call.at
            if call.error == "EAGAIN":
                state.write_eagain_at = call.at

    def _io_summary(self, call: TracedIoSummary) -> None:
        state = self.fds.get(call.fd)
        if state is None:
            state = self.fds[call.fd] = FdState()
        self.bytes_moved += call.read_bytes + call.written
        if call.reads:
            state.reads += call.reads
            state.read_bytes += call.read_bytes
            if call.last_read_at is not None:
                state.last_read_at, state.last_read = call.last_read_at, call.last_read
                state.last_read_asked = call.last_read_asked
                state.unread_reports, state.unread_since = 0, None
            if call.eagain_at is not None:
                state.eagain_at = call.eagain_at
        if call.writes:
            state.writes += call.writes
            state.written += call.written
            state.last_write_at = call.last_write_at or state.last_write_at
            if call.write_eagain_at is not None:
                state.write_eagain_at = call.write_eagain_at

    # ---- what it shows -------------------------------------------------------------------

    def rates(self) -> tuple[float, float, float, float, float, float]:
        """(waits/s, ready fds/s, ready per wait, wait p50, wait p99, traced bytes/s) over the
        last RATE_WINDOW or more; the percentiles over the newest waits of that span."""
        history = self._history
        (then, waits0, events0, bytes0, _, _, counted0, ready0), \
            (now, waits1, events1, bytes1, _, _, counted1, ready1) = history[0], history[-1]
        span = now - then
        if span <= 0:
            return 0.0, 0.0, 0.0, 0.0, 0.0, 0.0
        waits = waits1 - waits0
        recent = sorted(map(_DURATION, list(self.ring)[-waits:] if waits else ()))
        # Lines the kernel dropped (bpftrace's "Lost N events") took their waits, ready fds
        # and bytes with them, at random: scale the counts up by the share lost (an estimate,
        # which the trace line says).
        scale = 1 / (1 - self.loss_share())
        bytes_per_s = (bytes1 - bytes0) / span * scale
        if counted1 > counted0:  # the kernel's counts: exact, itemized or not
            calls, ready = counted1 - counted0, ready1 - ready0
            return (calls / span, ready / span, ready / calls, _percentile(recent, 0.50),
                    _percentile(recent, 0.99), bytes_per_s)
        return (waits / span * scale, (events1 - events0) / span * scale,
                (events1 - events0) / waits if waits else 0.0,
                _percentile(recent, 0.50), _percentile(recent, 0.99), bytes_per_s)

    def loss_share(self) -> float:
        """The share of the tool's lines lost over the rates' window (0 when none)."""
        (_, _, _, _, lines0, lost0, _, _), (_, _, _, _, lines1, lost1, _, _) = \
            self._history[0], self._history[-1]
        lost, seen = lost1 - lost0, lines1 - lines0
        return lost / (lost + seen) if lost > 0 and seen > 0 else 0.0

    def registered_per_wait(self) -> float:
        """How many fds the newest waits asked about, on average (poll's nfds, select's set
        bits, the size of epoll's interest list)."""
        newest = list(self.ring)[-RATE_WAITS:]
        return sum(w.registered for w in newest) / len(newest) if newest else 0.0

    def info(self) -> TraceInfo:
        tracer = self.tracer
        note = tracer.note if tracer.state != TRACE_STOPPED else tracer.ended
        return TraceInfo(tracer.name, tracer.state, note, tracer.since, self.seq,
                         tracer.io_calls, tracer.io, tracer.lost(), self.loss_share(),
                         self.counted.waits)

    def fd_io(self, open_fds) -> tuple[FdIo, ...]:
        """The reads and writes of the fds open now that the trace saw any of, by fd."""
        return tuple(state.as_io(fd) for fd, state in sorted(self.fds.items())
                     if fd in open_fds and (state.reads or state.writes))


def _percentile(ordered: list[float], q: float) -> float:
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else 0.0
