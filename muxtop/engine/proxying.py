"""The proxy's half of the engine (`muxtop --upstream HOST:PORT`): each accepted client is
paired with a non-blocking connection to the upstream, and the loop hands one leg's bytes to its
partner's socket instead of a protocol's reply.

A mixin of Engine (engine/loop.py): in proxy mode its methods stand in for the loop's
`_adopt`, `_received`, `_service`, `_update` and `_close` (bound as instance attributes, so the
echo path pays nothing for them). Between the legs each direction may have a pipe, the
toxics' hook (the contract's `Pipe`: feed, take, due, verdict, buffered); None is a
pass-through with no call at all.
"""

from __future__ import annotations

import errno
import heapq
import os
import socket
import struct
import time
from collections import deque
from typing import TYPE_CHECKING, Protocol

from muxtop import commands as cmd
from muxtop.backends import BackendError
from muxtop.engine.address import AddressError, peer_name
from muxtop.engine.connection import NO_OUT, Connection
from muxtop.engine.guards import ACCEPT_BACKOFF, OUT_BUFFER, OUT_OF_FDS, out_buffer_note
from muxtop.events import ERROR, HANGUP, READ, WRITE
from muxtop.proxy.registry import loops_back
from muxtop.snapshot import (
    CLOSED,
    CLOSING,
    CONNECTING,
    HALF_CLOSED,
    OPEN,
    PAIR_MARK,
    READ_PAUSED,
)

if TYPE_CHECKING:
    from collections.abc import Callable

    from muxtop.proxy.registry import Listener, Proxy, Registry

CLIENT, UPSTREAM = "client", "upstream"  # Leg.role
PROXY_NAME = "muxtop"  # the --upstream proxy's name in the registry (toxiproxy's API)
STREAMS = {CLIENT: "upstream", UPSTREAM: "downstream"}  # toxiproxy's name of what a leg reads
READABLE = READ | ERROR | HANGUP
CONNECT, PIPE, ACCEPT = 0, 1, 2  # what a timer is for
WRITABLE = WRITE | ERROR | HANGUP
GONE = ERROR | HANGUP  # a half-closed leg's only interest: its peer's reset
_LINGER_RESET = struct.pack("ii", 1, 0)  # SO_LINGER on, 0 s: close() sends RST
FAILURES_KEPT = 64  # upstream failures remembered for the findings
# connect(2) errors by what the user should hear
_CONNECT_WHY = {errno.ECONNREFUSED: "refused", errno.EHOSTUNREACH: "unreachable",
                errno.ENETUNREACH: "unreachable", errno.ETIMEDOUT: "connect timeout"}


class Pipe(Protocol):
    """One direction of one pair, between the leg that reads and the one that writes: what
    muxtop/proxy/toxics.py's pipes are (toxiproxy's toxics as state machines)."""

    def feed(self, data: bytes, now: float) -> None: ...
    def feed_eof(self, now: float) -> None: ...  # the source leg sent its FIN
    def take(self, now: float, limit: int) -> bytes: ...
    def due(self, now: float) -> float | None: ...
    # None; "eof": the FIN fed has come through, cross it; "close": end the pair once what
    # was taken is sent; "reset": reset both legs now.
    def verdict(self, now: float) -> str | None: ...

    @property
    def buffered(self) -> int: ...  # bytes held (they count toward backpressure)

    @property
    def applied(self) -> tuple[str, ...]: ...  # the toxics applied to this connection


class Leg(Connection):
    """One side of a proxied pair: the accepted client, or the connection to the upstream.

    A read the forward sends whole through the partner at once is counted once, on this leg,
    in `echoed_*` (as the echo fast path counts an echo): it is this leg's in and its
    partner's out. Two int updates a forward instead of four; the partner's `bytes_out` adds
    them, and the pair folds them into `read_*`/`sent_*` before it comes apart (`unpair`)."""

    __slots__ = ("partner", "role", "pipe", "connecting", "shut", "aborted", "target", "eof",
                 "wake", "route")

    def __init__(self, cid: int, sock: socket.socket, peer: str, now: float, role: str) -> None:
        super().__init__(cid, sock, peer, now)
        self.role = role
        self.partner: Leg | None = None  # None once the partner has closed
        self.pipe: Pipe | None = None  # bytes read here on their way to the partner
        self.connecting = False  # upstream: the non-blocking connect has not completed
        self.shut = False  # shutdown(SHUT_WR) done: the partner's FIN crossed
        self.aborted = False  # ended by an error or reset: the partner is reset too
        self.target = peer  # the address alone (peer also names the partner's fd)
        self.eof = False  # the FIN read here has come through its pipe: it may cross
        self.wake: float | None = None  # when the loop wakes for this leg's pipe
        self.route: Route | None = None  # the registry's proxy that accepted it, if any

    @property
    def bytes_out(self) -> int:
        partner = self.partner
        return self.sent_bytes + (partner.echoed_bytes if partner is not None else 0)

    @property
    def msgs_out(self) -> int:
        partner = self.partner
        return self.sent_msgs + (partner.echoed_msgs if partner is not None else 0)


