"""The immutable picture of a multiplexing server that every view reads.

The engine builds one a few times a second and publishes it by swapping one reference;
`muxtop attach` builds the same shape from /proc. Readers on any thread may keep one as long
as they like: nothing in it changes after it is built. Every Snapshot and WaitRecord converts
losslessly to and from a versioned plain form (muxtop.plain): what recordings and --json hold.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial
from typing import NamedTuple

# Connection states (ConnView.state).
OPEN = "open"
READ_PAUSED = "paused"  # not reading: backpressure, or a user's pause
HALF_CLOSED = "half-closed"  # the peer sent FIN; the rest of our output still goes out
CLOSING = "closing"  # we decided to close; flushing what is left
CLOSED = "closed"
CONNECTING = "connecting"  # proxy: the connect to the upstream has not completed
LISTENING = "listen"
CONTROL = "control"

# ConnView.kind
KIND_CONN, KIND_LISTENER, KIND_CONTROL, KIND_EPOLL, KIND_OTHER = (
    "conn", "listener", "control", "epoll", "other")


CPU_SAMPLE_EVERY = 0.002  # seconds between probes (WaitRecord.cpu), at least; each one is a
# wait call more and two clock_gettime(CLOCK_THREAD_CPUTIME_ID) syscalls
READY_KEPT = 64  # ready pairs a WaitRecord keeps: a ring of 4,096 full lists of 1,000 fds
# would hold millions of objects, and the allocator's churn would slow the server itself


class WaitRecord(NamedTuple):
    """One wait call: when it started, what it was told, how long it blocked, what came back."""

    seq: int
    start: float  # time.monotonic()
    timeout: float | None  # seconds; None blocks until something is ready
    duration: float  # seconds spent inside the call
    registered: int  # fds registered when it ran
    # The first READY_KEPT ready fds, flat: fd, events, fd, events, ... (a tuple per pair,
    # kept for thousands of waits, kept the garbage collector busy). pairs() pairs them.
    ready: tuple[int, ...]
    count: int  # how many fds were ready (may be more than `ready` keeps)
    # CPU seconds the thread spent inside the call, on the probes: calls made with no
    # timeout every CPU_SAMPLE_EVERY or so, which return at once, so this is what looking
    # at the fds costs (the kernel's scan, mostly); None on every other call.
    cpu: float | None = None

    def pairs(self) -> Iterator[tuple[int, int]]:
        """The (fd, events) pairs of `ready`."""
        it = iter(self.ready)
        return zip(it, it)


# WaitRecord._make without its Python-level call: the engine makes one per wait.
wait_record = partial(tuple.__new__, WaitRecord)


class TcpInfo(NamedTuple):
    state: str  # ESTABLISHED, CLOSE_WAIT, ...
    rtt_us: int
    rttvar_us: int
    rto_us: int
    retransmits: int
    unacked: int  # on a listener: accept-queue length
    sacked: int  # on a listener: the backlog


class ConnView(NamedTuple):
    """One fd as the multiplexer sees it. Queue fields are None where not measured."""

    cid: int  # unique per connection for the engine's life (fds get reused)
    fd: int
    kind: str
    peer: str  # text from the network side: show it as plain text, never markup
    state: str
    interest: int  # muxtop event flags it is registered for
    last_events: int  # what the last wait reported for it
    last_ready: float | None  # monotonic time of that report
    out_buffer: int  # bytes queued in the application
    rx_queue: int | None  # kernel receive queue (FIONREAD)
    tx_queue: int | None  # kernel send queue (SIOCOUTQ)
    bytes_in: int
    bytes_out: int
    msgs_in: int
    msgs_out: int
    opened_at: float
    last_io_at: float  # last byte moved either way (idle = now - this)
    closed_at: float | None
    tcp: TcpInfo | None
    flags: str  # one letter each (FLAG_MEANINGS): "!P", "TD", "BF"...
    history: tuple[tuple[float, str], ...]  # (monotonic time, state) transitions
    note: str  # why it closed, or what it is (e.g. "epoll fd 5")
    watched_by: tuple[int, ...] = ()  # attach: the epoll fds that watch it


# ConnView.flags: one vocabulary for every source, a letter a marker.
FLAG_FINDING = "!"  # a finding names the fd
FLAG_PAUSED = "P"  # reading paused by a person
FLAG_BACKPRESSURE = "B"  # out-buffer over the high-water mark: not reading
FLAG_PENDING = "E"  # pending edge: the engine will read on without waiting for an event
FLAG_FLOOD = "F"  # a client of a flood the dashboard launched
FLAG_EDGE = "T"  # registered edge-triggered (EPOLLET)
FLAG_ONESHOT = "O"  # registered oneshot, armed
FLAG_DISARMED = "D"  # a oneshot that fired and was never re-armed: reports nothing
FLAG_EXCLUSIVE = "X"  # EPOLLEXCLUSIVE
FLAG_TOXIC = "~"  # a proxy's leg: a toxic applies to what it reads (muxtop/proxy/toxics.py)
FLAG_RECV = "<"  # uring/completion: a recv operation in flight (the kernel owns its buffer)
FLAG_SEND = ">"  # uring/completion: a send operation in flight
FLAG_MEANINGS = {
    FLAG_FINDING: "a diagnosis names it",
    FLAG_PAUSED: "reading paused by you",
    FLAG_BACKPRESSURE: "backpressure: out-buffer over high water",
    FLAG_PENDING: "pending edge: more to read without waiting",
    FLAG_FLOOD: "flood client",
    FLAG_EDGE: "edge-triggered (EPOLLET)",
    FLAG_ONESHOT: "oneshot, armed",
    FLAG_DISARMED: "oneshot, fired and never re-armed",
    FLAG_EXCLUSIVE: "EPOLLEXCLUSIVE",
    FLAG_TOXIC: "a toxic applies to what this leg reads (proxy)",
    FLAG_RECV: "io_uring recv in flight",
    FLAG_SEND: "io_uring send in flight",
}
EVIDENCE_FDS = "fds"  # the evidence key of a process-wide finding that names fds
# A proxied connection's peer names its partner leg: "127.0.0.1:5000 ⇄ fd 12" (the client's),
# "upstream 127.0.0.1:6379 ⇄ fd 11" (the upstream's). The views find the pair by it.
PAIR_MARK = " ⇄ fd "
PROXY = "proxy"  # Snapshot.protocol of a proxy starts with it: "proxy → 127.0.0.1:6379"


def partner_of(view: ConnView, views: tuple[ConnView, ...]) -> ConnView | None:
    """The other leg of a proxied pair, if `view` is one and its partner is among `views`:
    the row whose peer names `view`'s fd back (an fd number alone may have been reused)."""
    _, mark, fd = view.peer.rpartition(PAIR_MARK)
    if not mark or not fd.isdigit():
        return None
    back = f"{PAIR_MARK}{view.fd}"
    for other in views:
        if other.fd == int(fd) and other.peer.endswith(back) and other.cid != view.cid \
                and abs(other.cid - view.cid) == 1:
            return other
    return None


