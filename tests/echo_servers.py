"""Echo servers the flood tests start: the plainest asyncio one, on its own loop in a thread,
and one that hangs up on a connection idle for a moment (a server that does not wait for a
slow peer)."""

from __future__ import annotations

import asyncio
import selectors
import socket
import threading
import time
from typing import Self


class AsyncioEchoServer:
    """The plainest asyncio echo server, on its own loop in a thread."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.address: tuple[str, int] | None = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    async def _echo(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        server = self.loop.run_until_complete(
            asyncio.start_server(self._echo, "127.0.0.1", 0, backlog=4096))
        self.address = server.sockets[0].getsockname()[:2]
        self._ready.set()
        self.loop.run_forever()
        server.close()
        self.loop.run_until_complete(server.wait_closed())
        for task in asyncio.all_tasks(self.loop):
            task.cancel()
        self.loop.run_until_complete(asyncio.sleep(0))
        self.loop.close()

    def __enter__(self) -> Self:
        self._thread.start()
        assert self._ready.wait(10)
        return self

    def __exit__(self, *exc: object) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)


class ImpatientEchoServer:
    """Echoes, and closes any connection that has sent nothing for ``idle`` seconds."""

    def __init__(self, idle: float) -> None:
        self.idle = idle
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.setblocking(False)
        self.address = self._listener.getsockname()[:2]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with selectors.DefaultSelector() as sel:
            sel.register(self._listener, selectors.EVENT_READ)
            last: dict[socket.socket, float] = {}
            while not self._stop.is_set():
                for key, _ in sel.select(0.02):
                    if key.fileobj is self._listener:
                        conn, _ = self._listener.accept()
                        sel.register(conn, selectors.EVENT_READ)
                        last[conn] = time.monotonic()
                        continue
                    conn = key.fileobj
                    try:
                        data = conn.recv(65536)
                    except OSError:
                        data = b""
                    if data:
                        conn.sendall(data)   # small echoes: they fit the socket buffer
                        last[conn] = time.monotonic()
                    else:
                        sel.unregister(conn)
                        del last[conn]
                        conn.close()
                now = time.monotonic()
                for conn, when in list(last.items()):
                    if now - when > self.idle:
                        sel.unregister(conn)
                        del last[conn]
                        conn.close()
            for conn in last:
                conn.close()

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)
        self._listener.close()
