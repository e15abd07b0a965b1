"""The loop's running figures, one owner: the engine thread alone writes them, as it goes;
telemetry reads them when it builds a Snapshot (a few times a second). Plain slots: no lock
(ints are swapped whole under the GIL) and no call on the hot path."""

from __future__ import annotations

from muxtop.engine.guards import GUARDS


class LoopCounts:
    __slots__ = ("waits", "events", "probes", "accepted", "accept_errors", "rejected",
                 "closed", "closed_bytes_in", "closed_bytes_out", "guard_closes")

    def __init__(self) -> None:
        self.waits = 0  # wait calls made
        self.events = 0  # ready fds they returned
        self.probes = 0  # of the waits, those made with no timeout to time a scan
        self.accepted = 0  # accept() calls that gave a socket
        self.accept_errors = 0  # accept() calls that failed (EMFILE and the like)
        self.rejected = 0  # accepted, then closed at once (reset already, backend refused)
        self.closed = 0  # connections closed, and the bytes they had moved
        self.closed_bytes_in = self.closed_bytes_out = 0
        self.guard_closes = dict.fromkeys(GUARDS, 0)  # connections each protection closed
