"""Sparklines of waits/s, events per wait, wait-call duration and the CPU each call costs,
over the last minute or so.

The engine keeps no history of its rates, so the UI does: one sample per new Snapshot, kept
even while the display is paused so that resuming shows no gap."""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable
from typing import ClassVar

from rich.segment import Segment
from textual import events
from textual.geometry import Size
from textual.selection import Selection
from textual.strip import Strip
from textual.widget import Widget

from muxtop.snapshot import Snapshot
from muxtop.ui import format as fmt
from muxtop.ui.widgets.line_api import (
    FramedLines,
    PaletteMixin,
    exact_strip,
    offset_meta,
    repaint_lines,
)

HISTORY = 240  # samples: a minute at 4 Snapshots a second
_BLOCKS = " ▁▂▃▄▅▆▇█"


class Trend:
    """One metric's samples: its name and latest value on top, a two-line sparkline below."""

    def __init__(self, label: str, read: Callable[[Snapshot], float],
                 show: Callable[[float], str], *, log_floor: float | None = None) -> None:
        """`log_floor`: draw on a log scale from this value up (durations span µs to
        seconds: a linear scale would flatten every busy wait to nothing)."""
        self.label = label
        self.log_floor = log_floor
        self.read = read
        self.show = show
        self.samples: deque[float] = deque(maxlen=HISTORY)

    def record(self, snapshot: Snapshot) -> None:
        self.samples.append(float(self.read(snapshot)))

    def replace(self, history) -> None:
        self.samples = deque((float(self.read(s)) for s in history), maxlen=HISTORY)

    def lines(self, width: int) -> tuple[tuple[str, str, str, str], str, str]:
        """(label, padding, value, "  max …"), then the sparkline's top and bottom rows."""
        samples = list(self.samples)[-width:] if width > 0 else []
        latest = samples[-1] if samples else 0.0
        peak = max(samples, default=0.0)
        value = self.show(latest)
        peak_text = f"  max {self.show(peak)}"
        pad = width - len(self.label) - len(value) - len(peak_text)
        if pad < 1:
            peak_text, pad = "", width - len(self.label) - len(value)
        top, bottom = bars(samples, width, peak, self.log_floor)
        return (self.label, " " * max(pad, 1), value, peak_text), top, bottom


def bars(samples: list[float], width: int, peak: float,
         log_floor: float | None = None) -> tuple[str, str]:
    """Two rows of block characters, newest sample on the right, scaled to `peak`
    (linearly, or logarithmically above `log_floor`)."""
    top, bottom = [], []
    if log_floor is not None and peak > log_floor:
        span = math.log(peak / log_floor)
        scale = [round(16 * math.log(v / log_floor) / span) if v > log_floor else 0
                 for v in samples]
    else:
        scale = [round(16 * v / peak) if peak > 0 else 0 for v in samples]
    for value, level in zip(samples, scale):
        if value > 0 and level == 0:
            level = 1  # something happened: show it
        top.append(_BLOCKS[max(0, level - 8)])
        bottom.append(_BLOCKS[min(level, 8)])
    pad = " " * max(0, width - len(samples))
    return pad + "".join(top), pad + "".join(bottom)


class Trends(FramedLines, PaletteMixin, Widget):
    """The trends, three lines each, one above the other: side by side with what the header
    says now. One Line-API widget: every line is a Strip made straight from its text and
    kept while the text is the same (the sparklines move every Snapshot, the labels
    rarely)."""

    COMPONENT_CLASSES: ClassVar[set[str]] = {"trends--label", "trends--value", "trends--bars"}

    DEFAULT_CSS = """
    Trends { height: auto; }
    Trends > .trends--label { color: $text-muted; }
    Trends > .trends--value { text-style: bold; }
    Trends > .trends--bars { color: $text-primary; }
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.trends = [
            Trend("waits/s", lambda s: s.rates.waits, fmt.count),
            Trend("events per wait", lambda s: s.rates.ready_per_wait, lambda v: f"{v:.2f}"),
            Trend("wait p99 (log scale)", lambda s: s.rates.wait_p99, fmt.duration,
                  log_floor=1e-6),
            Trend("cpu per wait call (log scale)", lambda s: s.rates.wait_cpu, fmt.duration,
                  log_floor=1e-7),
        ]
        self._texts: list = []  # each line's text as drawn: a label line's parts, or bars
        self._strips: list[Strip | None] = []
        self._drawn_width = -1

    def record(self, snapshot: Snapshot) -> None:
        for trend in self.trends:
            trend.record(snapshot)

    def replace(self, history) -> None:
        """Samples from these Snapshots instead (a replay's position moved)."""
        for trend in self.trends:
            trend.replace(history)

    def redraw(self) -> None:
        """Work out every line's text; refresh the lines that changed (all of them after a
        change of width or colours)."""
        width = self.size.width
        texts = [line for trend in self.trends for line in trend.lines(width)]
        self._strips = repaint_lines(self, self._texts, texts, self._strips, width,
                                     width != self._drawn_width)
        self._texts, self._drawn_width = texts, width

    def render_line(self, y: int) -> Strip:
        if self._drawn_width != self.size.width:
            self.redraw()
        palette = self.palette()
        base = palette[""]
        if y >= len(self._texts):
            return Strip.blank(self._drawn_width, base)
        strip = self._strips[y]
        if strip is None:
            strip = self._strips[y] = self._strip(self._texts[y], y, palette)
        return strip

    def _strip(self, text, y: int, palette) -> Strip:
        base = palette[""]
        if isinstance(text, str):  # a sparkline row
            parts = ((text, palette["bars"]),)
        else:
            label, pad, value, peak = text
            label_style = palette["label"]
            parts = ((label, label_style), (pad, None), (value, palette["value"]),
                     (peak, label_style))
        segments, x = [], 0
        for part, style in parts:
            if part:  # each with its place, as Textual's text selection reads it
                segments.append(Segment(part, (base + style if style else base)
                                        + offset_meta(x, y)))
                x += len(part)
        return exact_strip(segments, self._drawn_width, base, x)

    def get_content_height(self, container: Size, viewport: Size, width: int) -> int:
        return 3 * len(self.trends)  # whatever border a lesson gives it

    def get_selection(self, selection: Selection) -> tuple[str, str] | None:
        """The text under a mouse selection (Textual asks `render()`, which this has not)."""
        lines = ["".join(text) if isinstance(text, tuple) else text for text in self._texts]
        return selection.extract("\n".join(lines)), "\n"

    def on_resize(self, event: events.Resize) -> None:
        self.redraw()

    def notify_style_update(self) -> None:
        super().notify_style_update()
        self._drawn_width = -1  # drawn in the palette's colours
        if self._texts:
            self.redraw()
