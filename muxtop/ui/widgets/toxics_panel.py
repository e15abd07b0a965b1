"""The toxics panel of a proxy: each proxy and its toxics per direction, in toxiproxy's words,
and the legs each applies to (muxtop/ui/views/toxics.py makes the lines). Shown while the
Snapshot lists proxies; a muxtop that is no proxy never shows it. Names and addresses come from
a user, the API or a recording: drawn as plain text, never markup."""

from __future__ import annotations

from typing import ClassVar

from rich.text import Text
from textual.widget import Widget

from muxtop.snapshot import ProxyView, Snapshot
from muxtop.ui import format as fmt
from muxtop.ui.views.toxics import toxic_lines
from muxtop.ui.widgets.line_api import TextLines


class ToxicsPanel(TextLines, Widget):
    COMPONENT_CLASSES: ClassVar[set[str]] = {
        "toxics-panel--proxy", "toxics-panel--down", "toxics-panel--stream",
        "toxics-panel--toxic", "toxics-panel--legs", "toxics-panel--none",
    }

    DEFAULT_CSS = """
    ToxicsPanel { height: auto; display: none; }
    ToxicsPanel.-shown { display: block; }
    ToxicsPanel > .toxics-panel--proxy { text-style: bold; }
    ToxicsPanel > .toxics-panel--down { color: $text-error; }
    ToxicsPanel > .toxics-panel--stream { color: $text-accent; }
    ToxicsPanel > .toxics-panel--toxic { color: $text-warning; }
    ToxicsPanel > .toxics-panel--legs { color: $text-muted; }
    ToxicsPanel > .toxics-panel--none { color: $text-muted; }
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.proxies: tuple[ProxyView, ...] = ()
        self._lines: list[tuple[str, str]] = []
        self._width = 0

    def show(self, snapshot: Snapshot) -> None:
        proxies = snapshot.proxies
        if proxies == self.proxies:
            return  # the same proxies and toxics on the same legs: nothing to draw
        before = len(self._lines)
        self.proxies, self._lines = proxies, []
        self.set_class(bool(proxies), "-shown")
        if len(self._build(self._width or max(10, self.size.width))) != before:
            self.refresh(layout=True)  # its height follows its lines
        self.redraw()

    def _build(self, width: int) -> list[tuple[str, str]]:
        if self._lines and self._width == width:
            return self._lines
        self._lines, self._width = toxic_lines(self.proxies, width), width
        return self._lines

    def render(self) -> Text:
        palette = self.palette()
        width = max(10, self.size.width)
        text = Text(no_wrap=True, overflow="ellipsis", end="")
        for n, (line, style) in enumerate(self._build(width)):
            if n:
                text.append("\n")
            text.append(fmt.fit(line, width), palette[style])
        return text

    def get_content_height(self, container, viewport, width: int) -> int:
        return len(self._build(max(10, width)))
