"""The reference echo server: a plain ``selectors.DefaultSelector`` loop (epoll on Linux).

``python -m muxtop.bench.servers.selectors_echo --port P`` serves until SIGTERM or Ctrl-C.
It is the Python documentation's selectors example (the "Examples" section of the
``selectors`` module), the canonical minimal selectors server: each key's ``data`` is the
callback for its fd, accept and read are functions, the loop calls
``key.data(key.fileobj, mask)``. Added to it, what a fair echo baseline needs: write buffering
that is the simplest fair one: send what came; if the kernel takes only part, keep the rest,
watch for WRITE and stop reading that client until the rest is sent (so a slow reader cannot
grow the buffer without bound); and no failure of one client ends the server.
"""

from __future__ import annotations

import argparse
import selectors
import socket
from functools import partial

from muxtop.bench.servers import BACKLOG, RECV_SIZE

READ, WRITE = selectors.EVENT_READ, selectors.EVENT_WRITE


def serve(host: str, port: int) -> None:
    sel = selectors.DefaultSelector()
    listener = socket.create_server((host, port), backlog=BACKLOG)
    listener.setblocking(False)
    sel.register(listener, READ, partial(accept, sel))
    while True:
        for key, mask in sel.select():
            callback = key.data
            callback(key.fileobj, mask)


def accept(sel: selectors.BaseSelector, listener: socket.socket, mask: int) -> None:
    """Every connection waiting in the backlog, each registered to be read."""
    while True:
        try:
            sock, _ = listener.accept()
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            return  # EMFILE and the like: leave the rest in the backlog for the next round
        sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sel.register(sock, READ, partial(read, sel))


def read(sel: selectors.BaseSelector, sock: socket.socket, mask: int) -> None:
    """Echo what came; what the kernel did not take waits, and reading stops, until sent."""
    try:
        data = sock.recv(RECV_SIZE)
    except (BlockingIOError, InterruptedError):
        return
    except OSError:
        data = b""
    if not data:
        _close(sel, sock)
        return
    try:
        sent = sock.send(data)
    except BlockingIOError:
        sent = 0
    except OSError:
        _close(sel, sock)
        return
    if sent < len(data):
        sel.modify(sock, WRITE, partial(write, sel, bytearray(memoryview(data)[sent:])))


def write(sel: selectors.BaseSelector, out: bytearray, sock: socket.socket, mask: int) -> None:
    """Send as much of ``out`` as the kernel takes; once it is all sent, read again."""
    try:
        sent = sock.send(out)
    except BlockingIOError:
        return
    except OSError:
        _close(sel, sock)
        return
    del out[:sent]
    if not out:
        sel.modify(sock, READ, partial(read, sel))


def _close(sel: selectors.BaseSelector, sock: socket.socket) -> None:
    sel.unregister(sock)
    sock.close()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    args = p.parse_args(argv)
    try:
        serve(args.host, args.port)
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
