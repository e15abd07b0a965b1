"""What the engine's detectors find now, newest first: the kind, the fd, how long, and the
explanation in plain words (wrapped; never read as markup: it may quote network text)."""

from __future__ import annotations

import textwrap
from typing import ClassVar

from rich.text import Text
from textual.widget import Widget

from muxtop.snapshot import Diagnosis, Snapshot
from muxtop.ui import format as fmt
from muxtop.ui.widgets.line_api import PaletteMixin

LINES_EACH = 3  # explanation lines per finding; the detail view (enter) shows all of it
SHOWN = 6  # findings listed; the title counts them all


class DiagnosesPanel(PaletteMixin, Widget):
    """Hidden while there is nothing to say."""

    COMPONENT_CLASSES: ClassVar[set[str]] = {
        "diagnoses-panel--title", "diagnoses-panel--kind", "diagnoses-panel--label",
        "diagnoses-panel--text",
    }

    DEFAULT_CSS = """
    DiagnosesPanel { height: auto; display: none; }
    DiagnosesPanel.-shown { display: block; }
    DiagnosesPanel > .diagnoses-panel--title { text-style: bold; color: $text-error; }
    DiagnosesPanel > .diagnoses-panel--kind { text-style: bold; color: $text-error; }
    DiagnosesPanel > .diagnoses-panel--label { color: $text-muted; }
    DiagnosesPanel > .diagnoses-panel--text { }
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.diagnoses: tuple[Diagnosis, ...] = ()
        self.taken_at = 0.0
        self._lines: list[tuple[str, str]] = []  # (text, style name), built once per change
        self._width = 0

    def show(self, snapshot: Snapshot) -> None:
        diagnoses = snapshot.diagnoses
        if not diagnoses and not self.diagnoses:
            return
        changed = [(d.kind, d.fd, d.explanation) for d in diagnoses] != \
            [(d.kind, d.fd, d.explanation) for d in self.diagnoses]
        self.diagnoses = tuple(sorted(diagnoses, key=lambda d: d.since, reverse=True))
        self.taken_at = snapshot.taken_at
        self.set_class(bool(diagnoses), "-shown")
        if changed:
            self._lines = []
        self.refresh(layout=changed)

    def _build(self, width: int) -> list[tuple[str, str]]:
        if self._lines and self._width == width:
            return self._lines
        lines: list[tuple[str, str]] = []
        count = len(self.diagnoses)
        title = f"diagnoses · {count} finding{'s' if count != 1 else ''} · newest first"
        lines.append((title, "title"))
        for d in self.diagnoses[:SHOWN]:
            where = "process" if d.fd is None else f"fd {d.fd}"
            lines.append((f"{d.kind} {where}", "kind"))
            wrapped = textwrap.wrap(fmt.plain(d.explanation), max(8, width - 2)) or [""]
            if len(wrapped) > LINES_EACH:
                wrapped = wrapped[:LINES_EACH]
                wrapped[-1] = fmt.fit(wrapped[-1] + " …", width - 2).rstrip()
            lines.extend((f"  {line}", "text") for line in wrapped)
        if count > SHOWN:
            lines.append((f"… and {count - SHOWN} more", "label"))
        self._lines, self._width = lines, width
        return lines

    def render(self) -> Text:
        palette = self.palette()
        width = max(10, self.size.width)
        text = Text(no_wrap=True, overflow="ellipsis", end="")
        for i, (line, style) in enumerate(self._build(width)):
            if i:
                text.append("\n")
            if style == "kind":
                # "for 3.2s" goes on the right of the finding's first line.
                d = self._by_heading(line)
                age = f"for {fmt.age(self.taken_at - d.since)}" if d is not None else ""
                text.append(fmt.fit(line, max(1, width - len(age) - 1)), palette["kind"])
                text.append(" " + age, palette["label"])
            else:
                text.append(fmt.fit(line, width), palette[style])
        return text

    def _by_heading(self, heading: str) -> Diagnosis | None:
        for d in self.diagnoses[:SHOWN]:
            if heading == f"{d.kind} {'process' if d.fd is None else f'fd {d.fd}'}":
                return d
        return None

    def get_content_height(self, container, viewport, width: int) -> int:
        return len(self._build(max(10, width)))