def unpair(a: Leg, b: Leg) -> None:
    """The pair comes apart: what each forwarded through the other becomes plain counts
    (read here, sent there), so each keeps its figures alone. Totals do not move."""
    for src, sink in ((a, b), (b, a)):
        src.read_bytes += src.echoed_bytes
        src.read_msgs += src.echoed_msgs
        sink.sent_bytes += src.echoed_bytes
        sink.sent_msgs += src.echoed_msgs
        src.echoed_bytes = src.echoed_msgs = 0


class Route:
    """A proxy of the registry as the engine serves it: its listener, adopted, by fd."""

    __slots__ = ("proxy", "listener", "sock", "fd", "watched", "backoff")

    def __init__(self, proxy: Proxy, listener: Listener, sock: socket.socket) -> None:
        self.proxy = proxy  # the newest published Proxy of that listener
        self.listener = listener
        self.sock = sock
        self.fd = sock.fileno()
        self.watched = True  # registered READ; False while accept is paused (out of fds)
        self.backoff = ACCEPT_BACKOFF[0]  # the next pause out of fds; doubles, as the main's


class ProxyFacts:
    """What the detectors and the views read of the proxy (engine/diagnose.py)."""

    __slots__ = ("upstream", "failures", "connects", "failed")

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream  # HOST:PORT as the user named it
        # (when, why, the client's fd, words, the upstream it was: each proxy has its own)
        self.failures: deque[tuple[float, str, int, str, str]] = deque(maxlen=FAILURES_KEPT)
        self.connects = 0  # upstream connections completed
        self.failed = 0  # ...and failed (refused, unreachable, timed out)


