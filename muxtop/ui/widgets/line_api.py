"""What the Line-API widgets share to keep a frame cheap: component-class styles looked up
once per style change instead of once per line, and a scrollable size that changes without
a screen layout.

`Widget.rich_style` and `get_component_rich_style` each cost tens of microseconds (they walk
the CSS of the widget and its ancestors); a Line-API widget asks for them on every line of
every frame unless it keeps them. Textual calls `notify_style_update` whenever CSS, theme or
pseudo-classes (focus) change, which is when the palette is dropped.
"""

from __future__ import annotations

from functools import lru_cache

from rich.cells import cell_len
from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual import events
from textual.binding import Binding
from textual.filter import ANSIToTruecolor
from textual.geometry import Region, Size
from textual.strip import Strip
from textual.style import Style as VisualStyle
from textual.widget import Widget

from muxtop.ui.textual_compat import scroll_update


class PaletteMixin:
    """`self.palette()["warn"]` is the style of the `<widget>--warn` component class;
    `self.palette()[""]` is the widget's own style (for Segments in render_line)."""

    _palette: dict[str, Style] | None = None

    def palette(self) -> dict[str, Style]:
        palette = self._palette
        if palette is None:
            palette = {"": self.rich_style}  # type: ignore[attr-defined]
            for name in self.COMPONENT_CLASSES:  # type: ignore[attr-defined]
                palette[name.split("--", 1)[1]] = \
                    self.get_component_rich_style(name)  # type: ignore[attr-defined]
            self._palette = palette
        return palette

    def notify_style_update(self) -> None:
        self._palette = None
        super().notify_style_update()  # type: ignore[misc]


class FramedLines:
    """`render_lines` for a Line-API widget that draws its content rows itself instead of
    through Textual's StylesCache, which works out the border, padding, tint and opacity
    again for every changed line (~20 µs a line; ~50 lines change a frame) and makes two
    Strips of each. The gutter (border and padding) of a content row is the same on every
    row: it is cut once from a row Textual drew, and each content Strip the widget's
    `render_line` returns is framed by it once and kept, so a line that shows the same as
    before (or moved: a log scrolling) costs no new Strip, and the compositor's own caches
    on it still hold. Border and padding rows, and any style this does not draw (outline,
    tint, hatch, opacity, links), go through Textual as before."""

    _framed: dict[int, tuple[Strip, Strip]] = {}  # id(content Strip): (it, the row drawn)
    _edges: tuple | None = None  # (what the gutter depends on, left part, right part)

    def render_lines(self, crop: Region) -> list[Strip]:
        styles = self.styles  # type: ignore[attr-defined]
        if (self.opacity != 1.0 or styles.tint.a or styles.text_opacity != 1.0  # type: ignore
                or any(edge for edge, _ in styles.outline)
                or (styles.has_rule("hatch") and styles.hatch != "none")
                or (self.auto_links and self.hover_style.link_id)):  # type: ignore
            return super().render_lines(crop)  # type: ignore[misc]
        width, height = self.region.size  # type: ignore[attr-defined]
        content_width = self.content_region.width  # type: ignore[attr-defined]
        gutter = styles.gutter
        base_background, background = self.background_colors  # type: ignore[attr-defined]
        filters = self.get_line_filters()  # type: ignore[attr-defined]
        key = (width, content_width, gutter, styles.border, base_background, background,
               tuple(map(id, filters)))
        first, last = gutter.top, height - gutter.bottom  # the content rows
        edges = self._edges
        if edges is None or edges[0] != key:
            if first >= last:
                return super().render_lines(crop)  # type: ignore[misc]
            # A content row as Textual draws it: its gutter is every content row's.
            row = super().render_lines(Region(0, first, width, 1))[0]  # type: ignore[misc]
            edges = self._edges = (key, row.crop(0, gutter.left),
                                   row.crop(width - gutter.right, width), {})
            self._framed = {}
        _, left, right, memo = edges
        if len(memo) > 4096:
            memo.clear()  # styles of lines long gone (each offset meta is a style of its own)
        inner = VisualStyle(background=base_background + background).rich_style
        framed, kept = self._framed, {}
        strips = []
        render_line = self.render_line  # type: ignore[attr-defined]
        for y in crop.line_range:
            if not first <= y < last:
                strips.append(super().render_lines(Region(0, y, width, 1))[0])  # type: ignore
                continue
            content = render_line(y - first)
            entry = framed.get(id(content))
            if entry is None or entry[0] is not content:
                length = content.cell_length
                if length < content_width:  # padded as Strip.adjust_cell_length pads
                    line = [*content, Segment(" " * (content_width - length), inner)]
                else:
                    line = list(content.adjust_cell_length(content_width, inner))
                for line_filter in filters:  # Textual's filters map Segment by Segment
                    line = _filtered(line_filter, line, background, memo)
                entry = (content, Strip([*left, *line, *right], width))
            kept[id(content)] = entry
            strips.append(entry[1])
        # Rows drawn this time stay; a full render forgets lines scrolled or changed away.
        self._framed = kept if crop.height == height else {**framed, **kept}
        if crop.column_span != (0, width):
            x1, x2 = crop.column_span
            strips = [strip.crop(x1, x2) for strip in strips]
        return strips

    def notify_style_update(self) -> None:
        self._edges = None
        super().notify_style_update()  # type: ignore[misc]


