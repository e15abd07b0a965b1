"""Always-on telemetry of the engine: the ring of wait records, counters, kernel probes,
process figures, and the Snapshot built from them a few times a second (never per event)."""

from __future__ import annotations

import os
import resource
import time
from bisect import bisect_left
from collections import deque
from collections.abc import Container, Iterable, Mapping
from operator import attrgetter, itemgetter

import psutil

from muxtop.engine.connection import Connection
from muxtop.engine.diagnose import Detector
from muxtop.engine.guards import HEADER, IDLE, OUT_BUFFER
from muxtop.engine.state import EngineState
from muxtop.engine.toxic_views import proxy_views
from muxtop.events import READ
from muxtop.kernel import probes
from muxtop.snapshot import (
    CONTROL,
    FLAG_BACKPRESSURE,
    FLAG_FINDING,
    FLAG_PAUSED,
    FLAG_PENDING,
    FLAG_TOXIC,
    KIND_CONN,
    KIND_CONTROL,
    KIND_EPOLL,
    KIND_LISTENER,
    LISTENING,
    PROXY,
    ConnView,
    Notice,
    ProcessStats,
    Rates,
    RingView,
    Snapshot,
    TcpInfo,
    Totals,
    WaitRecord,
)

RATE_WINDOW = 1.0  # seconds the per-second figures average over
PROCESS_EVERY = 1.0  # seconds between psutil samples (each costs ~100 µs)
# CPU time comes in clock ticks (10 ms): over a few milliseconds one tick reads as 300-600%.
# A CPU figure needs at least this span; before the first one, it shows 0.
CPU_SPAN_MIN = 0.5
NOTICE_REPEAT = 2.0  # seconds a keyed notice stays quiet after it was last shown
# Distinct TCP_INFO readings kept to share (see _shared_tcp); past this the table starts over.
TCP_SHARED_MAX = 4096
_new_tuple = tuple.__new__
_START = itemgetter(WaitRecord._fields.index("start"))  # by index: cheaper than the property
_REGISTERED = itemgetter(WaitRecord._fields.index("registered"))
_COUNT = itemgetter(WaitRecord._fields.index("count"))
_CPU = itemgetter(WaitRecord._fields.index("cpu"))
_FD = itemgetter(ConnView._fields.index("fd"))
_ECHOED_BYTES, _READ_BYTES, _SENT_BYTES = (attrgetter(name) for name in (
    "echoed_bytes", "read_bytes", "sent_bytes"))
_DURATION_AT, _CPU_AT = WaitRecord._fields.index("duration"), WaitRecord._fields.index("cpu")


