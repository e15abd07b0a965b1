"""What the server says back. A protocol is a function (connection, data) -> reply bytes or
None; it may keep a partial request in `connection.inbuf` and counts its messages."""

from __future__ import annotations

from collections.abc import Callable

from muxtop.engine.connection import Connection
from muxtop.engine.http import http

Protocol = Callable[[Connection, bytes], "bytes | None"]


def echo(conn: Connection, data: bytes) -> bytes:
    """Every byte back, as it came (one message = one read)."""
    conn.read_msgs += 1
    return data


def discard(conn: Connection, data: bytes) -> None:
    """Read and drop (RFC 863)."""
    conn.read_msgs += 1


PROTOCOLS: dict[str, Protocol] = {"echo": echo, "discard": discard, "http": http}
