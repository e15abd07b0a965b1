"""attach --trace: an Attacher with a Trace of the process's wait calls, one layer above both.

attach reads another process from /proc and knows nothing of tracers; trace follows a process's
wait calls and knows nothing of /proc's sockets. Here the two meet: every read of /proc feeds the
trace its interest lists, the trace's findings join the Attacher's, the fd rows get what the
last traced wait reported, and the Snapshot the trace's ready-list ring and wait figures.
"""

from __future__ import annotations

import dataclasses

from muxtop.attach.reader import Attacher
from muxtop.findings import Found, SocketFacts
from muxtop.kernel.epoll import Registration
from muxtop.snapshot import SOURCE_TRACED, TRACE_STOPPED, ConnView, Snapshot
from muxtop.trace.calls import MULTIPLEXER
from muxtop.trace.diagnose import TraceDiagnoser
from muxtop.trace.session import Trace


def with_trace(attacher: Attacher, trace: Trace) -> Attacher:
    """`attacher` with a started Trace of the process's wait calls: its ready lists, wait
    figures and findings join every read. The Attacher stops it when the process exits or on
    `close()`."""
    return attacher.use(TracedReads(trace, attacher.stuck_after))


class TracedReads:
    """A Trace as the Attacher's overlay (attach/reader.py `Overlay`)."""

    def __init__(self, trace: Trace, stuck_after: float) -> None:
        self.trace = trace
        self.tracer = trace.tracer
        self.warning = f"{trace.name}: {trace.tracer.note}" if trace.tracer.note else ""
        self._review = TraceDiagnoser(stuck_after)
        self._state = ""  # the tracer state last told in a Notice

    def review(self, now: float, epoll_sets: dict[int, list[Registration]],
               links: dict[int, str], sockets: list[SocketFacts], socket_bytes_per_s: float,
               held: bool) -> tuple[list[Found], set[int]]:
        self.trace.observe(now, epoll_sets, links)
        return self._review.review(now, self.trace, sockets, socket_bytes_per_s, held)

    def news(self) -> str | None:
        """A Notice's text when the tracer stops on its own (killed, the tool failed)."""
        info = self.trace.info()
        if info.state == self._state:
            return None
        self._state = info.state
        return f"tracing stopped: {info.note}" if info.state == TRACE_STOPPED else None

    def views(self, views: list[ConnView]) -> list[ConnView]:
        """ConnViews with what the last traced wait reported for each fd ("last ev")."""
        fds = self.trace.fds
        shown = []
        for view in views:
            state = fds.get(view.fd)
            if state is not None and state.last_ready_at is not None:
                view = view._replace(last_events=state.last_events,
                                     last_ready=state.last_ready_at)
            shown.append(view)
        return shown

    def snapshot(self, snapshot: Snapshot, links: dict[int, str]) -> Snapshot:
        """The attach Snapshot with the trace's ready-list ring, wait figures and
        reads/writes."""
        trace = self.trace
        waits_per_s, events_per_s, per_wait, p50, p99, _ = trace.rates()
        rates = snapshot.rates._replace(waits=waits_per_s, events=events_per_s,
                                        ready_per_wait=per_wait, wait_p50=p50, wait_p99=p99,
                                        registered_per_wait=trace.registered_per_wait())
        waits = tuple(trace.ring)
        backend = snapshot.backend
        if waits and backend == "?":  # the trace knows what it waits with
            backend = MULTIPLEXER[trace.calls[-1].syscall]
        return dataclasses.replace(
            snapshot, source=SOURCE_TRACED, backend=backend, waits=waits,
            wait_calls=tuple(trace.calls), trace=trace.info(), fd_io=trace.fd_io(links),
            rates=rates, totals=snapshot.totals._replace(waits=trace.seq, events=trace.events))

    def stop(self) -> None:
        self.trace.stop()
