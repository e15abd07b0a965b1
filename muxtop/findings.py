"""What the detectors of every source share: the kinds of finding, their thresholds, the
evidence keys, the facts about another process's sockets that attach and trace read
(SocketFacts), and the first-seen stamp that makes a finding's `since` survive re-detection.

The engine's detectors (engine/diagnose.py) see inside the loop; attach's (attach/diagnose.py)
see another process from /proc. Both speak this vocabulary, so the views draw either alike.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from typing import NamedTuple

from muxtop.events import READ, WRITE, long
from muxtop.kernel import epoll
from muxtop.snapshot import EVIDENCE_FDS as FDS  # noqa: F401 - part of the vocabulary
from muxtop.snapshot import Diagnosis, WaitRecord

STUCK_READ = "stuck-read"  # bytes wait in the kernel and nobody will read them
STUCK_WRITE = "stuck-write"  # output waits and nobody will (or can) send it
BUSY_LOOP = "busy-loop"  # many ready fds per second, no bytes moving
FD_PRESSURE = "fd-pressure"  # near or at the fd limit (or select's FD_SETSIZE)
INTEREST_MISMATCH = "interest-mismatch"  # the kernel's interest list and the app's disagree
ACCEPT_QUEUE_FULL = "accept-queue-full"  # more connections wait for accept() than the backlog
CLOSE_WAIT = "close-wait"  # peers closed, the app never closed its end
NEVER_READ = "never-read"  # reported readable again and again, and never read (attach --trace)
UNREAD = "unread"  # bytes wait on an fd epoll reports level-triggered, or watches not at all
NO_REPLY = "no-reply"  # a request went out, was acknowledged, and nothing came back (attach)
# The proxy's (muxtop --upstream): a pair is two connections, the client's and the upstream's.
UPSTREAM_FAILED = "upstream-failed"  # refused, unreachable, connect timeout, closed first
UPSTREAM_NOT_READING = "upstream-not-reading"  # bytes for the upstream pile up, unsent
CLIENT_NOT_READING = "client-not-reading"  # bytes for the client pile up, unsent
ONE_WAY = "one-way"  # a pair moves bytes one way, and nothing comes back
CQ_OVERFLOW = "cq-overflow"  # an io_uring's completions found its CQ full (attach)
SQ_STALLED = "sq-stalled"  # an io_uring's submissions written and left unconsumed (attach)
KINDS = (STUCK_READ, STUCK_WRITE, BUSY_LOOP, FD_PRESSURE, INTEREST_MISMATCH,
         ACCEPT_QUEUE_FULL, CLOSE_WAIT, NEVER_READ, UNREAD, NO_REPLY, UPSTREAM_FAILED,
         UPSTREAM_NOT_READING, CLIENT_NOT_READING, ONE_WAY, CQ_OVERFLOW, SQ_STALLED)
SHORT = {ACCEPT_QUEUE_FULL: "accept-full", INTEREST_MISMATCH: "mismatch",
         UPSTREAM_FAILED: "upstream", UPSTREAM_NOT_READING: "up-not-read",
         CLIENT_NOT_READING: "cl-not-read"}  # narrow columns

FD_PRESSURE_SHARE = 0.8  # share of the fd limit (or of FD_SETSIZE on select) that counts
STUCK_AFTER = 2.0  # default seconds before a queue that does not move counts as stuck
# A loop spins when its wait calls return at once, with fds ready, and no bytes move. A rate
# alone says it only on an idle machine: a spinning loop sharing its core makes a few hundred
# calls a second, so it is the calls' not blocking (the median under a millisecond) that
# tells, over a rate well above an idle loop's few calls a second.
BUSY_WAITS_PER_S = 200
BUSY_WAIT_P50 = 0.001  # seconds


def spinning(waits_per_s: float, events_per_s: float, bytes_per_s: float,
             wait_p50: float, settled_per_s: float = 0.0) -> bool:
    """Many wait calls a second that return at once with ready fds while under a byte per
    ready fd moves: a busy loop. `settled_per_s`: connections accepted or closed a second
    (where the source counts them), events that are work done though no byte moves: 500
    clients hanging up at once are not a spin."""
    idle_events = events_per_s - settled_per_s
    return (waits_per_s >= BUSY_WAITS_PER_S and wait_p50 < BUSY_WAIT_P50
            and idle_events >= waits_per_s * 0.5 and bytes_per_s <= idle_events)


BUSY_WAITS_LOOKED_AT = 200  # the newest wait records whose ready fds a busy loop names

# A finding before it is stamped: (kind, fd or None, explanation, evidence pairs).
Found = tuple[str, "int | None", str, tuple[tuple[str, object], ...]]


def busy_loop(waits_per_s: float, events_per_s: float, ready_per_wait: float,
              bytes_per_s: float, wait_p50: float, records: Iterable[WaitRecord],
              failing_listener: int | None = None, settled_per_s: float = 0.0) -> Found | None:
    """The busy-loop finding, in the same words whichever source makes it (the engine's
    telemetry, a trace of another process); None while the loop does not spin. `records`: the
    newest BUSY_WAITS_LOOKED_AT wait records, whose most often ready fds it names;
    `failing_listener`: the listening fd while accept() fails, when the source can tell."""
    if not spinning(waits_per_s, events_per_s, bytes_per_s, wait_p50, settled_per_s):
        return None
    counts: Counter = Counter()
    for record in records:
        counts.update(record.pairs())
    # sorted, not most_common(n): that imports heapq lazily, which fails once out of fds
    top = sorted(counts.items(), key=lambda item: item[1], reverse=True)[:5]
    named = [(fd, events) for (fd, events), _ in top]
    if failing_listener is not None and failing_listener in {fd for fd, _ in named}:
        why = "the listener stays readable while accept() fails (out of fds, no back-off)"
    elif named and all(events & WRITE and not events & READ for _, events in named):
        why = "fds are reported writable with nothing to write (WRITE interest left on)"
    else:
        why = "the same fds are reported ready again and again, and nothing is read"
    return BUSY_LOOP, None, (
        f"{waits_per_s:,.0f} wait calls/s return {ready_per_wait:.1f} ready fds each but only "
        f"{bytes_per_s:,.0f} bytes/s move: {why}"), (
        ("waits_per_s", round(waits_per_s)), ("events_per_s", round(events_per_s)),
        ("bytes_per_s", round(bytes_per_s)), (FDS, tuple(fd for fd, _ in named)),
        ("events", tuple(long(events) for _, events in named)))


class SocketFacts(NamedTuple):
    """One socket fd of another process at one sample: the evidence every check of attach
    (attach/diagnose.py) and of attach --trace (trace/diagnose.py) reads."""

    fd: int
    inode: int
    kind: str  # KIND_CONN, KIND_LISTENER or KIND_OTHER
    proto: str  # tcp, tcp6, udp, udp6, unix, "" when unknown
    tcp_state: str  # "" when not TCP
    rx_queue: int | None  # None: not measured (unix sockets, listeners)
    tx_queue: int | None
    accept_queue: int | None  # listeners only
    backlog: int | None  # listeners only; None when sock_diag could not tell
    watches: tuple[tuple[int, int], ...]  # (epoll fd, mask) of every epoll set watching it
    # From sock_diag's tcp_info; None when unknown (not TCP, another network namespace).
    app_read: int | None = None  # bytes the app has read from the socket so far
    bytes_received: int | None = None  # bytes that have arrived so far
    bytes_acked: int | None = None  # bytes the peer has acknowledged so far
    # When data last went out, came in, and an ACK came in (monotonic, from tcp_info's
    # last_data_sent, last_data_recv, last_ack_recv): true times, not since muxtop attached.
    # A connection that never moved data has its handshake's time. None when unknown.
    sent_at: float | None = None
    received_at: float | None = None
    ack_at: float | None = None
    peer: str = ""  # the remote address, "" for none or unknown
    outgoing: bool = False  # the process connected out (its local port is none it listens on)


# Evidence that says how long the finding's condition has lasted: its `since` is then when
# the condition began, not when a detector first ran past the threshold, so the "for 4.5s"
# shown beside a finding is the stall's own length (it was 2.5 s beside "for 4.5 s").
LASTED_KEYS = ("seconds_without_progress", "seconds_since_read")


def _began(now: float, evidence) -> float:
    lasted = next((value for key, value in evidence if key in LASTED_KEYS), None)
    return now - lasted if isinstance(lasted, int | float) and lasted > 0 else now


class FirstSeen:
    """Stamps findings with when each (kind, fd) began (first made, or what its evidence says
    it has lasted), for as long as every run keeps making it; one that lapses starts afresh."""

    def __init__(self) -> None:
        self._since: dict[tuple[str, int | None], float] = {}

    def stamp(self, now: float, found: Iterable[Found]) -> tuple[Diagnosis, ...]:
        since: dict[tuple[str, int | None], float] = {}
        diagnoses = []
        for kind, fd, explanation, evidence in found:
            began = _began(now, evidence)
            first = since[kind, fd] = min(self._since.get((kind, fd), began), began)
            diagnoses.append(Diagnosis(kind, fd, explanation, evidence, first))
        self._since = since
        return tuple(diagnoses)


def short(kind: str) -> str:
    return SHORT.get(kind, kind)


MASK_KEYS = frozenset({"mask", "kernel"})  # evidence holding an epoll mask (an int)


def evidence_text(key: str, value: object) -> str:
    """One evidence value as a person reads it: masks in hex and words, lists joined."""
    if value is None:
        return "-"
    if key in MASK_KEYS and isinstance(value, int):
        return f"0x{value:08x} ({epoll.decode(value)})"
    if isinstance(value, tuple):
        return ", ".join(map(str, value)) or "-"
    return str(value)


# Evidence keys as a person reads them; any other key reads with its underscores as spaces.
EVIDENCE_LABELS = {
    "rx_queue": "kernel rx queue (bytes)", "tx_queue": "kernel tx queue (bytes)",
    "out_buffer": "app out-buffer (bytes)", "seconds_since_read": "seconds since a read",
    "seconds_without_progress": "seconds without progress", "app_read_bytes": "bytes the app read",
    "epoll_fd": "epoll fd", "fd_setsize": "FD_SETSIZE", "fd_limit": "fd limit (RLIMIT_NOFILE)",
    "open_fds": "open fds", "num_fds": "open fds", "waits_per_s": "waits per second",
    "events_per_s": "ready fds per second", "bytes_per_s": "bytes per second",
    "last_events": "last events", "tx_queue_at_start": "tx queue at the start (bytes)",
    "bytes_acked": "bytes acknowledged", "accept_queue": "accept queue", "fds": "fds",
}


def evidence_label(key: str) -> str:
    return EVIDENCE_LABELS.get(key, key.replace("_", " "))
