"""The server engine: one thread that owns the listener, every connection and the backend.

Other threads talk to it only through `submit` (a command queue plus an eventfd registered in
the backend, shown as the `control` fd) and read it only through `snapshot()`, an immutable
Snapshot swapped in a few times a second. The engine never calls into its readers.
"""

from __future__ import annotations

import errno
import os
import select
import socket
import sys
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Future
from itertools import chain
from types import MappingProxyType

from muxtop import commands as cmd
from muxtop.backends import COMPLETION, EDGE, ONESHOT, Backend, BackendError, make_backend
from muxtop.engine.address import AddressError, peer_name, resolve
from muxtop.engine.completion import Completions
from muxtop.engine.config import LABS, EngineConfig, Lab
from muxtop.engine.connection import NO_OUT, Connection
from muxtop.engine.counts import LoopCounts
from muxtop.engine.guards import (
    ACCEPT_BACKOFF,
    OUT_BUFFER,
    OUT_OF_FDS,
    Timeouts,
    out_buffer_note,
)
from muxtop.engine.protocols import PROTOCOLS
from muxtop.engine.proxying import ProxyFacts, Proxying
from muxtop.engine.state import EngineState
from muxtop.engine.stepper import Stepper
from muxtop.engine.telemetry import Telemetry
from muxtop.engine.waiting import WaitStep
from muxtop.events import ERROR, HANGUP, RDHUP, READ, WRITE
from muxtop.snapshot import (
    CLOSED,
    CLOSING,
    HALF_CLOSED,
    OPEN,
    READ_PAUSED,
    Snapshot,
)

READABLE = READ | ERROR | HANGUP  # an error or hang-up shows up as a failing or empty recv
WRITABLE = WRITE | ERROR | HANGUP
PROXY_COMPLETION = ("uring's completion mode serves muxtop's own protocols: a proxy's legs "
                    "forward what they read, which its recv and send operations do not do "
                    "(readiness on uring proxies: t to level or edge)")


class EngineStartError(Exception):
    """The server could not start; the message is one plain line for the user."""


