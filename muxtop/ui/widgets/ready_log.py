"""The ready-list log: one line per wait call, newest first, over the engine's ring of
WaitRecords (up to 4096). A Line-API ScrollView like toolong's log view: only the lines on
screen are drawn, so the ring's length and the connection count never touch the frame cost.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable
from operator import itemgetter
from typing import ClassVar

from rich.segment import Segment
from textual import events
from textual.binding import BindingType
from textual.geometry import Region, Size
from textual.scroll_view import ScrollView
from textual.strip import Strip

from muxtop.events import ERROR, HANGUP, WRITE, short
from muxtop.snapshot import CLOSED, PAIR_MARK, PROXY, Snapshot, WaitRecord
from muxtop.ui import format as fmt
from muxtop.ui.widgets.line_api import (
    FramedLines,
    PaletteMixin,
    exact_strip,
    move_bindings,
    set_border_title,
    set_virtual_size,
)

# The figures before the ready fds: (label, width, how soon it gives way on a narrow log).
# cpu is the thread's CPU time in the call, on the sampled calls (WaitRecord.cpu).
SEQ_WIDTH = 10  # 9,999,999 with its commas; longer seqs drop them (a seq is read whole)
READY_WIDTH = 9  # 24/1,038 with its commas, as the header writes 1,038; longer drop them
FIELDS = (("seq", SEQ_WIDTH, 0), ("at", 10, 3), ("timeout", 7, 2), ("blocked", 7, 1),
          ("cpu", 7, 1), ("ready/reg", READY_WIDTH, 0))
CALL = "thread call(epfd)"  # a view's own column (a traced process: thread and syscall)
# With that column: a traced wait has no CPU figure of its own.
LABELLED = tuple(f for f in FIELDS if f[0] != "cpu") + ((CALL, 20, 2),)
READY_FDS = "ready fds (events)"
MIN_FDS = 14  # cells the ready fds keep, whatever gives way for them
_SEQ = itemgetter(0)


def fields_for(width: int, labelled: bool = False) -> tuple[tuple[str, int, int], ...]:
    """The FIELDS that leave MIN_FDS cells for the ready fds in a log `width` wide."""
    shown = list(LABELLED if labelled else FIELDS)
    while sum(w + 1 for _, w, _ in shown) + MIN_FDS > width and any(d for *_, d in shown):
        shown.remove(max(shown, key=lambda f: f[2]))
    return tuple(shown)


class ReadyLog(FramedLines, PaletteMixin, ScrollView, can_focus=True):
    """What each wait call returned. Scrolled away from the top, the view stays on the same
    records while new ones arrive, so the history can be read back."""

    BINDINGS: ClassVar[list[BindingType]] = move_bindings(
        ("scroll_up", "up"), ("scroll_down", "down"), ("page_up", "page up"),
        ("page_down", "page down"), ("scroll_home", "newest"), ("scroll_end", "oldest"))

    COMPONENT_CLASSES: ClassVar[set[str]] = {
        "ready-log--header", "ready-log--empty", "ready-log--read", "ready-log--write",
        "ready-log--alert",
    }

    DEFAULT_CSS = """
    ReadyLog > .ready-log--header { text-style: bold; color: $text-accent; }
    ReadyLog > .ready-log--empty { color: $text-muted; }
    ReadyLog > .ready-log--read { color: $text-success; }
    ReadyLog > .ready-log--write { color: $text-primary; }
    ReadyLog > .ready-log--alert { color: $text-error; text-style: bold; }
    """

    def __init__(self, *, name: str | None = None, id: str | None = None,
                 classes: str | None = None,
                 label: Callable[[Snapshot, int], str] | None = None,
                 newest: str = "LIVE") -> None:
        """`label(snapshot, index)`: the text of the CALL column for the wait at that index
        of snapshot.waits (a traced process: its thread and syscall); None: no such column.
        `newest`: what the title says while the newest waits are on screen (a recording's
        newest are its playhead's, not live ones)."""
        super().__init__(name=name, id=id, classes=classes)
        self.label = label
        self.newest = newest
        self.hide_empty = False
        self._waits: tuple[WaitRecord, ...] = ()
        self._busy: list[int] | None = None  # indices of waits that returned something
        self._started_at = 0.0
        self._snapshot: Snapshot | None = None
        self._partners: dict[int, int] = {}  # a proxy: each leg's fd -> its partner's
        # What each line on screen shows (its record and CALL label), by line of the log;
        # and the Strip drawn for each. A line that shows the same as before is not repainted.
        self._drawn: dict[int, tuple] = {}
        self._drawn_frame: tuple | None = None  # (top line, width, hide_empty, started_at)
        self._lines: dict[tuple, Strip] = {}
        self._header_strip: tuple | None = None  # (width and fields, palette, Strip)

    # ---- data --------------------------------------------------------------------------

    def show(self, snapshot: Snapshot) -> None:
        self._snapshot = snapshot
        self._partners = partners(snapshot)
        anchor = self._top_seq() if round(self.scroll_y) > 0 else None
        self._waits = snapshot.waits
        self._started_at = snapshot.started_at
        self._busy = ([i for i, w in enumerate(self._waits) if w.ready]
                      if self.hide_empty else None)
        set_virtual_size(self, Size(0, self._count() + 1))  # no sideways scrolling
        if anchor is not None:
            self.scroll_to(y=self._line_of(anchor), animate=False, immediate=True)
        self._set_title()
        self._repaint()

    def toggle_empty(self) -> None:
        self.hide_empty = not self.hide_empty
        if self._snapshot is not None:
            self.show(self._snapshot)  # keeps the top record in view

    def _count(self) -> int:
        return len(self._busy) if self._busy is not None else len(self._waits)

    def _index(self, line: int) -> int | None:
        """The index in the waits of the record drawn on a content line (0 = newest)."""
        n = self._count()
        if not 0 <= line < n:
            return None
        index = n - 1 - line
        return self._busy[index] if self._busy is not None else index

    def _record(self, line: int) -> WaitRecord | None:
        index = self._index(line)
        return None if index is None else self._waits[index]

    def _top_seq(self) -> int | None:
        record = self._record(round(self.scroll_y))
        return None if record is None else record.seq

    def _line_of(self, seq: int | None) -> int:
        """The line that shows `seq` now, or the nearest older one still shown."""
        if seq is None:
            return 0
        waits = self._waits
        index = bisect_left(waits, seq, key=_SEQ)  # waits are in seq order
        if self._busy is not None:
            index = bisect_left(self._busy, index)
        return max(0, self._count() - 1 - index)

    @property
    def live(self) -> bool:
        """The newest waits are on screen (the log is not scrolled back)."""
        return round(self.scroll_y) == 0

    def _set_title(self) -> None:
        n = len(self._waits)
        shown = self._count()
        stepping = self._snapshot is not None and self._snapshot.step is not None
        where = "SCROLLED (Home: newest)"
        if self.live:
            where = "STEPPING" if stepping else self.newest
        title = f"ready list · {where} · {n:,} wait{'' if n == 1 else 's'}, newest first"
        if self.hide_empty:
            title += f" · {shown:,} returned fds (e shows empty waits)"
        else:
            title += " · e hides empty waits"
        set_border_title(self, title)

    def watch_scroll_y(self, old: float, new: float) -> None:
        super().watch_scroll_y(old, new)
        if round(old) == 0 or round(new) == 0:
            self._set_title()  # LIVE <-> SCROLLED

    # Home and End jump at once: an animated scroll still under way when the next Snapshot
    # arrives would anchor the view a few records behind the newest.
    def action_scroll_home(self) -> None:
        self.scroll_to(y=0, animate=False, immediate=True)

    def action_scroll_end(self) -> None:
        self.scroll_to(y=self.max_scroll_y, animate=False, immediate=True)

    def on_resize(self, event: events.Resize) -> None:
        set_virtual_size(self, Size(0, self._count() + 1))  # no sideways scrolling

    # ---- drawing -----------------------------------------------------------------------

    def _look(self, index: int) -> tuple:
        """What the line of the wait at this index of the waits shows."""
        snapshot = self._snapshot
        label = self.label(snapshot, index) if self.label and snapshot else None
        return self._waits[index], label

    def _repaint(self) -> None:
        """Refresh the lines whose record changed since they were drawn (not the header or
        the borders; none at all in a log scrolled back); every line after a scroll or a
        change of width."""
        top = round(self.scroll_y)
        region = self.scrollable_content_region
        looks = {}
        for line in range(top, top + max(0, region.height - 1)):  # less the header line
            index = self._index(line)
            if index is None:
                break
            looks[line] = self._look(index)
        frame = (top, region.width, self.hide_empty, self._started_at)
        if frame != self._drawn_frame:
            self.refresh()
        else:
            drawn = self._drawn
            changed = [Region(0, line - top + 1, region.width, 1)
                       for line in looks.keys() | drawn.keys()
                       if looks.get(line) != drawn.get(line)]
            if changed:
                self.refresh(*changed)  # one call: each call works out the gutter again
        lines = self._lines
        self._lines = {look: lines[look] for look in looks.values() if look in lines}
        self._drawn, self._drawn_frame = looks, frame

    def notify_style_update(self) -> None:
        super().notify_style_update()
        self._lines.clear()  # drawn in the old colours
        self._drawn_frame = None

    def render_lines(self, crop: Region) -> list[Strip]:
        # Looked up once per frame, not once per line.
        width = self.scrollable_content_region.width
        if self._drawn_frame is None or self._drawn_frame[1] != width:
            self._drawn, self._drawn_frame = {}, None  # resized: lines drawn at another width
            self._lines.clear()
        self._frame = (width, round(self.scroll_y), self.palette(),
                       fields_for(width, self.label is not None))
        return super().render_lines(crop)

    def render_line(self, y: int) -> Strip:
        width, scroll_y, palette, fields = self._frame
        base = palette[""]
        if y == 0:
            # The same Strip while nothing it shows changes: no new line for Textual.
            drawn = self._header_strip
            if drawn is None or drawn[0] != (width, fields) or drawn[1] is not palette:
                header = " ".join(fmt.fit(label, w, right=label != CALL)
                                  for label, w, _ in fields)
                strip = Strip([Segment(fmt.fit(f"{header} {READY_FDS}", width),
                                       base + palette["header"])], width)
                drawn = self._header_strip = ((width, fields), palette, strip)
            return drawn[2]
        line = scroll_y + y - 1
        index = self._index(line)
        if index is None:
            return Strip.blank(width, base)
        look = self._drawn.get(line)
        if look is None:  # scrolled since the last Snapshot
            look = self._look(index)
        strip = self._lines.get(look)
        if strip is None:
            strip = self._lines[look] = exact_strip(
                self._line(self._waits[index], width, palette, fields, index), width, base)
        return strip

    def _cell(self, label: str, w: WaitRecord, index: int) -> str:
        if label == CALL:
            snapshot = self._snapshot
            return self.label(snapshot, index) if self.label and snapshot else ""
        if label == "seq":
            seq = f"{w.seq:,}"
            return seq if len(seq) <= SEQ_WIDTH else str(w.seq)
        if label == "at":
            return f"+{w.start - self._started_at:.3f}s"
        if label == "timeout":  # a probe: the engine timing a wait call (cpu/call)
            return fmt.timeout(w.timeout) if w.cpu is None else "probe"
        if label == "blocked":
            return fmt.duration(w.duration)
        if label == "cpu":
            return "" if w.cpu is None else fmt.duration(w.cpu)
        ready = f"{w.count:,}/{w.registered:,}"
        return ready if len(ready) <= READY_WIDTH else f"{w.count}/{w.registered}"

    def _line(self, w: WaitRecord, width: int, palette, fields,
              index: int) -> list[Segment]:
        base = palette[""]
        head = " ".join(fmt.fit(self._cell(label, w, index), size, label != CALL)
                        for label, size, _ in fields) + " "
        if not w.ready:
            return [Segment(head + ("timed out" if w.timeout else "nothing ready"),
                            base + palette["empty"])]
        segments = [Segment(head, base)]
        used = len(head)
        read, write, alert = base + palette["read"], base + palette["write"], \
            base + palette["alert"]
        run: list[str] = []  # fds of one colour go out as one Segment
        run_style = read
        for shown, (fd, mask) in enumerate(w.pairs()):
            partner = self._partners.get(fd)
            text = f"{fd}:{short(mask)} " if partner is None else \
                f"{fd}:{short(mask)}{PAIR_ARROW}{partner} "
            if used + len(text) > width - 13 and shown < w.count - 1:  # room for "… +N more"
                run_style_end = Segment(f"… +{w.count - shown} more", base)
                break
            if mask & (ERROR | HANGUP):
                style = alert
            elif mask & WRITE:
                style = write
            else:
                style = read
            if style is not run_style and run:
                segments.append(Segment("".join(run), run_style))
                run = []
            run_style = style
            run.append(text)
            used += len(text)
        else:  # all kept pairs fit; the record may have kept fewer than were ready
            more = w.count - len(w.ready) // 2
            run_style_end = Segment(f"… +{more} more", base) if more else None
        if run:
            segments.append(Segment("".join(run), run_style))
        if run_style_end is not None:
            segments.append(run_style_end)
        return segments


PAIR_ARROW = "⇄"  # "11:R⇄12": fd 11 was ready, and its partner leg is fd 12 (a proxy)


def partners(snapshot: Snapshot) -> dict[int, int]:
    """Each proxied leg's fd and its partner's, as the peers name them (engine/proxying.py);
    empty when the source is no proxy."""
    if not snapshot.protocol.startswith(PROXY):
        return {}
    found = {}
    for v in snapshot.connections:
        _, mark, fd = v.peer.rpartition(PAIR_MARK)
        if mark and fd.isdigit() and v.state != CLOSED:
            found[v.fd] = int(fd)
    return found
