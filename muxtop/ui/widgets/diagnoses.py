"""What the detectors find now, newest first: the kind, the fd, how long, and the whole
explanation in plain words (wrapped; never read as markup: it may quote network text); then
the findings that cleared lately and how long each lasted. Focused (tab), the arrows pick a
finding and `enter` selects its fd in the connection table."""

from __future__ import annotations

import textwrap
from collections import deque
from typing import ClassVar, NamedTuple

from rich.text import Text
from textual import events
from textual.binding import Binding, BindingType
from textual.message import Message
from textual.widget import Widget

from muxtop.snapshot import Diagnosis, Snapshot
from muxtop.ui import format as fmt
from muxtop.ui.widgets.line_api import TextLines

SHOWN = 6  # current findings listed; the title counts them all
CLEARED_KEPT = 5  # cleared findings remembered


class Cleared(NamedTuple):
    kind: str
    fd: int | None
    since: float  # monotonic: first seen
    until: float  # the first Snapshot that no longer had it
    times: int = 1  # how often it cleared: one line a finding, not one a clearing


class DiagnosesPanel(TextLines, Widget, can_focus=True):
    """Hidden while there is nothing to say, now or lately."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("up", "move(-1)", "previous finding", show=False),
        Binding("down", "move(1)", "next finding", show=False),
        Binding("enter", "choose", "go to its fd", tooltip="Select the finding's fd in the "
                "connection table"),
    ]

    COMPONENT_CLASSES: ClassVar[set[str]] = {
        "diagnoses-panel--title", "diagnoses-panel--kind", "diagnoses-panel--label",
        "diagnoses-panel--text", "diagnoses-panel--cursor",
    }

    DEFAULT_CSS = """
    DiagnosesPanel { height: auto; display: none; }
    DiagnosesPanel.-shown { display: block; }
    DiagnosesPanel > .diagnoses-panel--title { color: $text-muted; }
    DiagnosesPanel > .diagnoses-panel--kind { text-style: bold; color: $text-error; }
    DiagnosesPanel > .diagnoses-panel--label { color: $text-muted; }
    DiagnosesPanel > .diagnoses-panel--text { }
    DiagnosesPanel:focus > .diagnoses-panel--cursor {
        background: $block-cursor-background; color: $block-cursor-foreground;
    }
    """

    class Chosen(Message):
        """A finding was picked (enter or a click): show its fd."""

        def __init__(self, fd: int) -> None:
            super().__init__()
            self.fd = fd

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.diagnoses: tuple[Diagnosis, ...] = ()
        self.cleared: deque[Cleared] = deque(maxlen=CLEARED_KEPT)
        self.taken_at = 0.0
        self.cursor = 0
        # (text, style name, index of the finding it belongs to or -1), built once per change
        self._lines: list[tuple[str, str, int]] = []
        self._width = 0

    def show(self, snapshot: Snapshot) -> None:
        diagnoses = snapshot.diagnoses
        if not diagnoses and not self.diagnoses and not self.cleared:
            return
        now_keys = {(d.kind, d.fd) for d in diagnoses}
        for d in self.diagnoses:
            if (d.kind, d.fd) not in now_keys:
                earlier = [c for c in self.cleared if (c.kind, c.fd) == (d.kind, d.fd)]
                for c in earlier:
                    self.cleared.remove(c)
                self.cleared.appendleft(Cleared(d.kind, d.fd, d.since, snapshot.taken_at,
                                                1 + sum(c.times for c in earlier)))
        changed = [(d.kind, d.fd, d.explanation) for d in diagnoses] != \
            [(d.kind, d.fd, d.explanation) for d in self.diagnoses]
        self.diagnoses = tuple(sorted(diagnoses, key=lambda d: d.since, reverse=True))
        self.cursor = min(self.cursor, max(0, len(self.diagnoses) - 1))
        self.taken_at = snapshot.taken_at
        self.set_class(bool(diagnoses or self.cleared), "-shown")
        if changed:
            self._lines = []
            self.refresh(layout=True)  # its height follows its lines
        self.redraw()

    # ---- keys and the mouse ------------------------------------------------------------

    def action_move(self, delta: int) -> None:
        if self.diagnoses:
            self.cursor = (self.cursor + delta) % min(len(self.diagnoses), SHOWN)
            self.redraw()

    def action_choose(self) -> None:
        if self.diagnoses:
            self._choose(self.diagnoses[self.cursor])

    def on_click(self, event: events.Click) -> None:
        offset = event.get_content_offset(self)
        lines = self._build(max(10, self.size.width))
        if offset is not None and 0 <= offset.y < len(lines) and lines[offset.y][2] >= 0:
            self.cursor = lines[offset.y][2]
            self.action_choose()

    def _choose(self, d: Diagnosis) -> None:
        fds = d.named_fds()
        if fds:
            self.post_message(self.Chosen(fds[0]))
        else:
            self.notify(f"{d.kind} is about the whole process: no fd to show", timeout=3)

    # ---- drawing -----------------------------------------------------------------------

    def _build(self, width: int) -> list[tuple[str, str, int]]:
        if self._lines and self._width == width:
            return self._lines
        lines: list[tuple[str, str, int]] = []
        count = len(self.diagnoses)
        if count:
            lines.append((f"{count} finding{'s' if count != 1 else ''} now, newest first",
                          "title", -1))
        for i, d in enumerate(self.diagnoses[:SHOWN]):
            lines.append((fmt.plain(f"{d.kind} {_where(d.fd)}"), "kind", i))
            wrapped = textwrap.wrap(fmt.plain(d.explanation), max(8, width - 2)) or [""]
            lines.extend((f"  {line}", "text", i) for line in wrapped)
        if count > SHOWN:
            lines.append((f"… and {count - SHOWN} more (the table flags them !)", "label", -1))
        if self.cleared:
            lines.append(("cleared lately", "title", -1))
            lines.extend((fmt.plain(f"{c.kind} {_where(c.fd)}: lasted "
                                    f"{fmt.age(c.until - c.since)}"
                                    + (f", the last of {c.times} times" if c.times > 1
                                       else "")), "label", -1)
                         for c in self.cleared)
        self._lines, self._width = lines, width
        return lines

    def render(self) -> Text:
        palette = self.palette()
        width = max(10, self.size.width)
        text = Text(no_wrap=True, overflow="ellipsis", end="")
        for n, (line, style, index) in enumerate(self._build(width)):
            if n:
                text.append("\n")
            if style == "kind":
                # "for 3.2s" goes on the right of the finding's first line.
                d = self.diagnoses[index]
                age = f"for {fmt.age(self.taken_at - d.since)}"
                kind_style = palette["kind"]
                if index == self.cursor and self.has_focus:
                    kind_style = kind_style + palette["cursor"]
                text.append(fmt.fit(line, max(1, width - len(age) - 1)), kind_style)
                text.append(" " + age, palette["label"])
            else:
                text.append(fmt.fit(line, width), palette[style])
        return text

    def on_focus(self) -> None:
        self.redraw()  # the cursor shows while focused

    def on_blur(self) -> None:
        self.redraw()

    def get_content_height(self, container, viewport, width: int) -> int:
        return len(self._build(max(10, width)))


def _where(fd: int | None) -> str:
    return "process" if fd is None else f"fd {fd}"