class Telemetry:
    """Owns the wait ring and the notices; reads the rest of the engine, its counts
    included, through its EngineState."""

    def __init__(self, state: EngineState) -> None:
        self.state = state
        self._completion = None  # uring/completion's operations, read once per publish
        config = state.config
        self.ring: deque[WaitRecord] = deque(maxlen=config.ring_size)  # the engine appends
        self.recently_closed: deque[Connection] = deque()
        self.notices: deque[Notice] = deque(maxlen=64)
        self._notice_seq = 0
        self._notice_last: dict[str, float] = {}
        self.refused: tuple[float, str] | None = None
        self.watched: tuple[int, ...] = ()  # fds a viewer shows: probed first
        self._probe_cursor = 0
        self._tcp_shared: dict[TcpInfo, TcpInfo] = {}
        self._history: deque[tuple[float, Totals]] = deque()
        self._process = psutil.Process(os.getpid())
        # This process's CPU from os.times(), which needs no fd: psutil reads /proc, and out
        # of fds (EMFILE, when CPU matters most) it cannot.
        self._cpu_used = _cpu_seconds()
        self._cpu_since = time.monotonic()  # ...at this time
        self._cpu_percent = 0.0
        self._process_stats: ProcessStats | None = None
        self._process_at = 0.0
        self.started_at = time.monotonic()
        self.detector = Detector(config.stuck_after)
        self.protocol = config.protocol if state.proxy is None else \
            f"{PROXY} → {state.proxy.upstream}" if state.proxy.upstream else PROXY
        self.publishes, self.publish_seconds = 0, 0.0  # what building Snapshots cost so far

    # ---- called by the engine ----------------------------------------------------------

    def notice(self, level: str, text: str, key: str | None = None) -> None:
        """Tell the viewers something. A keyed notice repeats at most every NOTICE_REPEAT s
        (an accept back-off may happen hundreds of times a second)."""
        now = time.monotonic()
        if key is not None:
            if now - self._notice_last.get(key, -NOTICE_REPEAT) < NOTICE_REPEAT:
                return
            self._notice_last[key] = now
        self._notice_seq += 1
        self.notices.append(Notice(self._notice_seq, now, level, text))

    def closed(self, conn: Connection, now: float) -> None:
        """A connection closed (the engine counted it): keep its last row for a while.
        The socket is gone and its queues with it: the last probe's figures are no queue
        of now, nor its TCP_INFO (None draws as —, as ss shows no socket)."""
        conn.rx_queue = conn.tx_queue = conn.rx_since = conn.tcp = None
        conn.view = self._closed_view(conn)
        self.recently_closed.append(conn)

    # ---- the Snapshot ------------------------------------------------------------------

    def publish(self, now: float) -> Snapshot:
        started = time.perf_counter()
        snapshot = self._build(now)
        self.publishes += 1
        self.publish_seconds += time.perf_counter() - started
        return snapshot

    def _build(self, now: float) -> Snapshot:
        state = self.state
        config = state.config
        conns = state.conns
        closed = self.recently_closed
        while closed and now - closed[0].closed_at > config.closed_linger:
            closed.popleft()
        self._probe(conns, now)
        self._completion = state.completion
        live = conns.values()
        echoed = sum(map(_ECHOED_BYTES, live))  # slot by slot, C-level: no Python per conn
        counts = state.counts
        guard_closes = counts.guard_closes
        totals = Totals(
            waits=counts.waits, events=counts.events,
            bytes_in=counts.closed_bytes_in + echoed + sum(map(_READ_BYTES, live)),
            bytes_out=counts.closed_bytes_out + echoed + sum(map(_SENT_BYTES, live)),
            accepted=counts.accepted, closed=counts.closed,
            accept_errors=counts.accept_errors, rejected=counts.rejected,
            closed_idle=guard_closes[IDLE], closed_header=guard_closes[HEADER],
            closed_out_buffer=guard_closes[OUT_BUFFER], probes=counts.probes)
        waits = tuple(self.ring)
        rates = self._rates(now, totals, waits,
                            state.backend is not None and state.backend.scans_every_fd)
        refused = None
        if self.refused is not None and now - self.refused[0] < 10.0:
            refused = self.refused[1]
        process = self._process_sample(now)
        backend = state.backend
        running = state.running
        diagnoses = ()
        if running and backend is not None and config.diagnose:
            diagnoses = self.detector.review(state, now, rates, process, totals, waits)
        flagged = {fd for d in diagnoses for fd in d.named_fds()}  # "!": a finding names it
        views = [self._control_view(now)]
        if state.listen_fd >= 0:  # -1: released (--api alone, or its proxy disabled over the
            views.append(self._listener_view(now))  # API; back, it is one of the routes)
        views.extend(self._route_view(*route) for route in state.routes)
        if running and backend is not None and backend.fileno() is not None:
            views.append(self._backend_view(backend, now))
        views.sort(key=_FD)
        body = self._conn_views(conns.values(), flagged)  # by fd
        if closed:  # merged in by fd, each after the open one that reuses its fd (stable)
            body.extend(conn.view for conn in closed)
            body.sort(key=_FD)
        views.extend(body)
        return Snapshot(
            source="engine", proxies=proxy_views(state, _address(state.address)),
            taken_at=now, wall_time=time.time(), started_at=self.started_at,
            backend=backend.name if backend else config.backend,
            trigger=backend.trigger if backend else config.trigger,
            protocol=self.protocol, listen=_address(state.address),
            connections=tuple(views), waits=waits, totals=totals, rates=rates,
            process=process, registered=state.registered,
            open_connections=len(conns), notices=tuple(self.notices), diagnoses=diagnoses,
            lab=state.lab, refused=refused, running=running, error=state.error,
            step=state.step, fd_order=True,
            rings=_rings(backend) if running and backend is not None else ())

    def _rates(self, now: float, totals: Totals, waits: tuple[WaitRecord, ...],
               scans_all: bool) -> Rates:
        """Per-second figures over the last RATE_WINDOW, from totals kept at each publish and
        the wait records of that second. `scans_all`: the backend looks at every registered
        fd on every call (select, poll), not only the ready ones (epoll)."""
        history = self._history
        history.append((now, totals))
        while len(history) > 2 and now - history[1][0] >= RATE_WINDOW:
            history.popleft()
        then, old = history[0]
        span = now - then
        if span <= 0:
            return Rates(0, 0, 0, 0, 0, 0, 0, 0)
        # Records are in start order: the last second is a bisection away.
        first = bisect_left(waits, now - RATE_WINDOW, key=_START)
        recent = waits[first:]
        # The probes (the calls with a CPU time) time a scan; they are not the loop's waits.
        durations = sorted(w[_DURATION_AT] for w in recent if w[_CPU_AT] is None)
        # The median: a sampled call that blocked may be charged the scheduler's work too.
        cpu = sorted(c for c in map(_CPU, recent) if c is not None)
        registered = sum(map(_REGISTERED, recent)) / len(recent) if recent else 0.0
        scanned = registered if scans_all else (
            sum(map(_COUNT, recent)) / len(recent) if recent else 0.0)
        dwaits = totals.waits - old.waits - (totals.probes - old.probes)
        devents = totals.events - old.events
        return Rates(
            waits=dwaits / span, events=devents / span,
            bytes_in=(totals.bytes_in - old.bytes_in) / span,
            bytes_out=(totals.bytes_out - old.bytes_out) / span,
            accepts=(totals.accepted - old.accepted) / span,
            ready_per_wait=devents / dwaits if dwaits else 0.0,
            wait_p50=_percentile(durations, 0.50), wait_p99=_percentile(durations, 0.99),
            wait_cpu=_percentile(cpu, 0.50), registered_per_wait=registered,
            scanned_per_wait=scanned)

    def _probe(self, conns: Mapping[int, Connection], now: float) -> None:
        """Ask the kernel for the queues of the watched fds, then of a round-robin slice of
        the rest: at most probe_budget sockets per Snapshot, whatever the connection count."""
        budget = self.state.config.probe_budget
        for fd in self.watched[:budget]:
            conn = conns.get(fd)
            if conn is not None:
                _probe_conn(conn, now, self._tcp_shared)
        budget -= min(len(self.watched), budget)
        if not conns or budget <= 0:
            return
        fds = list(conns)
        start = self._probe_cursor % len(fds)
        chosen = fds[start:start + budget]
        if len(chosen) < budget:
            chosen += fds[:min(start, budget - len(chosen))]
        self._probe_cursor = start + budget
        for fd in chosen:
            _probe_conn(conns[fd], now, self._tcp_shared)

    def _conn_views(self, conns: Iterable[Connection], flagged: Container[int]) -> list[ConnView]:
        """The open connections' rows. One loop with everything it reads held in locals, and
        the Connection's sums (bytes_in...) added here rather than through its properties:
        at 2,000 busy proxy legs this is most of a publish (~4 ms a Snapshot, 4 a second)."""
        pending = self.state.pending
        completion = self._completion
        views = []
        append = views.append
        for c in conns:
            fd = c.fd
            flags = FLAG_FINDING if fd in flagged else ""
            if c.user_paused:
                flags += FLAG_PAUSED
            if c.backpressured:
                flags += FLAG_BACKPRESSURE
            if fd in pending:
                flags += FLAG_PENDING
            if c.__class__ is not Connection and c.pipe is not None and c.pipe.applied:
                flags += FLAG_TOXIC  # a proxy's leg (engine/proxying.py) with toxics on it
            if completion is not None:
                flags += completion.flags(c)  # its recv and send in flight
            last_active = c.last_read_at if c.last_read_at > c.last_write_at \
                else c.last_write_at
            # Rebuild only what changed: at 10,000 idle connections most views are as they
            # were. Compared with the view's own fields (ConnView's order), not a key tuple
            # of its own: one tuple less per connection, and none made per publish.
            v = c.view
            if v is None or v[7] != c.last_ready or v[5] != c.interest or v[4] is not c.state \
                    or v[19] != flags or v[16] != last_active:
                echoed_bytes, echoed_msgs = c.echoed_bytes, c.echoed_msgs
                out = len(c.out)
                if c.__class__ is not Connection and c.partner is not None and \
                        c.partner.pipe is not None:
                    out += c.partner.pipe.buffered  # a toxic holds it on its way to this peer
                # tuple.__new__: ConnView(...) runs a Python-level __new__ with 23 arguments.
                # It fills no defaults, so every field is here (watched_by is attach's).
                # A proxy's leg sends what its partner forwarded (Leg.bytes_out).
                c.view = v = _new_tuple(ConnView, (
                    c.cid, fd, KIND_CONN, c.peer, c.state, c.interest, c.last_events,
                    c.last_ready, out, c.rx_queue, c.tx_queue,
                    c.read_bytes + echoed_bytes,
                    c.sent_bytes + echoed_bytes if c.__class__ is Connection else c.bytes_out,
                    c.read_msgs + echoed_msgs,
                    c.sent_msgs + echoed_msgs if c.__class__ is Connection else c.msgs_out,
                    c.history[0][0], last_active, None, c.tcp, flags, c.history, c.note, ()))
            append(v)
        return views

    def _closed_view(self, c: Connection) -> ConnView:
        """The row of a connection that just closed, frozen: shown while recently closed."""
        flags = (FLAG_PAUSED if c.user_paused else "") + \
            (FLAG_BACKPRESSURE if c.backpressured else "")
        if c.__class__ is not Connection and c.pipe is not None and c.pipe.applied:
            flags += FLAG_TOXIC
        return ConnView(
            c.cid, c.fd, KIND_CONN, c.peer, c.state, c.interest, c.last_events, c.last_ready,
            len(c.out), c.rx_queue, c.tx_queue, c.bytes_in, c.bytes_out, c.msgs_in,
            c.msgs_out, c.opened_at, max(c.last_read_at, c.last_write_at), c.closed_at,
            c.tcp, flags, c.history, c.note, ())

    def _backend_view(self, backend, now: float) -> ConnView:
        figures = backend.ring_figures()
        if figures is not None:
            return ConnView(
                -2, backend.fileno(), KIND_EPOLL, "io_uring instance", backend.trigger, 0, 0,
                None, 0, None, None, 0, 0, 0, 0, self.started_at, self.started_at, None, None,
                "", (), f"{backend.mode}: {backend.in_flight} requests in flight; SQ "
                f"{figures.sq_head}/{figures.sq_tail}, CQ {figures.cq_head}/{figures.cq_tail}")
        return ConnView(
            -2, backend.fileno(), KIND_EPOLL, "epoll instance", backend.trigger, 0, 0, None, 0,
            None, None, 0, 0, 0, 0, self.started_at, self.started_at, None, None, "", (),
            f"interest list of {self.state.registered} fds, kept in the kernel")

    def _listener_view(self, now: float) -> ConnView:
        state = self.state
        listener = state.listener
        tcp = probes.tcp_info(listener) if listener is not None and state.running else None
        note = f"backlog {tcp.sacked}" if tcp else ""
        if state.accept_paused:
            note = "accept paused: out of fds"
        elif state.accept_held:
            note = "accept paused: at select's FD_SETSIZE"
        elif not state.listen_interest and state.running:
            note = "accept paused: at --max-conns"
        return ConnView(
            0, state.listen_fd, KIND_LISTENER, _address(state.address), LISTENING,
            state.listen_interest, 0, None, 0, tcp.unacked if tcp else None, None,
            0, 0, state.counts.accepted, 0, self.started_at, self.started_at, None, tcp, "",
            (), note)

    def _route_view(self, fd: int, sock, proxy) -> ConnView:
        """A listener of a proxy made over the API (muxtop/proxy/registry.py)."""
        tcp = probes.tcp_info(sock)
        return ConnView(
            -1000 - fd, fd, KIND_LISTENER, f"{proxy.name} {proxy.listen} → {proxy.upstream}",
            LISTENING, READ, 0, None, 0, tcp.unacked if tcp else None, None, 0, 0, 0, 0,
            self.started_at, self.started_at, None, tcp, "", (),
            f"proxy {proxy.name}: each client paired with {proxy.upstream}")

    def _control_view(self, now: float) -> ConnView:
        state = self.state
        return ConnView(
            -1, state.control_fd, KIND_CONTROL, "eventfd (commands)", CONTROL,
            READ if state.running else 0, 0, None, state.queued_commands, None, None,
            0, 0, 0, 0, self.started_at, self.started_at, None, None, "", (),
            "wakes the loop for commands from other threads")

    def _process_sample(self, now: float) -> ProcessStats | None:
        if now - self._process_at >= PROCESS_EVERY or self._process_stats is None:
            self._process_at = now
            proc = self._process
            if now - self._cpu_since >= CPU_SPAN_MIN:
                used = _cpu_seconds()
                self._cpu_percent = 100 * (used - self._cpu_used) / (now - self._cpu_since)
                self._cpu_used, self._cpu_since = used, now
                if self._process_stats is not None:
                    self._process_stats = self._process_stats._replace(
                        cpu_percent=self._cpu_percent)
            try:
                with proc.oneshot():
                    self._process_stats = ProcessStats(
                        pid=proc.pid, name=proc.name(), cpu_percent=self._cpu_percent,
                        rss=proc.memory_info().rss, num_fds=proc.num_fds(),
                        fd_limit=resource.getrlimit(resource.RLIMIT_NOFILE)[0],
                        threads=proc.num_threads())
            except (psutil.Error, OSError):
                pass  # out of fds to read /proc with: keep the last figures
        return self._process_stats


