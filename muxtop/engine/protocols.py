"""What the server says back. A protocol is a function (connection, data) -> reply bytes or
None; it may keep a partial request in `connection.inbuf` and counts its messages."""

from __future__ import annotations

from collections.abc import Callable

from muxtop.engine.connection import Connection

Protocol = Callable[[Connection, bytes], "bytes | None"]


def echo(conn: Connection, data: bytes) -> bytes:
    """Every byte back, as it came (one message = one read)."""
    conn.msgs_in += 1
    return data


def discard(conn: Connection, data: bytes) -> None:
    """Read and drop (RFC 863)."""
    conn.msgs_in += 1


HTTP_RESPONSE = (b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 3\r\n"
                 b"Connection: keep-alive\r\n\r\nok\n")
MAX_HTTP_HEADER = 16384


def http(conn: Connection, data: bytes) -> bytes | None:
    """A fixed keep-alive `200 OK` per request head, so wrk or ab can drive the server.

    Request bodies are not supported (GET/HEAD load tools send none); a head over 16 KiB
    gets `431` and the connection closes."""
    buf = conn.inbuf + data if conn.inbuf else data
    count = buf.count(b"\r\n\r\n")
    if count:
        conn.msgs_in += count
        conn.inbuf = buf[buf.rfind(b"\r\n\r\n") + 4:]
        return HTTP_RESPONSE * count
    if len(buf) > MAX_HTTP_HEADER:
        conn.inbuf = b""
        conn.closing = True  # stop reading; the engine closes once the reply is sent
        return b"HTTP/1.1 431 Request Header Fields Too Large\r\nConnection: close\r\n\r\n"
    conn.inbuf = buf
    return None


PROTOCOLS: dict[str, Protocol] = {"echo": echo, "discard": discard, "http": http}
