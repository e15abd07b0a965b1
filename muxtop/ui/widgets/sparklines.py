"""Sparklines of waits/s, events per wait, wait-call duration and the CPU each call costs,
over the last minute or so.

The engine keeps no history of its rates, so the UI does: one sample per new Snapshot, kept
even while the display is paused so that resuming shows no gap."""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable
from typing import ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widget import Widget

from muxtop.snapshot import Snapshot
from muxtop.ui import format as fmt
from muxtop.ui.widgets.line_api import TextLines

HISTORY = 240  # samples: a minute at 4 Snapshots a second
_BLOCKS = " ▁▂▃▄▅▆▇█"


class Trend(TextLines, Widget):
    """One metric: its name and latest value on top, a two-line sparkline below."""

    COMPONENT_CLASSES: ClassVar[set[str]] = {"trend--label", "trend--value", "trend--bars"}

    DEFAULT_CSS = """
    Trend { height: 3; }
    Trend > .trend--label { color: $text-muted; }
    Trend > .trend--value { text-style: bold; }
    Trend > .trend--bars { color: $text-primary; }
    """

    def __init__(self, label: str, read: Callable[[Snapshot], float],
                 show: Callable[[float], str], *, log_floor: float | None = None,
                 id: str | None = None) -> None:
        """`log_floor`: draw on a log scale from this value up (durations span µs to
        seconds: a linear scale would flatten every busy wait to nothing)."""
        super().__init__(id=id)
        self.label = label
        self.log_floor = log_floor
        self.read = read
        self.show = show
        self.samples: deque[float] = deque(maxlen=HISTORY)

    def record(self, snapshot: Snapshot) -> None:
        self.samples.append(float(self.read(snapshot)))

    def replace(self, history) -> None:
        self.samples = deque((float(self.read(s)) for s in history), maxlen=HISTORY)

    def render(self) -> Text:
        width = self.size.width
        samples = list(self.samples)[-width:] if width else []
        latest = samples[-1] if samples else 0.0
        peak = max(samples, default=0.0)
        text = Text(no_wrap=True, overflow="crop")
        palette = self.palette()
        label_style, value_style = palette["label"], palette["value"]
        text.append(self.label, label_style)
        value = self.show(latest)
        peak_text = f"  max {self.show(peak)}"
        pad = width - len(self.label) - len(value) - len(peak_text)
        if pad < 1:
            peak_text, pad = "", width - len(self.label) - len(value)
        text.append(" " * max(pad, 1))
        text.append(value, value_style)
        text.append(peak_text, label_style)
        top, bottom = bars(samples, width, peak, self.log_floor)
        text.append("\n" + top + "\n" + bottom, palette["bars"])
        return text


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


class Trends(Vertical):
    """The trends, side by side with what the header says now."""

    DEFAULT_CSS = """
    Trends { height: auto; }
    """

    def compose(self) -> ComposeResult:
        yield Trend("waits/s", lambda s: s.rates.waits, fmt.count, id="trend-waits")
        yield Trend("events per wait", lambda s: s.rates.ready_per_wait,
                    lambda v: f"{v:.2f}", id="trend-ready")
        yield Trend("wait p99 (log scale)", lambda s: s.rates.wait_p99, fmt.duration,
                    log_floor=1e-6, id="trend-duration")
        yield Trend("cpu per wait call (log scale)", lambda s: s.rates.wait_cpu, fmt.duration,
                    log_floor=1e-7, id="trend-cpu")

    def on_mount(self) -> None:
        self.trends = list(self.query(Trend))

    def record(self, snapshot: Snapshot) -> None:
        for trend in self.trends:
            trend.record(snapshot)

    def replace(self, history) -> None:
        """Samples from these Snapshots instead (a replay's position moved)."""
        for trend in self.trends:
            trend.replace(history)

    def redraw(self) -> None:
        for trend in self.trends:
            trend.redraw()
