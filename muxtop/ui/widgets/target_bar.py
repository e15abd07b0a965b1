"""The processes `attach --name` or several PIDs watch, on one line: each one's name, pid and
findings, the one shown marked; past the width, the ones around it (> and < switch). Names are
the targets' own text: drawn plain, never as markup."""

from __future__ import annotations

from typing import ClassVar

from rich.cells import cell_len
from rich.text import Text
from textual.widget import Widget

from muxtop.ui import format as fmt
from muxtop.ui.widgets.line_api import PaletteMixin


class TargetBar(PaletteMixin, Widget):
    COMPONENT_CLASSES: ClassVar[set[str]] = {
        "target-bar--label", "target-bar--shown", "target-bar--alert", "target-bar--gone"}

    DEFAULT_CSS = """
    TargetBar { height: 1; background: $panel; padding: 0 1; }
    TargetBar > .target-bar--label { color: $text-muted; }
    TargetBar > .target-bar--shown { background: $primary; color: $text; text-style: bold; }
    TargetBar > .target-bar--alert { color: $text-error; text-style: bold; }
    TargetBar > .target-bar--gone { color: $text-muted; text-style: strike; }
    """

    def __init__(self, targets, *, id: str | None = None) -> None:
        """`targets`: the source's TargetList (muxtop.attach.source)."""
        super().__init__(id=id)
        self.targets = targets
        self._drawn: tuple | None = None

    def show(self) -> None:
        """Redraw when what the line says changed (the list, the one shown, the findings)."""
        look = (self.targets.selected, tuple(
            (t.key, t.name, len(t.snapshot.diagnoses), t.snapshot.running)
            for t in self.targets.entries()))
        if look != self._drawn:
            self._drawn = look
            self.refresh()

    def labels(self) -> list[tuple[int, str, int, bool]]:
        """(key, "name pid", findings, running) of each process, in the list's order."""
        return [(t.key, f"{fmt.plain(t.name)} {t.pid}", len(t.snapshot.diagnoses),
                 t.snapshot.running) for t in self.targets.entries()]

    def render(self) -> Text:
        palette = self.palette()
        labels = self.labels()
        text = Text(no_wrap=True, overflow="ellipsis", end="")
        if not labels:
            name = self.targets.name
            text.append("no process named " + fmt.plain(name) + " yet: waiting"
                        if name is not None else "no process left to watch", palette["label"])
            return text
        keys = [key for key, *_ in labels]
        here = keys.index(self.targets.selected) if self.targets.selected in keys else 0
        head = f"{here + 1}/{len(labels)} "
        text.append(head, palette["label"])
        room = self.size.width - cell_len(head) if self.size.width else 10_000
        for key, label, findings, running in _around(labels, here, room):
            if key is None:
                text.append("… ", palette["label"])
                continue
            style = palette["shown"] if key == self.targets.selected else \
                (palette["gone"] if not running else None)
            text.append(f" {label} ", style)
            if findings:
                text.append(f"!{findings}", palette["alert"])
            text.append(" ")
        return text


def _width(entry: tuple) -> int:
    _, label, findings, _ = entry
    return cell_len(label) + 3 + (len(f"!{findings}") if findings else 0)


def _around(labels: list, here: int, room: int) -> list:
    """The entries that fit in `room` cells, the one at `here` among them, growing out from
    it; a (None, ...) entry marks those left out on either side."""
    low = high = here
    used = _width(labels[here])
    while True:
        grew = False
        for index in (high + 1, low - 1):
            if 0 <= index < len(labels) and used + _width(labels[index]) + 2 <= room:
                used += _width(labels[index])
                low, high = min(low, index), max(high, index)
                grew = True
        if not grew:
            break
    more = (None, "", 0, True)
    return ([more] if low > 0 else []) + labels[low:high + 1] + \
        ([more] if high < len(labels) - 1 else [])
