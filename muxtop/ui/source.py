"""Where the dashboard gets its Snapshots, and where (if anywhere) it sends commands.

The app only ever asks a source for the latest Snapshot and, when `can_command`, hands it
commands. The embedded engine is one source; `muxtop attach` (read-only) and tests with a
fixed Snapshot are others, so the same screens serve all three.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import Future

from muxtop.engine.commands import Outcome
from muxtop.snapshot import Snapshot


class SnapshotSource:
    """A callable that returns the latest Snapshot, plus an optional command sink.

    `latest` must be cheap and must not block: the UI calls it on its own thread a few times
    a second. `submit(command)` returns a Future of an Outcome, or the source is read-only
    (`submit=None`) and the keys that send commands are greyed out."""

    def __init__(self, latest: Callable[[], Snapshot],
                 submit: Callable[[object], Future] | None = None) -> None:
        self._latest = latest
        self._submit = submit

    def latest(self) -> Snapshot:
        return self._latest()

    @property
    def can_command(self) -> bool:
        return self._submit is not None

    def submit(self, command: object) -> Future:
        if self._submit is None:
            return _done(Outcome(False, "this view is read-only"))
        return self._submit(command)


class EngineSource(SnapshotSource):
    """The embedded engine: its published Snapshot, and its command queue."""

    def __init__(self, engine) -> None:
        super().__init__(engine.snapshot, engine.submit)
        self.engine = engine

    @property
    def can_command(self) -> bool:
        return self.engine.running


class FixedSource(SnapshotSource):
    """Snapshots given in advance (tests, screenshots, benchmarks): `latest` returns the
    current one until `advance()` moves to the next. Commands are recorded, not run."""

    def __init__(self, snapshots: Snapshot | Sequence[Snapshot], *, commands: bool = True,
                 answer: Callable[[object], Outcome] | None = None) -> None:
        self.snapshots = [snapshots] if isinstance(snapshots, Snapshot) else list(snapshots)
        self.index = 0
        self.sent: list[object] = []
        self._answer = answer or (lambda command: Outcome(True, f"recorded {command}"))
        super().__init__(self._current, self._record if commands else None)

    def _current(self) -> Snapshot:
        return self.snapshots[self.index]

    def advance(self) -> Snapshot:
        """Move to the next Snapshot (wrapping around) and return it."""
        self.index = (self.index + 1) % len(self.snapshots)
        return self.snapshots[self.index]

    def _record(self, command: object) -> Future:
        self.sent.append(command)
        return _done(self._answer(command))


def _done(outcome: Outcome) -> Future:
    future: Future = Future()
    future.set_result(outcome)
    return future
