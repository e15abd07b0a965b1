"""io_uring in readiness mode: IORING_OP_POLL_ADD tells the engine an fd is ready, and the
engine reads as it does on epoll. epoll's job done through a ring (kernel/uring.py).

Each registered fd has one poll request in the kernel, named by its user_data: the fd in the
low 32 bits, a generation above, so a completion of a request since removed or replaced (a
modify, an fd closed and reused) is told apart and dropped. Requests are written to the SQ as
the engine registers and modifies; they reach the kernel with the next wait's
io_uring_enter, which submits and waits in one syscall.

The trigger modes map onto poll requests:
- edge: a multishot poll (IORING_POLL_ADD_MULTI) stays armed and posts a CQE per wake-up of
  the socket, as EPOLLET reports each arrival;
- level: a single-shot poll, armed again before the next wait; arming looks at the socket at
  once, so an fd with bytes left completes again straight away;
- oneshot: a single-shot poll that stays disarmed until the engine modifies the fd;
- completion: the fds the engine registers (its listener and control fd) are polled as in
  level, and the engine submits recv and send operations on its connections (`submit`,
  `cancel`; engine/completion.py). Their completions go to `on_complete` as they are reaped,
  and the wait reports those fds with RECVD or SENT.
"""

from __future__ import annotations

import errno
from collections.abc import Callable

from muxtop.backends.base import COMPLETION, EDGE, LEVEL, ONESHOT, Backend, BackendError
from muxtop.events import ERROR, HANGUP, RDHUP, READ, RECVD, SENT, WRITE
from muxtop.kernel import uring

_GEN = 1 << 32
_FD = _GEN - 1
_IGNORE = 1 << 63  # user_data of the removals and cancels: their own completions say nothing
_OP = 1 << 62  # user_data of a recv or send the engine submitted
# user_data: fd in bits 0-31, a generation in 32-55, an operation's opcode in 56-61.
_GEN_MASK = (1 << 24) - 1
_DONE = {uring.OP_RECV: RECVD, uring.OP_SEND: SENT}
_EVENTS = READ | WRITE | ERROR | HANGUP | RDHUP  # muxtop's flags are poll's bits
SQ_ENTRIES = 1024  # a switch re-registers every fd: prep submits by itself when it is full
CQ_ENTRIES = 16384  # past it the kernel keeps completions on a list (nodrop), slower