class Diagnosis(NamedTuple):
    """A finding: what looks wrong, in plain words, and the numbers behind it."""

    kind: str  # stuck-read, stuck-write, busy-loop, fd-pressure, interest-mismatch, ...
    fd: int | None  # None: about the whole process
    explanation: str
    evidence: tuple[tuple[str, object], ...]
    since: float  # monotonic time first seen

    def named_fds(self) -> tuple[int, ...]:
        """The fds it is about: its own, or those a process-wide finding names in its "fds"
        evidence."""
        if self.fd is not None:
            return (self.fd,)
        return tuple(dict(self.evidence).get(EVIDENCE_FDS, ()))

    def as_json(self) -> dict:
        return {"kind": self.kind, "fd": self.fd, "explanation": self.explanation,
                "evidence": dict(self.evidence)}


class Notice(NamedTuple):
    """Something the engine wants a person to know: a refused switch, an error."""

    seq: int
    at: float
    level: str  # "info", "warning", "error"
    text: str


class ProcessStats(NamedTuple):
    pid: int
    name: str
    cpu_percent: float
    rss: int
    num_fds: int
    fd_limit: int
    threads: int
    status: str = ""  # attach: psutil's word (sleeping, running, stopped...); "" unknown


STATUS_STOPPED = "stopped"  # ProcessStats.status of a process stopped by a signal (state T)
STOPPED_NOTE = ("stopped by a signal, SIGSTOP or Ctrl-Z: it reads nothing until SIGCONT, so "
                "read findings wait")


