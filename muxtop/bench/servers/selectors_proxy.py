"""The reference proxy: a plain ``selectors.DefaultSelector`` loop (epoll on Linux) that pairs
each client with a connection to the upstream and copies bytes between them.

``python -m muxtop.bench.servers.selectors_proxy --port P --upstream HOST:PORT`` serves until
SIGTERM or Ctrl-C. The simplest fair proxy: a blocking connect per client (loopback: at once),
each read sent through to the partner; what the kernel does not take waits in the partner's
buffer, watched for WRITE, and reading the other side pauses until it is sent (bounded memory).
A close or error on either side closes both.
"""

from __future__ import annotations

import argparse
import selectors
import socket

from muxtop.bench.servers import BACKLOG, RECV_SIZE

READ, WRITE = selectors.EVENT_READ, selectors.EVENT_WRITE


class Side:
    __slots__ = ("sock", "partner", "out", "events")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.partner: Side | None = None
        self.out = bytearray()  # bytes for this side the kernel has not taken yet
        self.events = 0  # registered for


def _watch(sel: selectors.BaseSelector, side: Side) -> None:
    """Read while the partner has nothing waiting; watch WRITE while this side has."""
    events = (0 if side.partner.out else READ) | (WRITE if side.out else 0)
    if events == side.events:
        return
    if not events:
        sel.unregister(side.sock)
    elif not side.events:
        sel.register(side.sock, events, side)
    else:
        sel.modify(side.sock, events, side)
    side.events = events


def serve(host: str, port: int, upstream: tuple[str, int]) -> None:
    """The loop, its hot path (a read sent through to the partner) inline: a call per event
    would slow the baseline. Any error on either side closes both."""
    sel = selectors.DefaultSelector()
    listener = socket.create_server((host, port), backlog=BACKLOG)
    listener.setblocking(False)
    sel.register(listener, READ, None)
    while True:
        for key, mask in sel.select():
            side: Side | None = key.data
            if side is None:
                _accept(sel, listener, upstream)
                continue
            if side.sock.fileno() < 0:
                continue  # closed earlier in this batch, with its partner
            if mask & WRITE and not _flush(sel, side):
                continue
            if not mask & READ:
                continue
            to = side.partner
            try:
                data = side.sock.recv(RECV_SIZE)
                if not data:
                    _close(sel, side)
                    continue
                try:
                    sent = to.sock.send(data)
                except BlockingIOError:
                    sent = 0
            except BlockingIOError:
                continue  # the recv's: readiness gone (the send's is caught above)
            except OSError:
                _close(sel, side)
                continue
            if sent < len(data):
                to.out += memoryview(data)[sent:]
                _watch(sel, to)
                _watch(sel, side)  # no more reading here until the partner caught up


def _flush(sel: selectors.BaseSelector, side: Side) -> bool:
    """WRITE: send what waits for this side; False if the pair closed or the kernel took
    none of it."""
    try:
        sent = side.sock.send(side.out)
    except BlockingIOError:
        return False
    except OSError:
        _close(sel, side)
        return False
    del side.out[:sent]
    if not side.out:  # caught up: stop watching WRITE, read the partner again
        _watch(sel, side)
        _watch(sel, side.partner)
    return True


def _accept(sel: selectors.BaseSelector, listener: socket.socket,
            upstream: tuple[str, int]) -> None:
    while True:
        try:
            sock, _ = listener.accept()
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            return
        try:
            up = socket.create_connection(upstream)
        except OSError:
            sock.close()
            continue
        client, server = Side(sock), Side(up)
        client.partner, server.partner = server, client
        for side in (client, server):
            side.sock.setblocking(False)
            side.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            _watch(sel, side)


def _close(sel: selectors.BaseSelector, side: Side) -> None:
    for s in (side, side.partner):
        if s.events:
            sel.unregister(s.sock)
            s.events = 0
        s.sock.close()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--upstream", required=True, metavar="HOST:PORT")
    args = p.parse_args(argv)
    host, _, port = args.upstream.rpartition(":")
    try:
        serve(args.host, args.port, (host, int(port)))
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
