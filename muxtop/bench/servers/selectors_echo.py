"""The reference echo server: a plain ``selectors.DefaultSelector`` loop (epoll on Linux).

``python -m muxtop.bench.servers.selectors_echo --port P`` serves until SIGTERM or Ctrl-C.
Write buffering is the simplest fair one: send what came; if the kernel takes only part, keep the
rest, watch for WRITE and stop reading that client until the rest is sent (so a slow reader
cannot grow the buffer without bound).
"""

from __future__ import annotations

import argparse
import selectors
import socket

from muxtop.bench.servers import BACKLOG, RECV_SIZE

READ, WRITE = selectors.EVENT_READ, selectors.EVENT_WRITE


def serve(host: str, port: int) -> None:
    sel = selectors.DefaultSelector()
    listener = socket.create_server((host, port), backlog=BACKLOG)
    listener.setblocking(False)
    sel.register(listener, READ, None)
    while True:
        for key, mask in sel.select():
            sock = key.fileobj
            if sock is listener:
                _accept(sel, listener)
                continue
            out: bytearray = key.data
            if mask & WRITE:
                if not _flush(sel, sock, out):
                    continue
                if out:
                    continue  # still behind: keep reading paused
                sel.modify(sock, READ, out)
            elif mask & READ:
                try:
                    data = sock.recv(RECV_SIZE)
                except (BlockingIOError, InterruptedError):
                    continue
                except OSError:
                    data = b""
                if not data:
                    _close(sel, sock)
                    continue
                try:
                    sent = sock.send(data)
                except BlockingIOError:
                    sent = 0
                except OSError:
                    _close(sel, sock)
                    continue
                if sent < len(data):
                    out += memoryview(data)[sent:]
                    sel.modify(sock, WRITE, out)


def _accept(sel: selectors.BaseSelector, listener: socket.socket) -> None:
    while True:
        try:
            sock, _ = listener.accept()
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            return  # EMFILE and the like: leave the rest in the backlog for the next round
        sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sel.register(sock, READ, bytearray())


def _flush(sel: selectors.BaseSelector, sock: socket.socket, out: bytearray) -> bool:
    """Send as much of ``out`` as the kernel takes; False if the client is gone."""
    try:
        sent = sock.send(out)
    except BlockingIOError:
        return True
    except OSError:
        _close(sel, sock)
        return False
    del out[:sent]
    return True


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
