"""What a flood counts: connections, failures by reason, messages, bytes, mismatches, what the
fault patterns did, and the latency (latency.py), mergeable across worker processes."""

from __future__ import annotations

from dataclasses import dataclass, field

from muxtop.flood.latency import Latency

# Plain int counters, summed when workers' stats are merged.
COUNTERS = ("connected", "active", "completed", "messages_sent", "messages_echoed",
            "bytes_sent", "bytes_received", "mismatches", "resets", "slices", "delayed",
            "held", "cut")


@dataclass
class FloodStats:
    """Cumulative counters of one flood (or of several workers, merged).

    The client loop bumps the plain int fields directly and appends raw latencies (seconds)
    to ``latency.pending``; ``fold()`` moves those into the histogram once a second, off the
    per-message path."""

    connected: int = 0          # connects that succeeded
    active: int = 0             # connections open right now
    completed: int = 0          # clients that finished their pattern as intended
    failed: dict[str, int] = field(default_factory=dict)  # reason (errno name, EOF...) -> count
    messages_sent: int = 0
    messages_echoed: int = 0    # messages whose echo came back complete (matching or not)
    bytes_sent: int = 0
    bytes_received: int = 0
    mismatches: int = 0         # echoed messages with any wrong byte, plus bytes never sent
    resets: int = 0             # connections this flood closed with RST on purpose
    slices: int = 0             # slicer: writes of part of a message
    delayed: int = 0            # latency: messages held back before their send
    held: int = 0               # stall, slow-close: connections that held still as planned
    cut: int = 0                # limit: connections closed at their byte limit
    latency: Latency = field(default_factory=Latency)

    def fail(self, reason: str) -> None:
        self.failed[reason] = self.failed.get(reason, 0) + 1

    @property
    def failed_total(self) -> int:
        return sum(self.failed.values())

    def fold(self) -> None:
        """Move the raw latencies gathered since the last call into the histogram."""
        self.latency.fold()

    def counters(self) -> FloodStats:
        """A copy of the counters with an empty Latency: what a worker ships to its parent
        (the latency travels apart, as encoded interval histograms)."""
        copy = FloodStats(failed=dict(self.failed))
        for name in COUNTERS:
            setattr(copy, name, getattr(self, name))
        return copy

    def __getstate__(self) -> dict:
        # HdrHistogram objects do not pickle (ctypes arrays): a worker's stats cross the pipe
        # as counters only.
        state = dict(self.__dict__)
        state["latency"] = None
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self.latency = Latency()

    @classmethod
    def merged(cls, parts: list[FloodStats], latency: Latency | None = None) -> FloodStats:
        """The sum of several workers' counters, with ``latency`` (the parent's, which
        absorbed the workers' intervals) or the parts' latencies merged."""
        total = cls()
        for part in parts:
            for name in COUNTERS:
                setattr(total, name, getattr(total, name) + getattr(part, name))
            for reason, count in part.failed.items():
                total.failed[reason] = total.failed.get(reason, 0) + count
            if latency is None:
                total.latency.merge(part.latency)
        if latency is not None:
            total.latency = latency
        return total

    def as_dict(self) -> dict:
        """The JSON-ready counters and the whole run's latency percentiles."""
        record = {
            "connected": self.connected,
            "active": self.active,
            "completed": self.completed,
            "failed": dict(sorted(self.failed.items())),
            "failed_total": self.failed_total,
            "messages_sent": self.messages_sent,
            "messages_echoed": self.messages_echoed,
            "bytes_sent": self.bytes_sent,
            "bytes_received": self.bytes_received,
            "mismatches": self.mismatches,
            "resets": self.resets,
            "rtt_ms": self.latency.summary_ms(),
        }
        for name in ("slices", "delayed", "held", "cut"):   # what the fault patterns did
            record[name] = getattr(self, name)
        return record
