"""The protections servers are expected to have, each off by default (the demos show what
happens without them): close a connection idle too long (--idle-timeout), an HTTP client
that takes too long to send its request head (--header-timeout, nginx's
client_header_timeout: a slowloris holds a connection forever otherwise), and one whose
out-buffer passes a size (--max-out-buffer, Redis's client output buffer limit).

The timeouts are checked at publish time (a few times a second, O(connections) a check),
never per event; the out-buffer limit where bytes are queued (engine/loop.py `_queued`).
"""

from __future__ import annotations

import errno
from collections.abc import Iterable

from muxtop.engine.config import EngineConfig
from muxtop.engine.connection import Connection
from muxtop.engine.http import awaiting_head

IDLE, HEADER, OUT_BUFFER = "idle_timeout", "header_timeout", "max_out_buffer"
GUARDS = (IDLE, HEADER, OUT_BUFFER)  # also the config fields and the --json keys
# Out of fds, a listener is not watched for a while, doubling up to the longest, rather than
# have a level-triggered backlog wake every wait for an accept that cannot succeed.
OUT_OF_FDS = (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM)
ACCEPT_BACKOFF = (0.05, 1.0)  # first and longest pause of accept() out of fds


def settings(config: EngineConfig) -> dict[str, float | int | None]:
    """Each guard's setting (None: off), by name."""
    return {name: getattr(config, name) for name in GUARDS}


def out_buffer_note(limit: int) -> str:
    return f"out-buffer over {limit:,} bytes (--max-out-buffer): the peer does not read"


class Timeouts:
    """Finds the connections past --idle-timeout or --header-timeout."""

    def __init__(self, idle: float | None, header: float | None) -> None:
        self.idle = idle
        self.header = header
        # Keep-alive: when the head of request number N was first seen begun, by connection.
        self._head_since: dict[Connection, tuple[int, float]] = {}

    @classmethod
    def of(cls, config: EngineConfig) -> Timeouts | None:
        header = config.header_timeout if config.protocol == "http" else None
        if config.idle_timeout is None and header is None:
            return None
        return cls(config.idle_timeout, header)

    def due(self, conns: Iterable[Connection], now: float) -> list[tuple[Connection, str, str]]:
        """(connection, guard, note) for every connection to close now."""
        due = []
        idle, header = self.idle, self.header
        head_since: dict[Connection, tuple[int, float]] = {}
        for conn in conns:
            if conn.user_paused:
                continue  # we chose not to read it: not the client's idleness
            quiet = now - max(conn.last_read_at, conn.last_write_at)
            if idle is not None and quiet >= idle:
                due.append((conn, IDLE, f"idle for {quiet:.1f} s (--idle-timeout {idle:g})"))
            elif header is not None and awaiting_head(conn):
                if conn.msgs_in == 0:
                    since = conn.opened_at  # the first head: the clock runs from accept
                else:
                    count, since = self._head_since.get(conn, (conn.msgs_in, now))
                    if count != conn.msgs_in:
                        since = now
                    head_since[conn] = (conn.msgs_in, since)
                if now - since >= header:
                    due.append((conn, HEADER, f"no complete request head in {now - since:.1f} s "
                                              f"(--header-timeout {header:g})"))
        self._head_since = head_since
        return due
