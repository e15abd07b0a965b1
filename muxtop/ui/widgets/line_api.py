"""What the Line-API widgets share to keep a frame cheap: component-class styles looked up
once per style change instead of once per line, and a scrollable size that changes without
a screen layout.

`Widget.rich_style` and `get_component_rich_style` each cost tens of microseconds (they walk
the CSS of the widget and its ancestors); a Line-API widget asks for them on every line of
every frame unless it keeps them. Textual calls `notify_style_update` whenever CSS, theme or
pseudo-classes (focus) change, which is when the palette is dropped.
"""

from __future__ import annotations

from rich.style import Style
from textual.binding import Binding
from textual.geometry import Size
from textual.widget import Widget


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


def set_virtual_size(widget: Widget, size: Size) -> None:
    """Change a Line-API widget's scrollable size without a screen layout.

    Assigning `virtual_size` reflows the whole screen (it is a layout reactive), and the rows
    or the wait ring change size on most ticks. With the vertical scrollbar always shown
    (`overflow-y: scroll`), nothing outside the widget moves: update the scrollbars only,
    as Textual itself does for a scroll-only change."""
    if size != widget.virtual_size:
        widget.set_reactive(Widget.virtual_size, size)
        widget._scroll_update(size)
        widget.refresh()


MOVE_KEYS = ("up", "down", "pageup", "pagedown", "home", "end")


def move_bindings(*moves: tuple[str, str]) -> list[Binding]:
    """Hidden bindings of the six movement keys (MOVE_KEYS, in that order) to (action,
    description) pairs: the footer stays for the keys that do something new."""
    return [Binding(key, action, description, show=False)
            for key, (action, description) in zip(MOVE_KEYS, moves, strict=True)]
