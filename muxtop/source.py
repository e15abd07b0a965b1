"""The seam between whatever produces Snapshots and whatever shows them.

A Source yields the latest Snapshot and takes commands; a read-only one refuses them with
its reason. The dashboard depends on this protocol alone: the embedded engine
(engine/source.py), another process (attach/source.py) and Snapshots given in advance
(FixedSource: benchmarks, tests) all implement it. What differs in how each is drawn follows
from `kind`, the Snapshot.source of its pictures, never from the source's class.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import Future
from typing import Any, Protocol

from muxtop.commands import Outcome
from muxtop.snapshot import Snapshot, WaitRecord

# A source declares the optional features it has (player, recorder, recent_waits, published,
# targets) by subclassing Source, as a selector subclasses selectors.BaseSelector: what it does
# not declare stays None.


class Source(Protocol):
    kind: str  # "engine" or "attach": which picture its Snapshots draw
    shares_gil: bool  # the producer runs in this process: every frame drawn costs it
    announces_refusals: bool  # a refused command comes back as one of its own Notices
    # What a source may do besides pictures and commands (None: it does not):
    player: Any = None  # a recording's muxtop.replay.player.Player: the replay keys, a timeline
    recorder: Any = None  # a muxtop.record.control.RecorderControl: R records the source
    # The live wait ring, read between two Snapshots: a recorder that reads it often misses no
    # wait call when more happen between two Snapshots than a Snapshot's ring holds.
    recent_waits: Callable[[], tuple[WaitRecord, ...]] | None = None
    # Snapshots published so far: a recording's END frame says how many it missed.
    published: int | None = None
    targets: Any = None  # a muxtop.attach.source.TargetList: several processes, > < switch
    # A muxtop.proxy.registry.Registry: the proxies and their toxics (T changes them).
    proxies: Any = None

    def latest(self) -> Snapshot | None:
        """The newest Snapshot (None before the first). Cheap, never blocks: the UI calls
        it on its own thread a few times a second."""

    @property
    def read_only(self) -> str | None:
        """Why commands are refused now; None when the source takes them."""

    @property
    def flood_target(self) -> tuple[str, int] | None:
        """Where a flood launched from the dashboard goes, or None: no server to flood."""

    def submit(self, command: object) -> Future:
        """Send a command; the Future gets an Outcome."""


def answered(outcome: Outcome) -> Future:
    """A Future already holding `outcome`."""
    future: Future = Future()
    future.set_result(outcome)
    return future


class FixedSource(Source):
    """Snapshots given in advance: `latest` returns the current one until `advance()` moves to
    the next. Commands are recorded and answered by `answer`, or refused (`commands=False`)."""

    shares_gil = False
    announces_refusals = False

    def __init__(self, snapshots: Snapshot | Sequence[Snapshot], *, commands: bool = True,
                 answer: Callable[[object], Outcome] | None = None) -> None:
        self.snapshots = [snapshots] if isinstance(snapshots, Snapshot) else list(snapshots)
        self.kind = self.snapshots[0].source
        self.index = 0
        self.sent: list[object] = []
        self._commands = commands
        self._answer = answer or (lambda command: Outcome(True, f"recorded {command}"))

    def latest(self) -> Snapshot:
        return self.snapshots[self.index]

    def advance(self) -> Snapshot:
        """Move to the next Snapshot (wrapping around) and return it."""
        self.index = (self.index + 1) % len(self.snapshots)
        return self.snapshots[self.index]

    @property
    def read_only(self) -> str | None:
        return None if self._commands else "this view is read-only"

    @property
    def flood_target(self) -> tuple[str, int] | None:
        return None

    def submit(self, command: object) -> Future:
        if not self._commands:
            return answered(Outcome(False, "this view is read-only"))
        self.sent.append(command)
        return answered(self._answer(command))
