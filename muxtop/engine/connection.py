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
    # Counted one of two ways: a read the echo fast path sent back whole at once is one message
    # in and one out (echoed_*); everything else is counted by its side (read_*, sent_*). The
    # fast path then adds to two counters a round trip, not four: each is a new int object
    # past 256, ~330 instructions a round trip between them (callgrind). bytes_in and the
    # others are the sums.
    __slots__ = (
        "sock", "interest", "last_events", "last_ready", "last_read_at", "echoed_bytes",
        "echoed_msgs", "read_bytes", "read_msgs", "sent_bytes", "sent_msgs", "backpressured",
        "body_left", "cid", "closing", "fd", "history", "inbuf", "last_write_at", "note", "out",
        "peer", "peer_closed", "rx_queue", "rx_since", "state", "tcp", "tx_queue",
        "user_paused", "view",
    )  # 30 slots: 272 bytes an object (tracemalloc)

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
        self.echoed_bytes = self.echoed_msgs = 0  # msgs: recv/send calls (a protocol's messages)
        self.read_bytes = self.read_msgs = self.sent_bytes = self.sent_msgs = 0
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
    def bytes_in(self) -> int:
        return self.read_bytes + self.echoed_bytes

    @property
    def bytes_out(self) -> int:
        return self.sent_bytes + self.echoed_bytes

    @property
    def msgs_in(self) -> int:
        return self.read_msgs + self.echoed_msgs

    @property
    def msgs_out(self) -> int:
        return self.sent_msgs + self.echoed_msgs

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
