"""Another process's io_uring instances, read-only, from /proc/PID/fdinfo/<ring fd>: the
queue heads and tails, the polls armed, the completions on the overflow list, the SQPOLL
thread. Beside its epoll sets; what a ring's own counters say (enters, features) stays
unknown (-1). And two findings: a CQ that overflowed, an SQ left unconsumed."""

from __future__ import annotations

from muxtop.findings import CQ_OVERFLOW, SQ_STALLED, Found
from muxtop.kernel import uring
from muxtop.snapshot import KIND_EPOLL, OPEN, ConnView, RingView

RING_LINK = "anon_inode:[io_uring]"


def read_rings(pid: int, links: dict[int, str]) -> tuple[RingView, ...]:
    """The rings among the process's fds (links: fd -> /proc/PID/fd link text), by fd."""
    rings = []
    for fd in sorted(fd for fd, link in links.items() if link == RING_LINK):
        try:
            fields = uring.read_fdinfo(fd, pid)
        except OSError:  # closed since the listing, or not ours to read
            continue
        if fields is None:
            continue
        rings.append(RingView(
            fd, "", fields.get("SqMask", -2) + 1, fields.get("CqMask", -2) + 1,
            fields["SqHead"], fields.get("SqTail", -1), fields.get("CqHead", -1),
            fields["CqTail"], fields["PollList"], fields["CqOverflowList"], -1, -1, -1, -1,
            fields.get("SqThread", -1)))
    return tuple(rings)


def ring_views(rings: tuple[RingView, ...], first: dict[int, float], now: float
               ) -> list[ConnView]:
    """A row per ring, pinned with the epoll fds; `first`: fd -> when it was first seen."""
    views = []
    for r in rings:
        at = first.get(r.fd, now)
        pending = (r.sq_tail - r.sq_head) & 0xFFFFFFFF
        ready = (r.cq_tail - r.cq_head) & 0xFFFFFFFF
        note = (f"io_uring: {pending} submissions pending, {ready} completions unreaped, "
                f"{r.in_flight} polls armed")
        views.append(ConnView(
            cid=-1 - r.fd, fd=r.fd, kind=KIND_EPOLL, peer="io_uring instance", state=OPEN,
            interest=0, last_events=0, last_ready=None, out_buffer=0, rx_queue=None,
            tx_queue=None, bytes_in=0, bytes_out=0, msgs_in=0, msgs_out=0, opened_at=at,
            last_io_at=at, closed_at=None, tcp=None, flags="", history=(), note=note))
    return views


class RingWatch:
    """Findings about another process's rings, kept across samples: completions waiting on
    the kernel's overflow list (the CQ was full: the process reaps slower than they come),
    and submissions written but left unconsumed (the process never called io_uring_enter for
    them, or its SQPOLL thread sleeps) for `stuck_after` seconds."""

    def __init__(self, stuck_after: float) -> None:
        self.stuck_after = stuck_after
        self._sq: dict[int, tuple[int, int, float]] = {}  # fd -> (sq_head, sq_tail, since)

    def review(self, now: float, rings: tuple[RingView, ...]) -> list[Found]:
        found: list[Found] = []
        sq = {}
        for r in rings:
            if r.cq_overflow > 0:
                found.append((CQ_OVERFLOW, r.fd, (
                    f"io_uring fd {r.fd}: {r.cq_overflow} completions found the CQ full "
                    f"({r.cq_entries} entries) and wait on the kernel's overflow list: the "
                    "process reaps completions slower than they arrive"),
                    (("overflow_list", r.cq_overflow), ("cq_entries", r.cq_entries),
                     ("unreaped", (r.cq_tail - r.cq_head) & 0xFFFFFFFF))))
            pending = (r.sq_tail - r.sq_head) & 0xFFFFFFFF
            if not pending:
                continue
            head, tail, since = self._sq.get(r.fd, (r.sq_head, r.sq_tail, now))
            if head != r.sq_head:
                since = now  # the kernel consumed some: not stalled
            sq[r.fd] = (r.sq_head, r.sq_tail, since)
            if now - since >= self.stuck_after:
                waker = ("its SQPOLL thread has not taken them" if r.sq_thread >= 0 else
                         "the process has not called io_uring_enter to submit them")
                found.append((SQ_STALLED, r.fd, (
                    f"io_uring fd {r.fd}: {pending} submissions written to the SQ have "
                    f"waited {now - since:.1f} s unconsumed: {waker}"),
                    (("pending", pending), ("sq_head", r.sq_head), ("sq_tail", r.sq_tail),
                     ("seconds", round(now - since, 1)))))
        self._sq = sq
        return found
