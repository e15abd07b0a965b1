"""What traced readiness proves about an attached process, on top of what /proc suggests.

- A stuck read, proven: the fd is edge-triggered, bytes are queued, the app's last read of it
  returned data (it never saw EAGAIN), and a wait call on its epoll set that began after those
  bytes were seen has come back without it. With ET, bytes that came after the last read raise
  a new edge that the next wait reports; a wait that does not report the fd means the bytes
  predate the last read: the app stopped before EAGAIN, and epoll will not say so again.
- A busy loop in the target: many wait calls a second return ready fds, and no bytes move.
- An fd reported readable again and again and never read: level-triggered epoll (or poll, or
  select) keeps telling the app, the app never reads it, the loop spins on it or starves it.
"""

from __future__ import annotations

from itertools import islice

from muxtop.events import long
from muxtop.findings import (
    BUSY_WAITS_LOOKED_AT,
    NEVER_READ,
    STUCK_READ,
    Found,
    SocketFacts,
    busy_loop,
)
from muxtop.kernel import epoll
from muxtop.snapshot import KIND_CONN
from muxtop.trace.session import FdState, Trace

NEVER_READ_REPORTS = 5  # reports with no read between them before an fd counts as ignored


def _ago(now: float, then: float) -> str:
    return f"{max(0.0, now - then):.1f} s ago"


class TraceDiagnoser:
    """Remembers, per fd, since when bytes have been queued with no read; `review()` turns one
    look into findings, and the fds whose stuck read the trace proves."""

    def __init__(self, stuck_after: float) -> None:
        self.stuck_after = stuck_after
        # fd -> (when bytes were first seen queued, the app's last read then): bytes seen
        # queued after a read, with no read since, are still there.
        self._queued: dict[int, tuple[float, float | None]] = {}
        self._app_read: dict[int, tuple[int, int, float]] = {}  # fd -> (app_read, reports, at)

    def review(self, now: float, trace: Trace, sockets: list[SocketFacts],
               socket_bytes_per_s: float, held: bool) -> tuple[list[Found], set[int]]:
        found: list[Found] = []
        proven: set[int] = set()
        queued: dict[int, tuple[float, float | None]] = {}
        app_read: dict[int, tuple[int, int, float]] = {}
        for facts in sockets:
            state = trace.fds.get(facts.fd)
            if state is None or facts.kind != KIND_CONN:
                continue
            if facts.rx_queue:
                mark = self._queued.get(facts.fd)
                if mark is None or mark[1] != state.last_read_at:
                    mark = (now, state.last_read_at)
                queued[facts.fd] = mark
                if not held and trace.tracer.io:
                    proof = self._proof(now, trace, facts, state, mark[0])
                    if proof is not None:
                        found.append(proof)
                        proven.add(facts.fd)
            if not held:
                found += self._never_read(now, trace, facts, state, app_read)
        self._queued, self._app_read = queued, app_read
        if not held:
            found += self._busy_loop(trace, socket_bytes_per_s)
        return found, proven

    def _proof(self, now: float, trace: Trace, facts: SocketFacts, state: FdState,
               queued_since: float) -> Found | None:
        edge = [(epfd, mask) for epfd, mask in facts.watches
                if mask & epoll.EPOLLET and mask & epoll.EPOLLIN
                and not mask & epoll.EPOLLONESHOT]
        read_at = state.last_read_at
        if not edge or read_at is None or state.last_read <= 0 or queued_since <= read_at:
            return None
        if state.eagain_at is not None and state.eagain_at >= read_at:
            return None  # it read until EAGAIN: what is queued came later
        if state.last_ready_at is not None and state.last_ready_at > read_at:
            return None  # reported since: the app has been told
        if state.write_eagain_at is not None and state.write_eagain_at >= read_at:
            return None  # it stopped reading because the peer does not read its replies
        epfds = {epfd for epfd, _ in edge}
        waits = _waits_since(trace, epfds, queued_since)
        if not waits:
            return None  # no wait has come back since: not yet proven
        epfd, mask = edge[0]
        asked = f" of {state.last_read_asked} asked" if state.last_read_asked > 0 else ""
        told = (f"was reported {epoll.words(state.last_events)} {_ago(now, state.last_ready_at)}"
                if state.last_ready_at is not None else "was last reported before tracing began")
        why = (f"fd {facts.fd} {told}, the app read {state.last_read} bytes{asked} "
               f"{_ago(now, read_at)} and never saw EAGAIN, and edge-triggered epoll has not "
               f"reported it since ({waits} wait call{'s' * (waits != 1)} on epoll fd {epfd} "
               f"came back without it) while {facts.rx_queue} bytes wait in its receive queue: "
               "proven by the trace, not inferred")
        return STUCK_READ, facts.fd, why, (
            ("rx_queue", facts.rx_queue), ("last_read_bytes", state.last_read),
            ("last_read_asked", state.last_read_asked),
            ("read_seconds_ago", round(now - read_at, 1)),
            ("reported_seconds_ago", None if state.last_ready_at is None
             else round(now - state.last_ready_at, 1)),
            ("waits_since", waits), ("epoll_fd", epfd), ("mask", mask), ("proven", True))

    def _never_read(self, now: float, trace: Trace, facts: SocketFacts, state: FdState,
                    marks: dict[int, tuple[int, int, float]]):
        """Reported readable again and again while the app reads nothing from it: proven by
        the traced reads, or, without them, by sock_diag's count of what the app has read."""
        if trace.tracer.io:
            reports, since = state.unread_reports, state.unread_since
        elif facts.app_read is not None and state.reported:
            mark = self._app_read.get(facts.fd)
            if mark is None or mark[0] != facts.app_read:
                mark = (facts.app_read, state.reported, now)
            marks[facts.fd] = mark
            reports, since = state.reported - mark[1], mark[2]
        else:
            return
        if since is None or reports < NEVER_READ_REPORTS or now - since < self.stuck_after:
            return
        how = "no read call on it" if trace.tracer.io else "the app's read count has not moved"
        why = (f"fd {facts.fd} was reported readable by {reports} wait calls over the last "
               f"{now - since:.1f} s and the app never read it ({how}): level-triggered "
               "readiness repeats until it does, so the loop spins on it, or the bytes starve"
               + (f" ({facts.rx_queue} bytes queued)" if facts.rx_queue else ""))
        yield NEVER_READ, facts.fd, why, (
            ("reports", reports), ("seconds", round(now - since, 1)),
            ("rx_queue", facts.rx_queue), ("last_events", long(state.last_events)))

    def _busy_loop(self, trace: Trace, socket_bytes_per_s: float):
        waits_per_s, events_per_s, per_wait, p50, _, traced_bytes = trace.rates()
        moved = traced_bytes if trace.tracer.io else socket_bytes_per_s
        start = max(0, len(trace.ring) - BUSY_WAITS_LOOKED_AT)
        finding = busy_loop(waits_per_s, events_per_s, per_wait, moved, p50,
                            islice(trace.ring, start, None))
        if finding is not None:
            yield finding


def _waits_since(trace: Trace, epfds: set[int], since: float) -> int:
    """Wait calls on one of `epfds` that began after `since` (the newest RING_SIZE only)."""
    count = 0
    for record, call in zip(reversed(trace.ring), reversed(trace.calls)):
        if record.start <= since:
            break
        if call.epfd in epfds:
            count += 1
    return count
