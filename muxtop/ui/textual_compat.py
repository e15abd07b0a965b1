"""Every private name of Textual that muxtop uses, here and nowhere else, each behind one small
function with a test of its own (tests/test_textual_compat.py) that fails when Textual changes
it. pyproject.toml pins the Textual major these were tried with: a new major is tried here
first.

- `Widget._scroll_update`: the scrollbars follow a new virtual size without a screen layout.
- `App._display`: the one place a screen update leaves for the driver (the benches time it).
- `Screen._refresh_layout`, `Screen._compositor_refresh`: a screen's two refresh paths, a layout
  and a compositor update (the benches time them).
- `LinuxDriver._sigcont_application`: the driver's SIGCONT handler (a hang-up leaves it alone).
- `ToastRack` (textual.widgets._toast), found by its type's name: where a screen's toasts stack.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from textual.app import App
    from textual.driver import Driver
    from textual.geometry import Size
    from textual.screen import Screen
    from textual.widget import Widget


def scroll_update(widget: Widget, virtual_size: Size) -> None:
    """Size and show the widget's scrollbars for `virtual_size` and keep its scroll offsets in
    range, without the screen layout that assigning `virtual_size` causes."""
    widget._scroll_update(virtual_size)


def after_display(app: App, hook: Callable[[Screen, Any], None]) -> None:
    """Call `hook(screen, update)` after each screen update the app hands its driver; `update`
    is what the driver writes (None: nothing this time)."""
    display = app._display

    def display_then_hook(screen: Screen, renderable: Any) -> None:
        display(screen, renderable)
        hook(screen, renderable)

    app._display = display_then_hook  # type: ignore[method-assign]


def wrap_screen_refresh(screen: Screen,
                        wrap: Callable[[Callable[..., None]], Callable[..., None]]) -> None:
    """Replace the screen's two refresh paths, a layout refresh (which runs the compositor's
    inside it) and a compositor refresh alone, with `wrap(method)`."""
    screen._refresh_layout = wrap(screen._refresh_layout)  # type: ignore[method-assign]
    screen._compositor_refresh = wrap(screen._compositor_refresh)  # type: ignore[method-assign]


def sigcont_only_when(driver: type[Driver], allow: Callable[[], bool]) -> type[Driver]:
    """A subclass of Textual's Linux `driver` whose SIGCONT handler (installed when the driver
    is made) does its work only while `allow()` is true."""

    class GuardedDriver(driver):  # type: ignore[valid-type, misc]
        def _sigcont_application(self, *args: object) -> None:
            if allow():
                super()._sigcont_application(*args)

    return GuardedDriver


def toasts_above(screen: Screen, lines: int) -> None:
    """Stack the screen's toasts `lines` above its bottom edge (the footer's height: Textual
    docks them at the bottom, over the last lines)."""
    for rack in screen.query("ToastRack"):
        rack.styles.margin = (0, 0, lines, 0)
