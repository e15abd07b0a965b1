"""Step mode's bookkeeping: what the engine did with each fd of one stepped wait call.

The loop itself does not change for it (engine/loop.py): while stepping it stops between two
wait calls, in its after-wait chores, and only there. Before a step the Stepper notes each
connection's counters; after it, the wait's ready list (the newest record of the ring) and
the counters again say what was read (and why the reading ended), sent, re-armed, accepted
and closed. Cost is paid only while stepping, never in the hot loop.
"""

from __future__ import annotations

from collections import deque
from concurrent.futures import Future
from typing import TYPE_CHECKING, NamedTuple

from muxtop.backends import EDGE, ONESHOT
from muxtop.commands import Outcome
from muxtop.events import READ
from muxtop.kernel.probes import rx_queue
from muxtop.snapshot import (
    CLOSED,
    READ_EAGAIN,
    READ_EOF,
    READ_FULL,
    READ_NAIVE,
    READ_ONE,
    READ_SHORT,
    FdStep,
    StepInfo,
)

if TYPE_CHECKING:
    from muxtop.engine.connection import Connection
    from muxtop.engine.state import EngineState
    from muxtop.engine.telemetry import Telemetry


class _Before(NamedTuple):
    conn: Connection
    bytes_in: int
    bytes_out: int
    interest: int


class Stepper:
    def __init__(self, state: EngineState, telemetry: Telemetry) -> None:
        self.state = state
        self.telemetry = telemetry
        self.granted: deque[Future] = deque()  # steps asked for, each answered when made
        self.info = StepInfo(steps=0, seq=0, count=0)
        self._before: dict[int, _Before] | None = None  # None: no step under way
        self._pending: tuple[int, ...] = ()
        self._answering: Future | None = None

    def grant(self, future: Future) -> None:
        self.granted.append(future)

    def begin(self) -> None:
        """A step is about to be made: note every connection as it stands."""
        self._answering = self.granted.popleft()
        state = self.state
        self._before = {fd: _Before(c, c.bytes_in, c.bytes_out, c.interest)
                        for fd, c in state.conns.items()}
        self._pending = tuple(state.pending)

    def finish(self) -> None:
        """The step's wait call was made and every fd it reported served: say what
        happened."""
        before = self._before
        if before is None:
            return  # stopped before the first step: nothing was stepped yet
        self._before = None
        record = self.telemetry.ring[-1]
        ready = record.ready
        pairs = dict(zip(ready[::2], ready[1::2]))
        for fd in self._pending:
            pairs.setdefault(fd, 0)  # read from the pending list, not reported
        for fd in list(pairs):  # a proxy: what a leg read went out through its partner
            was = before.get(fd)
            partner = getattr(was.conn, "partner", None) if was is not None else None
            if partner is not None and partner.fd in before:
                pairs.setdefault(partner.fd, 0)
        fds = tuple(self._fd_step(fd, events, before) for fd, events in pairs.items())
        self.info = StepInfo(self.info.steps + 1, record.seq, record.count, fds)

    def answer(self) -> None:
        """Answer the step just made (after the Snapshot that shows it is out)."""
        if self._answering is not None:
            info = self.info
            words = "nothing ready" if not info.count else f"{info.count} ready"
            self._answering.set_result(Outcome(True, f"wait #{info.seq}: {words}"))
            self._answering = None

    def end(self, reason: str) -> None:
        """Step mode ends (continue, or the engine stops): answer every step still asked."""
        if self._answering is not None:
            self._answering.set_result(Outcome(False, f"step cut short: {reason}"))
            self._answering = None
        while self.granted:
            self.granted.popleft().set_result(Outcome(False, f"no step made: {reason}"))

    def _fd_step(self, fd: int, events: int, before: dict[int, _Before]) -> FdStep:
        state = self.state
        if fd == state.listen_fd:
            new = tuple(f for f in state.conns if f not in before)  # accepted in this step
            interest = state.listen_interest
            return FdStep(fd, events, "listener", 0, "", 0, -1, 0, READ, interest, False,
                          new, "", False)
        if fd == state.control_fd:
            return FdStep(fd, events, "control", 0, "", 0, -1, 0, READ, READ, False, (), "",
                          False)
        was = before.get(fd)
        if was is None:  # closed before this step, or not ours
            return FdStep(fd, events, "gone", 0, "", 0, -1, 0, 0, 0, False, (), "", False)
        conn = was.conn
        read = conn.bytes_in - was.bytes_in
        closed = conn.note if conn.state is CLOSED else ""
        pending = fd in state.pending
        queued = -1 if closed else _queued(fd)
        trigger = state.backend.trigger
        role = "connection"
        if getattr(conn, "role", None) is not None:  # a proxy's leg
            partner = conn.partner
            role = f"{conn.role} leg" + ("" if partner is None else f" ⇄ fd {partner.fd}")
        return FdStep(
            fd, events, role, read,
            self._read_end(conn, events, read, pending), conn.bytes_out - was.bytes_out,
            queued, len(conn.out), was.interest, conn.interest,
            trigger == ONESHOT and bool(events) and bool(conn.interest), (), closed, pending)

    def _read_end(self, conn: Connection, events: int, read: int, pending: bool) -> str:
        """Why the reading stopped where it did, from what was read: every edge read asks
        read_size bytes, so a total that is not a multiple of it ended on a short read."""
        if not read and not conn.peer_closed:
            return "" if not events & READ or not conn.interest & READ else READ_EAGAIN
        if conn.peer_closed and not read % self.state.config.read_size:
            return READ_EOF
        if self.state.backend.trigger != EDGE:
            return READ_ONE
        if pending:
            return READ_FULL
        if "naive-edge" in self.state.lab:
            return READ_NAIVE
        return READ_SHORT if read % self.state.config.read_size else READ_EAGAIN


def _queued(fd: int) -> int:
    try:
        queued = rx_queue(fd)
    except OSError:
        return -1
    return -1 if queued is None else queued
