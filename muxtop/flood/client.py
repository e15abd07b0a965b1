"""The flood's loop: one non-blocking epoll loop that drives many client connections through a
pattern (echo, idle, slow-reader, half-close, reset, burst, and the faults slicer, stall,
slow-close, latency, limit) and counts what happens.

Plain ``select.epoll`` and no asyncio, because the generator must not be the bottleneck it
measures: the per-message path is one recv, one compare and one send. Messages are never stored
to be checked later; the expected echo of message ``seq`` is rebuilt from (client, seq) when it
arrives (see payload.py), so memory per connection stays small whatever the server does.

Closed loop (the default): a client sends its next message once the echo of the last is back
(and its rate allows), and a latency counts from the send. Open loop: message ``seq`` of a
client is due at ``t0 + seq / rate`` whatever the server does, and its latency counts from
then — a server that stalls for a second is charged a second's worth of late messages, not
one slow sample (coordinated omission, as wrk2 corrects it).
"""

from __future__ import annotations

import errno
import heapq
import math
import os
import random
import resource
import select
import socket
import struct
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from muxtop.flood.alarm import Alarm
from muxtop.flood.patterns import (
    LINGER,
    PARAMETERS,
    PATTERNS,
    RESET,
    SHUT_WR,
    SLOW_READ_BYTES,
    SLOW_READ_EVERY,
    STALL,
    misfit,
)
from muxtop.flood.payload import Payloads
from muxtop.flood.stats import FloodStats

EPOLLIN, EPOLLOUT = select.EPOLLIN, select.EPOLLOUT
_IN_OR_TROUBLE = select.EPOLLIN | select.EPOLLERR | select.EPOLLHUP

RECV_BYTES = 65536
OUT_TOP_UP = 65536           # refill our out-buffer from the generator below this many bytes
CONNECT_BATCH = 256          # connects started per loop turn, so events are served meanwhile
MAX_EVENTS = 1024            # per epoll wait; a longer ready list just takes another turn
TICK = 1.0                   # progress callback and timeout scan period, seconds
# Fold raw latencies into the histogram once this many wait (and at each tick): folding a
# whole second of a fast ping-pong (~200k) at once pauses the loop ~20 ms, which the echoes
# waiting meanwhile would count as latency; this many take ~4 ms.
FOLD_AT = 32768

# timer kinds
RATE, SLOW_READ, SLICE, RELEASE, HOLD_END = range(5)

_LINGER_RST = struct.pack("ii", 1, 0)   # SO_LINGER on, 0 s: close() sends RST, not FIN
# Running out of these is a property of the machine, not of the server: say so once, clearly.
_RESOURCE_ERRNOS = {errno.EMFILE, errno.ENFILE, errno.EADDRNOTAVAIL, errno.ENOBUFS, errno.ENOMEM}


