"""The engine's second read/write path: io_uring's completion mode (uring/completion).

On every other backend the engine is told an fd is ready and calls recv and send itself. Here
it hands the kernel a buffer with a recv operation, and the completion says how many bytes are
already in it; replies go out as send operations, which complete with the bytes the kernel
took. Interest keeps its meaning: READ is "a recv is in flight", WRITE "a send is" (while the
out-buffer holds bytes), so pausing, backpressure and closing work as elsewhere (`interest`).

The kernel owns a buffer from submission to completion: an Op keeps it (and the ctypes view
pinning its address) until its CQE has been reaped, even for a connection closed meanwhile.
Leaving the mode (`drain`) cancels every operation and waits for every completion: a recv that
beat its cancel delivered bytes, which go to the connection like any others.
"""

from __future__ import annotations

import ctypes
import errno
import os
import time
from collections.abc import Callable

from muxtop.backends.uring import UringBackend
from muxtop.engine.connection import Connection
from muxtop.events import READ, WRITE
from muxtop.kernel import uring
from muxtop.snapshot import CLOSED, FLAG_RECV, FLAG_SEND

DRAIN_TIMEOUT = 5.0  # seconds to wait for the cancelled operations' completions
SPARE_KEPT = 256  # buffers kept for reuse (of each size); past it one goes to the GC
# The recv a connection waits with is this small: every open connection has one in flight,
# so 20,000 idle clients would pin 1.3 GB at 64 KiB each (80 MB at this size). A recv that
# fills its buffer makes the next one full-sized, until one comes back short again.
SMALL_RECV = 4096


class Buffer:
    """Memory the kernel may read or write: a bytearray pinned at one address (a ctypes view
    holds an export, so it can never be resized and moved), the address looked up once."""

    __slots__ = ("data", "view", "pin", "addr")

    def __init__(self, size: int) -> None:
        self.data = bytearray(size)
        self.view = memoryview(self.data)
        self.pin = (ctypes.c_char * size).from_buffer(self.data)
        self.addr = ctypes.addressof(self.pin)


class Op:
    """One recv or send in flight: the connection, and the buffer the kernel owns until its
    completion."""

    __slots__ = ("conn", "opcode", "buffer")

    def __init__(self, conn: Connection, opcode: int, buffer: Buffer) -> None:
        self.conn = conn
        self.opcode = opcode
        self.buffer = buffer