class Rates(NamedTuple):
    """Per-second figures over about the last second."""

    waits: float
    events: float
    bytes_in: float
    bytes_out: float
    accepts: float
    ready_per_wait: float
    wait_p50: float  # seconds
    wait_p99: float
    wait_cpu: float = 0.0  # median CPU seconds of the measured wait calls
    registered_per_wait: float = 0.0  # mean fds registered per call, over the same second
    scanned_per_wait: float = 0.0  # mean fds the kernel looked at per call (select and poll:
    # every registered fd; epoll: the ready ones)


class Totals(NamedTuple):
    waits: int
    events: int
    bytes_in: int
    bytes_out: int
    accepted: int
    closed: int
    accept_errors: int  # EMFILE/ENFILE and other accept failures
    rejected: int  # accepted then closed at once: reset already, or the backend refused it
    # Closed by a protection (engine/guards.py): --idle-timeout, --header-timeout,
    # --max-out-buffer. Later fields: defaults, so an older plain form still reads.
    closed_idle: int = 0
    closed_header: int = 0
    closed_out_buffer: int = 0
    probes: int = 0  # of `waits`, the calls made only to time a scan (WaitRecord.cpu)


class ProcessInfo(NamedTuple):
    """The process a read-only source looks at (attach)."""

    pid: int
    cmdline: str  # the target's text: show it plain, escaped
    stuck_after: float  # seconds a queue must stay stuck to count
    netns: str = ""  # "": muxtop's own network namespace; else the target's (net:[...])
    # Where its threads are blocked now, a line per place (attach/threads.py): the target's
    # text (thread names), shown plain
    threads: tuple[str, ...] = ()


class Watch(NamedTuple):
    """One registration in an epoll interest list, as /proc/PID/fdinfo shows it."""

    fd: int  # the fd number it was registered under
    mask: int  # the app's mask plus ERR|HUP, which the kernel adds (kernel.epoll decodes it)
    data: int  # epoll_event.data as the app set it
    stale: str  # "": the fd is live; else why the registration outlives it (STALE_*)


class WaitCall(NamedTuple):
    """What a traced wait call was beyond its WaitRecord (attach --trace): Snapshot.wait_calls
    runs parallel to Snapshot.waits, one per record, same seq."""

    seq: int
    tid: int  # the thread that waited
    syscall: str  # epoll_wait, epoll_pwait, epoll_pwait2, poll, ppoll, select, pselect6
    epfd: int  # the epoll fd waited on; -1 for poll and select
    # epoll `data` values no registration of epfd had when the trace was read: each is a
    # ready pair with fd -1 in the WaitRecord, in order (the app closed the fd meanwhile)
    unmapped: tuple[int, ...] = ()
    error: str = ""  # EINTR and the like: the call returned no list at all


class FdIo(NamedTuple):
    """One fd's reads and writes as the tracer saw them (attach --trace with reads/writes).
    Times are monotonic; None: never seen."""

    fd: int
    reads: int  # read, recvfrom, recvmsg, readv calls
    read_bytes: int
    last_read_at: float | None
    last_read: int  # what the last read returned: bytes, 0 at EOF, -1 an error
    last_read_asked: int  # bytes it asked for; -1 unknown (recvmsg, readv)
    eagain_at: float | None  # the last read that found nothing (EAGAIN)
    writes: int  # write, sendto, sendmsg, writev calls
    written_bytes: int
    last_write_at: float | None
    write_eagain_at: float | None  # the last write the kernel refused (EAGAIN: send queue full)