@dataclass(frozen=True)
class FloodPlan:
    """What one flood loop does (a worker process gets its share of the clients)."""

    address: tuple            # a sockaddr for ``family``
    family: int = socket.AF_INET
    pattern: str = "echo"
    clients: int = 1
    messages: int = 1         # per connection; 0 = no limit for echo and slow-reader
    size: int = 64
    rate: float = 0.0         # messages/s per connection; 0 = as fast as the pattern allows
    connect_rate: float = 0.0  # new connections/s; 0 = all at once
    duration: float | None = None
    timeout: float = 10.0     # a connection waiting this long for its echo/EOF fails; 0 = never
    first_client: int = 0     # id of the first client: workers' ids (so payloads) never meet
    open_loop: bool = False   # messages due on the rate's schedule; latency from when due
    # The fault patterns' parameters (patterns.PARAMETERS: which patterns take each).
    slice_bytes: int = PARAMETERS["slice_bytes"].default
    slice_delay: float = PARAMETERS["slice_delay"].default
    hold: float = PARAMETERS["hold"].default
    delay: float = PARAMETERS["delay"].default
    jitter: float = PARAMETERS["jitter"].default
    limit_bytes: int | None = None    # bytes written before the close (None: M×B − B/2)

    def __post_init__(self) -> None:
        wrong = misfit(self.pattern, messages=self.messages, size=self.size, rate=self.rate,
                       open_loop=self.open_loop, limit_bytes=self.limit_bytes)
        if wrong is not None:
            raise ValueError(wrong.problem)

    def byte_limit(self) -> int | None:
        """A pattern that cuts: the bytes each connection writes before it closes."""
        if not PATTERNS[self.pattern].cuts:
            return None
        if self.limit_bytes is not None:
            return self.limit_bytes
        if self.messages:
            return max(1, self.messages * self.size - self.size // 2)
        return None


def errno_name(exc: OSError) -> str:
    return errno.errorcode.get(exc.errno or 0, type(exc).__name__)


# connection states. HOLDING: stall (off epoll: neither reading nor writing) or slow-close
# (every echo back, waiting to close). SHUT: done writing, reading what is left.
CONNECTING, OPEN, SHUT, HOLDING, CLOSED = range(5)


class Client:
    """One connection of the flood and where it is in its pattern."""

    __slots__ = (
        "allowed",
        "fd",
        "held_back",
        "id",
        "interest",
        "last_activity",
        "last_release",
        "next_send",
        "next_write",
        "out",
        "queued",
        "release_at",
        "rx_bad",
        "rx_msg",
        "rx_off",
        "rx_seq",
        "sent",
        "sent_at",
        "sock",
        "state",
        "t0",
    )

    def __init__(self, client_id: int, sock: socket.socket, now: float) -> None:
        self.id = client_id
        self.sock = sock
        self.fd = sock.fileno()
        self.state = CONNECTING
        self.interest = 0
        self.last_activity = now
        self.sent = 0            # messages queued so far
        self.allowed = 0         # messages the pattern/rate lets us queue so far
        self.out = bytearray()   # bytes queued but not yet accepted by the kernel
        self.rx_seq = 0          # message whose echo is being received
        self.rx_off = 0          # bytes of it received so far
        self.rx_msg = b""        # its expected bytes (built when first needed)
        self.rx_bad = False      # a byte of it was wrong
        # When each message awaiting its echo was queued (closed loop) or due (open loop).
        self.sent_at: deque[float] = deque()
        self.t0 = now            # open loop: when message 0 is due (message k: t0 + k / rate)
        self.next_send = now     # closed loop with a rate: the next message not before this
        self.next_write = 0.0    # slicer: the next slice not before this
        self.queued = 0          # bytes queued so far (limit)
        # latency: (release time, message) held back before they go to the out-buffer
        self.held_back: deque[tuple[float, bytes]] = deque()
        self.last_release = 0.0
        self.release_at = 0.0    # the release timer set, if any


class ClientIds:
    """The ids of the clients still to connect, in order: the plan's range, handed out one at
    a time (a list of them all took 4 GB and minutes at -c 100000000, and no signal handler
    ran meanwhile), then the slots a burst frees again."""

    def __init__(self, first: int, count: int) -> None:
        self._next, self._end = first, first + count
        self._again: deque[int] = deque()

    def __bool__(self) -> bool:
        return self._next < self._end or bool(self._again)

    def popleft(self) -> int:
        if self._next < self._end:
            self._next += 1
            return self._next - 1
        return self._again.popleft()

    def append(self, client_id: int) -> None:
        self._again.append(client_id)


class Flood:
    """Runs one FloodPlan to completion, its deadline, or ``stop()``."""

    def __init__(self, plan: FloodPlan, *, on_notice: Callable[[str], None] = lambda s: None):
        self.plan = plan
        self.stats = FloodStats()
        self.stopped_by: str | None = None   # "complete", "duration" or "signal"
        self.unfinished = 0                  # connections cut short by the deadline or a stop
        self._notice = on_notice
        self._noticed: set[str] = set()
        self._payloads = Payloads(plan.size)
        self._ep = select.epoll()
        self._clients: dict[int, Client] = {}
        self._timers: list[tuple[float, int, int, Client]] = []  # (when, tiebreak, kind, client)
        self._tiebreak = 0
        self._to_start = ClientIds(plan.first_client, plan.clients)
        self._next_connect = 0.0
        self._stop = False
        # Lets stop() (from a signal handler or another thread) cut an epoll wait short.
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._ep.register(self._wake_r.fileno(), EPOLLIN)
        try:   # wakeups on time to the tens of µs, not the ms epoll's timeout has
            self._alarm: Alarm | None = Alarm()
            self._ep.register(self._alarm.fd, EPOLLIN)
        except OSError:
            self._alarm = None
        # The pattern's traits, read once: the loop asks these, never the pattern's name.
        p = self._pattern = PATTERNS[plan.pattern]
        self._echoed = p.echoed
        self._verifies = p.verifies
        self._reads = p.reads  # keep EPOLLIN registered (stall reads once its hold is over)
        self._sends = p.sends
        self._limit = plan.messages if plan.messages or not p.endless else math.inf
        self._repeat = p.opens_and_closes and plan.duration is not None
        self._ping_pong = p.ping_pong and not plan.rate
        self._paced = bool(plan.rate) and p.sends and p.paced
        self._interval = 1.0 / plan.rate if self._paced else 0.0
        self._one_in_flight = p.echoed and not plan.open_loop
        self._slicing = p.slices
        self._delaying = p.delays
        self._byte_limit = plan.byte_limit()
        # Faults draw from their own generator, seeded by the worker's first client id, so a
        # run's slices and delays are the same every time it is repeated.
        self._random = random.Random(plan.first_client)

    # ---------------------------------------------------------------- control

    def stop(self) -> None:
        """Ask the loop to finish now (safe from a signal handler or another thread)."""
        self._stop = True
        try:
            self._wake_w.send(b"x")
        except OSError:
            pass  # buffer full or already closed: the loop is waking up anyway

    def run(self, on_tick: Callable[[FloodStats], None] = lambda s: None) -> FloodStats:
        """Drive the flood; ``on_tick(stats)`` once a second. Returns the final stats."""
        plan = self.plan
        start = time.perf_counter()
        deadline = start + plan.duration if plan.duration is not None else math.inf
        next_tick = start + TICK
        self._next_connect = start
        pending = self.stats.latency.pending
        try:
            while True:
                now = time.perf_counter()
                if self._stop:
                    self.stopped_by = "signal"
                    break
                if now >= deadline:
                    self.stopped_by = "duration"
                    break
                self._run_timers(now)
                if self._to_start:
                    self._start_clients(now)
                if now >= next_tick:
                    self._expire(now)
                    self.stats.fold()
                    on_tick(self.stats)
                    next_tick += TICK * max(1, math.ceil((now - next_tick) / TICK))
                if not self._to_start and not self._clients:
                    self.stopped_by = "complete"
                    break
                wake = min(next_tick, deadline)
                if self._timers:
                    wake = min(wake, self._timers[0][0])
                if self._to_start:
                    wake = min(wake, self._next_connect)
                if self._alarm is not None and wake > now:
                    self._alarm.at(wake)   # epoll's own timeout (rounded up) is the backstop
                self._poll(max(0.0, wake - now))
                if len(pending) >= FOLD_AT:
                    self.stats.fold()
        finally:
            self._close_all()
        self.stats.fold()
        return self.stats

    # ---------------------------------------------------------------- connecting

    def _start_clients(self, now: float) -> None:
        rate = self.plan.connect_rate
        for _ in range(CONNECT_BATCH):
            if not self._to_start or (rate and self._next_connect > now):
                return
            if rate:
                # Catch up at most a second's worth after a stall, not an unbounded burst.
                self._next_connect = max(self._next_connect, now - 1.0) + 1.0 / rate
            self._connect(self._to_start.popleft(), now)

    def _connect(self, client_id: int, now: float) -> None:
        try:
            sock = socket.socket(self.plan.family, socket.SOCK_STREAM)
        except OSError as exc:
            self._count_failure(None, exc)
            self._after(client_id)
            return
        sock.setblocking(False)
        if self.plan.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        client = Client(client_id, sock, now)
        code = sock.connect_ex(self.plan.address)
        if code not in (0, errno.EINPROGRESS):
            sock.close()
            self._count_failure(None, OSError(code, os.strerror(code)))
            self._after(client_id)
            return
        try:
            self._ep.register(client.fd, EPOLLOUT)  # writable = the connect finished, either way
        except OSError as exc:   # e.g. ENOSPC: over fs.epoll.max_user_watches
            sock.close()
            self._count_failure(None, exc)
            self._after(client_id)
            return
        client.interest = EPOLLOUT
        self._clients[client.fd] = client
        self.stats.active += 1
        if code == 0:
            self._on_connected(client, now)

    def _on_connected(self, c: Client, now: float) -> None:
        code = c.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if code:
            self._fail(c, OSError(code, os.strerror(code)))
            return
        self.stats.connected += 1
        c.state = OPEN
        c.last_activity = now
        if self._pattern.opens_and_closes:
            self._finish(c)
            return
        if self._pattern.reads_slowly:
            self._schedule(now + SLOW_READ_EVERY, SLOW_READ, c)
        if self._paced:
            # Each connection's clock gets its own phase (spread by the golden ratio), so that
            # clients connected together do not all send in the same instant, every time.
            phase = (c.id * 0.6180339887) % 1.0
            c.t0 = c.next_send = now + phase * self._interval
            self._schedule(c.t0, RATE, c)
        elif self._echoed:
            c.allowed = 1                      # ping-pong: one message in flight
        elif self._sends:
            c.allowed = self._limit            # pipelined: as fast as the socket takes them
        self._pump(c, now)

    # ---------------------------------------------------------------- the loop's turn

    def _poll(self, timeout: float) -> None:
        events = self._ep.poll(timeout, MAX_EVENTS)
        if self._ping_pong:
            self._ping_pong_turn(events)
            return
        clients, clock = self._clients, time.perf_counter
        for fd, ev in events:
            c = clients.get(fd)
            if c is None:
                self._on_own_fd(fd)
            else:
                self._on_event(c, ev, clock())

    def _ping_pong_turn(self, events: list[tuple[int, int]]) -> None:
        """Echo ping-pong is the measuring case: its common turn (the whole echo of the one
        message in flight arrives at once, the next one fits the socket) is inlined here,
        with the counters kept in locals; anything else goes the general way."""
        clients, clock = self._clients, time.perf_counter
        limit = self._limit
        message = self._payloads.message
        stats = self.stats
        rtt_append = stats.latency.pending.append
        echoed = received = sent_bytes = 0
        for fd, ev in events:
            c = clients.get(fd)
            if c is None:
                self._on_own_fd(fd)
                continue
            now = clock()
            if c.state == CONNECTING or not ev & _IN_OR_TROUBLE:
                self._on_event(c, ev, now)
                continue
            try:
                data = c.sock.recv(RECV_BYTES)
            except BlockingIOError:
                data = None
            except OSError as exc:
                self._fail(c, exc)
                continue
            if not data or data != c.rx_msg or c.rx_off or c.out:
                self._on_read(c, ev, data, now)
                continue
            received += len(data)
            echoed += 1
            sent_at = c.sent_at
            rtt_append(now - sent_at.popleft())
            c.last_activity = now
            seq = c.rx_seq = c.rx_seq + 1
            if seq >= limit:
                c.rx_msg = b""
                self._finish(c)
                continue
            msg = c.rx_msg = message(c.id, seq)
            sent_at.append(now)
            c.sent = c.allowed = seq + 1
            stats.messages_sent += 1
            try:
                n = c.sock.send(msg)
            except BlockingIOError:
                n = 0
            except OSError as exc:
                self._fail(c, exc)
                continue
            sent_bytes += n
            if n < len(msg):
                c.out += msg[n:]
                self._watch(c, EPOLLIN | EPOLLOUT)
        stats.messages_echoed += echoed
        stats.bytes_received += received
        stats.bytes_sent += sent_bytes

    def _on_event(self, c: Client, ev: int, now: float) -> None:
        """One ready connection, the general way."""
        if c.state == CONNECTING:
            self._on_connected(c, now)
            return
        # EPOLLIN only when registered for it; errors and hang-ups always: recv tells which.
        self._on_read(c, ev, self._recv(c) if ev & _IN_OR_TROUBLE else None, now)

    def _recv(self, c: Client) -> bytes | None:
        """What the connection has (b"": EOF); None if nothing, or if it failed (closed)."""
        try:
            return c.sock.recv(RECV_BYTES)
        except BlockingIOError:
            return None
        except OSError as exc:
            self._fail(c, exc)
            return None

    def _on_read(self, c: Client, ev: int, data: bytes | None, now: float) -> None:
        """What was read (if anything), then writing, if the connection is still open."""
        if data is not None:
            self._on_data(c, data, now)
        if ev & EPOLLOUT and c.state != CLOSED:
            self._pump(c, now)

    def _on_own_fd(self, fd: int) -> None:
        """The wakeup socket or the alarm; any other fd was closed earlier in this batch."""
        if fd == self._wake_r.fileno():
            try:
                self._wake_r.recv(4096)
            except BlockingIOError:
                pass
        elif self._alarm is not None and fd == self._alarm.fd:
            self._alarm.clear()

    def _on_data(self, c: Client, data: bytes, now: float) -> None:
        if not data:
            self._on_eof(c)
            return
        c.last_activity = now
        stats = self.stats
        stats.bytes_received += len(data)
        if not self._verifies:
            return  # idle herd: bytes the server sent on its own are counted, nothing more
        self._check(c, data, now)
        if c.state in (CLOSED, HOLDING):
            return   # slow-close: a byte now is one never sent, counted by _check
        ending = self._pattern.ending
        if c.rx_seq >= self._limit and (self._echoed or c.state == SHUT and ending == STALL):
            if ending == LINGER:
                self._hold(c, now)
            else:
                self._finish(c)
            return
        if self._one_in_flight and c.rx_seq == c.sent:
            # The echo is back: the next message may go, once its rate allows.
            if c.next_send <= now:
                c.allowed = c.sent + 1
            else:
                self._schedule(c.next_send, RATE, c)
        self._pump(c, now)

    def _check(self, c: Client, data: bytes, now: float) -> None:
        """Compare received bytes with what the echo should be, message by message."""
        stats = self.stats
        size = self.plan.size
        view = memoryview(data)
        pos = 0
        while pos < len(data):
            if c.rx_seq >= c.sent:
                stats.mismatches += 1   # bytes we never sent (or more of them than we sent)
                return
            if not c.rx_msg:
                c.rx_msg = self._payloads.message(c.id, c.rx_seq)
            take = min(size - c.rx_off, len(data) - pos)
            if view[pos:pos + take] != c.rx_msg[c.rx_off:c.rx_off + take]:
                c.rx_bad = True
            pos += take
            c.rx_off += take
            if c.rx_off == size:
                stats.messages_echoed += 1
                stats.latency.pending.append(now - c.sent_at.popleft())
                if c.rx_bad:
                    stats.mismatches += 1
                c.rx_seq += 1
                c.rx_off = 0
                c.rx_msg = b""
                c.rx_bad = False

    def _on_eof(self, c: Client) -> None:
        if c.state == SHUT and c.rx_seq == c.sent and c.rx_off == 0:
            self._finish(c)         # half-close: the whole echo, then EOF, as it should be
        else:
            self._fail(c, None, "EOF")

    def _pump(self, c: Client, now: float) -> None:
        """Queue what the pattern allows, write what the kernel takes, then take the next step
        once everything is out (half-close: SHUT_WR; reset: RST; stall: hold still; limit:
        close)."""
        out = c.out
        if c.state == OPEN:
            self._queue(c, now)
            if c.held_back:
                self._release(c, now)
        blocked = False
        if out and (not self._slicing or c.next_write <= now):
            chunk = out
            if self._slicing:   # a random small slice, and a pause before the next
                chunk = out[:self._random.randint(1, self.plan.slice_bytes)]
            try:
                n = c.sock.send(chunk)
            except BlockingIOError:
                n, blocked = 0, True
            except OSError as exc:
                self._fail(c, exc)
                return
            if n:
                del out[:n]
                self.stats.bytes_sent += n
                c.last_activity = now
                if self._slicing:
                    self.stats.slices += 1
                    if out:
                        c.next_write = now + self._random.uniform(0, self.plan.slice_delay)
                        self._schedule(c.next_write, SLICE, c)
        if not out and c.state == OPEN and not c.held_back and self._all_written(c, now):
            return
        # More to write, now or once the generator tops the out-buffer up again (a slicer
        # waits for its timer instead, unless the socket was full).
        if self._slicing:
            more = blocked
        else:
            more = bool(out) or (c.state == OPEN and c.sent < c.allowed)
        reads = self._reads or c.state == SHUT
        self._watch(c, (EPOLLIN if reads else 0) | (EPOLLOUT if more else 0))

    def _all_written(self, c: Client, now: float) -> bool:
        """Everything queued is out: the pattern's next step, if its messages are done
        (half-close: SHUT_WR; reset: RST; stall: hold still; limit: close). True if the
        connection is no longer open for writing (closed or holding)."""
        if self._byte_limit is not None and c.queued >= self._byte_limit:
            self.stats.cut += 1
            self._finish(c)   # closed at once, whatever is still on its way back
            return True
        if c.sent < self._limit:
            return False
        ending = self._pattern.ending
        try:
            if ending == SHUT_WR:
                c.sock.shutdown(socket.SHUT_WR)
                c.state = SHUT
            elif ending == RESET:
                c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RST)
                self.stats.resets += 1
                self._finish(c)
                return True
            elif ending == STALL:
                self._hold(c, now)
                return True
        except OSError as exc:   # the peer got there first (e.g. ENOTCONN after its RST)
            self._fail(c, exc)
            return True
        return False

    def _queue(self, c: Client, now: float) -> None:
        """Move the messages the pattern allows into the out-buffer (latency: into the
        held-back queue), stamped with the time their latency counts from."""
        out = c.out
        payloads, sent_at, plan = self._payloads, c.sent_at, self.plan
        while c.sent < c.allowed and len(out) < OUT_TOP_UP:
            msg = payloads.message(c.id, c.sent)
            if self._byte_limit is not None:
                room = self._byte_limit - c.queued
                if room <= 0:
                    break   # cut already: the close comes once it is written
                msg = msg[:room]
                c.queued += len(msg)
            if not out and c.sent == c.rx_seq and self._verifies and not c.held_back:
                c.rx_msg = msg if len(msg) == plan.size else b""   # its own expected echo
            if self._delaying:
                # Released in order (TCP could not reorder them anyway): never before the
                # message ahead of it.
                wait = max(0.0, plan.delay + self._random.uniform(-plan.jitter, plan.jitter))
                c.last_release = max(now + wait, c.last_release)
                c.held_back.append((c.last_release, msg))
                self.stats.delayed += 1
            else:
                out += msg
            sent_at.append(c.t0 + c.sent * self._interval if plan.open_loop else now)
            c.sent += 1
            # Closed loop with a rate: the next one is due an interval after this one was, so
            # the timer's own lateness does not slow the rate; after a stall, not before now
            # (no catch-up burst: a closed loop omits what it could not send).
            c.next_send = max(c.next_send + self._interval, now)
            self.stats.messages_sent += 1

    def _release(self, c: Client, now: float) -> None:
        """latency: move held-back messages whose time has come to the out-buffer."""
        held = c.held_back
        while held and held[0][0] <= now:
            c.out += held.popleft()[1]
        if held and c.release_at != held[0][0]:
            c.release_at = held[0][0]
            self._schedule(c.release_at, RELEASE, c)

    def _hold(self, c: Client, now: float) -> None:
        """stall: everything sent, stop reading and writing (off epoll altogether, so not even
        a hang-up wakes us); slow-close: every echo back, keep reading, close later."""
        c.state = HOLDING
        if self._pattern.ending == STALL:
            self._ep.unregister(c.fd)
            c.interest = 0
        else:
            self._watch(c, EPOLLIN)
        self._schedule(now + self.plan.hold, HOLD_END, c)

    def _end_hold(self, c: Client, now: float) -> None:
        self.stats.held += 1
        if self._pattern.ending == LINGER:
            self._finish(c)
            return
        # stall: read back the echo of everything sent; every byte must still be there.
        c.state = SHUT
        c.last_activity = now
        self._ep.register(c.fd, EPOLLIN)
        c.interest = EPOLLIN
        if c.rx_seq >= c.sent:
            self._finish(c)

    def _watch(self, c: Client, interest: int) -> None:
        if interest != c.interest:
            self._ep.modify(c.fd, interest)
            c.interest = interest

    # ---------------------------------------------------------------- timers

    def _schedule(self, when: float, kind: int, c: Client) -> None:
        self._tiebreak += 1
        heapq.heappush(self._timers, (when, self._tiebreak, kind, c))

    def _run_timers(self, now: float) -> None:
        timers = self._timers
        later = []   # pushed after the loop, so each timer fires at most once per turn
        while timers and timers[0][0] <= now:
            when, _, kind, c = heapq.heappop(timers)
            if c.state != OPEN and not (kind == HOLD_END and c.state == HOLDING):
                continue  # the connection is gone (or done sending)
            if kind == RATE:
                self._on_rate(c, when, now, later)
            elif kind == SLOW_READ:
                self._read_slowly(c, now)
                if c.state != CLOSED:
                    later.append((now + SLOW_READ_EVERY, SLOW_READ, c))
            elif kind == HOLD_END:
                self._end_hold(c, now)
            else:              # SLICE, RELEASE: the next slice or held-back message is due
                self._pump(c, now)
        for when, kind, c in later:
            self._schedule(when, kind, c)

    def _on_rate(self, c: Client, when: float, now: float, later: list) -> None:
        """The rate clock of one connection has struck."""
        interval = self._interval
        if self.plan.open_loop:
            # Every message due by now, however far behind: the schedule is the schedule.
            due = int((now - c.t0) / interval) + 1
            c.allowed = min(max(c.allowed + 1, due), self._limit)
            if c.allowed < self._limit:
                later.append((c.t0 + c.allowed * interval, RATE, c))
        elif self._one_in_flight:
            c.allowed = min(c.sent + 1, self._limit)   # its turn: the echo is already back
        else:
            # Paced, pipelined: the messages due by now (a bounded catch-up after a stall,
            # so a rate the loop cannot keep cannot keep it here forever).
            due = min(64, int((now - when) / interval) + 1)
            c.allowed = min(c.allowed + due, self._limit)
            if c.allowed < self._limit:
                later.append((when + due * interval, RATE, c))
        self._pump(c, now)

    def _read_slowly(self, c: Client, now: float) -> None:
        try:
            data = c.sock.recv(SLOW_READ_BYTES)
        except BlockingIOError:
            return
        except OSError as exc:
            self._fail(c, exc)
            return
        self._on_data(c, data, now)
        if c.state != CLOSED and c.rx_seq >= self._limit:
            self._finish(c)

    def _expire(self, now: float) -> None:
        """Fail connections that have waited longer than --timeout for a connect, an echo or
        an EOF. Idle connections and ones between rate-limited messages are not waiting."""
        limit = self.plan.timeout
        if not limit:
            return
        for c in list(self._clients.values()):
            waiting = c.state == CONNECTING or c.state == SHUT or (
                c.state == OPEN and self._verifies and c.rx_seq < c.sent)
            if waiting and now - c.last_activity > limit:
                self._fail(c, None, "timeout")

    # ---------------------------------------------------------------- endings

    def _finish(self, c: Client) -> None:
        self.stats.completed += 1
        self._close(c)
        self._after(c.id)

    def _fail(self, c: Client, exc: OSError | None, reason: str | None = None) -> None:
        self._count_failure(c, exc, reason)
        self._close(c)
        self._after(c.id)

    def _count_failure(self, c: Client | None, exc: OSError | None,
                       reason: str | None = None) -> None:
        reason = reason or errno_name(exc)
        self.stats.fail(reason)
        if exc is not None and exc.errno in _RESOURCE_ERRNOS and reason not in self._noticed:
            self._noticed.add(reason)
            what = f"{reason}, {exc.strerror or 'no resources'}"
            if exc.errno == errno.EMFILE:
                soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
                what = f"out of file descriptors: EMFILE, RLIMIT_NOFILE soft {soft} hard {hard}"
            self._notice(f"{what} ({len(self._clients)} connections open); connections that "
                         f"cannot be opened are counted as failed {reason}, not retried")

    def _after(self, client_id: int) -> None:
        """A burst with a duration reconnects each slot as soon as it is done."""
        if self._repeat and not self._stop:
            self._to_start.append(client_id)

    def _close(self, c: Client) -> None:
        if c.state == CLOSED:
            return
        c.state = CLOSED
        del self._clients[c.fd]
        self.stats.active -= 1
        try:
            self._ep.unregister(c.fd)
        except OSError:
            pass
        c.sock.close()

    def _close_all(self) -> None:
        for c in list(self._clients.values()):
            # Held to the end is the whole job of a connection that sends nothing (idle) or
            # of an endless stream.
            if c.state == OPEN and (not self._sends or self._limit == math.inf):
                self.stats.completed += 1
            else:
                self.unfinished += 1
            self._close(c)
        self._ep.close()
        self._wake_r.close()
        self._wake_w.close()
        if self._alarm is not None:
            self._alarm.close()
