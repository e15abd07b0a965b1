"""Playing a recording: where the replay is, how fast it moves, and the keys that move it.

The dashboard finds a Player as its source's `player` and binds the replay keys to it (space,
., ",", ], [, g, G); a source without one has none of those keys. While playing, the
position follows the clock at the chosen speed (×1/16 … ×64) and stops at the end; a step
pauses and moves exactly one wait call (one Snapshot in a recording of another process).
"""

from __future__ import annotations

import time
from bisect import bisect_right
from collections import deque
from collections.abc import Callable
from typing import NamedTuple

from muxtop.record.control import RecorderNotice
from muxtop.replay.timeline import NO_SEQ, Position, Timeline
from muxtop.snapshot import Snapshot

SPEEDS = (1 / 16, 1 / 8, 1 / 4, 1 / 2, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0)
HISTORY = 240  # Snapshots of trends behind the position (a minute, as the live view keeps)
PROBLEMS_TOLD = 3  # problems of the file told one by one when many come at once


class TimelineEvent(NamedTuple):
    t: float  # seconds into the recording
    kind: str  # notice, finding, finding-end, switch, lab, command, gap, stopped
    text: str  # plain words (recorded text: show it plain)


def speed_text(speed: float) -> str:
    return f"×{speed:g}" if speed >= 1 else f"×1/{round(1 / speed)}"


def describe(t: float, event: dict) -> TimelineEvent | None:
    """A recorded event in plain words; None for what the timeline leaves out (new
    connections: a flood makes hundreds)."""
    kind = str(event.get("type"))
    if kind == "notice":
        text = f"{event.get('level')}: {event.get('text')}"
    elif kind == "finding":
        finding = event.get("finding")
        finding = finding if isinstance(finding, list) and len(finding) > 1 else [None, None]
        fd = finding[1]
        text = f"finding {finding[0]}" + (f" on fd {fd}" if fd is not None else "")
    elif kind == "finding-end":
        fd = event.get("fd")
        text = f"{event.get('kind')} cleared" + (f" on fd {fd}" if fd is not None else "")
    elif kind == "switch":
        text = f"switched {event.get('from')} → {event.get('to')}"
    elif kind == "lab":
        text = "bug lab " + (", ".join(map(str, event.get("on") or ())) or "off")
    elif kind == "command":
        verdict = "" if event.get("ok") else "refused: "
        text = f"{event.get('command')}: {verdict}{event.get('message')}"
    elif kind == "gap":
        lost = event.get("lost")
        text = f"{lost if isinstance(lost, int) else '?'} wait calls not recorded"
    elif kind == "stopped":
        text = "the source stopped" + (f": {event['error']}" if event.get("error") else "")
    else:
        return None
    return TimelineEvent(t, kind, text)


class Player:
    def __init__(self, timeline: Timeline, at: float = 0.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.timeline = timeline
        self.clock = clock
        recording = timeline.recording
        found = (describe(t - timeline.t0, event)
                 for t, event in recording.events(but=("connections",)))
        self.events = tuple(sorted((e for e in found if e is not None), key=lambda e: e.t))
        self._event_times = [e.t for e in self.events]
        self.notices: deque[RecorderNotice] = deque(maxlen=32)
        self._notice_seq = 0
        self._problems_told = 0
        self.playing = False
        self.speed_index = SPEEDS.index(1.0)
        self.jumps = 0  # moves back or across the recording: the dashboard starts afresh
        self.position = timeline.at(at)
        self._anchor = (clock(), self.position.t)
        if at > timeline.duration:
            self._notice("warning", f"--at {at:g} s is past the end of the recording "
                         f"({timeline.duration:.1f} s): opened at the end")
        self._tell_problems()

    @property
    def speed(self) -> float:
        return SPEEDS[self.speed_index]

    @property
    def unit(self) -> str:
        """What one step moves: "wait call" or "snapshot"."""
        return self.timeline.unit

    @property
    def duration(self) -> float:
        return self.timeline.duration

    def _notice(self, level: str, text: str) -> None:
        self._notice_seq += 1
        self.notices.append(RecorderNotice(self._notice_seq, level, text))

    def _tell_problems(self) -> None:
        """Each problem of the file once; many found at once (every checksum is read as the
        dashboard opens) are the first few and a count, not a toast each."""
        problems = self.timeline.recording.problems
        new = problems[self._problems_told:]
        self._problems_told = len(problems)
        for problem in new[:PROBLEMS_TOLD]:
            self._notice("warning", problem)
        if len(new) > PROBLEMS_TOLD:
            self._notice("warning", f"and {len(new) - PROBLEMS_TOLD:,} more problems in this "
                         "file: muxtop replay --summary lists them")

    # ---- where it is -------------------------------------------------------------------

    def current(self) -> Position:
        """The position now (playing moves it with the clock)."""
        if self.playing:
            wall, t = self._anchor
            t += (self.clock() - wall) * self.speed
            if t >= self.duration:
                self.position = self.timeline.last()
                self.playing = False
            else:
                moved = self.timeline.at(t)
                if (moved.seq, moved.index) > (self.position.seq, self.position.index):
                    self.position = moved
        return self.position

    def picture(self) -> Snapshot:
        snapshot = self.timeline.picture(self.current())
        self._tell_problems()
        return snapshot

    def history(self) -> tuple[Snapshot, ...]:
        """The Snapshots behind the position whose figures the trends draw."""
        return self.timeline.history(self.position, HISTORY)

    def last_event(self) -> TimelineEvent | None:
        """The latest event at or before the position."""
        i = bisect_right(self._event_times, self.position.t) - 1
        return self.events[i] if i >= 0 else None

    @property
    def on_snapshot(self) -> bool:
        """The position is a recorded Snapshot (not one made from the waits after one)."""
        return self.timeline.is_snapshot(self.position)

    @property
    def snapshots(self) -> int:
        return len(self.timeline.times)

    @property
    def at_end(self) -> bool:
        return self.position == self.timeline.last()

    # ---- the keys ----------------------------------------------------------------------

    def _moved(self) -> None:
        self._anchor = (self.clock(), self.position.t)

    def toggle(self) -> None:
        """Play, or pause; playing at the end starts again from the beginning."""
        self.current()
        if self.playing:
            self.playing = False
            return
        if self.at_end:
            self.position = self.timeline.first()
            self.jumps += 1
        self.playing = True
        self._moved()

    def step(self, n: int) -> bool:
        """Pause and move `n` positions (back if negative); False at an end."""
        self.current()
        self.playing = False
        before = self.position
        self.position = self.timeline.step(before, n)
        if n < 0:
            self.jumps += 1
        elif before.seq != NO_SEQ and self.position.seq > before.seq + n:
            lost = self.position.seq - before.seq - n
            self._notice("warning", f"{lost:,} wait calls here were not recorded (seq "
                         f"{before.seq + 1:,}–{self.position.seq - 1:,})")
        self._moved()
        return self.position != before

    def change_speed(self, steps: int) -> None:
        self.current()
        self.speed_index = min(max(self.speed_index + steps, 0), len(SPEEDS) - 1)
        self._moved()

    def seek(self, t: float) -> None:
        self.current()
        self.position = self.timeline.at(t)
        self.jumps += 1
        self._moved()

    def to_start(self) -> None:
        self.current()
        self.position = self.timeline.first()
        self.jumps += 1
        self._moved()

    def to_end(self) -> None:
        self.playing = False
        self.position = self.timeline.last()
        self.jumps += 1
        self._moved()
