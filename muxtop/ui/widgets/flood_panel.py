"""The floods the dashboard launched: for each running (or lately finished) one, what it is,
how far it got and whether every echoed byte came back right, in four lines."""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

from rich.cells import cell_len
from rich.text import Text
from textual.widget import Widget

from muxtop.flood.process import FloodProcess
from muxtop.ui import format as fmt
from muxtop.ui.widgets.line_api import PaletteMixin


def _ms(value: float | None) -> str:
    return fmt.DASH if value is None else fmt.duration(value / 1000)


def flood_state(flood: FloodProcess) -> tuple[str, str]:
    """(state text, style name): running / done / failed, with the exit code."""
    code = flood.returncode
    record = flood.summary or flood.progress or {}
    elapsed = record.get("elapsed_s")
    took = f" {elapsed:.1f}s" if isinstance(elapsed, (int, float)) else ""
    if code is None:
        return f"running{took}", "running"
    summary = flood.summary or {}
    how = summary.get("stopped_by")
    if code == 0:
        return f"done{took}" + (" (stopped)" if how == "signal" else ""), "done"
    return f"failed: exit {code}{took}", "failed"


def describe(flood: FloodProcess, number: int, width: int, palette) -> list[Text]:
    """Four lines about one flood (five with its last error line), each cut to `width`."""
    s = flood.args
    record = flood.summary or flood.progress
    label, value = palette["label"], palette["value"]
    state, state_style = flood_state(flood)
    what = f"#{number} {s.pattern} {s.clients:,}×{s.messages:,}×{fmt.size(s.size)}"
    if s.rate:
        what += f" @{s.rate:g}/s"
    if s.duration:
        what += f" {s.duration:g}s"
    what = fmt.fit(what, max(1, width - len(state) - 1))
    head = Text(what, "bold", end="")
    head.append(" " * max(1, width - cell_len(what) - len(state)))
    head.append(state, palette[state_style])
    lines = [head]
    if record is None:
        lines += [Text("  starting…", label), Text(""), Text("")]
    else:
        failed = record.get("failed_total", 0)
        mismatches = record.get("mismatches", 0)
        rtt = record.get("rtt_ms") or {}

        def line(*parts: tuple[str, str, object]) -> Text:
            text = Text(end="")
            for i, (name, shown, style) in enumerate(parts):
                if i:
                    text.append(" · ", label)
                if name:
                    text.append(name + " ", label)
                text.append(shown, style)
            return text

        lines.append(line(("conns", f"{record.get('connected', 0):,}", value),
                          ("failed", f"{failed:,}", palette["failed"] if failed else value),
                          ("open", f"{record.get('active', 0):,}", value)))
        lines.append(line(("msgs", f"{fmt.count(record.get('messages_sent', 0))} sent", value),
                          ("", f"{fmt.count(record.get('messages_echoed', 0))} back", value),
                          ("bad", f"{mismatches:,}",
                           palette["failed"] if mismatches else palette["ok"])))
        lines.append(line(("bytes", f"{fmt.size(record.get('bytes_sent', 0))}↑ "
                                    f"{fmt.size(record.get('bytes_received', 0))}↓", value),
                          ("rtt", f"{_ms(rtt.get('p50'))} p99 {_ms(rtt.get('p99'))}", value)))
    errors = flood.errors
    if errors:
        error = fmt.plain(errors[-1]).removeprefix("muxtop flood: ")
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
        self.refresh(layout=height != self._shown_height)  # a layout only when it grows
        self._shown_height = height

    def render(self) -> Text:
        palette = self.palette()
        width = max(10, self.size.width)
        running = sum(1 for _, f in self.floods if f.running)
        text = Text(no_wrap=True, overflow="ellipsis", end="")
        title = f"floods · {running} running" + (" · x stops" if running else "")
        text.append(fmt.fit(title, width), palette["title"])
        for number, flood in self.floods:
            for line in describe(flood, number, width, palette):
                text.append("\n")
                text.append(line)
        return text

    def _height(self) -> int:
        return 1 + sum(4 + (1 if flood.errors else 0) for _, flood in self.floods)

    def get_content_height(self, container, viewport, width: int) -> int:
        return self._height()
