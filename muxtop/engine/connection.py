"""One accepted TCP connection: its socket, out-buffer, counters and state history.

Plain attributes with __slots__: the hot loop touches these on every event. An idle server may
hold tens of thousands of these, so nothing is kept that another field says already (when it
opened and closed: the history) and the out-buffer is made only when bytes wait in it."""

from __future__ import annotations

import socket

from muxtop.snapshot import CLOSED, OPEN

NO_OUT = b""  # Connection.out with nothing in it


class Connection:
    # Reads and write-through sends happen together: last_read_at stands for both; the idle
    # time the views show is measured from the later of last_read_at and last_write_at.
    # The fields the hot loop touches on every event come first: they share two cache lines,
    # which matters when thousands of connections take turns.
    __slots__ = (
        "sock", "interest", "last_events", "last_ready", "last_read_at", "bytes_in", "bytes_out",
        "msgs_in", "msgs_out", "backpressured", "body_left", "cid", "closing", "fd",
        "history", "inbuf", "last_write_at", "note", "out",
        "peer", "peer_closed", "rx_queue", "rx_since", "state", "tcp", "tx_queue",
        "user_paused", "view",
    )  # 28 slots: 256 bytes an object (tracemalloc), 32 fewer than with the four now derived

    def __init__(self, cid: int, sock: socket.socket, peer: str, now: float) -> None:
        self.cid = cid
        self.sock = sock
        self.fd = sock.fileno()
        self.peer = peer
        self.state = OPEN
        self.interest = 0
        # Bytes the protocol produced that the kernel has not taken yet: a bytearray while
        # there are any, else the shared empty bytes (an empty bytearray is 56 bytes).
        self.out: bytearray | bytes = NO_OUT
        self.bytes_in = self.bytes_out = self.msgs_in = self.msgs_out = 0  # msgs: recv/send calls
        self.last_events = 0
        self.last_ready: float | None = None
        self.last_read_at = self.last_write_at = now
        self.rx_since: float | None = None  # probe time that first saw unread bytes
        # A tuple, replaced on the rare change, so each Snapshot's view can share it. Its first
        # entry is the opening (kept however long it grows), a last CLOSED one the close.
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
        # The last ConnView built, reused while the fields it shows stay the same; None after
        # a kernel probe (it may have changed the queues). Frozen at close, shown while
        # recently closed.
        self.view = None

    @property
    def opened_at(self) -> float:
        return self.history[0][0]

    @property
    def closed_at(self) -> float | None:
        when, state = self.history[-1]
        return when if state == CLOSED else None

    def set_state(self, state: str, now: float) -> None:
        if state != self.state:
            self.state = state
            history = self.history
            if len(history) >= 32:
                history = history[:1] + history[2:]  # keep the first (open) and the latest
            self.history = (*history, (now, state))