class Engine(Proxying):
    def __init__(self, config: EngineConfig | None = None) -> None:
        self.config = config = config or EngineConfig()
        if config.protocol not in PROTOCOLS:
            raise EngineStartError(f"no protocol {config.protocol!r}")
        unknown = set(config.lab) - set(LABS)
        if unknown:
            raise EngineStartError(f"no bug-lab switch {', '.join(sorted(unknown))}")
        self._protocol = PROTOCOLS[config.protocol]
        self._read_size = config.read_size
        self._echo = config.protocol == "echo"
        self._edge = config.trigger == EDGE  # kept in step with the backend: read per event
        self._commands: deque[tuple[object, Future]] = deque()
        self._conns: dict[int, Connection] = {}  # in fd order at each publish (_publish)
        self._conns_top_fd = -1  # the fd accepted last: one below it breaks the fd order
        self._conns_disordered = False
        # The same connections indexed by fd, for the loop: a list index costs less than a
        # dict lookup, which hashes the fd and compares it with the key object it finds.
        # None for the listener, the control fd and fds not (or no longer) open.
        self._by_fd: list[Connection | None] = []
        self._pending: dict[int, None] = {}  # edge: fds to service without waiting (ordered set)
        self._listener: socket.socket | None = None
        self._listen_fd = self._control_fd = -1
        self._listen_interest = 0
        self._accept_resume_at: float | None = None
        self._accept_backoff = ACCEPT_BACKOFF[0]
        self._out_of_fds = False  # the last accept() failed for lack of fds
        # select: a client accepted on an fd past FD_SETSIZE, held unserved (accept paused)
        # until a connection closes and frees an fd it can move to (see _hold).
        self._held: tuple[socket.socket, tuple] | None = None
        self._next_cid = 1
        self.counts = LoopCounts()  # the loop's running figures; telemetry reads them
        self._nreg = 0
        self._running = False
        self._thread: threading.Thread | None = None
        self._serving_here = False  # serve(): the loop runs on its caller's thread
        self._tick: Callable[[float], bool] | None = None  # serve()'s, after each publish
        self._tick_error: BaseException | None = None
        self._snapshot: Snapshot | None = None
        self.lab = Lab(config.lab)
        self.address: tuple[str, int] = (config.host, config.port)
        self.error: str | None = None  # set if the loop died
        self._backend: Backend | None = None
        self._completion: Completions | None = None  # uring/completion's read/write path
        self._timeouts = Timeouts.of(config)  # None: no timeout set, nothing to check
        self._max_out = config.max_out_buffer
        self._stepper: Stepper | None = None  # step mode: the loop stops between wait calls
        # Something to do after every wait: re-arm (oneshot), resume accept, stop (stepping).
        # One flag, so the loop tests one thing; kept by _chores_changed.
        self._chores = False
        # Proxy mode (--upstream): engine/proxying.py's methods stand in for a few of these.
        self._registry = config.registry  # the proxies the API (or --toxic) made
        self._routes: dict = {}  # proxy: listener fd -> Route (engine/proxying.py)
        self._proxied = config.upstream is not None or self._registry is not None
        self._timers: list = []  # proxy: (due, seq, leg), the earliest first
        self.proxy = None  # proxy: ProxyFacts, what the detectors read
        if self._proxied:
            self._proxy_start(config.upstream, config.pipes, self._registry)
        self.state: EngineState = LoopState(self)
        self.telemetry = Telemetry(self.state)
        self._wait_step = WaitStep(self.telemetry.ring, self.counts)  # the loops' wait call

    # ---- life cycle (caller's thread) ---------------------------------------------------

    def start(self, thread: bool = True) -> Engine:
        """Bind, listen and start the thread. Errors raise EngineStartError here, in the
        caller's thread, before anything runs. `thread=False`: no thread; the caller then
        serves on its own (`serve`)."""
        config = self.config
        try:
            self._backend = make_backend(config.backend, config.trigger)
            if config.upstream is not None:
                self._resolve_upstream()
            self._listener = _listen(config.host, config.port, config.backlog)
            self.address = self._listener.getsockname()[:2]
            if config.upstream is not None:
                self._refuse_own_address()  # a proxy to itself would connect without end
            self._listen_fd = self._listener.fileno()
            self._control_fd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
            self._by_fd[:] = [None] * (max(self._listen_fd, self._control_fd) + 1)
            self._set_listener(READ)
            self._register(self._control_fd, READ)
            self._completion = self._completions(self._backend)
            self._chores_changed()
            if self._registry is not None:
                self._routes_start()  # the --upstream proxy joins the registry; adopt all
        except (BackendError, OSError) as exc:  # select past FD_SETSIZE, out of fds
            self._close_all()
            if isinstance(exc, OSError):
                raise EngineStartError(f"cannot start: {exc.strerror or exc!r}") from None
            raise EngineStartError(str(exc)) from None
        except EngineStartError:
            self._close_all()
            raise
        except AddressError as exc:  # an upstream that does not resolve
            self._close_all()
            raise EngineStartError(str(exc)) from None
        self._running = True
        self._snapshot = self.telemetry.publish(time.monotonic())
        if thread:
            self._thread = threading.Thread(target=self._run, name="muxtop-engine",
                                            daemon=True)
            self._thread.start()
        return self

    def serve(self, tick: Callable[[float], bool]) -> None:
        """After start(thread=False): serve on the calling thread until stopped. Headless
        muxtop does, so that its process has one thread, as the servers it is measured
        against: the kernel then takes its fds without atomic reference counts and the C
        library allocates without locks (bench proxy: ~3% more round trips). `tick(now)`
        runs on this thread after each publish (four times a second); False stops the
        engine, and what it raises is raised here once everything is closed."""
        self._tick = tick
        self._serving_here = True
        self._run()
        if self._tick_error is not None:
            raise self._tick_error

    def submit(self, command: object) -> Future:
        """Queue a command for the engine thread; the Future gets an Outcome."""
        future: Future = Future()
        if not self._running:
            future.set_result(cmd.Outcome(False, "the engine is not running"))
            return future
        self._commands.append((command, future))
        try:
            os.eventfd_write(self._control_fd, 1)
        except OSError:
            pass  # closed by a stop racing us: the loop has ended, nothing to wake
        return future

    def snapshot(self) -> Snapshot:
        assert self._snapshot is not None, "start() the engine first"
        return self._snapshot

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the loop and close every fd it opened. Safe to call twice."""
        if self._serving_here:
            if self._running:
                self.submit(cmd.Stop())  # serve() closes everything on its way out
            return
        if self._thread is None:
            self._running = False  # started without a thread, and never served
            self._close_all()
            return
        if self._thread.is_alive():
            self.submit(cmd.Stop())
            self._thread.join(timeout)

    @property
    def running(self) -> bool:
        if self._thread is None:
            return self._running  # serving on its caller's thread (serve), or not started
        return self._thread.is_alive()

    def __enter__(self) -> Engine:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ---- the loop (engine thread) -------------------------------------------------------

    def _run(self) -> None:
        try:
            if self._proxied:
                self._proxy_loop()  # engine/proxying.py: this loop with the proxy's handler
            else:
                self._loop()
        except BaseException as exc:  # noqa: BLE001 - report, then close everything
            self.error = f"engine stopped: {exc!r}"
            traceback.print_exc(file=sys.stderr)
        finally:
            self._running = False
            if self._stepper is not None:
                self._stepper.end("the engine has stopped")
            self._close_all()
            self._snapshot = self.telemetry.publish(time.monotonic())
            while self._commands:
                _, future = self._commands.popleft()
                future.set_result(cmd.Outcome(False, "the engine has stopped"))

    def _loop(self) -> None:
        """Wait, dispatch each ready fd, do the between-waits chores; nothing else. The echo
        handler is inlined here: a call per ready fd costs what the loop is measured by."""
        monotonic = time.monotonic
        wait = self._wait_step
        next_publish = monotonic() + self.config.publish_interval
        service = self._service
        by_fd = self._by_fd
        # The echo fast path reads into one buffer and sends from it: no 64 KiB bytes
        # object allocated (and shrunk) per read. `reply` is the buffer's first `size` bytes,
        # kept while messages keep that size (a fixed-size ping-pong makes no view per echo).
        # readv(2) and write(2) on a socket are recv(2) and send(2) without flags, and os's
        # argument handling costs ~900 instructions less per echo than the socket methods'
        # format-string parsing (callgrind, tools/callgrind_echo.py).
        rxview = memoryview(bytearray(self._read_size))
        readv, rxbufs, write = os.readv, (rxview,), os.write
        size = 0
        reply = rxview[:0]
        while self._running:
            backend = self._backend  # a switch replaces it between two waits
            pending = self._pending
            # Edge takes the fast path too (a short read emptied the queue, see _read_edge);
            # not with the naive-edge lab on, whose one small read per edge is the point.
            fast = self._echo and not (self._edge and self.lab.naive_edge)
            # A read that fills the buffer may have left bytes behind: on edge, that fd is
            # read again without waiting (pending). -1: level and oneshot never need it.
            full = self._read_size if self._edge else -1
            now = monotonic()
            ready = wait.wait(backend, now, 0.0 if pending else self._timeout(now, next_publish),
                              self._nreg)
            after = wait.after
            for fd, events in ready:
                conn = by_fd[fd]
                if conn is None:
                    self._not_a_connection(fd, after)
                    continue
                conn.last_events = events
                conn.last_ready = after
                if not (fast and events == READ and conn.interest == READ):
                    service(conn, events, after)
                    continue
                # The echo handler: one recv and one write-through send. Interest READ alone
                # means reading and an empty out-buffer; anything else (a partial send, FIN,
                # an error) goes the general way, `_service`.
                try:
                    got = readv(fd, rxbufs)
                    if not got:
                        service(conn, READ, after)  # FIN: recv says b"" again there
                        continue
                    if got != size:
                        size = got
                        reply = rxview[:size]
                    if got == full:
                        pending[fd] = None
                    conn.last_read_at = after
                    try:
                        sent = write(fd, reply)
                    except BlockingIOError:
                        sent = 0
                    if sent == size:  # one message in and out (Connection's counters)
                        conn.echoed_bytes += size
                        conn.echoed_msgs += 1
                    else:
                        conn.read_bytes += size
                        conn.read_msgs += 1
                        self._sent(conn, reply, sent, after)  # copies the rest out
                except Exception as exc:  # noqa: BLE001 - as in _service (EAGAIN included)
                    self._failed(conn, exc, after)
            if pending or self._chores or after >= next_publish:
                next_publish = self._between_waits(backend, ready, after, next_publish)

    def _between_waits(self, backend: Backend, ready: list[tuple[int, int]], now: float,
                       next_publish: float) -> float:
        """What is due after a wait: its chores, a step's pause, a Snapshot. The next
        publish time."""
        if self._pending or self._chores:
            self._after_wait(backend, ready, now)
            if self._stepper is not None:
                self._step_pause()  # publishes while it holds
                return time.monotonic() + self.config.publish_interval
        if now >= next_publish:
            self._publish(now)
            return now + self.config.publish_interval
        return next_publish

    def _not_a_connection(self, fd: int, now: float) -> None:
        """A ready fd that is not a connection: the listener, the control eventfd, or one
        closed earlier in this batch (like ae.c, re-check before dispatch)."""
        if fd == self._listen_fd:
            self._accept(now)
        elif fd == self._control_fd:
            self._run_commands(now)
        elif fd in self._routes:
            self._accept_route(fd, now)  # a listener of a proxy the registry made

    def _timeout(self, now: float, next_publish: float) -> float:
        """How long the next wait may block: until the next publish, or the end of an accept
        back-off, whichever comes first."""
        timeout = next_publish - now
        if self._chores:
            if self._stepper is not None:
                return 0.0  # a step reports what is ready now; it never sleeps
            if self._accept_resume_at is not None:
                timeout = min(timeout, self._accept_resume_at - now)
            if self._timers:
                timeout = min(timeout, self._timers[0][0] - now)
        return max(timeout, 0.0)

    def _chores_changed(self) -> None:
        self._chores = (self._backend.trigger == ONESHOT or self._accept_resume_at is not None
                        or self._stepper is not None or bool(self._timers))

    def _after_wait(self, backend: Backend, ready: list[tuple[int, int]], now: float) -> None:
        """The chores of one wait (like ae.c's beforesleep): re-arm what oneshot disarmed,
        service the pending edge fds, resume a paused accept."""
        if backend.trigger == ONESHOT and backend is self._backend:
            self._rearm(ready)
        if self._pending:
            self._service_pending(now)
        if self._timers and self._timers[0][0] <= now:
            self._run_timers(now)
        if self._accept_resume_at is not None and now >= self._accept_resume_at:
            self._accept_resume_at = None
            self._chores_changed()
            if self._held is None:
                self._set_listener(READ)
                # Try at once, not on the listener's next event: with the backlog empty by
                # now there would be none, and the out-of-fds finding would outlive its cause.
                self._accept(now)

    def _step_pause(self) -> None:
        """Step mode, between two wait calls: publish what the last one did, then hold the
        loop (no wait call, no client served) until a step is asked for, or continue or
        stop. Commands still run, and Snapshots go on at the usual rate."""
        stepper = self._stepper
        stepper.finish()
        now = time.monotonic()
        self._publish(now)
        stepper.answer()
        control = select.poll()
        control.register(self._control_fd, select.POLLIN)
        interval = self.config.publish_interval
        next_publish = now + interval
        while self._running and self._stepper is stepper and not stepper.granted:
            control.poll(max(next_publish - now, 0.0) * 1000)
            now = time.monotonic()
            commands = bool(self._commands)
            self._run_commands(now)
            if commands or now >= next_publish:  # a command's effect shows at once
                self._publish(now)
                next_publish = now + interval
        if self._running and self._stepper is stepper:
            # The wait a step asks for is the loop's own, with its timeout: not a CPU probe
            # (a wait with no timeout), which the time held would otherwise have made due.
            self._wait_step.defer_probe(time.monotonic())
            stepper.begin()

    def _publish(self, now: float) -> None:
        if self._held is not None:
            self._release(now)  # an fd below the limit may have been freed by anyone
        if self._timeouts is not None:
            for conn, guard, note in self._timeouts.due(list(self._conns.values()), now):
                self._close_guarded(conn, guard, note, now)
        if self._conns_disordered:
            self._put_conns_in_fd_order()
        try:
            self._snapshot = self.telemetry.publish(now)
        except Exception as exc:  # noqa: BLE001 - serving matters more than the picture of it
            self.telemetry.notice("error", f"telemetry failed: {exc!r}", key="telemetry")
        if self._tick is not None:
            self._call_tick(now)

    def _call_tick(self, now: float) -> None:
        """serve()'s tick, on this thread: False or an exception ends the loop."""
        try:
            going = self._tick(now)
        except BaseException as exc:  # noqa: BLE001 - serve() raises it once all is closed
            self._tick_error, going = exc, False
        if not going:
            self._running = False

    def _put_conns_in_fd_order(self) -> None:
        """Re-insert the connections by fd, so the Snapshot lists them in the table's default
        order and the UI sorts nothing (at 10,000 rows its sort touched 10,000 objects fresh
        from this thread: ~1 ms of the UI's frame). In place: the loop and LoopState hold
        the dict. Only after an accept reused a lower fd."""
        conns = self._conns
        ordered = [conns[fd] for fd in sorted(conns)]
        conns.clear()
        conns.update((conn.fd, conn) for conn in ordered)
        self._conns_top_fd = ordered[-1].fd if ordered else -1
        self._conns_disordered = False

    def _service(self, conn: Connection, events: int, now: float) -> None:
        """Handle what a wait reported for one connection (or a pending edge fd)."""
        if self._completion is not None:
            self._completion.service(conn, now)  # the kernel did the reads and writes
            return
        try:
            if events & READABLE and conn.interest & READ:
                self._read_ready(conn, events, now)
            if conn.out and events & WRITABLE and conn.state is not CLOSED:
                self._write(conn, now)
        except Exception as exc:  # noqa: BLE001 - one bad connection must not stop the server
            self._failed(conn, exc, now)

    def _failed(self, conn: Connection, exc: Exception, now: float) -> None:
        """A connection's handler raised: EAGAIN means the readiness was gone by the time we
        read (nothing lost); another OSError, that the peer reset or the socket broke;
        anything else is a bug of ours, said out loud. Either way but the first, it ends."""
        if isinstance(exc, BlockingIOError):
            return
        if isinstance(exc, OSError):
            reason = _reason(exc)
        else:
            self.telemetry.notice("error", f"fd {conn.fd}: {exc!r}; closed it")
            traceback.print_exc(file=sys.stderr)
            reason = f"internal error: {exc!r}"
        if conn.state is not CLOSED:
            self._close(conn, reason, now)

    def _read_ready(self, conn: Connection, events: int, now: float) -> None:
        """A connection (or a proxy's leg) reported readable: edge reads on (_read_edge);
        level and oneshot make one recv per readiness. What is read goes to `_received`
        (a proxy forwards it: engine/proxying.py)."""
        if self._edge:
            self._read_edge(conn, events, now)
            return
        try:
            data = conn.sock.recv(self._read_size)
        except BlockingIOError:
            return  # readiness gone by the time we read: nothing lost
        self._received(conn, data, now)

    def _read_edge(self, conn: Connection, events: int, now: float) -> None:
        """Edge-triggered: read until the queue is empty, or the budget runs out and the fd
        goes on the pending list (another edge will not come for bytes already queued).

        A short read (less than asked) of a TCP stream emptied the receive queue at that
        moment, and any later arrival raises a new edge, so it can stop there without the
        failing recv that proves EAGAIN (as nginx does) - unless a FIN came with the data:
        it raises no edge of its own, so with RDHUP in the events (the epoll backend
        registers EPOLLRDHUP on edge) the reader goes on to EOF."""
        recv = conn.sock.recv
        size = self._read_size
        naive = self.lab.naive_edge
        # A FIN or an error may wait behind the data; and a pending-list pass (READ|WRITE)
        # has no event to go by: read to the end then.
        eof_pending = events & (RDHUP | WRITE | ERROR | HANGUP)
        for _ in range(self.config.edge_budget):
            try:
                data = recv(size)
            except BlockingIOError:
                return  # drained: the next arrival raises a new edge
            self._received(conn, data, now)
            if not conn.interest & READ or naive:
                return  # stopped reading (closed, backpressure) - or the lab's classic bug
            if 0 < len(data) < size and not eof_pending:
                return  # a short read emptied the queue: the next arrival is a new edge
        self._pending[conn.fd] = None

    def _received(self, conn: Connection, data: bytes, now: float) -> None:
        if not data:
            conn.peer_closed = True
            self._update(conn, now)
            return
        conn.read_bytes += len(data)
        conn.last_read_at = now
        if self._echo:  # the common case, without a call: echo is the identity
            conn.read_msgs += 1
            reply = data
        else:
            reply = self._protocol(conn, data)
        if reply:
            if conn.out:
                conn.out += reply
                if self._max_out is not None and len(conn.out) > self._max_out:
                    self._close_guarded(conn, OUT_BUFFER, out_buffer_note(self._max_out), now)
                    return
            else:
                # Write-through: most replies fit the socket buffer, saving a wait for WRITE.
                try:
                    sent = conn.sock.send(reply)
                except BlockingIOError:
                    sent = 0
                self._sent(conn, reply, sent, now)
                return
            self._update(conn, now)
        elif conn.closing:
            self._update(conn, now)

    def _sent(self, conn: Connection, reply: bytes | memoryview, sent: int, now: float) -> None:
        """After a write-through send: count it, and queue what the kernel did not take."""
        if sent:
            conn.sent_bytes += sent
            conn.sent_msgs += 1
        if sent < len(reply):
            rest = memoryview(reply)[sent:]
            if conn.out:
                conn.out += rest
            else:  # the first bytes to wait: the buffer is made now (Connection.out)
                conn.out = bytearray(rest)
            if self._max_out is not None and len(conn.out) > self._max_out:
                self._close_guarded(conn, OUT_BUFFER, out_buffer_note(self._max_out), now)
                return
            self._update(conn, now)
        elif conn.closing:
            self._update(conn, now)

    def _write(self, conn: Connection, now: float) -> None:
        out = conn.out
        edge = self._edge
        while out:
            try:
                sent = conn.sock.send(out)
            except BlockingIOError:
                break
            except OSError as exc:
                self._close(conn, _reason(exc), now)
                return
            conn.sent_bytes += sent
            conn.sent_msgs += 1
            conn.last_write_at = now
            del out[:sent]
            if not edge:
                break  # level: one send per readiness, the next wait says if there is room
        self._update(conn, now)

    def _update(self, conn: Connection, now: float) -> None:
        """Derive reading, WRITE interest and state from the connection's flags and buffer."""
        out_len = len(conn.out)
        if (conn.peer_closed or conn.closing) and not out_len:
            self._close(conn, "peer closed" if conn.peer_closed else "closed by protocol", now)
            return
        self._backpressure(conn, out_len)
        reading = not (conn.user_paused or conn.backpressured or conn.peer_closed
                       or conn.closing)
        interest = READ if reading else 0
        if out_len or self.lab.busy_writable:
            interest |= WRITE
        if interest != conn.interest:
            self._set_interest(conn, interest)
        if conn.closing:
            state = CLOSING
        elif conn.peer_closed:
            state = HALF_CLOSED
        elif reading:
            state = OPEN
        else:
            state = READ_PAUSED
        if state is not conn.state:
            conn.set_state(state, now)

    def _backpressure(self, conn: Connection, out_len: int) -> None:
        """Stop reading a connection whose out-buffer passed the high-water mark (its peer
        does not read what we send) until it drains below the low one."""
        was = conn.backpressured
        conn.backpressured = self._pressed(was, out_len)
        if was and not conn.backpressured and self._edge:
            self._pending[conn.fd] = None  # bytes that queued meanwhile raise no edge

    def _service_pending(self, now: float) -> None:
        batch = list(self._pending)
        self._pending.clear()
        conns = self._conns
        for fd in batch:
            conn = conns.get(fd)
            if conn is not None:
                self._service(conn, READ | WRITE, now)
            elif fd == self._listen_fd and self._listen_interest:
                self._accept(now)

    def _rearm(self, ready: list[tuple[int, int]]) -> None:
        """Oneshot: the kernel disarmed every fd it reported; arm them again (with the
        no-rearm lab, the connections stay disarmed; the listener and control fd never do,
        or the switch could not be turned off again)."""
        backend = self._backend
        forget = self.lab.no_rearm
        for fd, _ in ready:
            conn = self._conns.get(fd)
            if conn is not None:
                if forget:
                    continue
                interest = conn.interest
            elif fd == self._listen_fd:
                interest = self._listen_interest
            elif fd == self._control_fd or fd in self._routes:
                interest = READ
            else:
                continue
            if interest:
                backend.modify(fd, interest)

    # ---- accept ------------------------------------------------------------------------

    def _accept(self, now: float) -> None:
        """Accept until EAGAIN. Out of fds: stop watching the listener for a while (the
        connection stays in the backlog, so a level-triggered listener would spin)."""
        listener = self._listener
        max_conns = self.config.max_conns
        telemetry, counts = self.telemetry, self.counts
        while True:
            if max_conns is not None and len(self._conns) >= max_conns:
                self._set_listener(0)  # resumes when a connection closes
                self._accept_backoff = ACCEPT_BACKOFF[0]  # the limit stopped it, not fds
                return
            if self._accept_resume_at is not None:
                return  # paused by the last adopt (proxy: no fd left for its upstream)
            try:
                sock, addr = listener.accept()
            except BlockingIOError:  # the backlog is drained: the pause starts short again
                self._out_of_fds = False
                self._accept_backoff = ACCEPT_BACKOFF[0]
                return
            except OSError as exc:
                if exc.errno in OUT_OF_FDS:
                    self._out_of_fds = True
                    counts.accept_errors += 1
                    if self.lab.emfile_spin:
                        return  # the lab's bug: leave the listener armed and spin
                    self._accept_resume_at = now + self._accept_backoff
                    self._chores_changed()
                    telemetry.notice(
                        "warning", f"accept: {os.strerror(exc.errno)}; pausing accept for "
                        f"{self._accept_backoff * 1000:.0f} ms", key="accept-backoff")
                    self._accept_backoff = min(self._accept_backoff * 2, ACCEPT_BACKOFF[1])
                    self._set_listener(0)
                    return
                if exc.errno in (errno.ECONNABORTED, errno.EPROTO, errno.EPERM):
                    continue  # the peer gave up while queued: next one
                # Anything else: say so and try again after a pause, rather than stop serving.
                counts.accept_errors += 1
                telemetry.notice("error", f"accept: {exc.strerror or exc!r}", key="accept-error")
                self._accept_resume_at = now + self._accept_backoff
                self._chores_changed()
                self._set_listener(0)
                return
            # Not the back-off: a proxy's client can come in and find no fd for its upstream.
            self._out_of_fds = False
            counts.accepted += 1
            limit = self._backend.fd_limit
            if limit is not None and sock.fileno() >= limit:
                self._hold(sock, addr, limit)
                return
            self._adopt(sock, addr, now)

    def _adopt(self, sock: socket.socket, addr: tuple, now: float) -> None:
        """An accepted socket becomes a served connection."""
        if not self._prepared(sock):
            return
        conn = Connection(self._next_cid, sock, peer_name(addr), now)
        self._next_cid += 1
        try:
            self._set_interest(conn, READ | WRITE if self.lab.busy_writable else READ)
        except BackendError as exc:
            self.counts.rejected += 1
            self.telemetry.notice("warning", f"refused a connection: {exc}", key="reject")
            sock.close()
            return
        self._enlist(conn)

    def _prepared(self, sock: socket.socket) -> bool:
        """An accepted socket made ready to serve: non-blocking, no Nagle, the configured
        send buffer. False (closed, counted as rejected) if its peer was gone before we got
        to it (a reset in the backlog)."""
        try:
            sock.setblocking(False)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self.config.sndbuf:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, self.config.sndbuf)
        except OSError:
            sock.close()
            self.counts.rejected += 1
            return False
        return True

    def _pressed(self, was: bool, queued: int) -> bool:
        """Backpressure's hysteresis over the bytes queued for a peer: on past the
        high-water mark, off below the low one, as it was in between."""
        if self.lab.no_backpressure:
            return False
        if queued > self.config.high_water:
            return True
        return was and queued >= self.config.low_water

    def _enlist(self, conn: Connection) -> None:
        """A served connection joins the tables (the proxy enlists both legs of a pair)."""
        self._conns[conn.fd] = conn
        if conn.fd < self._conns_top_fd:
            self._conns_disordered = True  # accept gave a freed lower fd: it went in last
        self._conns_top_fd = conn.fd
        by_fd = self._by_fd
        if conn.fd >= len(by_fd):
            by_fd.extend([None] * (conn.fd + 1 - len(by_fd)))  # in place: the loop holds it
        by_fd[conn.fd] = conn

    def _hold(self, sock: socket.socket, addr: tuple, limit: int) -> None:
        """select cannot watch this fd, and every fd below its limit is taken (accept gives
        the lowest free one). Keep the client, unserved, and stop accepting: the next ones
        wait in the backlog, as at --max-conns, until a connection closes (`_release`)."""
        self._held = (sock, addr)
        self._set_listener(0)
        self.telemetry.notice(
            "warning", f"{self._backend.name} watches only fds below {limit} (FD_SETSIZE): "
            f"accept paused with fd {sock.fileno()}; new clients wait in the backlog",
            key="fd-setsize")

    def _release(self, now: float) -> None:
        """Move the held client to the lowest free fd (dup) and serve it, if that fd is one
        the backend can watch now; then accept again."""
        sock, addr = self._held
        limit = self._backend.fd_limit
        if limit is not None:
            try:
                low = os.dup(sock.fileno())
            except OSError:
                return  # out of fds: a later close tries again
            if low >= limit:
                os.close(low)  # another thread took the freed fd: wait for the next close
                return
            sock.close()
            sock = socket.socket(fileno=low)
        self._held = None
        self._adopt(sock, addr, now)
        if self._accept_resume_at is None:
            self._set_listener(READ)

    def _set_listener(self, interest: int) -> None:
        if interest != self._listen_interest and self._listen_fd >= 0:  # -1: released (proxy)
            self._apply(self._listen_fd, self._listen_interest, interest)
            self._listen_interest = interest

    # ---- registrations -----------------------------------------------------------------

    def _set_interest(self, conn: Connection, interest: int) -> None:
        if self._completion is not None:
            self._completion.interest(conn, interest)  # operations, not registrations
            return
        self._apply(conn.fd, conn.interest, interest)
        conn.interest = interest

    def _apply(self, fd: int, old: int, new: int) -> None:
        """An fd with no interest leaves the backend: poll and epoll report ERR/HUP even for
        an empty mask, which would wake a paused connection's loop forever."""
        backend = self._backend
        if not new:
            backend.unregister(fd)
            self._nreg -= 1
        elif not old:
            backend.register(fd, new)
            self._nreg += 1
        else:
            backend.modify(fd, new)

    def _register(self, fd: int, interest: int) -> None:
        self._apply(fd, 0, interest)

    def _registrations(self):
        if self._listen_interest:
            yield self._listen_fd, self._listen_interest
        yield self._control_fd, READ
        for fd, route in self._routes.items():
            if fd != self._listen_fd and route.watched:
                yield fd, READ
        for fd, conn in self._conns.items():
            if conn.interest:
                yield fd, conn.interest

    # ---- commands ----------------------------------------------------------------------

    def _run_commands(self, now: float) -> None:
        try:
            os.eventfd_read(self._control_fd)
        except BlockingIOError:
            pass
        while self._commands:
            command, future = self._commands.popleft()
            if isinstance(command, cmd.Step) and self._stepper is not None:
                self._stepper.grant(future)  # answered once that wait call is made
                continue
            try:
                outcome = self._execute(command, now)
            except Exception as exc:  # noqa: BLE001 - a command must not kill the loop
                outcome = cmd.Outcome(False, f"{type(command).__name__} failed: {exc!r}")
            if not outcome.ok:
                self.telemetry.notice("warning", outcome.message)
            future.set_result(outcome)

    def _execute(self, command: object, now: float) -> cmd.Outcome:
        match command:
            case cmd.Switch(backend=name, trigger=trigger):
                return self._switch(name or self._backend.name, trigger or self._backend.trigger)
            case cmd.CloseConnection(fd=fd):
                conn = self._conns.get(fd)
                if conn is None:
                    return cmd.Outcome(False, f"fd {fd} is not an open connection")
                self._close(conn, "closed by user", now)
                return cmd.Outcome(True, f"closed fd {fd} ({conn.peer})")
            case cmd.PauseReading(fd=fd, paused=paused):
                conn = self._conns.get(fd)
                if conn is None:
                    return cmd.Outcome(False, f"fd {fd} is not an open connection")
                conn.user_paused = paused
                self._update(conn, now)
                if not paused and self._edge:
                    self._pending[fd] = None
                return cmd.Outcome(True, f"{'paused' if paused else 'resumed'} reading fd {fd}")
            case cmd.SetLab(name=name, on=on):
                return self._set_lab(name, on, now)
            case cmd.Watch(fds=fds):
                self.telemetry.watched = fds
                return cmd.Outcome(True, "watching")
            case cmd.Step() | cmd.Continue():
                return self._step_mode(isinstance(command, cmd.Step))
            case cmd.ProxiesChanged():
                return self._sync_routes(now)
            case cmd.Stop():
                self._running = False
                return cmd.Outcome(True, "stopping")
        return cmd.Outcome(False, f"unknown command {command!r}")

    def _set_lab(self, name: str, on: bool, now: float) -> cmd.Outcome:
        if name not in LABS:
            return cmd.Outcome(False, f"no bug-lab switch {name!r}")
        self.lab.switch(name, on)
        for conn in list(self._conns.values()):
            self._update(conn, now)  # busy-writable and backpressure change interest
            if not on and self._edge:
                self._pending[conn.fd] = None  # recover what a naive edge left behind
        if not on and name == "no-rearm" and self._backend.trigger == ONESHOT:
            for fd, conn in self._conns.items():
                if conn.interest:
                    self._backend.modify(fd, conn.interest)  # armed again
        return cmd.Outcome(True, f"bug lab {name} {'on' if on else 'off'}")

    def _step_mode(self, on: bool) -> cmd.Outcome:
        """Enter step mode (a Step while running free) or leave it (Continue)."""
        if on:
            self._stepper = Stepper(self.state, self.telemetry)
            message = "step mode: the engine stops before each wait call; clients wait"
        elif self._stepper is None:
            return cmd.Outcome(True, "not stepping")
        else:
            self._stepper.end("continued")
            self._stepper = None
            message = "continued: the engine runs at full speed"
        self._chores_changed()
        return cmd.Outcome(True, message)

    def _switch(self, name: str, trigger: str) -> cmd.Outcome:
        """Build a fresh backend from the engine's table and swap it in, or change nothing."""
        old = self._backend
        if (name, trigger) == (old.name, old.trigger):
            return cmd.Outcome(True, f"already {name}/{trigger}")
        if trigger == COMPLETION and self._proxied:
            return self._refuse(PROXY_COMPLETION)
        try:
            new = make_backend(name, trigger)
        except BackendError as exc:
            return self._refuse(str(exc))
        over = self._over_limit(new.fd_limit)
        if over:
            new.close()
            return self._refuse(
                f"{name} cannot watch fd {max(over)}: its fd_set holds only fds 0.."
                f"{new.fd_limit - 1} (FD_SETSIZE), and {len(over)} "
                f"{'fd is' if len(over) == 1 else 'fds are'} past it "
                "(paused connections count: they are registered again when they resume)")
        if self._completion is not None:
            self._leave_completion(time.monotonic())
        count = 0
        try:
            for fd, interest in self._registrations():
                if trigger == COMPLETION and fd in self._conns:
                    continue  # its recv and send operations follow (_completions)
                new.register(fd, interest)
                count += 1
        except (BackendError, OSError) as exc:
            new.close()
            self._completion = self._completions(old)
            return self._refuse(str(exc))
        self._backend = new
        self._completion = self._completions(new)
        self._edge = trigger == EDGE
        self._nreg = count
        self._chores_changed()
        old.close()
        if trigger == EDGE:
            # Bytes (or a backlog) from before the switch raise no edge: look at every fd once.
            self._pending.update(dict.fromkeys(self._conns))
            self._pending[self._listen_fd] = None
        if self._held is not None and new.fd_limit is None:
            self._release(time.monotonic())  # the new backend can watch the held client's fd
        message = f"switched {old.name}/{old.trigger} → {name}/{trigger} ({count} fds)"
        self.telemetry.notice("info", message)
        self.telemetry.refused = None
        return cmd.Outcome(True, message)

    def _completions(self, backend: Backend) -> Completions | None:
        """uring/completion: the read/write path of operations, each connection's first
        recv (and send, if bytes wait) submitted; None on every other backend."""
        if backend.trigger != COMPLETION:
            return None
        if self._proxied:
            raise BackendError(PROXY_COMPLETION)
        self._pending.clear()  # nothing to read by hand here
        completion = Completions(
            backend, self._read_size, None if self._echo else self._protocol, self._max_out,
            self._update, self._close,
            lambda conn, now: self._close_guarded(
                conn, OUT_BUFFER, out_buffer_note(self._max_out), now))
        for conn in self._conns.values():
            completion.pump(conn)
        return completion

    def _leave_completion(self, now: float) -> None:
        """Cancel every operation and reap its completion before the ring goes: the bytes they
        moved are counted and queued, and no buffer is the kernel's any more."""
        if not self._completion.drain(now):
            self.telemetry.notice("error", "io_uring operations did not complete after their "
                                  "cancel: their buffers are kept for the process's life")
        self._completion = None

    def _over_limit(self, limit: int | None) -> list[int]:
        """The fds a backend with this fd limit could not watch: every fd the engine has or
        will register, not only those registered now (a paused connection re-registers when
        it resumes, and that must not fail)."""
        if limit is None:
            return []
        fds = chain((self._listen_fd, self._control_fd), self._conns)
        return [fd for fd in fds if fd >= limit]

    def _refuse(self, reason: str) -> cmd.Outcome:
        self.telemetry.refused = (time.monotonic(), reason)
        return cmd.Outcome(False, f"switch refused: {reason}")

    # ---- closing -----------------------------------------------------------------------

    def _close(self, conn: Connection, reason: str, now: float) -> None:
        fd = conn.fd
        if conn.interest:
            self._set_interest(conn, 0)
        del self._conns[fd]
        self._by_fd[fd] = None
        self._pending.pop(fd, None)
        conn.note = reason
        conn.set_state(CLOSED, now)
        self._closed(conn, now)
        conn.out = NO_OUT
        conn.sock.close()
        if self._held is not None:
            self._release(now)
        elif self.config.max_conns is not None and self._accept_resume_at is None:
            self._set_listener(READ)
            if self._routes:
                self._watch_routes()  # the API's proxies count toward --max-conns too

    def _close_guarded(self, conn: Connection, guard: str, note: str, now: float) -> None:
        """A protection (engine/guards.py) ends the connection: counted, said, closed."""
        self.counts.guard_closes[guard] += 1
        # Keyed: a thousand idle clients closed at once make one notification, not a thousand.
        self.telemetry.notice("warning", f"closed fd {conn.fd} ({conn.peer}): {note}", key=guard)
        self._close(conn, note, now)

    def _closed(self, conn: Connection, now: float) -> None:
        """Count a connection that just closed, and keep its last row for a while."""
        counts = self.counts
        counts.closed += 1
        counts.closed_bytes_in += conn.bytes_in
        counts.closed_bytes_out += conn.bytes_out
        self.telemetry.closed(conn, now)

    def _close_all(self) -> None:
        now = time.monotonic()
        for conn in list(self._conns.values()):
            self._pending.pop(conn.fd, None)
            del self._conns[conn.fd]
            self._by_fd[conn.fd] = None
            conn.note = "server stopped"
            conn.set_state(CLOSED, now)
            self._closed(conn, now)
            conn.sock.close()
        if self._held is not None:
            self._held[0].close()
            self._held = None
        self._release_routes()
        if getattr(self, "_completion", None) is not None:
            self._leave_completion(now)
        backend = getattr(self, "_backend", None)
        if backend is not None:
            backend.close()
        if self._listener is not None:
            self._listener.close()
        if self._control_fd >= 0:
            os.close(self._control_fd)
            self._control_fd = -1