class Proxying:
    """Engine methods for proxy mode (see the module docstring). Reads and writes the loop's
    own tables through `self`: it is part of the Engine."""

    def _proxy_start(self, upstream: tuple[str, int] | None,
                     pipes: Callable[[str, int, float], Pipe | None] | None,
                     registry: Registry | None) -> None:
        """Proxy mode: bind this mixin's methods over the loop's. Called by Engine.__init__.
        `upstream`: the --port listener's (None: it serves no proxy, only the registry's
        listeners do); `pipes`: each direction's pipe; `registry`: more proxies (the API)."""
        if upstream is not None:
            host, port = upstream
            self._upstream_name = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        else:
            self._upstream_name = ""  # --api alone: no listener of its own (_routes_start)
        self._main_route: Route | None = None  # the --port listener's, with a registry
        self._upstream_addr: tuple[int, tuple] | None = None  # resolved at start
        self._pipes = pipes
        self._timers: list[tuple[float, int, Leg, int]] = []  # (due, seq, leg, CONNECT|PIPE)
        self._timer_seq = 0
        self.proxy = ProxyFacts(self._upstream_name)
        self._echo = False  # no echo fast path: every read goes to _service_leg
        self._adopt = self._adopt_pair
        self._service = self._service_leg
        self._received = self._forward  # what a read delivers goes to the partner
        self._update = self._update_leg
        self._close_conn = self._close  # the loop's own close, for one leg
        self._close = self._close_leg

    def _resolve_upstream(self) -> None:
        """getaddrinfo once, at start: a name that does not resolve stops the start."""
        host, port = self.config.upstream
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except (socket.gaierror, UnicodeError, ValueError) as exc:
            why = exc.strerror if isinstance(exc, socket.gaierror) else "not a valid host name"
            raise AddressError(f"cannot resolve upstream {host!r}: {why}") from None
        family, _, _, _, sockaddr = infos[0]
        self._upstream_addr = (family, sockaddr)

    def _refuse_own_address(self) -> None:
        """An upstream that is muxtop's own listener (registry.loops_back)."""
        if loops_back(self.address, self._upstream_addr[1]):
            raise AddressError(f"--upstream {self._upstream_name} is muxtop's own address: "
                               "every client would connect to muxtop again, without end")

    # ---- the registry's proxies (--api, --toxic) -------------------------------------------

    def _routes_start(self) -> None:
        """At start: the --upstream proxy joins the registry (named PROXY_NAME) with the
        engine's own listener; then every listener the registry holds is adopted."""
        registry = self._registry
        if self.config.upstream is not None:
            registry.create({"name": PROXY_NAME, "listen": peer_name(self.address),
                             "upstream": self._upstream_name}, listening=self._listener)
        else:
            # --api alone is toxiproxy's server: it listens on the API and on each proxy's own
            # address, nowhere else. The listener start() made (on a loopback port of the
            # kernel's choice) goes before anything could connect to it.
            self._set_listener(0)
            self._listener.close()
            self._listener, self._listen_fd = None, -1
            self.address = ("", 0)  # Snapshot.listen "": none
        registry.on_change = self._proxies_changed
        self._sync_routes(time.monotonic())

    def _proxies_changed(self) -> None:
        """The registry's writer (the API's thread) wakes the loop to look."""
        self.submit(cmd.ProxiesChanged())

    def _sync_routes(self, now: float) -> cmd.Outcome:
        """Serve the registry as it is now: retired listeners go (closing every pair they
        accepted, then released), new ones are adopted and watched."""
        current = {p.listener: p for p in self._registry.proxies() if p.listener is not None}
        for route in list(self._routes.values()):
            proxy = current.get(route.listener)
            if proxy is None or route.listener.retired:
                self._retire_route(route, now)
            else:
                route.proxy = proxy  # the same proxy, published anew (its toxics stay)
        known = {route.listener for route in self._routes.values()}
        adopted = 0
        for listener, proxy in current.items():
            if listener in known or listener.retired:
                continue
            sock = listener.adopt()
            if sock is None:
                continue
            route = Route(proxy, listener, sock)
            if sock is self._listener:
                self._main_route = route  # watched already, as the engine's own
            else:
                by_fd = self._by_fd
                if route.fd >= len(by_fd):  # in place: the loop holds it; None: not a conn
                    by_fd.extend([None] * (route.fd + 1 - len(by_fd)))
                try:
                    sock.setblocking(False)
                    self._register(route.fd, READ)
                except (BackendError, OSError) as exc:
                    self.telemetry.notice("warning", f"proxy {proxy.name}: cannot watch its "
                                          f"listener: {exc}", key="route")
                    listener.release()
                    continue
            self._routes[route.fd] = route
            adopted += 1
        self._toxics_changed(now)
        return cmd.Outcome(True, f"proxies: {len(self._routes)} listening ({adopted} new)")

    def _toxics_changed(self, now: float) -> None:
        """A toxic added, changed or removed (the API, the T menu, /reset) acts now: each
        pipe is flushed, so what a removed toxic held goes out at once, a changed one re-times
        what it holds, and the next wake follows the new due times (not the old timer's)."""
        for leg in [c for c in self._conns.values() if getattr(c, "pipe", None) is not None]:
            if leg.state is not CLOSED:
                self._flush_pipe(leg, now)

    def _retire_route(self, route: Route, now: float) -> None:
        """A proxy down, deleted or changed: stop accepting, close what it accepted, release
        the listener (the registry waits for that before binding the address again)."""
        del self._routes[route.fd]
        if route is self._main_route:
            self._main_route = None
            self._set_listener(0)
            self._listen_fd = -1  # released below: its number may be reused
        elif route.watched:
            self._apply(route.fd, READ, 0)
        for leg in [c for c in self._conns.values() if getattr(c, "route", None) is route]:
            if leg.role is CLIENT:
                self._close_leg(leg, f"proxy {route.proxy.name} down", now)
        route.listener.release()

    def _release_routes(self) -> None:
        """The engine stops: every adopted listener is released (the engine's own too)."""
        for route in self._routes.values():
            route.listener.release()
        self._routes.clear()

    def _pause_accept(self, route: Route | None, now: float) -> None:
        """Out of fds: stop accepting on this listener for a moment, as the loop's accept
        does, instead of taking (and closing) every client of the backlog in turn."""
        self.counts.accept_errors += 1
        if route is None or route is self._main_route:
            self._out_of_fds = True
            self._accept_resume_at = now + self._accept_backoff
            self._accept_backoff = min(self._accept_backoff * 2, ACCEPT_BACKOFF[1])
            self._chores_changed()
            self._set_listener(0)
        elif route.watched:
            self._unwatch(route)
            self._timer(now + route.backoff, route, ACCEPT)
            route.backoff = min(route.backoff * 2, ACCEPT_BACKOFF[1])

    def _unwatch(self, route: Route) -> None:
        """Stop accepting on a proxy's listener (its clients wait in the backlog)."""
        if route.watched:
            self._apply(route.fd, READ, 0)
            route.watched = False

    def _watch_routes(self) -> None:
        """A connection closed under --max-conns: the proxies' listeners accept again (one
        paused out of fds too: the close freed one)."""
        for route in self._routes.values():
            if not route.watched and route is not self._main_route:
                self._register(route.fd, READ)
                route.watched = True

    def _accept_route(self, fd: int, now: float) -> None:
        """Accept until EAGAIN on a registry proxy's listener."""
        route = self._routes[fd]
        limit = self._backend.fd_limit
        max_conns = self.config.max_conns  # counts every proxy's legs
        while True:
            if max_conns is not None and len(self._conns) >= max_conns:
                self._unwatch(route)  # watched again when a connection closes (_close)
                route.backoff = ACCEPT_BACKOFF[0]  # the limit stopped it, not fds
                return
            try:
                sock, addr = route.sock.accept()
            except BlockingIOError:  # the backlog is drained: the pause starts short again
                route.backoff = ACCEPT_BACKOFF[0]
                return
            except OSError as exc:
                if exc.errno in (errno.ECONNABORTED, errno.EPROTO, errno.EPERM):
                    continue  # the peer gave up while queued: next one
                self.telemetry.notice("warning", f"proxy {route.proxy.name}: accept: "
                                      f"{exc.strerror or exc!r}; paused for "
                                      f"{route.backoff * 1000:.0f} ms", key="route-accept")
                # Left watched, a level-triggered listener with a backlog would spin: stop
                # watching it for a moment (the main listener backs off the same way).
                self._pause_accept(route, now)
                return
            self.counts.accepted += 1
            if limit is not None and sock.fileno() >= limit:
                sock.close()  # select cannot watch it
                self.counts.rejected += 1
                continue
            self._adopt_pair(sock, addr, now, route)
            if not route.watched:
                return  # paused: no fd for the upstream

    # ---- a new pair ----------------------------------------------------------------------

    def _adopt_pair(self, sock: socket.socket, addr: tuple, now: float,
                    route: Route | None = None) -> None:
        """An accepted client: start the connect to the upstream, and serve both as rows.
        `route`: the registry's proxy whose listener accepted it (None: the --port one)."""
        if route is None:
            route = self._main_route
        if route is not None:
            target, name, pipes = route.proxy.upstream_sockaddr, route.proxy.upstream, \
                route.proxy.toxics.pipe
        else:
            target, name, pipes = self._upstream_addr, self._upstream_name, self._pipes
        if target is None:  # no upstream here (--api alone), or one that did not resolve
            sock.close()
            self.counts.rejected += 1
            self.telemetry.notice("warning", "closed a client: no upstream for it "
                                  f"({name or 'no --upstream'})", key="no-upstream")
            return
        if not self._prepared(sock):
            return
        family, sockaddr = target
        up = self._upstream_socket(family, sock, route, now)
        if up is None:
            return
        peer = peer_name(addr)
        client = Leg(self._next_cid, sock, peer, now, CLIENT)
        upstream = Leg(self._next_cid + 1, up, name, now, UPSTREAM)
        self._next_cid += 2
        client.partner, upstream.partner = upstream, client
        client.peer = f"{peer}{PAIR_MARK}{upstream.fd}"
        upstream.peer = f"upstream {name}{PAIR_MARK}{client.fd}"
        client.route = upstream.route = route
        if pipes is not None:
            client.pipe = pipes(STREAMS[CLIENT], client.cid, now)
            upstream.pipe = pipes(STREAMS[UPSTREAM], client.cid, now)
        code = up.connect_ex(sockaddr)
        upstream.connecting = code in (errno.EINPROGRESS, errno.EAGAIN)
        if upstream.connecting:  # its history begins there, not at "open" a moment before
            upstream.state, upstream.history = CONNECTING, ((now, CONNECTING),)
        try:
            self._enlist(client)
            self._enlist(upstream)
            self._arm(upstream, now)
            self._arm(client, now)
        except BackendError as exc:  # select: the upstream's fd is past FD_SETSIZE
            self.counts.rejected += 1
            self.telemetry.notice("warning", f"refused a connection: {exc}", key="reject")
            client.aborted = True
            self._close_leg(client, f"refused: {exc}", now)
            return
        self._start_pair(client, upstream, code, now)

    def _upstream_socket(self, family: int, client: socket.socket, route: Route | None,
                         now: float) -> socket.socket | None:
        """A non-blocking socket for the client's upstream leg; None (the client closed,
        counted as rejected) when there is no fd for it, which also pauses accept."""
        try:
            up = socket.socket(family, socket.SOCK_STREAM)
        except OSError as exc:  # out of fds: this client goes, the rest wait in the backlog
            client.close()
            self.counts.rejected += 1
            self.telemetry.notice("warning", f"no socket for the upstream: {exc.strerror}",
                                  key="upstream-socket")
            if exc.errno in OUT_OF_FDS:
                self._pause_accept(route, now)
            return None
        up.setblocking(False)
        if self.config.sndbuf:
            up.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, self.config.sndbuf)
        return up

    def _start_pair(self, client: Leg, upstream: Leg, code: int, now: float) -> None:
        """A pair just enlisted: its toxics' first timers, and the connect's outcome (or
        its timeout, while it is in progress)."""
        for leg in (client, upstream):
            if leg.pipe is not None and (due := leg.pipe.due(now)) is not None:
                self._timer(due, leg, PIPE)  # a timeout toxic runs from the start
        if upstream.connecting:
            self._timer(now + self.config.connect_timeout, upstream, CONNECT)
        elif code:
            self._upstream_failed(upstream, code, now)
        else:
            self._connected(upstream, now)

    def _connected(self, up: Leg, now: float) -> None:
        up.connecting = False
        self.proxy.connects += 1
        try:
            up.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass
        client = up.partner
        self._arm(up, now)
        if client is not None:
            self._arm(client, now)
            if self._edge:
                self._pending[client.fd] = None  # what it sent while we connected raised no edge

    def _finish_connect(self, up: Leg, now: float) -> None:
        """The connecting socket turned writable (or failed): SO_ERROR says which."""
        code = up.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if code:
            self._upstream_failed(up, code, now)
            return
        try:
            up.sock.getpeername()
        except OSError:
            return  # not connected yet (a pending-list pass, not an event): wait on
        self._connected(up, now)

    def _upstream_failed(self, up: Leg, code: int | str, now: float) -> None:
        """The connect failed: the client's row says why, a finding counts it, both close."""
        if isinstance(code, int):
            why = _CONNECT_WHY.get(code, "failed")
            text = f"upstream {up.target} {why}: {os.strerror(code)}"
        else:
            why = code
            text = f"upstream {up.target}: {code}"
        self._upstream_gone(up, why, text, now)
        self.proxy.failed += 1
        client = up.partner
        if client is not None:
            client.note = text  # the client's row says why it was closed
        self._close_leg(up, text, now)

    def _upstream_gone(self, up: Leg, why: str, text: str, now: float) -> None:
        client = up.partner
        fd = client.fd if client is not None else -1
        self.proxy.failures.append((now, why, fd, text, up.target))

    # ---- timers ----------------------------------------------------------------------------

    def _timer(self, when: float, leg: Leg | Route, kind: int) -> None:
        if kind == PIPE:
            if leg.wake is not None and leg.wake <= when:
                return  # an earlier wake is set: the pipe says its next due then
            leg.wake = when  # an entry for a later wake goes stale (_run_timers)
        self._timer_seq += 1
        heapq.heappush(self._timers, (when, self._timer_seq, leg, kind))
        if not self._chores:
            self._chores_changed()  # the loop now looks at the timers after each wait

    def _run_timers(self, now: float) -> None:
        """Connect timeouts and the pipes' due times (latency, bandwidth, slicer, ...)."""
        timers = self._timers
        while timers and timers[0][0] <= now:
            when, _, leg, kind = heapq.heappop(timers)
            if kind == ACCEPT:  # `leg` is a Route whose accept paused out of fds
                if self._routes.get(leg.fd) is leg and not leg.watched:
                    self._register(leg.fd, READ)
                    leg.watched = True
                continue
            if leg.state is CLOSED:
                continue
            if kind == CONNECT:
                if leg.connecting:
                    self._upstream_failed(
                        leg, f"connect timeout ({self.config.connect_timeout:g} s)", now)
            elif when == leg.wake:
                leg.wake = None
                self._flush_pipe(leg, now)
        if not timers:
            self._chores_changed()

    # ---- the hot loop ----------------------------------------------------------------------

    def _proxy_loop(self) -> None:
        """The loop of engine/loop.py (`_loop`), its echo handler replaced by the proxy's:
        a leg's read goes straight out of one buffer to its partner's socket when nothing
        waits before it there (no pipe, an empty out-buffer); all else goes the general way,
        `_service_leg`. Its own copy, so the echo loop pays no test for the proxy."""
        monotonic = time.monotonic
        wait = self._wait_step
        next_publish = monotonic() + self.config.publish_interval
        service = self._service_leg
        by_fd = self._by_fd
        rxview = memoryview(bytearray(self._read_size))
        readv, rxbufs, write = os.readv, (rxview,), os.write
        size = 0
        chunk = rxview[:0]
        while self._running:
            backend = self._backend
            pending = self._pending
            full = self._read_size if self._edge and not self.lab.naive_edge else -1
            now = monotonic()
            ready = wait.wait(backend, now, 0.0 if pending else self._timeout(now, next_publish),
                              self._nreg)
            after = wait.after
            for fd, events in ready:
                leg = by_fd[fd]
                if leg is None:
                    self._not_a_connection(fd, after)
                    continue
                leg.last_events = events
                leg.last_ready = after
                sink = leg.partner
                if not (events == READ and leg.interest == READ and sink is not None
                        and not sink.out and leg.pipe is None):
                    service(leg, events, after)
                    continue
                # The forward: one read, one write-through send to the partner. An error
                # ends the leg it came from (`broken`), and crosses to the other.
                broken = leg
                try:
                    got = readv(fd, rxbufs)
                    if not got:
                        service(leg, READ, after)  # FIN: recv says b"" again there
                        continue
                    if got != size:
                        size = got
                        chunk = rxview[:size]
                    if got == full:
                        pending[fd] = None
                    leg.last_read_at = after
                    broken = sink
                    try:
                        sent = write(sink.fd, chunk)
                    except BlockingIOError:
                        sent = 0
                    if sent == size:  # read here, sent whole through the partner (Leg)
                        leg.echoed_bytes += size
                        leg.echoed_msgs += 1
                        sink.last_write_at = after
                    else:  # the rest waits in the partner's out-buffer
                        leg.read_bytes += size
                        leg.read_msgs += 1
                        self._sent_part(sink, chunk, sent, after)
                except Exception as exc:  # noqa: BLE001 - as in _service_leg (EAGAIN included)
                    self._leg_failed(broken, exc, after)
            if pending or self._chores or after >= next_publish:
                next_publish = self._between_waits(backend, ready, after, next_publish)

    def _sent_part(self, sink: Leg, chunk: memoryview, sent: int, now: float) -> None:
        """A write-through the partner's socket took only part of (or none): count what went,
        queue the rest in its out-buffer."""
        if sent:
            sink.sent_bytes += sent
            sink.sent_msgs += 1
            sink.last_write_at = now
        sink.out = bytearray(chunk[sent:])
        self._update_leg(sink, now)

    # ---- moving bytes ----------------------------------------------------------------------

    def _service_leg(self, leg: Leg, events: int, now: float) -> None:
        """Handle what a wait reported for one leg (or a pending edge fd)."""
        try:
            if leg.connecting:
                if events & WRITABLE:
                    self._finish_connect(leg, now)
                return
            if events & READABLE and leg.interest & READ:
                self._read_ready(leg, events, now)  # each read forwarded (_received)
            if leg.out and events & WRITABLE and leg.state is not CLOSED:
                self._write_leg(leg, now)
            elif events & GONE and leg.interest == GONE:
                # Reset after its FIN: nobody is left to take what is held for it. Dropped,
                # and the reset crosses, as any reset does.
                leg.aborted = True
                self._close_leg(leg, "peer reset while half-closed", now)
        except Exception as exc:  # noqa: BLE001 - one bad pair must not stop the server
            self._leg_failed(leg, exc, now)

    def _forward(self, src: Leg, data: bytes, now: float) -> None:
        """Bytes read from one leg go to its partner: sent through at once when nothing waits
        before them, else queued behind what does (the partner's out-buffer)."""
        if not data:
            self._read_eof(src, now)
            return
        src.read_bytes += len(data)
        src.read_msgs += 1
        src.last_read_at = now
        sink = src.partner
        if sink is None:
            return  # the partner is gone and this leg closes once its output is out
        pipe = src.pipe
        if pipe is not None:
            pipe.feed(data, now)
            self._flush_pipe(src, now)
            return
        if sink.out:
            sink.out += data
            self._update_leg(sink, now)
            return
        try:
            sent = sink.sock.send(data)
        except BlockingIOError:
            sent = 0
        except OSError as exc:
            self._leg_failed(sink, exc, now)
            return
        if sent == len(data):
            sink.sent_bytes += sent
            sink.sent_msgs += 1
            sink.last_write_at = now
        else:
            self._sent_part(sink, memoryview(data), sent, now)

    def _read_eof(self, src: Leg, now: float) -> None:
        """A leg's peer sent its FIN: it crosses to the partner once what goes before it is
        out (through the leg's toxics, if it has any). An upstream's FIN first is noted on the
        client's row; it is a failure only when the client's last bytes went unanswered (an
        HTTP/1.0 server, or redis after QUIT, closes first once it has answered)."""
        src.peer_closed = True
        if src.pipe is None:
            src.eof = True
        else:
            src.pipe.feed_eof(now)  # it crosses when the pipe says "eof" (_flush_pipe)
        partner = src.partner
        if src.role is UPSTREAM and partner is not None and not partner.peer_closed:
            if partner.last_read_at > src.last_read_at:  # read from the client after the last
                self._upstream_gone(src, "closed first", f"upstream {src.target} closed "
                                    "first, without answering the client's last bytes", now)
            partner.note = partner.note or "upstream closed first"
        self._update_leg(src, now)
        if src.pipe is not None:
            self._flush_pipe(src, now)
        elif src.partner is not None:
            self._update_leg(src.partner, now)  # the FIN crosses once its bytes are out

    def _flush_pipe(self, src: Leg, now: float) -> None:
        """Move what the pipe from `src` lets through now to the partner (a slicer gives one
        slice a take: take until it gives nothing), act on its verdict, wake for the rest."""
        pipe, sink = src.pipe, src.partner
        if sink is None or sink.state is CLOSED:
            return
        if not sink.connecting:
            room = self.config.high_water - len(sink.out)
            took = False
            while room > 0:
                data = pipe.take(now, room)
                if not data:
                    break
                if sink.out:
                    sink.out += data
                else:
                    sink.out = bytearray(data)
                room -= len(data)
                took = True
            if took:
                self._write_leg(sink, now)
                if sink.state is CLOSED or src.state is CLOSED:
                    return
        verdict = pipe.verdict(now)
        if verdict == "reset" or verdict == "close":
            src.aborted = verdict == "reset"  # a reset crosses as a reset; a close, sent out
            self._close_leg(src, f"toxic: {'reset' if src.aborted else 'closed'}", now)
            return
        if verdict == "eof" and not src.eof:
            src.eof = True
            self._update_leg(sink, now)  # the FIN crosses once the sink's bytes are out
            if src.state is CLOSED:
                return
        due = pipe.due(now)
        if due is not None:
            self._timer(due, src, PIPE)
        self._update_leg(src, now)

    def _write_leg(self, leg: Leg, now: float) -> None:
        out = leg.out
        edge = self._edge
        while out:
            try:
                sent = leg.sock.send(out)
            except BlockingIOError:
                break
            except OSError as exc:
                self._leg_failed(leg, exc, now)
                return
            leg.sent_bytes += sent
            leg.sent_msgs += 1
            leg.last_write_at = now
            del out[:sent]
            if not edge:
                break
        if not out:
            leg.out = NO_OUT
        self._update_leg(leg, now)

    # ---- flags, interest, crossing ---------------------------------------------------------

    def _update_leg(self, leg: Leg, now: float) -> None:
        """Derive a leg's flags from its buffers and its partner's; cross a FIN once its
        out-buffer is sent; close the pair when both directions have ended."""
        if leg.state is CLOSED:
            return
        partner = leg.partner
        out_len = len(leg.out)
        held = partner.pipe.buffered if partner is not None and partner.pipe is not None else 0
        if not out_len and not held and self._all_sent(leg, partner, now):
            return  # closed
        was = leg.backpressured
        # What a partner's toxics hold counts too: it is on its way to this leg's peer.
        leg.backpressured = self._pressed(was, out_len + held)
        if self._max_out is not None and out_len > self._max_out:
            self._close_guarded(leg, OUT_BUFFER, out_buffer_note(self._max_out), now)
            return
        self._arm(leg, now)
        if partner is not None and leg.backpressured is not was:
            self._arm(partner, now)  # our high-water mark stops (or resumes) its reading
            if not leg.backpressured:
                if self._edge:
                    self._pending[partner.fd] = None  # bytes queued meanwhile raise no edge
                if partner.pipe is not None and partner.pipe.buffered:
                    self._flush_pipe(partner, now)

    def _all_sent(self, leg: Leg, partner: Leg | None, now: float) -> bool:
        """Nothing waits to go out to this leg's peer: a closing leg closes, the partner's
        FIN crosses, a pair whose two directions have ended closes. True if it closed."""
        if leg.closing:
            self._close_leg(leg, leg.note or "partner closed", now)
            return True
        if partner is not None and partner.eof and not leg.shut and not leg.connecting:
            leg.shut = True  # the partner's FIN crosses: ours, now that its bytes are out
            try:
                leg.sock.shutdown(socket.SHUT_WR)
            except OSError:
                pass
        if leg.shut and leg.peer_closed and partner is not None and partner.shut:
            self._close_leg(leg, leg.note or "both sides closed", now)
            return True
        return False

    def _arm(self, leg: Leg, now: float) -> None:
        """Interest and state of a leg from its flags and its partner's."""
        partner = leg.partner
        if leg.connecting:
            interest, state = WRITE, CONNECTING
        else:
            reading = not (leg.user_paused or leg.peer_closed or leg.closing or partner is None
                           or partner.connecting or partner.backpressured)
            interest = READ if reading else 0
            if leg.out or self.lab.busy_writable:
                interest |= WRITE
            elif leg.peer_closed and not leg.shut and not leg.closing:
                # Its peer sent a FIN and it waits (for what a toxic holds for it, or for the
                # partner's FIN): watched for a reset, so a peer gone ends the pair instead of
                # a half-closed leg with nothing registered. Not once shut: both ways down is
                # a hang-up that never clears. (select has no such interest: unwatched.)
                interest = GONE
            if leg.closing:
                state = CLOSING
            elif leg.peer_closed:
                state = HALF_CLOSED
            elif reading or (partner is not None and partner.connecting):
                state = OPEN
            else:
                state = READ_PAUSED
        if interest != leg.interest:
            self._set_interest(leg, interest)
        if state is not leg.state:
            leg.set_state(state, now)

    def _leg_failed(self, leg: Leg, exc: Exception, now: float) -> None:
        """An error on a leg (a reset, a broken pipe) ends it, and crosses as a reset."""
        if leg.state is CLOSED or isinstance(exc, BlockingIOError):
            return  # EAGAIN: the readiness was gone by the time we read; nothing lost
        if leg.role is UPSTREAM and isinstance(exc, ConnectionResetError) and \
                leg.partner is not None:
            self._upstream_gone(leg, "reset", f"upstream {leg.target} reset the connection "
                                "(RST)", now)
        leg.aborted = True
        self._failed(leg, exc, now)  # says a bug of ours out loud; closes through _close_leg

    def _close_leg(self, leg: Leg, reason: str, now: float) -> None:
        """Close one leg and cross it to the partner: a reset as a reset (SO_LINGER 0), a
        close as a close once the partner's out-buffer is sent."""
        if leg.state is CLOSED:
            return
        partner = leg.partner
        if partner is not None:
            unpair(leg, partner)
        leg.partner = None
        if leg.aborted:
            _reset(leg.sock)
        self._close_conn(leg, reason, now)
        if partner is None or partner.state is CLOSED:
            return
        partner.partner = None
        if leg.aborted:
            partner.aborted = True
            partner.note = f"reset crossed from fd {leg.fd}"
            _reset(partner.sock)
            self._close_conn(partner, partner.note, now)
            return
        partner.closing = True
        if not partner.note:
            partner.note = reason if reason == "both sides closed" else \
                f"{leg.role} fd {leg.fd} closed"
        self._update_leg(partner, now)


def _reset(sock: socket.socket) -> None:
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RESET)
    except OSError:
        pass