class Completions:
    def __init__(self, backend: UringBackend, read_size: int,
                 reply: Callable[[Connection, bytes], bytes] | None, max_out: int | None,
                 update: Callable[[Connection, float], None],
                 close: Callable[[Connection, str, float], None],
                 too_much: Callable[[Connection, float], None]) -> None:
        self.backend = backend
        self._read_size = read_size
        self._reply = reply  # the protocol; None: echo
        self._max_out = max_out
        self._update = update  # the engine derives interest and state (Engine._update)
        self._close = close  # an operation failed: the connection ends
        self._too_much = too_much  # the out-buffer passed --max-out-buffer
        self._ops: dict[int, Op] = {}  # user_data -> Op
        self._recv: dict[int, int] = {}  # fd -> user_data of its newest recv
        self._send: dict[int, int] = {}  # fd -> user_data of its newest send
        self._done: dict[int, list[tuple[Op, int]]] = {}  # fd -> completions to handle
        self._spare: dict[int, list[Buffer]] = {SMALL_RECV: [], read_size: []}  # by size
        self._wide: set[int] = set()  # fds whose last recv filled its buffer
        self._draining = False
        backend.on_complete = self._completed

    # ---- what the engine calls ---------------------------------------------------------

    def interest(self, conn: Connection, interest: int) -> None:
        """The engine set this connection's interest: operations follow it."""
        recv = self._in_flight(conn, self._recv)
        if recv is not None and not interest & READ:
            self.backend.cancel(recv)  # paused, backpressured or closing
        send = self._in_flight(conn, self._send)
        if send is not None and not interest & WRITE:
            self.backend.cancel(send)  # closing: otherwise bytes wait and WRITE stays
        conn.interest = interest
        self.pump(conn)

    def _in_flight(self, conn: Connection, table: dict[int, int]) -> int | None:
        """This connection's operation of that kind (not one of an earlier connection on the
        same fd number, cancelled and not yet completed)."""
        user_data = table.get(conn.fd)
        if user_data is None or self._ops[user_data].conn is not conn:
            return None
        return user_data

    def pump(self, conn: Connection) -> None:
        """Submit what the connection's interest asks for and is not in flight yet."""
        if self._draining or conn.state is CLOSED:
            return
        if conn.interest & READ and self._in_flight(conn, self._recv) is None:
            size = self._read_size if conn.fd in self._wide else min(SMALL_RECV,
                                                                       self._read_size)
            self._track(conn, uring.OP_RECV, self._buffer(size), size, self._recv)
        if conn.interest & WRITE and conn.out and self._in_flight(conn, self._send) is None:
            # A copy: the out-buffer grows (and moves) while the kernel reads this one.
            buffer = self._buffer(self._read_size)
            out = memoryview(conn.out)
            size = min(len(out), self._read_size)
            buffer.view[:size] = out[:size]
            out.release()  # or the out-buffer could not shrink when the send completes
            self._track(conn, uring.OP_SEND, buffer, size, self._send)

    def service(self, conn: Connection, now: float) -> None:
        """Handle the completions reaped for this connection."""
        done = self._done.pop(conn.fd, None)
        if done is None:
            return
        for op, res in done:
            if op.conn is conn and conn.state is not CLOSED:
                self._handle(op, res, now)
        if conn.state is not CLOSED:
            self.pump(conn)

    def flags(self, conn: Connection) -> str:
        """The in-flight flags of a connection's row."""
        return (FLAG_RECV if self._in_flight(conn, self._recv) is not None else "") + \
            (FLAG_SEND if self._in_flight(conn, self._send) is not None else "")

    def in_flight(self) -> int:
        return len(self._ops)

    def held_bytes(self) -> int:
        """Bytes of buffer the kernel owns now (operations in flight)."""
        return sum(len(op.buffer.data) for op in self._ops.values())

    def _buffer(self, size: int) -> Buffer:
        spare = self._spare.get(size)
        return spare.pop() if spare else Buffer(size)

    def drain(self, now: float) -> bool:
        """Cancel every operation and reap every completion, handling the bytes that came
        in or went out meanwhile; after this the kernel holds none of our buffers. False if
        some did not complete in time (their buffers are kept, never reused)."""
        self._draining = True
        backend = self.backend
        for user_data in list(self._ops):
            backend.cancel(user_data)
        deadline = time.monotonic() + DRAIN_TIMEOUT
        while self._ops and time.monotonic() < deadline:
            backend.wait(0.05)  # polls it reports are level: the next backend sees them again
        for fd in list(self._done):
            for op, res in self._done.pop(fd):
                if op.conn.state is not CLOSED:
                    self._handle(op, res, now)
        backend.on_complete = None
        if self._ops:
            _LEAKED.extend(self._ops.values())
            return False
        return True

    # ---- completions -------------------------------------------------------------------

    def _track(self, conn: Connection, opcode: int, buffer: Buffer, length: int,
               table: dict[int, int]) -> None:
        user_data = self.backend.submit(opcode, conn.fd, buffer.addr, length)
        self._ops[user_data] = Op(conn, opcode, buffer)
        table[conn.fd] = user_data

    def _completed(self, user_data: int, res: int) -> int:
        """The backend reaped an operation's CQE: its buffer is ours again. Returns the fd to
        report in the wait's list, -1 if its connection is gone."""
        op = self._ops.pop(user_data, None)
        if op is None:
            return -1
        conn = op.conn
        fd = conn.fd
        table = self._recv if op.opcode == uring.OP_RECV else self._send
        if table.get(fd) == user_data:
            del table[fd]
        if conn.state is CLOSED:
            self._release(op)
            return -1
        self._done.setdefault(fd, []).append((op, res))
        return fd

    def _handle(self, op: Op, res: int, now: float) -> None:
        conn = op.conn
        if op.opcode == uring.OP_RECV:
            if res > 0:
                if res == len(op.buffer.data):
                    self._wide.add(conn.fd)  # more may wait: ask for all next time
                else:
                    self._wide.discard(conn.fd)
                data = bytes(op.buffer.view[:res])
                self._release(op)
                self._received(conn, data, now)
                return
            self._release(op)
            if res == 0:
                conn.peer_closed = True  # FIN: the rest of the out-buffer still goes
                self._update(conn, now)
            elif res != -errno.ECANCELED:
                self._close(conn, _reason(res), now)
            return
        self._release(op)
        if res >= 0:
            conn.sent_bytes += res
            conn.sent_msgs += 1
            conn.last_write_at = now
            del conn.out[:res]
            self._update(conn, now)
        elif res != -errno.ECANCELED:
            self._close(conn, _reason(res), now)

    def _received(self, conn: Connection, data: bytes, now: float) -> None:
        """As Engine._received, with no write-through: every send is an operation."""
        conn.read_bytes += len(data)
        conn.read_msgs += 1
        conn.last_read_at = now
        reply = data if self._reply is None else self._reply(conn, data)
        if reply:
            if conn.out:
                conn.out += reply
            else:
                conn.out = bytearray(reply)
            if self._max_out is not None and len(conn.out) > self._max_out:
                self._too_much(conn, now)
                return
        self._update(conn, now)

    def _release(self, op: Op) -> None:
        """The kernel is done with this operation's buffer: reuse it."""
        spare = self._spare.get(len(op.buffer.data))
        if spare is not None and len(spare) < SPARE_KEPT:
            spare.append(op.buffer)


def _reason(res: int) -> str:
    if res == -errno.ECONNRESET:
        return "reset by peer"
    if res == -errno.EPIPE:
        return "peer gone (broken pipe)"
    return os.strerror(-res)


# Operations the kernel never completed in time (a drain that timed out): their buffers live
# as long as the process, so the kernel can never write into freed memory.
_LEAKED: list[Op] = []