def _cpu_seconds() -> float:
    times = os.times()
    return times.user + times.system


def _probe_conn(conn: Connection, now: float, shared: dict[TcpInfo, TcpInfo]) -> None:
    fd = conn.fd
    conn.rx_queue = rx = probes.rx_queue(fd)
    if not rx:
        conn.rx_since = None
    elif conn.rx_since is None or conn.last_read_at > conn.rx_since:
        conn.rx_since = now
    conn.tx_queue = probes.tx_queue(fd)
    conn.tcp = _shared_tcp(probes.tcp_info(conn.sock), shared)
    conn.view = None  # the queues it shows may have changed: built anew at the next publish


def _shared_tcp(tcp: TcpInfo | None, shared: dict[TcpInfo, TcpInfo]) -> TcpInfo | None:
    """An equal TcpInfo seen before, if any: every probed connection keeps one, and a reading
    with its ints is ~260 bytes (tracemalloc), more than the Connection itself. Idle
    connections read alike (ESTABLISHED, nothing unacked, an RTT among a few values), so at
    10,000 of them a few hundred objects stand for all. Immutable: sharing changes nothing."""
    if tcp is None:
        return None
    if len(shared) >= TCP_SHARED_MAX:
        shared.clear()  # a busy server's readings all differ: bounded, not an LRU
    return shared.setdefault(tcp, tcp)


def _percentile(ordered: list[float], q: float) -> float:
    if not ordered:
        return 0.0
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _rings(backend) -> tuple[RingView, ...]:
    """The backend's io_uring, if it is one, as the Snapshot shows it."""
    f = backend.ring_figures()
    if f is None:
        return ()
    return (RingView(backend.fileno(), backend.mode, f.sq_entries, f.cq_entries, f.sq_head,
                     f.sq_tail, f.cq_head, f.cq_tail, backend.in_flight,
                     f.cq_overflow, f.enters, f.submitted, f.completed,
                     f.features),)


def _address(address: tuple) -> str:
    host, port = address[0], address[1]
    if not host:
        return ""  # no listener of its own (--api without --upstream)
    return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"
