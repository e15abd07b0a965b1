"""A recording as a Source: its pictures, one position at a time, read-only. Its `player`
moves the position; the dashboard draws whatever picture the position has, with the view of
the recorded kind of source (the engine's, or another process's)."""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import Future

from muxtop.commands import Outcome
from muxtop.record.reader import Recording
from muxtop.replay.player import Player
from muxtop.replay.timeline import Timeline
from muxtop.snapshot import Snapshot
from muxtop.source import Source, answered

READ_ONLY = "replaying a recording changes nothing"


class ReplaySource(Source):
    shares_gil = False  # nothing else runs in this process
    announces_refusals = False
    read_only = READ_ONLY
    flood_target = None

    def __init__(self, recording: Recording, at: float = 0.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.recording = recording
        self.kind = recording.kind
        self.player = Player(Timeline(recording), at=at, clock=clock)

    def latest(self) -> Snapshot:
        return self.player.picture()

    def submit(self, command: object) -> Future:
        return answered(Outcome(False, READ_ONLY))
