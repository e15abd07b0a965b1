"""What a kind of picture brings to the dashboard, as data: its table columns, the facts its
cells are drawn from, the sections of its detail view, its header lines and help.

The widgets draw whatever SourceView the app hands them and never ask where a Snapshot came
from: muxtop's own engine (views/engine.py) and another process (views/process.py) differ
here and nowhere else.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

from rich.text import Text

from muxtop.findings import evidence_text
from muxtop.snapshot import ConnView, Snapshot
from muxtop.ui import format as fmt

WARN, ALERT = "warn", "alert"  # a cell's tone; the table maps each to a style


class Facts:
    """What the cells of one Snapshot are drawn from, looked up once per Snapshot (not per
    cell). A view with more to look up (an attached process's sockets) subclasses it."""

    def __init__(self, snapshot: Snapshot) -> None:
        self.snapshot = snapshot
        self.now = snapshot.taken_at


def _no_tone(view: ConnView, facts: Facts) -> str | None:
    return None


class Column(NamedTuple):
    """One table column: its id, header label, width in cells (0: takes the rest), whether
    numbers sit on the right, how it sorts (None: not sortable), how it is drawn, and when
    it stands out (WARN, ALERT or None)."""

    id: str
    label: str
    width: int
    right: bool
    key: Callable[[ConnView], object] | None
    descending: bool  # the first click or `s` puts the biggest first
    cell: Callable[[ConnView, Facts], str]
    tone: Callable[[ConnView, Facts], str | None] = _no_tone


class Detail:
    """The detail view's text, written section by section (network text stays plain)."""

    HEADING, LABEL = "bold underline", "dim"

    def __init__(self) -> None:
        self.text = Text(end="")

    def heading(self, title: str) -> None:
        self.text.append(f"{title}\n", self.HEADING)

    def row(self, name: str, value: str, note: str = "") -> None:
        text = self.text
        text.append(f"  {name:<18}", self.LABEL)
        text.append(value, "bold")
        if note:
            text.append(f"   {note}", self.LABEL)
        text.append("\n")

    def note(self, line: str, style: str = LABEL) -> None:
        self.text.append(f"  {line}\n", style)

    def end(self) -> None:
        self.text.append("\n")

    def findings(self, v: ConnView, s: Snapshot) -> None:
        """The findings that name this fd, with their evidence."""
        text = self.text
        found = [d for d in s.diagnoses if v.fd in d.named_fds()]
        self.heading("Diagnoses")
        if not found:
            self.note("none for this fd")
        for d in found:
            text.append(f"  {d.kind}", "bold red")
            whole = "  (the process; names this fd)" if d.fd is None else ""
            text.append(f"{whole}  for {fmt.age(s.taken_at - d.since)}\n", self.LABEL)
            text.append(f"    {fmt.plain(d.explanation)}\n")
            for key, value in d.evidence:
                text.append(f"    {key}: ", self.LABEL)
                text.append(f"{fmt.plain(evidence_text(key, value))}\n")
        self.end()

    def history(self, v: ConnView, s: Snapshot) -> None:
        self.heading("State history")
        if not v.history:
            self.note("-")
        for at, state in v.history:
            self.text.append(f"  {f'+{at - s.started_at:.3f}s':>12}  ", self.LABEL)
            self.text.append(f"{state}\n")
        self.end()


Section = Callable[[Detail, ConnView, Snapshot, Facts], None]


class Header:
    """The header's three lines, written by a view; `badges` (the widget's) ends line 1."""

    def __init__(self, styles: Callable[[str], object], width: int,
                 badges: Callable[[Text], None]) -> None:
        self.text = Text(no_wrap=True, overflow="ellipsis", end="")
        self.style = styles
        self.width = width
        self._badges: Callable[[Text], None] | None = badges

    def add(self, shown: str, style: str | None = None) -> None:
        self.text.append(shown, self.style(style) if style else None)

    def pair(self, name: str, shown: str, sep: str = "  ") -> None:
        self.add(name + " ", "label")
        self.add(shown, "value")
        self.add(sep)

    def newline(self) -> None:
        if self._badges is not None:  # the end of line 1: badges on the right
            self._badges(self.text)
            self._badges = None
        self.add("\n")


@dataclass(frozen=True)
class SourceView:
    title: str  # the app's title
    columns: tuple[Column, ...]
    sort_cycle: tuple[str, ...]  # what `s` steps through, most useful first
    facts: Callable[[Snapshot], Facts]
    sections: tuple[Section, ...]  # the detail view, top to bottom
    header: Callable[[Header, Snapshot], None]
    has_waits: bool  # the source sees wait calls: ready-list log, wait trends, last events
    pinned_first: bool  # the source lists the listener, control and epoll rows first
    stopped: str  # the badge when the source stops (Snapshot.running is False)
    help_title: str = ""  # what the help says first, before the keys (empty: nothing)
    help_intro: str = ""
    columns_help: tuple[tuple[str, str], ...] = ()  # (column, meaning)
    interest_lists: bool = False  # the lower half lists the epoll interest lists (attach)
    header_lines: int = 3
    # The ready-list log's thread/call column, from a Snapshot and a wait's index in its
    # waits (None: no such column; muxtop's own engine has one thread and one backend)
    wait_label: Callable[[Snapshot, int], str] | None = None

    def column(self, column_id: str) -> Column:
        return next(c for c in self.columns if c.id == column_id)
