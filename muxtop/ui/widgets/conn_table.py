"""The connection table: one row per fd, drawn with the Line API.

`render_line` draws only the lines on screen, straight from the ConnView at that position in
the sorted, filtered index (muxtop.ui.rows), so a frame costs the same at 100 or 10,000
connections. Network text goes into Segments as plain text, never through markup. The
columns, and what each cell shows, are the SourceView's (muxtop.ui.views).
"""

from __future__ import annotations

from collections.abc import Sequence
from operator import itemgetter
from typing import ClassVar

from rich.segment import Segment
from rich.style import Style
from textual import events
from textual.binding import BindingType
from textual.geometry import Region, Size
from textual.message import Message
from textual.scroll_view import ScrollView
from textual.strip import Strip

from muxtop.snapshot import CLOSED, KIND_CONN, ConnView, Snapshot
from muxtop.ui import format as fmt
from muxtop.ui.rows import ConnRows
from muxtop.ui.views import ENGINE, SourceView
from muxtop.ui.views.base import Column, Facts, fit_columns
from muxtop.ui.widgets.line_api import (
    FramedLines,
    PaletteMixin,
    exact_strip,
    move_bindings,
    set_border_title,
    set_virtual_size,
)

GAP = 1  # cells between columns
_CID = itemgetter(0)  # ConnView.cid