class TraceInfo(NamedTuple):
    """The tracer of an attached process's wait calls, as it stands (attach --trace)."""

    tracer: str  # "bpftrace" or "strace"
    state: str  # TRACE_* below
    note: str  # what a person must know: strace's slowdown, why it stopped
    since: float  # monotonic: when tracing began
    waits: int  # wait calls seen so far
    io_calls: int  # reads and writes seen so far (0 when only waits are traced)
    io: bool  # reads and writes are traced too
    lost: int  # events the tracer dropped or lines it printed that could not be read
    # the share of its lines lost over the rates' window: the rates are scaled up by it
    loss_share: float = 0.0
    counted: int = 0  # wait calls the kernel counted (bpftrace), itemized or not; 0 unknown


TRACE_STARTING, TRACE_TRACING, TRACE_STOPPED = "starting", "tracing", "stopped"


# How a stepped wait's reading of one fd ended (FdStep.read_end).
READ_ONE = "one"  # level and oneshot: one recv per readiness; the next wait says if more is left
READ_SHORT = "short"  # edge: a read returned less than asked, so the queue was empty then
READ_EAGAIN = "eagain"  # edge: read until recv failed with EAGAIN
READ_FULL = "full"  # edge: the reads filled the budget; the fd is read again without waiting
READ_NAIVE = "naive"  # edge with the naive-edge lab: one read per edge, the rest left behind
READ_EOF = "eof"  # the peer's FIN: recv returned nothing


class FdStep(NamedTuple):
    """What the engine did with one fd in a stepped wait call (step mode)."""

    fd: int
    events: int  # what the wait reported; 0: not reported, serviced from the pending list
    role: str  # "connection", "listener", "control" (a command arrived), "gone" (closed);
    # a proxy's legs: "client leg ⇄ fd N", "upstream leg ⇄ fd N"
    read: int  # bytes received
    read_end: str  # READ_* above; "" when it did not read
    sent: int  # bytes sent
    queued: int  # bytes the kernel still holds for us to read, after; -1 unknown or closed
    out: int  # bytes in muxtop's out-buffer, after (what the kernel did not take yet)
    interest_before: int
    interest_after: int
    rearmed: bool  # oneshot: the kernel disarmed it and the engine armed it again
    accepted: tuple[int, ...]  # the listener: fds of the connections it accepted
    closed: str  # why the connection ended in this step; "" while it is open
    pending: bool  # edge: left on the pending list, to read again without waiting


class StepInfo(NamedTuple):
    """Step mode: the engine stops before each wait call and makes one per step (`.`)."""

    steps: int  # wait calls stepped since step mode began
    seq: int  # the last stepped wait call; 0 before the first
    count: int  # ready fds it returned (fds holds the first READY_KEPT, plus pending ones)
    fds: tuple[FdStep, ...] = ()


class ToxicView(NamedTuple):
    """One toxic of a proxy, in toxiproxy's words (muxtop/proxy/toxics.py)."""

    name: str
    type: str  # latency, bandwidth, slicer, slow_close, timeout, reset_peer, limit_data, noop
    stream: str  # TOXIC_STREAMS: upstream (client -> server), downstream (server -> client)
    toxicity: float  # the share of connections it applies to, drawn once per connection
    attributes: tuple[tuple[str, int], ...]  # (name, value) in its type's order: latency, ...
    legs: tuple[int, ...] = ()  # fds of the open legs it applies to now (the first LEGS_KEPT)
    applied: int = 0  # how many open legs it applies to (legs may keep fewer)


class ProxyView(NamedTuple):
    """One proxy as toxiproxy models it: Snapshot.proxies, when muxtop is a proxy."""

    name: str
    listen: str  # the bound address; text a user (or the API) gave: show it plain
    upstream: str
    enabled: bool
    toxics: tuple[ToxicView, ...]  # in the order they were added (each stream's chain)

    def as_json(self) -> dict:
        """toxiproxy's JSON shape of a proxy (GET /proxies/{name}), each toxic with the legs
        it applies to beside it."""
        return {"name": self.name, "listen": self.listen, "upstream": self.upstream,
                "enabled": self.enabled,
                "toxics": [{"name": t.name, "type": t.type, "stream": t.stream,
                            "toxicity": t.toxicity, "attributes": dict(t.attributes),
                            "legs": list(t.legs), "applied": t.applied} for t in self.toxics]}


TOXIC_STREAMS = ("upstream", "downstream")  # toxiproxy's words, ToxicView.stream
LEGS_KEPT = 64  # fds a ToxicView names: the rest are counted (ToxicView.applied)


