"""The floods the dashboard launched: for each running (or lately finished) one, what it is,
how far it got, whether every echoed byte came back right, its latency percentiles and their
trend second by second, and, once it has failed, why."""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import ClassVar

from rich.cells import cell_len
from rich.text import Text
from textual.widget import Widget

from muxtop.flood.process import FloodProcess, FloodSettings
from muxtop.ui import format as fmt
from muxtop.ui.widgets.line_api import PaletteMixin

_BLOCKS = "▁▂▃▄▅▆▇█"
# The trend's log scale: from 10 µs (loopback round trips are ~50 µs) to the window's peak,
# but never less than 100 ms, so that a steady flood does not draw as a wall of full blocks.
TREND_FLOOR_MS = 0.01
TREND_TOP_MS = 100.0


def _ms(value: float | None) -> str:
    return fmt.DASH if value is None else fmt.duration(value / 1000)


def flood_state(flood: FloodProcess) -> tuple[str, str]:
    """(state text, style name): running / done / stopped (by x, or the app's end) / failed,
    with the exit code."""
    code = flood.returncode
    record = flood.summary or flood.progress or {}
    elapsed = record.get("elapsed_s")
    took = f" {elapsed:.1f}s" if isinstance(elapsed, (int, float)) else ""
    if code is None:
        return f"running{took}", "running"
    summary = flood.summary or {}
    how = summary.get("stopped_by")
    if code == 0:
        return f"{'stopped' if how == 'signal' else 'done'}{took}", "done"
    return f"failed: exit {code}{took}", "failed"


def trend(values: Sequence[float | None], width: int) -> str:
    """One row of blocks, newest on the right, on a log scale (see TREND_FLOOR_MS): a stall of
    a second stands out of sub-millisecond seconds without flattening them to nothing."""
    shown = list(values)[-width:] if width > 0 else []
    peak = max((v for v in shown if v is not None), default=0.0)
    span = math.log(max(peak, TREND_TOP_MS) / TREND_FLOOR_MS)
    cells = []
    for value in shown:
        if value is None:
            cells.append(" ")   # a second with no echo at all
            continue
        level = math.log(max(value, TREND_FLOOR_MS) / TREND_FLOOR_MS) / span
        cells.append(_BLOCKS[min(len(_BLOCKS) - 1, round(level * (len(_BLOCKS) - 1)))])
    return "".join(cells)


STATE_ROOM = len("running 99.9s")  # what a flood's name leaves its state, whatever the state


def headline(s: FloodSettings, number: int, state: str, width: int) -> tuple[str, str]:
    """What the flood is and its state, in `width` cells: clients × messages each × size,
    rate, duration ("no limit" where messages is 0: until stopped); narrower (the side column
    at 80 columns), clients × messages, then 500×20. The name is chosen for the width alone, so
    it stays the same for the flood's life (it read '1,000 × no limit' running and '1,000×∞'
    stopped); the state gives way instead: without its time, then cut."""
    messages = f"{s.messages:,} msgs" if s.messages else "no limit"
    what = f"#{number} {s.pattern} {s.clients:,} × {messages} × {fmt.size(s.size)}"
    if s.rate:
        what += f" @{s.rate:g}/s"
    if s.duration:
        what += f" {s.duration:g}s"
    forms = (what, f"#{number} {s.pattern} {s.clients:,} × {messages}",
             f"#{number} {s.pattern} {s.clients:,}×{s.messages:,}" if s.messages
             else f"#{number} {s.pattern} {s.clients:,}×∞")
    what = next((form for form in forms if len(form) + 1 + STATE_ROOM <= width), forms[-1])
    room = max(1, width - len(what) - 1)
    untimed = re.sub(r" [\d.]+s$", "", state)
    word = untimed.split(":")[0].replace("running", "run", 1)  # run, done, stopped, failed
    state = next((form for form in (state, state.replace("running", "run", 1), untimed,
                                    untimed.replace("running", "run", 1), word)
                  if len(form) <= room), word)
    return fmt.fit(what, max(1, width - len(state) - 1)), state


def title(running: int, width: int) -> str:
    """The panel's first line, the first form that fits: at 80 columns (26 cells) 'floods ·
    1 running · x stops' read 'x st…'; the side column's border already says floods."""
    stops = " · x stops" if running else ""
    for form in (f"floods · {running} running{stops}", f"{running} running{stops}"):
        if cell_len(form) <= width:
            return form
    return fmt.fit(f"{running} running", width)