class TextLines(FramedLines, PaletteMixin):
    """A widget whose picture is the rich Text its `render()` returns, drawn with the Line
    API one Strip per line: `redraw()` takes a new picture and repaints only the lines that
    differ, and a line becomes a Strip once. (Textual's own `render()` path turns every line
    of the widget into Content and then Strips whenever anything in it changes, ~0.3 ms a
    line; here Textual never calls `render()`, `redraw()` does.)"""

    _text_lines: list[Text] | None = None
    _line_keys: list[tuple] = []  # each line's (plain, spans) as drawn
    _line_strips: list[Strip | None] = []
    _drawn_width = -1

    def redraw(self) -> None:
        """Build the picture now; refresh the lines that changed (all of them after a change
        of width, or of colours)."""
        lines = self.render().split("\n", allow_blank=True)
        keys = [(line.plain, line.spans) for line in lines]
        width = self.scrollable_content_region.width  # type: ignore[attr-defined]
        self._line_strips = repaint_lines(self, self._line_keys, keys, self._line_strips,
                                          width, width != self._drawn_width)
        self._text_lines, self._line_keys, self._drawn_width = lines, keys, width

    def render_line(self, y: int) -> Strip:
        if self._text_lines is None:
            self.redraw()
        lines = self._text_lines
        base = self.palette()[""]
        if y >= len(lines):  # type: ignore[arg-type]
            return Strip.blank(self._drawn_width, base)
        strip = self._line_strips[y]
        if strip is None:
            strip = self._line_strips[y] = text_strip(
                lines[y], y, self._drawn_width, base, self.app.console)  # type: ignore
        return strip

    def on_resize(self, event: events.Resize) -> None:
        self.redraw()

    def notify_style_update(self) -> None:
        super().notify_style_update()
        self._drawn_width = -1  # the picture is drawn in the palette's colours
        if self._text_lines is not None:
            self.redraw()


def repaint_lines(widget: Widget, drawn: list, keys: list, strips: list, width: int,
                  redo: bool) -> list:
    """Refresh the lines of `widget` whose key differs from the one drawn, and forget their
    Strips; every line if `redo` (a new width, new colours) or the count changed. The
    Strips to keep, one per key (None: make it again)."""
    if redo or len(keys) != len(drawn):
        widget.refresh()
        return [None] * len(keys)
    changed = []
    for y, (old, new) in enumerate(zip(drawn, keys)):
        if old != new:
            strips[y] = None
            changed.append(Region(0, y, width, 1))
    if changed:  # one call: each call works out the gutter again
        widget.refresh(*changed)
    return strips


