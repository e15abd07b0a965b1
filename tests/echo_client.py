"""A test client that streams payloads through many connections at once and collects the
echo, with its own selectors loop (so a server applying backpressure never deadlocks it)."""

from __future__ import annotations

import selectors
import socket
import subprocess
import time


def stream_echo(address, payloads: list[bytes], timeout: float = 30.0, chunk: int = 16384,
                half_close: bool = False, between=None) -> list[bytes]:
    """Send payloads[i] on connection i (in chunks) while reading the echo; return what came
    back on each. `between()` runs every loop pass (e.g. to switch the server's backend)."""
    sel = selectors.DefaultSelector()
    socks = []
    streams = _Streams(payloads, chunk, half_close)
    try:
        for i, _ in enumerate(payloads):
            s = socket.create_connection(address, timeout=timeout)
            s.setblocking(False)
            socks.append(s)
            sel.register(s, selectors.EVENT_READ | selectors.EVENT_WRITE, i)
        open_count = len(payloads)
        deadline = time.monotonic() + timeout
        while open_count:
            if time.monotonic() > deadline:
                raise TimeoutError(f"echo incomplete: got {[len(r) for r in streams.received]} "
                                   f"of {[len(p) for p in payloads]}")
            if between is not None:
                between()
            for key, events in sel.select(0.05):
                i, s = key.data, key.fileobj
                if events & selectors.EVENT_WRITE and streams.write(i, s):
                    sel.modify(s, selectors.EVENT_READ, i)
                if events & selectors.EVENT_READ and streams.read(i, s):
                    sel.unregister(s)
                    open_count -= 1
        return [bytes(r) for r in streams.received]
    finally:
        for s in socks:
            s.close()
        sel.close()


class _Streams:
    """Where each connection of stream_echo is: bytes sent of its payload, the echo so far."""

    def __init__(self, payloads: list[bytes], chunk: int, half_close: bool) -> None:
        self.payloads = payloads
        self.chunk = chunk
        self.half_close = half_close
        self.sent = [0] * len(payloads)
        self.received = [bytearray() for _ in payloads]

    def write(self, i: int, s: socket.socket) -> bool:
        """Send the next chunk of payload i; True once all of it is sent (and, with
        half_close, the write side shut)."""
        payload = self.payloads[i]
        if self.sent[i] < len(payload):
            self.sent[i] += s.send(payload[self.sent[i]:self.sent[i] + self.chunk])
        if self.sent[i] < len(payload):
            return False
        if self.half_close:
            s.shutdown(socket.SHUT_WR)
        return True

    def read(self, i: int, s: socket.socket) -> bool:
        """Read echo i; True once it is over: EOF, or (without half_close) all of it back."""
        data = s.recv(65536)
        self.received[i] += data
        return not data or (not self.half_close and
                            len(self.received[i]) >= len(self.payloads[i]))


def wait_for(predicate, timeout: float = 5.0, interval: float = 0.02):
    """Poll until predicate() is truthy; return its value or raise TimeoutError."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError("condition not met in time")
        time.sleep(interval)


def stop_child(server) -> None:
    """End a server child started with stdin and stdout pipes: close stdin (its cue to stop),
    wait, kill it if it lingers, and close its stdout."""
    server.stdin.close()
    try:
        server.wait(10)
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait()
    server.stdout.close()
