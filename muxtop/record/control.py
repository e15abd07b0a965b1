"""Recording on demand: `RecorderControl` starts and stops recordings of one Source (the
dashboard's R key, `--record FILE`), and `Recordable` is that Source with the control attached
— the same pictures and commands, every command recorded with its outcome while a recording
runs. The dashboard finds the control as the source's `recorder` and never asks more."""

from __future__ import annotations

import os
import time
from collections import deque
from concurrent.futures import Future
from typing import NamedTuple

from muxtop.commands import Outcome
from muxtop.record.recorder import Recorder, RecorderStatus
from muxtop.source import Source, answered

SUFFIX = ".muxrec"


class RecorderNotice(NamedTuple):
    seq: int
    level: str  # "info", "warning", "error"
    text: str


def default_path(kind: str, directory: str = ".") -> str:
    """A new file name in `directory`: muxtop-engine-20261127-093012.muxrec (-2, -3... if
    that one exists)."""
    stem = os.path.join(directory, f"muxtop-{kind}-{time.strftime('%Y%m%d-%H%M%S')}")
    path, n = stem + SUFFIX, 1
    while os.path.exists(path):
        n += 1
        path = f"{stem}-{n}{SUFFIX}"
    return path


class RecorderControl:
    """Starts and stops recordings of `source`, one at a time. Its notices (a recording
    started, stopped, lost records, failed) go to `on_notice` on the thread that has them,
    and are kept in `notices` for a dashboard to show on its own thread."""

    def __init__(self, source, command_line: list[str], *, on_notice=None,
                 directory: str = ".") -> None:
        self.source = source
        self.command_line = list(command_line)
        self.directory = directory
        self.on_notice = on_notice
        self.notices: deque[RecorderNotice] = deque(maxlen=32)
        self._seq = 0
        self.recorder: Recorder | None = None  # the current or the last recording

    def _notice(self, level: str, text: str) -> None:
        self._seq += 1
        self.notices.append(RecorderNotice(self._seq, level, text))
        if self.on_notice is not None:
            self.on_notice(level, text)

    @property
    def active(self) -> Recorder | None:
        recorder = self.recorder
        return recorder if recorder is not None and recorder.running else None

    def start(self, path: str | None = None) -> Recorder:
        """Start recording into a new file (a generated name when `path` is None).
        RecordWriteError says why not, with nothing changed."""
        if self.active is not None:
            return self.active
        path = path or default_path(self.source.kind, self.directory)
        self.recorder = Recorder(self.source, path, self.command_line, self._notice).start()
        self._notice("info", f"recording to {path}: every wait call from now on")
        return self.recorder

    def stop(self) -> RecorderStatus | None:
        """Stop the recording, if one runs; its final status."""
        recorder = self.active
        return recorder.stop() if recorder is not None else None

    def status(self) -> RecorderStatus | None:
        """The running recording's status (None when none runs)."""
        recorder = self.active
        return recorder.status() if recorder is not None else None

    def sent(self, command: object, future: Future) -> None:
        recorder = self.active
        if recorder is not None:
            recorder.sent(command, future)


class Box(Source):
    """What a recorder polls for a loop that reads its pictures itself (`muxtop attach
    --text --record`): the picture last put in it. It takes no commands."""

    shares_gil = False
    announces_refusals = False
    read_only = "a recorded picture takes no commands"
    flood_target = None

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._snapshot = None

    def put(self, snapshot) -> None:
        self._snapshot = snapshot

    def latest(self):
        return self._snapshot

    def submit(self, command: object) -> Future:
        return answered(Outcome(False, self.read_only))


class Recordable(Source):
    """`source` with a RecorderControl attached as `recorder`; otherwise the same Source, its
    optional features too (a wrapper that dropped `proxies` hid the toxics menu of every
    dashboard; tests/test_layers.py checks that each declared feature passes through)."""

    def __init__(self, source, recorder: RecorderControl) -> None:
        self.source = source
        self.recorder = recorder
        self.kind = source.kind
        self.shares_gil = source.shares_gil
        self.announces_refusals = source.announces_refusals

    def latest(self):
        return self.source.latest()

    @property
    def read_only(self) -> str | None:
        return self.source.read_only

    @property
    def flood_target(self) -> tuple[str, int] | None:
        return self.source.flood_target

    def submit(self, command: object) -> Future:
        future = self.source.submit(command)
        self.recorder.sent(command, future)
        return future

    @property
    def player(self):
        return self.source.player

    @property
    def recent_waits(self):
        return self.source.recent_waits

    @property
    def published(self):
        return self.source.published

    @property
    def targets(self):
        return self.source.targets

    @property
    def proxies(self):
        return self.source.proxies