def describe(flood: FloodProcess, number: int, width: int, palette) -> list[Text]:
    """The lines about one flood, each cut to `width`: six while it reports (starting: two),
    and one more with why it failed (or, while it runs, its last error line)."""
    s = flood.args
    record = flood.summary or flood.progress
    label, value = palette["label"], palette["value"]
    state, state_style = flood_state(flood)
    what, state = headline(s, number, state, width)
    head = Text(what, "bold", end="")
    head.append(" " * max(1, width - cell_len(what) - len(state)))
    head.append(state, palette[state_style])
    lines = [head]
    if record is None and flood.running:
        lines.append(Text("  starting…", label))
    elif record is not None:
        failed = record.get("failed_total", 0)
        mismatches = record.get("mismatches", 0)
        rtt = record.get("rtt_ms") or {}

        def line(*forms: tuple[tuple[str, str, object], ...]) -> Text:
            """The first form (its parts) that fits the width: a narrow panel shows fewer
            parts whole, the ones that matter most, rather than cut the line mid-word."""
            for parts in forms:
                text = Text(end="")
                for i, (name, shown, style) in enumerate(parts):
                    if i:
                        text.append(" · ", label)
                    if name:
                        text.append(name + " ", label)
                    text.append(shown, style)
                if text.cell_len <= width:
                    break
            return text

        mode = "open loop" if s.open_loop else "closed loop"
        conns = ("conns", f"{record.get('connected', 0):,}", value)
        failed_part = ("failed", f"{failed:,}", palette["failed"] if failed else value)
        lines.append(line((conns, failed_part, ("open", f"{record.get('active', 0):,}", value)),
                          (conns, failed_part)))
        sent = fmt.count(record.get("messages_sent", 0))
        echoed = fmt.count(record.get("messages_echoed", 0))
        bad = ("bad", f"{mismatches:,}", palette["failed"] if mismatches else palette["ok"])
        lines.append(line((("msgs", f"{sent} sent", value), ("", f"{echoed} back", value), bad),
                          (("back", f"{echoed}/{sent}", value), bad), (bad,)))
        volume = ("bytes", f"{fmt.size(record.get('bytes_sent', 0))}↑ "
                           f"{fmt.size(record.get('bytes_received', 0))}↓", value)
        lines.append(line((volume, ("", mode, label)), (volume,)))
        p50, p99 = ("p50", _ms(rtt.get("p50")), value), ("p99", _ms(rtt.get("p99")), value)
        lines.append(line((p50, p99, ("p99.9", _ms(rtt.get("p99.9")), value)), (p50, p99),
                          (p99,)))
        p99s = [interval.get("p99") for interval in flood.trend]
        latest = _ms(p99s[-1]) if p99s else fmt.DASH
        prefix, suffix = "p99/s ", f" {latest}"
        bars = trend(p99s, max(0, width - len(prefix) - len(suffix) - 2))
        text = Text(prefix, label, end="")
        text.append(bars, palette["value"])
        text.append(suffix, value)
        lines.append(text)
    reason = flood.reason
    if reason:
        lines.append(Text("  " + fmt.plain(reason), palette["error"]))
    elif flood.errors:
        error = fmt.plain(flood.errors[-1]).removeprefix("muxtop flood: ")
        lines.append(Text("  " + error, palette["error"]))
    for text in lines:
        text.truncate(width, overflow="ellipsis")
    return lines


class FloodPanel(PaletteMixin, Widget):
    """Hidden while no flood was launched; the app hands it the list on each tick."""

    COMPONENT_CLASSES: ClassVar[set[str]] = {
        "flood-panel--title", "flood-panel--label", "flood-panel--value",
        "flood-panel--running", "flood-panel--done", "flood-panel--failed", "flood-panel--ok",
        "flood-panel--error",
    }

    DEFAULT_CSS = """
    FloodPanel { height: auto; display: none; }
    FloodPanel.-shown { display: block; }
    FloodPanel > .flood-panel--title { text-style: bold; color: $text-accent; }
    FloodPanel > .flood-panel--label { color: $text-muted; }
    FloodPanel > .flood-panel--value { text-style: bold; }
    FloodPanel > .flood-panel--running { color: $text-warning; text-style: bold; }
    FloodPanel > .flood-panel--done { color: $text-success; text-style: bold; }
    FloodPanel > .flood-panel--failed { color: $text-error; text-style: bold; }
    FloodPanel > .flood-panel--ok { color: $text-success; text-style: bold; }
    FloodPanel > .flood-panel--error { color: $text-error; }
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.floods: list[tuple[int, FloodProcess]] = []
        self._shown_height = 0

    def show(self, floods: Sequence[tuple[int, FloodProcess]]) -> None:
        """(number, flood) pairs, newest first. Redraws every tick while any runs."""
        floods = list(floods)
        if not floods and not self.floods:
            return
        self.floods = floods
        self.set_class(bool(floods), "-shown")
        height = self._height()
        self.refresh(layout=height != self._shown_height)  # a layout only when it changes
        self._shown_height = height

    def _lines(self) -> list[Text]:
        palette = self.palette()
        width = max(10, self.size.width)
        running = sum(1 for _, f in self.floods if f.running)
        lines = [Text(title(running, width), palette["title"])]
        for number, flood in self.floods:
            lines += describe(flood, number, width, palette)
        return lines

    def render(self) -> Text:
        text = Text(no_wrap=True, overflow="ellipsis", end="")
        for i, line in enumerate(self._lines()):
            if i:
                text.append("\n")
            text.append(line)
        return text

    def _height(self) -> int:
        return len(self._lines())

    def get_content_height(self, container, viewport, width: int) -> int:
        return self._height()