class UringBackend(Backend):
    name = "uring"
    triggers = (LEVEL, EDGE, ONESHOT, COMPLETION)

    @classmethod
    def unavailable(cls) -> str | None:
        return uring.unavailable()

    def __init__(self, trigger: str = LEVEL) -> None:
        super().__init__(trigger)
        why = uring.unavailable()
        if why is not None:
            raise BackendError(f"uring is unavailable: {why}")
        try:
            self.ring = uring.Ring(SQ_ENTRIES, CQ_ENTRIES)
        except OSError as exc:
            raise BackendError(f"uring: {exc.strerror or exc}") from None
        self._multi = uring.POLL_ADD_MULTI if trigger == EDGE else 0
        self._extra = RDHUP if trigger == EDGE else 0  # as epoll: see EpollBackend
        self._interest: dict[int, int] = {}
        self._armed: dict[int, int] = {}  # fd -> user_data of its live poll request
        self._fired: list[int] = []  # level: fds whose poll completed, to arm again
        self._gen = 0
        self.mode = "completion" if trigger == COMPLETION else "readiness"
        # Completion mode: told each recv or send completion (user_data, res); returns the
        # fd to report, or -1 to report none (its connection is gone).
        self.on_complete: Callable[[int, int], int] | None = None
        self.ops = 0  # recv and send operations in flight

    def submit(self, opcode: int, fd: int, addr: int, length: int) -> int:
        """Queue a recv or send on `fd` from/into the `length` bytes at `addr`, which the
        caller keeps alive and unmoved until its completion; returns its user_data."""
        self._gen += 1
        user_data = _OP | (self._gen & _GEN_MASK) << 32 | opcode << 56 | fd
        self.ring.prep(opcode, fd, user_data, addr=addr, length=length)
        self.ops += 1
        return user_data

    def cancel(self, user_data: int) -> None:
        """Ask the kernel to cancel an operation: it completes with -ECANCELED, or with what
        it had done if it won the race. Its buffer stays the kernel's until then."""
        self.ring.prep(uring.OP_ASYNC_CANCEL, -1, _IGNORE, addr=user_data)

    def _arm(self, fd: int, interest: int) -> None:
        self._gen += 1
        user_data = (self._gen & _GEN_MASK) * _GEN | fd
        self._armed[fd] = user_data
        self.ring.prep(uring.OP_POLL_ADD, fd, user_data, op_flags=interest | self._extra,
                       length=self._multi)

    def _disarm(self, fd: int) -> None:
        user_data = self._armed.pop(fd, None)
        if user_data is not None:
            self.ring.prep(uring.OP_POLL_REMOVE, -1, _IGNORE, addr=user_data)

    def register(self, fd: int, interest: int) -> None:
        self._interest[fd] = interest
        self._arm(fd, interest)

    def modify(self, fd: int, interest: int) -> None:
        # For oneshot this is also the re-arm. A removal and a new request: the kernel's
        # in-place update (IORING_POLL_UPDATE_EVENTS) fails when the request has just fired.
        self._interest[fd] = interest
        self._disarm(fd)
        self._arm(fd, interest)

    def unregister(self, fd: int) -> None:
        # Before the engine closes the fd: the removal names the request, not the fd, so it
        # works even once the fd number is reused.
        if self._interest.pop(fd, None) is not None:
            self._disarm(fd)

    def wait(self, timeout: float | None) -> list[tuple[int, int]]:
        ring = self.ring
        if self._fired:
            self._arm_fired()
        if timeout == 0 or ring.ready():
            if ring.pending:
                ring.enter()  # a poll armed on a ready socket completes during the submit
        else:
            ring.enter(1, timeout)
        found = ring.reap()
        if not found:
            return []
        return self._events_of(found)

    def _events_of(self, found: list[uring.Completion]) -> list[tuple[int, int]]:
        """One wait's completions as ready events, an (fd, events) per fd: the polls' masks,
        the recv and send operations' done bits; a poll that is over is listed to arm again."""
        armed = self._armed
        events: dict[int, int] = {}
        for user_data, res, flags in found:
            fd = user_data & _FD
            if user_data & _OP and not user_data & _IGNORE:
                self.ops -= 1
                fd = self.on_complete(user_data, res)
                if fd >= 0:
                    events[fd] = events.get(fd, 0) | _DONE[user_data >> 56 & 0x3F]
                continue
            if armed.get(fd) != user_data:
                continue  # removed or replaced since (or a cancel's own): its news is stale
            if res < 0:
                if res != -errno.ECANCELED:
                    events[fd] = events.get(fd, 0) | ERROR  # the recv that follows says what
                res = 0
            else:
                res &= _EVENTS
                if res:
                    events[fd] = events.get(fd, 0) | res
            if not flags & uring.CQE_F_MORE:
                del armed[fd]  # this request is over: level arms it again before the next wait
                if self.trigger != ONESHOT:
                    self._fired.append(fd)
        return list(events.items())

    def _arm_fired(self) -> None:
        """Level (and completion's polls): arm again what completed, so a socket with bytes
        left completes again at once."""
        interest = self._interest
        for fd in self._fired:
            if fd in interest and fd not in self._armed:
                self._arm(fd, interest[fd])
        self._fired.clear()

    def ring_figures(self) -> uring.RingFigures:
        return self.ring.figures()

    @property
    def in_flight(self) -> int:
        """Requests the kernel holds: the armed polls, and recv and send operations."""
        return len(self._armed) + self.ops

    def fileno(self) -> int:
        return self.ring.fd

    def close(self) -> None:
        self.ring.close()
