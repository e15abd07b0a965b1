"""The replay's timeline: playing or paused, the speed, where the replay is (seconds, wait
call), the latest recorded event before it, and a bar across the whole recording with its
events marked (× lost wait calls, ! a finding, ■ the source stopped, ◆ a switch or the bug
lab, ▲ a command, • a warning). A click on the bar jumps there."""

from __future__ import annotations

from typing import ClassVar

from rich.cells import cell_len
from rich.text import Text
from textual import events
from textual.message import Message
from textual.widget import Widget

from muxtop.replay.player import Player, speed_text
from muxtop.replay.timeline import NO_SEQ
from muxtop.ui import format as fmt
from muxtop.ui.widgets.line_api import PaletteMixin

MARKS = {"gap": ("×", "alert"), "finding": ("!", "alert"), "stopped": ("■", "alert"),
         "switch": ("◆", "mark"), "lab": ("◆", "mark"), "command": ("▲", "mark"),
         "notice": ("•", "mark")}
_PRIORITY = ("notice", "command", "lab", "switch", "finding", "stopped", "gap")


class TimelineBar(PaletteMixin, Widget):
    COMPONENT_CLASSES: ClassVar[set[str]] = {
        "timeline-bar--state", "timeline-bar--label", "timeline-bar--value",
        "timeline-bar--played", "timeline-bar--mark", "timeline-bar--alert"}

    DEFAULT_CSS = """
    TimelineBar { height: 2; background: $panel; padding: 0 1; }
    TimelineBar > .timeline-bar--played { color: $accent; }
    TimelineBar > .timeline-bar--state { color: $text-accent; text-style: bold; }
    TimelineBar > .timeline-bar--value { text-style: bold; }
    TimelineBar > .timeline-bar--mark { color: $text-warning; text-style: bold; }
    TimelineBar > .timeline-bar--alert { color: $text-error; text-style: bold; }
    TimelineBar > .timeline-bar--label { color: $text-muted; }
    """

    class Seek(Message):
        """A click on the bar: jump to `t` seconds."""

        def __init__(self, t: float) -> None:
            super().__init__()
            self.t = t

    def __init__(self, player: Player, *, read_only: str | None = None,
                 id: str | None = None) -> None:
        super().__init__(id=id)
        self.player = player
        self.read_only = read_only
        self._marked: tuple | None = None  # ((cells, duration), the events, their marks)

    def show(self) -> None:
        self.refresh()

    def render(self) -> Text:
        player = self.player
        p = player.position
        palette = self.palette()
        width = self.size.width
        text = Text(no_wrap=True, overflow="ellipsis", end="")
        text.append("▶ playing" if player.playing else "‖ paused", palette["state"])
        text.append(f"  {speed_text(player.speed)}   ", palette["value"])
        text.append(f"+{p.t:.6f} s", palette["value"])
        text.append(f" of {player.duration:.3f} s  ", palette["label"])
        if player.unit == "wait call":
            where = f"after wait call #{p.seq:,}" if p.seq != NO_SEQ else "before any wait call"
            snapshot = " (a recorded Snapshot)" if player.on_snapshot else ""
        else:
            where, snapshot = f"Snapshot {p.index + 1:,} of {player.snapshots:,}", ""
        text.append(where, palette["value"])
        text.append(snapshot, palette["label"])
        event = player.last_event()
        if event is not None:
            text.append(f"  last: {fmt.plain(event.text)} at +{event.t:.2f} s", palette["label"])
        if self.read_only:
            note = f"  read-only: {self.read_only}"
            room = width - cell_len(text.plain) - cell_len(note)
            text.append(" " * max(room, 0) + note if room >= 0 else "", palette["label"])
        text.append("\n")
        text.append_text(self._bar(width, palette))
        return text

    def _bar(self, width: int, palette) -> Text:
        player = self.player
        duration = player.duration or 1.0
        cells = max(width, 1)
        cursor = min(cells - 1, int(player.position.t / duration * (cells - 1) + 0.5))
        marks = self._marks(cells, duration)
        bar = Text(no_wrap=True, overflow="crop", end="")
        for x in range(cells):
            if x == cursor:
                bar.append("●", palette["value"])
            elif x in marks:
                glyph, style = MARKS[marks[x]]
                bar.append(glyph, palette[style])
            elif x < cursor:
                bar.append("━", palette["played"])
            else:
                bar.append("─", palette["label"])
        return bar

    def _marks(self, cells: int, duration: float) -> dict[int, str]:
        """The event kind each cell of the bar marks (the most urgent, where several share
        a cell). The recording's events never change: worked out again only for a new
        width, not on every redraw (4 a second while it plays)."""
        events = self.player.events
        key = (cells, duration)
        if self._marked is not None and self._marked[0] == key and self._marked[1] is events:
            return self._marked[2]
        marks: dict[int, str] = {}
        for event in events:
            if event.kind not in MARKS:
                continue
            x = min(cells - 1, int(event.t / duration * (cells - 1) + 0.5))
            held = marks.get(x)
            if held is None or _PRIORITY.index(event.kind) > _PRIORITY.index(held):
                marks[x] = event.kind
        self._marked = (key, events, marks)
        return marks

    def on_click(self, event: events.Click) -> None:
        offset = event.get_content_offset(self)
        if offset is None or offset.y != 1:
            return
        cells = max(self.size.width, 2)
        self.post_message(self.Seek(offset.x / (cells - 1) * self.player.duration))