STALE_CLOSED = "fd closed, file still open elsewhere"
STALE_REUSED = "fd number now names another file"


class EpollSet(NamedTuple):
    fd: int
    watches: tuple[Watch, ...]  # by fd


class SocketInfo(NamedTuple):
    """One socket fd of an attached process as /proc/net and sock_diag describe it."""

    fd: int
    inode: int
    proto: str  # tcp, tcp6, udp, udp6, unix; "" when unknown
    local: str  # the target's text (a unix path): show it plain
    peer: str
    tcp_state: str  # "" when not TCP
    accept_queue: int | None  # listeners only
    backlog: int | None  # listeners only; None when sock_diag could not tell
    unix_type: str = ""  # stream, dgram, seqpacket
    unix_state: str = ""  # LISTEN, CONNECTED, ...


class RingView(NamedTuple):
    """An io_uring instance: the engine's own (the uring backend), as its rings and counters
    say, or another process's (attach), as /proc/PID/fdinfo says (-1: not known there)."""

    fd: int
    mode: str  # the engine's: "readiness" or "completion"; "" for another process's ring
    sq_entries: int
    cq_entries: int
    sq_head: int  # how far the kernel has consumed submissions
    sq_tail: int  # how far the application has written them
    cq_head: int  # how far the application has reaped completions
    cq_tail: int  # how far the kernel has posted them
    in_flight: int  # requests the kernel holds: armed polls, recv/send not yet completed
    cq_overflow: int  # the kernel's count of completions that found the CQ full
    enters: int  # io_uring_enter calls (-1 unknown)
    submitted: int  # SQEs the kernel took (-1 unknown)
    completed: int  # CQEs reaped (-1 unknown)
    features: int  # IORING_FEAT_* the kernel offered (-1 unknown)
    sq_thread: int = -1  # the SQPOLL kernel thread's pid; -1 none


SOURCE_TRACED = "traced"  # Snapshot.source of an attached process whose wait calls are traced


@dataclass(frozen=True, eq=False, slots=True)
class Snapshot:
    """eq=False: a new Snapshot is always "changed"; compare by identity, not contents."""

    source: str  # the kind of picture: "engine" (a server of muxtop's), "attach" (another
    # process) or "traced" (another process and its wait calls, attach --trace); the UI
    # picks its columns and sections by it, once per source
    taken_at: float  # monotonic
    wall_time: float  # time.time(), for display
    started_at: float  # monotonic
    backend: str
    trigger: str
    protocol: str
    listen: str
    connections: tuple[ConnView, ...]
    waits: tuple[WaitRecord, ...]  # oldest first
    totals: Totals
    rates: Rates
    process: ProcessStats | None
    registered: int
    open_connections: int
    notices: tuple[Notice, ...] = ()
    diagnoses: tuple[Diagnosis, ...] = ()
    proxies: tuple[ProxyView, ...] = ()  # a proxy (--upstream, --api): each and its toxics
    lab: frozenset[str] = frozenset()
    refused: str | None = None  # the last refused switch, while it is recent
    running: bool = True  # False: the engine stopped, or the attached process exited
    error: str | None = None  # why the engine stopped, when it died
    target: ProcessInfo | None = None  # attach: the process looked at
    epoll: tuple[EpollSet, ...] = ()  # attach: its epoll instances, by fd
    sockets: tuple[SocketInfo, ...] = ()  # attach: its sockets, by fd
    wait_calls: tuple[WaitCall, ...] = ()  # attach --trace: parallel to waits
    trace: TraceInfo | None = None  # attach --trace: the tracer
    fd_io: tuple[FdIo, ...] = ()  # attach --trace: reads and writes per fd, by fd
    step: StepInfo | None = None  # the engine in step mode; None while it runs free
    # The connections are listed pinned rows first (listener, control, epoll), then the rest,
    # each part by fd (a closed row after the open one that reuses its fd): the table's
    # default order, which the UI then takes as it is. The engine's promise; others' not.
    fd_order: bool = False
    rings: tuple[RingView, ...] = ()  # io_uring instances: the engine's own, or attach's
