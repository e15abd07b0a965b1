"""A plain ``selectors`` TCP echo server in a thread: the target the flood's tests run against
(not muxtop's engine): ``with EchoServer() as server``. On its own,
``python tests/echo_server.py [--port P]`` prints ``PORT PID`` and serves until killed.

It echoes every byte, finishes the echo after a client's half-close before closing, and stops
reading a client whose unsent echo passes a high-water mark (backpressure), so a slow reader
cannot make it grow without bound.
"""

from __future__ import annotations

import argparse
import os
import selectors
import socket
import sys
import threading
from collections.abc import Callable
from typing import Self

HIGH_WATER = 1 << 20


class _Peer:
    __slots__ = ("eof", "interest", "out", "sock")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.out = bytearray()
        self.eof = False
        self.interest = selectors.EVENT_READ


class EchoServer:
    """Echo server on ``host:port`` (0 = any free port); ``address`` once constructed.

    ``transform`` rewrites each received chunk before it is echoed, to play a broken server."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, *,
                 transform: Callable[[bytes], bytes] | None = None, backlog: int = 4096) -> None:
        self.listener = socket.create_server((host, port), backlog=backlog)
        self.listener.setblocking(False)
        self.address = self.listener.getsockname()[:2]
        self.transform = transform
        self.accepted = 0
        self._sel = selectors.DefaultSelector()
        self._sel.register(self.listener, selectors.EVENT_READ, None)
        self._wake_r, self._wake_w = socket.socketpair()
        self._sel.register(self._wake_r, selectors.EVENT_READ, None)
        self._stopping = False
        self._thread: threading.Thread | None = None

    # ----------------------------------------------------------------- lifecycle

    def __enter__(self) -> Self:
        self._thread = threading.Thread(target=self.serve, name="echo-server", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        self._stopping = True
        try:
            self._wake_w.send(b"x")
        except OSError:
            pass  # serve() has ended already and closed it (its error, if any, is reported)
        if self._thread is not None:
            self._thread.join(10)

    def serve(self) -> None:
        try:
            while not self._stopping:
                for key, events in self._sel.select():
                    if key.fileobj is self.listener:
                        self._accept()
                    elif key.fileobj is self._wake_r:
                        self._wake_r.recv(64)
                    else:
                        self._serve_peer(key.data, events)
        finally:
            for key in list(self._sel.get_map().values()):
                key.fileobj.close()
            self._sel.close()
            self._wake_w.close()

    # ----------------------------------------------------------------- connections

    def _accept(self) -> None:
        while True:
            try:
                sock, _ = self.listener.accept()
            except (BlockingIOError, ConnectionAbortedError):
                return
            except OSError:
                return  # EMFILE and friends: the backlog keeps them; try on the next turn
            try:
                sock.setblocking(False)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:
                sock.close()  # reset while it waited in the backlog
                continue
            self.accepted += 1
            self._sel.register(sock, selectors.EVENT_READ, _Peer(sock))

    def _serve_peer(self, peer: _Peer, events: int) -> None:
        if events & selectors.EVENT_READ:
            try:
                data = peer.sock.recv(65536)
            except BlockingIOError:
                data = None
            except OSError:
                self._drop(peer)
                return
            if data == b"":
                peer.eof = True
            elif data:
                peer.out += self.transform(data) if self.transform else data
        if peer.out:
            try:
                sent = peer.sock.send(peer.out)
            except BlockingIOError:
                sent = 0
            except OSError:
                self._drop(peer)
                return
            del peer.out[:sent]
        if peer.eof and not peer.out:
            self._drop(peer)   # the client half-closed and has had all its echo
            return
        interest = 0 if peer.eof or len(peer.out) > HIGH_WATER else selectors.EVENT_READ
        if peer.out:
            interest |= selectors.EVENT_WRITE
        if interest != peer.interest:   # skip the call (and its bookkeeping) when unchanged
            self._sel.modify(peer.sock, interest, peer)
            peer.interest = interest

    def _drop(self, peer: _Peer) -> None:
        self._sel.unregister(peer.sock)
        peer.sock.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python tests/echo_server.py")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args(argv)
    server = EchoServer(args.host, args.port)
    print(server.address[1], os.getpid(), flush=True)
    try:
        server.serve()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
