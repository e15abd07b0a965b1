"""One accepted TCP connection: its socket, out-buffer, counters and state history.

Plain attributes with __slots__: the hot loop touches these on every event."""

from __future__ import annotations

import socket

from muxtop.snapshot import CLOSED, OPEN


class Connection:
    # Reads and write-through sends happen together: last_read_at stands for both; the idle
    # time the views show is measured from the later of last_read_at and last_write_at.
    # The fields the hot loop touches on every event come first: they share two cache lines,
    # which matters when thousands of connections take turns.
    __slots__ = (
        "sock", "interest", "last_events", "last_ready", "last_read_at", "bytes_in", "bytes_out",
        "msgs_in", "msgs_out", "backpressured", "body_left", "cid", "closed_at", "closing", "fd",
        "history", "inbuf", "last_write_at", "note", "opened_at", "out",
        "peer", "peer_closed", "probed_at", "rx_queue", "rx_since", "state", "tcp", "tx_queue",
        "user_paused", "view", "view_at",
    )

    def __init__(self, cid: int, sock: socket.socket, peer: str, now: float) -> None:
        self.cid = cid
        self.sock = sock
        self.fd = sock.fileno()
        self.peer = peer
        self.state = OPEN
        self.interest = 0
        self.out = bytearray()  # bytes the protocol produced that the kernel has not taken yet
        self.bytes_in = self.bytes_out = self.msgs_in = self.msgs_out = 0  # msgs: recv/send calls
        self.last_events = 0
        self.last_ready: float | None = None
        self.opened_at = self.last_read_at = self.last_write_at = now
        self.rx_since: float | None = None  # probe time that first saw unread bytes
        self.closed_at: float | None = None
        # A tuple, replaced on the rare change, so each Snapshot's view can share it.
        self.history: tuple[tuple[float, str], ...] = ((now, OPEN),)
        self.user_paused = False  # a person asked to stop reading it
        self.backpressured = False  # out-buffer passed the high-water mark
        self.peer_closed = False  # recv returned b"" (FIN)
        self.closing = False  # close once the out-buffer is sent (protocol said goodbye)
        self.inbuf = b""  # partial request the protocol keeps between reads (http)
        self.body_left = 0  # http: bytes of a request body still to skip
        self.note = ""
        self.rx_queue: int | None = None  # last kernel probe
        self.tx_queue: int | None = None
        self.tcp = None
        self.probed_at = 0.0
        self.view = None  # the last ConnView built; frozen at close, shown while recently closed
        self.view_at = 0.0  # when that view was built

    def set_state(self, state: str, now: float) -> None:
        if state != self.state:
            self.state = state
            history = self.history
            if len(history) >= 32:
                history = history[:1] + history[2:]  # keep the first (open) and the latest
            self.history = (*history, (now, state))
            if state == CLOSED:
                self.closed_at = now
