"""What a Tracer hands a Trace (muxtop/trace/session.py): calls to drain, and its state; for
tests that feed a Trace calls made up or parsed by hand."""

from __future__ import annotations

from muxtop.snapshot import TRACE_TRACING


class FakeTracer:
    state, note, since, ended = TRACE_TRACING, "", 0.0, ""
    waits = io_calls = 0

    def __init__(self, calls: list, name: str = "strace", io: bool = True) -> None:
        self.calls = calls
        self.name = name
        self.io = io  # whether reads and writes are traced too

    def drain(self) -> list:
        calls, self.calls = self.calls, []
        return calls

    def lost(self) -> int:
        return 0

    def stop(self) -> None:
        pass
