"""What a kind of picture brings to the dashboard, as data: its table columns, the facts its
cells are drawn from, the sections of its detail view, its header lines and help.

The widgets draw whatever SourceView the app hands them and never ask where a Snapshot came
from: muxtop's own engine (views/engine.py) and another process (views/process.py) differ
here and nowhere else.
"""

from __future__ import annotations

import textwrap
from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

from rich.text import Text

from muxtop.findings import evidence_label, evidence_text
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
    """One table column: its id, header label, width in cells (0: flexible, between
    `least` and `most`), whether numbers sit on the right, how it sorts (None: not
    sortable), how it is drawn, when it stands out (WARN, ALERT or None), and how soon it
    gives way on a narrow screen (`drop`: the highest go first; 0 never)."""

    id: str
    label: str
    width: int
    right: bool
    key: Callable[[ConnView], object] | None
    descending: bool  # the first click or `s` puts the biggest first
    cell: Callable[[ConnView, Facts], str]
    tone: Callable[[ConnView, Facts], str | None] = _no_tone
    drop: int = 0
    least: int = 12  # a flexible column's narrowest
    most: int = 0  # a flexible column's widest (0: no limit)


def fit_columns(columns: tuple[Column, ...], room: int,
                gap: int = 1) -> list[tuple[Column, int]]:
    """The columns that fit in `room` cells, in their order, with their widths: the most
    droppable go first until the rest fit; flexible ones share what is left."""
    shown = list(columns)

    def need(cols: list[Column]) -> int:
        return sum(c.width or c.least for c in cols) + gap * (len(cols) - 1)

    while need(shown) > room and any(c.drop for c in shown):
        # The most droppable, the rightmost of equals: the table narrows from its tail.
        worst = max(range(len(shown)), key=lambda i: (shown[i].drop, i))
        del shown[worst]
    flexible = [c for c in shown if not c.width]
    left = room - sum(c.width for c in shown) - gap * (len(shown) - 1)
    widths = {}
    # An equal share each; the capped ones first, so what they cannot use goes to the rest.
    for i, c in enumerate(sorted(flexible, key=lambda c: c.most or room)):
        share = left // (len(flexible) - i)
        widths[c.id] = max(c.least, min(share, c.most) if c.most else share)
        left -= widths[c.id]
    return [(c, c.width or widths[c.id]) for c in shown]


class Detail:
    """The detail view's text, written section by section (network text stays plain).
    Given the width it is drawn at, a long row wraps under its value, not under its label."""

    HEADING, LABEL = "bold underline", "dim"
    INDENT = 20  # where a row's value starts

    def __init__(self, width: int | None = None) -> None:
        self.text = Text(end="")
        self.width = width

    def heading(self, title: str) -> None:
        self.text.append(f"{title}\n", self.HEADING)

    def row(self, name: str, value: str, note: str = "") -> None:
        # plain: values and notes quote the source's text (a TCP state, flags), and a
        # recording may hold any text
        value, note = fmt.plain(value), fmt.plain(note)
        text = self.text
        text.append(f"  {name:<18}", self.LABEL)
        text.append(value, "bold")
        if note:
            text.append("   ")
            self._hanging(note, self.INDENT + len(value) + 3, self.INDENT)
        text.append("\n")

    def _hanging(self, words: str, used: int, indent: int, style: str = LABEL) -> None:
        """`words` from column `used` on; the lines that do not fit start at column `indent`."""
        width = self.width
        if width is None or used + len(words) <= width or width - indent < 20:
            self.text.append(words, style)
            return
        lead = min(used - indent, width - indent - 10)  # the first line's own indent
        lines = textwrap.wrap(words, width - indent, initial_indent=" " * lead)
        self.text.append(lines[0][lead:], style)
        for line in lines[1:]:
            self.text.append("\n" + " " * indent + line, style)

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
            text.append(f"  {fmt.plain(d.kind)}", "bold red")
            whole = "  (the process; names this fd)" if d.fd is None else ""
            text.append(f"{whole}  for {fmt.age(s.taken_at - d.since)}\n", self.LABEL)
            text.append("    ")
            self._hanging(fmt.plain(d.explanation), 4, 4, "")
            text.append("\n")
            for key, value in d.evidence:
                label = f"    {fmt.plain(evidence_label(key))}: "
                text.append(label, self.LABEL)
                self._hanging(fmt.plain(evidence_text(key, value)), len(label), len(label), "")
                text.append("\n")
        self.end()

    def history(self, v: ConnView, s: Snapshot) -> None:
        self.heading("State history")
        if not v.history:
            self.note("-")
        for at, state in v.history:
            self.text.append(f"  {f'+{at - s.started_at:.3f}s':>12}  ", self.LABEL)
            self.text.append(f"{fmt.plain(state)}\n")
        self.end()


Section = Callable[[Detail, ConnView, Snapshot, Facts], None]


class Header:
    """The header's lines, written by a view piece by piece. Each piece may say how soon it
    gives way (`drop`: the highest go first; 0 never) when its line is wider than the screen,
    so a narrow terminal keeps the figures that matter instead of wrapping. `reserve` is kept
    free at the end of line 1 for the widget's badges, which `badges` appends there."""

    def __init__(self, styles: Callable[[str], object], width: int, reserve: int = 0,
                 badges: Callable[[Text], None] | None = None) -> None:
        self.text = Text(no_wrap=True, overflow="ellipsis", end="")
        self.style = styles
        self.width = width
        self._reserve = reserve
        self._badges = badges
        self._line: list[tuple[int, list[tuple[str, str | None]]]] = []  # (drop, parts)
        self._lines = 0

    def add(self, shown: str, style: str | None = None, drop: int = 0) -> None:
        self._line.append((drop, [(shown, style)]))

    def pair(self, name: str, shown: str, sep: str = "  ", drop: int = 0) -> None:
        self._line.append((drop, [(name + " ", "label"), (shown, "value"), (sep, None)]))

    def newline(self) -> None:
        self._flush()
        self.text.append("\n")

    def finish(self) -> Text:
        self._flush()
        return self.text

    def _flush(self) -> None:
        pieces = self._line
        room = self.width - (self._reserve if self._lines == 0 else 0)

        def length() -> int:
            return sum(len(text) for _, parts in pieces for text, _ in parts)

        while length() > room and any(drop for drop, _ in pieces):
            worst = max(range(len(pieces)), key=lambda i: (pieces[i][0], i))
            del pieces[worst]
        for _, parts in pieces:
            for text, style in parts:  # plain: views quote the source's text, which a
                # recording may fill with anything
                self.text.append(fmt.plain(text), self.style(style) if style else None)
        if self._lines == 0 and self._badges is not None:
            self._badges(self.text)
        self._line = []
        self._lines += 1


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
    own_engine: bool = False  # a server of muxtop's own: it can step, and run lessons
    header_lines: int = 3
    # The ready-list log's thread/call column, from a Snapshot and a wait's index in its
    # waits (None: no such column; muxtop's own engine has one thread and one backend)
    wait_label: Callable[[Snapshot, int], str] | None = None

    def column(self, column_id: str) -> Column:
        return next(c for c in self.columns if c.id == column_id)