class ConnTable(FramedLines, PaletteMixin, ScrollView, can_focus=True):
    """Every fd the multiplexer knows, with a cursor that follows one connection (by cid)
    while rows re-sort underneath it, so `k` closes the connection you are looking at."""

    BINDINGS: ClassVar[list[BindingType]] = move_bindings(
        ("cursor(-1)", "up"), ("cursor(1)", "down"), ("page(-1)", "page up"),
        ("page(1)", "page down"), ("jump(0)", "first"), ("jump(-1)", "last"))

    COMPONENT_CLASSES: ClassVar[set[str]] = {
        "conn-table--header", "conn-table--sorted", "conn-table--cursor",
        "conn-table--special", "conn-table--closed", "conn-table--warn",
        "conn-table--alert", "conn-table--muted",
    }

    DEFAULT_CSS = """
    ConnTable > .conn-table--header { text-style: bold; color: $text-accent; }
    ConnTable > .conn-table--sorted { text-style: bold underline; color: $text-accent; }
    ConnTable > .conn-table--cursor { background: $block-cursor-blurred-background; }
    ConnTable:focus > .conn-table--cursor { background: $block-cursor-background; }
    ConnTable > .conn-table--special { color: $text-secondary; }
    ConnTable > .conn-table--closed { color: $text-disabled; }
    ConnTable > .conn-table--warn { color: $text-warning; }
    ConnTable > .conn-table--alert { color: $text-error; text-style: bold; }
    ConnTable > .conn-table--muted { color: $text-muted; }
    """

    class CursorChanged(Message):
        """The selected connection changed (or its state did): keys may apply or not."""

        def __init__(self, view: ConnView | None) -> None:
            super().__init__()
            self.view = view

    class Chosen(Message):
        """The selected row was clicked again: show its details."""

        def __init__(self, view: ConnView) -> None:
            super().__init__()
            self.view = view

    def __init__(self, *, name: str | None = None, id: str | None = None,
                 classes: str | None = None) -> None:
        super().__init__(name=name, id=id, classes=classes)
        self.view = ENGINE
        self.model = ConnRows(ENGINE)
        self.cursor = 0
        self._cursor_cid: int | None = None
        self._announced: tuple | None = None  # what CursorChanged last said
        self._snapshot: Snapshot | None = None
        self._columns: tuple[Column, ...] = ENGINE.columns
        self._widths: list[int] = [c.width for c in ENGINE.columns]
        self._facts: Facts | None = None
        # What each row on screen shows (its "look": the cursor, its tone, each cell's text
        # and tone), by row index; and the Strip drawn for each look. A row whose look did
        # not change keeps its Strip and is not repainted.
        self._drawn: dict[int, tuple] = {}
        self._drawn_frame: tuple | None = None  # (top row, columns, widths, sort) drawn
        self._lines: dict[tuple, Strip] = {}
        self._lines_cut: tuple | None = None  # (width, scroll_x) the kept Strips are cut to
        self._header_strip: tuple | None = None  # (what it shows, palette, Strip)

    # ---- data --------------------------------------------------------------------------

    @property
    def rows(self) -> Sequence[ConnView]:
        return self.model.rows

    def use(self, view: SourceView) -> None:
        """Draw this kind of picture (its columns) from now on."""
        if view is not self.view:
            self.view = view
            self.model.use(view)
            self._fit_columns()
            self.rebuild()

    def shown_ids(self) -> set[str]:
        """The ids of the columns on screen now (a narrow one drops some)."""
        return {c.id for c in self._columns}

    def column(self, column_id: str) -> Column:
        """The column shown under this id."""
        return self.view.column(column_id)

    @property
    def selected(self) -> ConnView | None:
        rows = self.model.rows
        return rows[self.cursor] if 0 <= self.cursor < len(rows) else None

    def show(self, snapshot: Snapshot) -> None:
        """Take a new Snapshot: rebuild the index, keep the cursor on its connection."""
        self._snapshot = snapshot
        self._facts = self.view.facts(snapshot)
        self.rebuild()

    def rebuild(self) -> None:
        """Re-sort and re-filter the current Snapshot (after a new one, or a new setting)."""
        if self._snapshot is None:
            return
        was_visible = self._cursor_in_view()
        rows = self.model.update(self._snapshot)
        cid = self._cursor_cid
        moved = cid is not None and rows and not (
            self.cursor < len(rows) and rows[self.cursor][0] == cid)
        if moved:
            try:
                self.cursor = list(map(_CID, rows)).index(cid)
            except ValueError:
                pass  # gone or filtered out: stay at the same position
        self.cursor = max(0, min(self.cursor, len(rows) - 1))
        set_virtual_size(self, Size(self._total_width(), len(rows) + 1))
        if was_visible:
            self._scroll_to_cursor()
        self._set_title()
        self._cursor_moved()
        self._repaint()

    def visible_fds(self) -> tuple[int, ...]:
        """The fds of the rows on screen now (for the engine's Watch)."""
        top = round(self.scroll_y)
        return tuple(v.fd for v in self.model.rows[top:top + self._page_rows()])

    # ---- cursor ------------------------------------------------------------------------

    def action_cursor(self, delta: int) -> None:
        self.move_to(self.cursor + delta)

    def action_page(self, direction: int) -> None:
        self.move_to(self.cursor + direction * max(1, self._page_rows() - 1))

    def action_jump(self, where: int) -> None:
        self.move_to(where if where >= 0 else len(self.model.rows) - 1)

    def move_to(self, index: int) -> None:
        rows = self.model.rows
        if not rows:
            return
        self.cursor = max(0, min(index, len(rows) - 1))
        self._scroll_to_cursor()
        self._cursor_moved()
        self._repaint()

    def _cursor_moved(self) -> None:
        view = self.selected
        self._cursor_cid = view.cid if view is not None else None
        said = None if view is None else (view.cid, view.state, view.flags)
        if said != self._announced:
            self._announced = said
            self.post_message(self.CursorChanged(view))

    def _page_rows(self) -> int:
        return max(1, self.scrollable_content_region.height - 1)  # less the header line

    def _cursor_in_view(self) -> bool:
        top = round(self.scroll_y)
        return top <= self.cursor < top + self._page_rows()

    def _scroll_to_cursor(self) -> None:
        top = round(self.scroll_y)
        page = self._page_rows()
        if self.cursor < top:
            self.scroll_to(y=self.cursor, animate=False, immediate=True)
        elif self.cursor >= top + page:
            self.scroll_to(y=self.cursor - page + 1, animate=False, immediate=True)

    # ---- mouse -------------------------------------------------------------------------

    def on_click(self, event: events.Click) -> None:
        offset = event.get_content_offset(self)
        if offset is None:
            return
        if offset.y == 0:
            column = self._column_at(offset.x + round(self.scroll_x))
            if column is not None and column.key is not None:
                self.model.click(column.id)
                self.rebuild()
            return
        index = round(self.scroll_y) + offset.y - 1
        if index >= len(self.model.rows):
            return
        if index == self.cursor:
            self.post_message(self.Chosen(self.model.rows[index]))
        else:
            self.move_to(index)

    def _column_at(self, x: int):
        left = 0
        for column, width in zip(self._columns, self._widths):
            if left <= x < left + width + GAP:
                return column
            left += width + GAP
        return None

    # ---- layout ------------------------------------------------------------------------

    def on_resize(self, event: events.Resize) -> None:
        self._fit_columns()
        set_virtual_size(self, Size(self._total_width(), len(self.model.rows) + 1))
        self.refresh()

    def _fit_columns(self) -> None:
        """The columns that fit the width now (the view says which give way first), and
        their widths."""
        room = self.scrollable_content_region.width or self.size.width
        fitted = fit_columns(self.view.columns, room, GAP)
        self._columns = tuple(c for c, _ in fitted)
        self._widths = [w for _, w in fitted]
        self._drawn, self._drawn_frame = {}, None  # the looks had the old columns

    def _total_width(self) -> int:
        return sum(self._widths) + GAP * (len(self._widths) - 1)

    def notify_style_update(self) -> None:
        super().notify_style_update()
        self._lines.clear()  # colours changed (theme, or focus: the cursor's colour)
        self._drawn_frame = None

    def _set_title(self) -> None:
        m = self.model
        column = self.view.column(m.sort)
        title = f"connections {len(m.rows):,}"
        if m.query:
            title += f" of {m.total:,} matching “{fmt.title(m.query)}”"
        title += f" · sort {column.label} {'▼' if m.descending else '▲'}"
        if m.frozen:
            title += " · order frozen (z)"
        set_border_title(self, title)

    # ---- drawing -----------------------------------------------------------------------

    def render_lines(self, crop: Region) -> list[Strip]:
        # Looked up once per frame, not once per line.
        self._frame = (self.scrollable_content_region.width, round(self.scroll_x),
                       round(self.scroll_y), self.palette())
        if self._frame[:2] != self._lines_cut:  # the kept Strips are cut to width, scroll_x
            self._lines_cut = self._frame[:2]
            self._lines.clear()
            self._header_strip = None
        return super().render_lines(crop)

    def _repaint(self) -> None:
        """Refresh the lines whose look changed since they were drawn: on a busy server most
        rows change a cell or two each tick, but not the header, the borders, the listener
        or the idle rows. Every line after a scroll or a change of columns or sort."""
        top = round(self.scroll_y)
        rows = self.model.rows
        looks = {i: self._look(rows[i], i == self.cursor)
                 for i in range(top, min(len(rows), top + self._page_rows()))}
        m = self.model
        frame = (top, self._columns, tuple(self._widths), m.sort, m.descending)
        if frame != self._drawn_frame:
            self.refresh()
        else:
            width = self.scrollable_content_region.width
            drawn = self._drawn
            changed = [Region(0, i - top + 1, width, 1)  # line 0 is the header
                       for i in looks.keys() | drawn.keys() if looks.get(i) != drawn.get(i)]
            if changed:
                self.refresh(*changed)  # one call: each call works out the gutter again
        lines = self._lines
        self._lines = {look: lines[look] for look in looks.values() if look in lines}
        self._drawn, self._drawn_frame = looks, frame

    def render_line(self, y: int) -> Strip:
        width, scroll_x, scroll_y, palette = self._frame
        base = palette[""]
        if y == 0:
            drawn = self._header_strip
            key = (self._columns, tuple(self._widths), self.model.sort, self.model.descending)
            if drawn is None or drawn[0] != key or drawn[1] is not palette:
                drawn = self._header_strip = (key, palette, self._header(palette).crop_extend(
                    scroll_x, scroll_x + width, base))
            return drawn[2]  # the same Strip while it shows the same: no new line
        else:
            index = scroll_y + y - 1
            rows = self.model.rows
            if index >= len(rows):
                return Strip.blank(width, base)
            look = self._drawn.get(index)
            if look is None:  # scrolled since the last Snapshot
                look = self._look(rows[index], index == self.cursor)
            strip = self._lines.get(look)
            if strip is None:
                strip = self._lines[look] = self._row(look, palette, width, scroll_x)
        return strip

    def _header(self, palette: dict[str, Style]) -> Strip:
        base = palette[""]
        style = base + palette["header"]
        sorted_style = base + palette["sorted"]
        model = self.model
        segments = []
        gap = Segment(" " * GAP, style)
        for column, width in zip(self._columns, self._widths):
            label = column.label
            is_sorted = column.id == model.sort
            if is_sorted:
                label += "▼" if model.descending else "▲"
            text = fmt.fit(label, width, right=column.right)
            segments.append(Segment(text, sorted_style if is_sorted else style))
            segments.append(gap)
        return Strip(segments[:-1])

    def _look(self, view: ConnView, cursor: bool) -> tuple:
        """What a row shows: (cursor, the row's tone, each cell's text and tone)."""
        closed = view.state == CLOSED
        facts = self._facts
        cells = []
        for column, width in zip(self._columns, self._widths):
            text = column.cell(view, facts)
            tone = None if closed else column.tone(view, facts) or None
            if text == fmt.DASH and tone is None and not closed:
                tone = "muted"
            cells.append((fmt.fit(text, width, right=column.right), tone))
        kind = "closed" if closed else "special" if view.kind != KIND_CONN else ""
        return cursor, kind, tuple(cells)

    def _row(self, look: tuple, palette: dict[str, Style], width: int, scroll_x: int) -> Strip:
        """The row's Strip, cut (or padded) to the `width` cells from `scroll_x` on."""
        cursor, kind, cells = look
        base = palette[""]
        if kind:
            base = base + palette[kind]
        cursor_style = palette["cursor"] if cursor else None
        # One Segment per run of equal style, not per cell: Textual's compositor, its colour
        # filter and the terminal encoder all work per Segment.
        segments = []
        run: list[str] = []
        run_style = None
        gap = " " * GAP
        for text, tone in cells:
            extra = palette[tone] if tone else None
            if extra is not run_style:
                if run:
                    segments.append(Segment(gap.join(run) + gap, _style(base, run_style,
                                                                        cursor_style)))
                run, run_style = [], extra
            run.append(text)
        segments.append(Segment(gap.join(run), _style(base, run_style, cursor_style)))
        if scroll_x == 0:  # one Strip, not one and then its cut
            return exact_strip(segments, width, palette[""], self._total_width())
        return Strip(segments, self._total_width()).crop_extend(scroll_x, scroll_x + width,
                                                                palette[""])


def _style(base: Style, extra: Style | None, cursor: Style | None) -> Style:
    style = base + extra if extra is not None else base
    return style + cursor if cursor is not None else style
