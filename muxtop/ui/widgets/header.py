"""The three header lines, as the view writes them (the engine's: what runs where, how the
loop is doing, what traffic and the process cost; another process's: which one, its command
line, its epoll sets), with badges for what a person must not miss: a refused switch, a bug
lab turned on, a paused display, a dead engine, an attached process that exited."""

from __future__ import annotations

from typing import ClassVar

from rich.cells import cell_len
from rich.style import Style
from rich.text import Text
from textual.widget import Widget

from muxtop.snapshot import Snapshot
from muxtop.ui import format as fmt
from muxtop.ui.views import ENGINE, SourceView
from muxtop.ui.views.base import Header
from muxtop.ui.widgets.line_api import TextLines


class StatusHeader(TextLines, Widget):
    COMPONENT_CLASSES: ClassVar[set[str]] = {
        "status-header--title", "status-header--mode", "status-header--label",
        "status-header--value", "status-header--paused", "status-header--alert",
        "status-header--lab", "status-header--info",
    }

    DEFAULT_CSS = """
    StatusHeader { height: 3; background: $panel; padding: 0 1; }
    StatusHeader > .status-header--title { text-style: bold; color: $text-accent; }
    StatusHeader > .status-header--mode { text-style: bold; color: $text-success; }
    StatusHeader > .status-header--label { color: $text-muted; }
    StatusHeader > .status-header--value { text-style: bold; }
    StatusHeader > .status-header--paused {
        background: $warning; color: $text; text-style: bold;
    }
    StatusHeader > .status-header--alert { background: $error; color: $text; text-style: bold; }
    StatusHeader > .status-header--lab { background: $warning; color: $text; text-style: bold; }
    StatusHeader > .status-header--info { background: $primary; color: $text; text-style: bold; }
    """

    def __init__(self, view: SourceView = ENGINE, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.view = view
        self.styles.height = view.header_lines
        self.snapshot: Snapshot | None = None
        self.paused = False
        self.frozen = False
        self.read_only = False
        self.problem: str | None = None  # the source itself failed (not the engine)
        self.recording: str | None = None  # the REC badge, while a recording runs

    def show(self, snapshot: Snapshot | None, *, paused: bool, frozen: bool,
             read_only: bool, problem: str | None = None, recording: str | None = None) -> None:
        self.snapshot = snapshot
        self.paused, self.frozen, self.read_only = paused, frozen, read_only
        self.problem = problem
        self.recording = recording
        self.redraw()

    def render(self) -> Text:
        s = self.snapshot
        palette = self.palette()

        def style(name: str) -> Style:
            return palette[name.split("--", 1)[1]]

        label = style("status-header--label")
        text = Text(no_wrap=True, overflow="ellipsis", end="")
        if s is None:
            text.append("muxtop", style("status-header--title"))
            text.append("  waiting for the first snapshot…", label)
            if self.problem:
                text.append(f"  {self.problem} ", style("status-header--alert"))
            return text

        badges = self._badges(s, lambda name: palette[name])
        # Line 1 keeps room for the badges; a refusal's reason may be cut to make it fit.
        wanted = sum(cell_len(b) for b, _ in badges) + len(badges) - 1 if badges else -2
        header = Header(lambda name: palette[name], self.size.width,
                        reserve=min(wanted + 2, self.size.width // 2),
                        badges=lambda text: self._place(text, badges))
        self.view.header(header, s)
        return header.finish()

    def _badges(self, s: Snapshot, style) -> list[tuple[str, Style]]:
        """What a person must not miss, as (text, style) badges, most urgent first."""
        badges: list[tuple[str, Style]] = []
        if s.error or not s.running:
            badges.append((f" {self.view.stopped} ", style("alert")))
        if self.problem:
            badges.append((f" {self.problem} ", style("alert")))
        if s.refused:
            badges.append((f" REFUSED: {fmt.plain(s.refused)} ", style("alert")))
        if s.lab:
            # plain: a recording may name any lab (an escape sequence would reach the terminal)
            badges.append((f" LAB {fmt.plain(' '.join(sorted(s.lab)))} ", style("lab")))
        if self.read_only:
            badges.append((" READ-ONLY ", style("info")))
        if self.frozen:
            badges.append((" ORDER FROZEN ", style("info")))
        if s.step is not None:
            badges.append((" STEPPING: clients wait ", style("paused")))
        if self.paused:
            badges.append((" PAUSED ", style("paused")))
        if self.recording:
            badges.append((f" {self.recording} ", style("alert")))
        return badges

    def _place(self, text: Text, badges: list[tuple[str, Style]]) -> None:
        """The badges at the right end of line 1 (`text` holds line 1 so far)."""
        if not badges:
            return
        width = self.size.width
        used = cell_len(text.plain)
        wanted = sum(cell_len(b) for b, _ in badges) + len(badges) - 1
        room = width - used - 2
        if wanted > room and any(b.startswith(" REFUSED") for b, _ in badges):
            # Cut the refusal's reason at a word rather than push the other badges off
            # screen (never inside "fd 1025"); the whole reason is in the notification too.
            for i, (badge, badge_style) in enumerate(badges):
                if badge.startswith(" REFUSED"):
                    keep = max(12, cell_len(badge) - (wanted - room))
                    badges[i] = (fmt.cut_words(badge, keep), badge_style)
            wanted = sum(cell_len(b) for b, _ in badges) + len(badges) - 1
        text.append(" " * max(2, width - used - wanted))
        for i, (badge, badge_style) in enumerate(badges):
            if i:
                text.append(" ")
            text.append(badge, badge_style)