def _filtered(line_filter, line: list[Segment], background, memo: dict) -> list[Segment]:
    """`line_filter.apply(line, background)`, for the filter every Textual app has on
    (ANSIToTruecolor: a theme's ANSI colours made truecolour) without a new Segment per
    Segment: its answer for each Style is kept in `memo` (the widget's, per background), and
    a line whose every Style it keeps as it is (any truecolour theme) comes back as it was.
    (Its own cache holds 1,024 Styles; a frame's lines have more.) Other filters: as is."""
    if type(line_filter) is not ANSIToTruecolor:
        return line_filter.apply(line, background)
    index = 0
    for _, style, control in line:
        if style is not None and memo.get(style, _ANY) is not style or control:
            break
        index += 1
    else:
        return line  # every Style is truecolour already
    truecolor, rich_background = line_filter.truecolor_style, background.rich_color
    out = line[:index]
    for text, style, _ in line[index:]:
        if style is not None:
            filtered = memo.get(style)
            if filtered is None:
                filtered = memo[style] = truecolor(style, rich_background)
            style = filtered
        out.append(Segment(text, style))
    return out


_ANY = object()  # not a Style: what a Style not yet in the memo is taken for


def exact_strip(segments: list[Segment], width: int, style: Style,
                length: int | None = None) -> Strip:
    """The Strip `Strip(segments).crop_extend(0, width, style)` gives, made once instead of
    two or three times: padded with `style` or cut to exactly `width` cells. `length`: the
    segments' cell length, if known."""
    if length is None:
        length = sum(map(cell_len, (segment.text for segment in segments)))
    if length < width:
        return Strip([*segments, Segment(" " * (width - length), style)], width)
    strip = Strip(segments, length)
    return strip if length == width else strip.crop(0, width)


def text_strip(line: Text, y: int, width: int, base: Style, console) -> Strip:
    """Line `y` of a Text as Textual draws it on a widget whose own style is `base`: cut to
    `width` as the Text says (crop or ellipsis), each span's style over `base`, and each
    Segment's offset in its meta, which Textual's text selection reads."""
    if line.cell_len > width:
        line = line.copy()
        line.truncate(width, overflow=line.overflow or "crop")
    segments = []
    x = 0
    for text, style in _runs(line, console):
        segments.append(Segment(text, (base + style if style else base) + offset_meta(x, y)))
        x += len(text)
    return Strip(segments)


@lru_cache(maxsize=4096)
def offset_meta(x: int, y: int) -> Style:
    """The offset meta of a Segment, one Style per place: the same Style objects from frame
    to frame let Rich's cache of Style sums and Textual's colour filter cache find them
    (a new meta Style is hashed, and misses both, every time)."""
    return Style.from_meta({"offset": (x, y)})


def _runs(line: Text, console) -> list[tuple[str, Style | None]]:
    """The (text, style) runs of a line, as `Text.render` gives them. Spans one after
    another, each a Style (how the widgets write), are cut straight from the text: render()
    works out a stack of styles at every boundary, several times the cost."""
    plain = line.plain
    runs: list[tuple[str, Style | None]] = []
    at = 0
    for start, end, style in line.spans:
        if start < at or isinstance(style, str) or line.style:
            return [(text, style) for text, style, _ in line.render(console, end="")]
        if start > at:
            runs.append((plain[at:start], None))
        if end > start:
            runs.append((plain[start:end], style))
        at = max(at, end)
    if at < len(plain):
        runs.append((plain[at:], None))
    return runs


def set_border_title(widget: Widget, title: str) -> None:
    """Set a border title that is often the same as before: Textual parses the markup and
    repaints the whole widget on every assignment, changed or not."""
    if getattr(widget, "_title_set", None) != title:
        widget._title_set = title  # type: ignore[attr-defined]
        widget.border_title = title


def set_virtual_size(widget: Widget, size: Size) -> None:
    """Change a Line-API widget's scrollable size without a screen layout.

    Assigning `virtual_size` reflows the whole screen (it is a layout reactive), and the rows
    or the wait ring change size on most ticks. With the vertical scrollbar always shown
    (`overflow-y: scroll`), nothing outside the widget moves: update the scrollbars only,
    as Textual itself does for a scroll-only change."""
    if size != widget.virtual_size:
        widget.set_reactive(Widget.virtual_size, size)
        scroll_update(widget, size)
        widget.refresh()


MOVE_KEYS = ("up", "down", "pageup", "pagedown", "home", "end")


def move_bindings(*moves: tuple[str, str]) -> list[Binding]:
    """Hidden bindings of the six movement keys (MOVE_KEYS, in that order) to (action,
    description) pairs: the footer stays for the keys that do something new."""
    return [Binding(key, action, description, show=False)
            for key, (action, description) in zip(MOVE_KEYS, moves, strict=True)]
