"""What a tracer reports, before it is mapped onto fds: one record per wait call and per read
or write, with the tracer's own times turned into time.monotonic()."""

from __future__ import annotations

from typing import NamedTuple

# The wait calls of every multiplexer, and the reads and writes whose results prove what the
# app did with a readiness report.
EPOLL_WAITS = ("epoll_wait", "epoll_pwait", "epoll_pwait2")
POLL_WAITS = ("poll", "ppoll")
SELECT_WAITS = ("select", "pselect6")
WAITS = EPOLL_WAITS + POLL_WAITS + SELECT_WAITS
MULTIPLEXER = {**dict.fromkeys(EPOLL_WAITS, "epoll"), **dict.fromkeys(POLL_WAITS, "poll"),
               **dict.fromkeys(SELECT_WAITS, "select")}  # the backend a wait call is of
CTL = "epoll_ctl"  # traced too: it says which fd each `data` value stands for, as it happens
EPOLL_CTL_ADD, EPOLL_CTL_DEL, EPOLL_CTL_MOD = 1, 2, 3
READS = ("read", "readv", "recvfrom", "recvmsg")
WRITES = ("write", "writev", "sendto", "sendmsg", "sendfile")  # sendfile: nginx's file path

NO_FD = -1  # WaitRecord pairs: an epoll `data` that maps to no fd (see WaitCall.unmapped)


class TracedWait(NamedTuple):
    """One wait call as traced. For epoll, `ready` holds the app's `data` values, not fds:
    session.py maps them through the interest list."""

    tid: int
    syscall: str
    start: float  # monotonic
    duration: float  # seconds blocked
    timeout: float | None  # seconds; None blocks until something is ready
    epfd: int  # -1 for poll and select
    registered: int  # fds asked about (poll's nfds, select's set bits); -1 for epoll
    ready: tuple[int, ...]  # flat: fd (or epoll data), events, ...; at most READY_KEPT pairs
    count: int  # what it returned: how many are ready; -1 on an error
    error: str = ""  # EINTR and the like


class TracedCtl(NamedTuple):
    """One successful epoll_ctl: fd `fd` registered in (or removed from) `epfd` with `data`."""

    tid: int
    at: float  # monotonic, when the call returned
    epfd: int
    op: int  # EPOLL_CTL_ADD, EPOLL_CTL_DEL, EPOLL_CTL_MOD
    fd: int
    data: int  # 0 for EPOLL_CTL_DEL (it takes no event)


class TracedIo(NamedTuple):
    """One read or write on an fd, as traced."""

    tid: int
    syscall: str
    at: float  # monotonic, when the call returned
    fd: int
    asked: int  # bytes asked for; -1 unknown (recvmsg, readv, sendmsg, writev)
    result: int  # bytes moved, 0 at EOF; -1 on an error
    error: str = ""  # EAGAIN (nothing to read, or no room to write), ECONNRESET...

    @property
    def is_read(self) -> bool:
        return self.syscall in READS


class TracedTotals(NamedTuple):
    """Every wait call that returned, and the ready fds they returned, counted in the kernel
    since tracing began (bpftrace): exact, whatever lines were lost or left out."""

    waits: int
    ready: int


class TracedIoSummary(NamedTuple):
    """One fd's reads and writes over a short span, summed where they happened (bpftrace adds
    them up in the kernel). Times are monotonic; None: none in the span."""

    fd: int
    reads: int
    read_bytes: int
    last_read: int  # the span's last read: bytes, 0 at EOF, -1 an error
    last_read_asked: int  # -1 unknown
    last_read_at: float | None
    eagain_at: float | None  # the span's last read that found nothing
    writes: int
    written: int
    last_write_at: float | None
    write_eagain_at: float | None

    @property
    def at(self) -> float:
        """When the latest of it happened (the order it is applied in)."""
        return max(t for t in (self.last_read_at, self.eagain_at, self.last_write_at,
                               self.write_eagain_at, 0.0) if t is not None)


# Poll's event bits, which select's three sets map onto (epoll shares the low ones).
POLLIN, POLLPRI, POLLOUT = 0x1, 0x2, 0x4
