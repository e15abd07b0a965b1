"""The dashboard's footer: the keys that act now, in the order of the table of actions
(muxtop.ui.actions), each once. A key and its label are never split: what does not fit on a
line goes on the next, so a narrow terminal loses no key and shows no part of one. A click on a
key presses it."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from rich.text import Text
from textual import events
from textual.widget import Widget

from muxtop.ui.actions import Action
from muxtop.ui.textual_compat import toasts_above

WIDE_GAP = 100  # columns from which two spaces part the keys (one below)


def lines(actions: Sequence[Action], width: int) -> list[list[Action]]:
    """The keys, packed into lines of at most `width` columns."""
    gap = 2 if width >= WIDE_GAP else 1
    packed: list[list[Action]] = [[]]
    used = 0
    for action in actions:
        size = len(action.display) + 1 + len(action.label)
        if packed[-1] and used + gap + size > width:
            packed.append([])
            used = 0
        used += (gap if packed[-1] else 0) + size
        packed[-1].append(action)
    return packed


class KeyBar(Widget):
    COMPONENT_CLASSES = {"key-bar--key"}
    DEFAULT_CSS = """
    KeyBar {
        dock: bottom;
        height: auto;
        color: $footer-foreground;
        background: $footer-background;
    }
    KeyBar > .key-bar--key {
        color: $footer-key-foreground;
        text-style: bold;
    }
    """

    def __init__(self, actions: Callable[[], list[Action]], **kwargs) -> None:
        """`actions`: the keys that act now, asked again whenever the screen's bindings
        change."""
        super().__init__(**kwargs)
        self._ask = actions
        self.actions: tuple[Action, ...] = ()

    def on_mount(self) -> None:
        self.screen.bindings_updated_signal.subscribe(self, self.update_keys)

    def on_unmount(self) -> None:
        self.screen.bindings_updated_signal.unsubscribe(self)

    def update_keys(self, _screen: object = None) -> None:
        actions = tuple(self._ask())
        if actions != self.actions:
            self.actions = actions
            self.refresh(layout=True)

    def on_resize(self, event: events.Resize) -> None:
        # The footer is wrapped, never cut: no toast lies over it.
        toasts_above(self.screen, event.size.height)

    def get_content_height(self, container, viewport, width: int) -> int:
        return len(lines(self.actions, width))

    def lines(self) -> list[list[Action]]:
        return lines(self.actions, self.size.width)

    def render(self) -> Text:
        key_style = self.get_component_rich_style("key-bar--key")
        gap = " " * (2 if self.size.width >= WIDE_GAP else 1)
        text = Text(no_wrap=True, overflow="crop", end="")
        for y, line in enumerate(self.lines()):
            if y:
                text.append("\n")
            for i, action in enumerate(line):
                text.append(gap if i else "")
                text.append(action.display, key_style)
                text.append(" " + action.label)
        return text

    def on_click(self, event: events.Click) -> None:
        packed = self.lines()
        if not 0 <= event.y < len(packed):
            return
        gap = 2 if self.size.width >= WIDE_GAP else 1
        x = 0
        for action in packed[event.y]:
            end = x + len(action.display) + 1 + len(action.label)
            if x <= event.x < end:
                self.app.simulate_key(action.keys[0])
                return
            x = end + gap