class LoopState:
    """The EngineState (structurally: engine/state.py) over the loop's own tables: what it
    points at is always current, and reading it costs the loop nothing."""

    __slots__ = ("_engine", "conns", "pending")

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self.conns: Mapping[int, Connection] = MappingProxyType(engine._conns)  # by fd
        self.pending: Mapping[int, None] = MappingProxyType(engine._pending)  # edge fds to read

    @property
    def config(self) -> EngineConfig:
        return self._engine.config

    @property
    def backend(self) -> Backend | None:
        return self._engine._backend

    @property
    def edge(self) -> bool:
        return self._engine._edge

    @property
    def running(self) -> bool:
        return self._engine._running

    @property
    def error(self) -> str | None:
        return self._engine.error

    @property
    def address(self) -> tuple[str, int]:
        return self._engine.address

    @property
    def registered(self) -> int:
        return self._engine._nreg

    @property
    def counts(self) -> LoopCounts:
        return self._engine.counts

    @property
    def proxy(self) -> ProxyFacts | None:
        return self._engine.proxy

    @property
    def completion(self) -> Completions | None:
        return self._engine._completion

    @property
    def listener(self) -> socket.socket | None:
        return self._engine._listener

    @property
    def listen_fd(self) -> int:
        return self._engine._listen_fd

    @property
    def listen_interest(self) -> int:
        return self._engine._listen_interest

    @property
    def control_fd(self) -> int:
        return self._engine._control_fd

    @property
    def lab(self) -> frozenset[str]:
        return self._engine.lab.names()

    @property
    def accept_paused(self) -> bool:
        return self._engine._accept_resume_at is not None

    @property
    def out_of_fds(self) -> bool:
        return self._engine._out_of_fds

    @property
    def accept_held(self) -> bool:
        return self._engine._held is not None

    @property
    def routes(self) -> tuple:
        engine = self._engine
        return tuple((fd, route.sock, route.proxy) for fd, route in engine._routes.items()
                     if fd != engine._listen_fd)

    @property
    def queued_commands(self) -> int:
        return len(self._engine._commands)

    @property
    def step(self):
        stepper = self._engine._stepper
        return None if stepper is None else stepper.info

    def registrations(self) -> Iterator[tuple[int, int]]:
        return self._engine._registrations()


def _listen(host: str, port: int, backlog: int) -> socket.socket:
    try:
        family, kind, proto, addr = resolve(host, port)
    except AddressError as exc:
        raise EngineStartError(str(exc)) from None
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(addr)
        sock.listen(backlog)
        sock.setblocking(False)
    except OSError as exc:
        sock.close()
        where = f"{host}:{port}"
        if exc.errno == errno.EADDRINUSE:
            raise EngineStartError(f"port {port} is already in use on {host}") from None
        if exc.errno == errno.EACCES:
            raise EngineStartError(
                f"permission denied to listen on {where} (ports below 1024 need privileges)"
            ) from None
        if exc.errno == errno.EADDRNOTAVAIL:
            raise EngineStartError(f"{host} is not an address of this machine") from None
        raise EngineStartError(f"cannot listen on {where}: {exc.strerror}") from None
    return sock


def _reason(exc: OSError) -> str:
    if isinstance(exc, ConnectionResetError):
        return "reset by peer"
    if isinstance(exc, BrokenPipeError):
        return "peer gone (broken pipe)"
    return exc.strerror or repr(exc)
