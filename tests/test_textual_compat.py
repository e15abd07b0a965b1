"""Each private name of Textual that muxtop uses (muxtop/ui/textual_compat.py), tried against the
installed Textual: every test here fails if Textual renames the name, stops calling it, or
changes what it does for us."""

from __future__ import annotations

import signal
from importlib.metadata import version

import pytest
from textual.app import App, ComposeResult
from textual.drivers.linux_driver import LinuxDriver
from textual.geometry import Size
from textual.scroll_view import ScrollView
from textual.widget import Widget
from textual.widgets import Static
from ui_helpers import until

from muxtop.ui.textual_compat import (
    after_display,
    scroll_update,
    sigcont_only_when,
    toasts_above,
    wrap_screen_refresh,
)

pytestmark = pytest.mark.timeout(60)


class Rows(ScrollView):
    DEFAULT_CSS = "Rows { height: 10; overflow-y: scroll; }"


class Small(App):
    def compose(self) -> ComposeResult:
        yield Static("one", id="text")
        yield Rows()


def test_the_pinned_textual_major_is_the_one_installed():
    """pyproject.toml's pin names the major this file tried."""
    from pathlib import Path

    pyproject = (Path(__file__).resolve().parents[1] / "pyproject.toml").read_text()
    major = int(version("textual").split(".")[0])
    assert f'"textual>={major}' in pyproject and f'<{major + 1}"' in pyproject


async def test_scroll_update_sizes_the_scrollbars_without_a_layout():
    app = Small()
    async with app.run_test(size=(40, 24)) as pilot:
        rows = app.query_one(Rows)
        await pilot.pause()
        rows.set_reactive(Widget.virtual_size, Size(30, 500))
        scroll_update(rows, Size(30, 500))
        assert rows.vertical_scrollbar.window_virtual_size == 500
        assert rows.vertical_scrollbar.window_size == rows.container_size.height
        rows.scroll_to(y=400, animate=False, immediate=True)
        assert rows.scroll_y > 0
        rows.set_reactive(Widget.virtual_size, Size(30, 5))
        scroll_update(rows, Size(30, 5))  # the offset is kept in range
        assert rows.vertical_scrollbar.window_virtual_size == 5 and rows.scroll_y == 0


async def test_after_display_sees_each_screen_update_after_it_is_made():
    app = Small()
    async with app.run_test(size=(40, 24)) as pilot:
        await pilot.pause()
        seen = []
        after_display(app, lambda screen, update: seen.append((screen, update)))
        app.query_one("#text", Static).update("two")
        await until(lambda: any(screen is app.screen and update is not None
                                for screen, update in seen), pilot, what=lambda: f"seen {seen}")


async def test_wrap_screen_refresh_wraps_a_layout_and_a_compositor_refresh():
    app = Small()
    async with app.run_test(size=(40, 24)) as pilot:
        await pilot.pause()
        calls: list[str] = []

        def wrap(method):
            def wrapper(*args, **kwargs):
                calls.append(method.__name__)
                return method(*args, **kwargs)
            return wrapper

        wrap_screen_refresh(app.screen, wrap)
        app.query_one(Rows).refresh()  # repaint, same layout
        await until(lambda: "_compositor_refresh" in calls, pilot, what=lambda: f"calls {calls}")
        await app.screen.mount(Static("three"))  # a new widget: a layout
        await until(lambda: "_refresh_layout" in calls, pilot, what=lambda: f"calls {calls}")


async def test_sigcont_only_when_guards_the_handler_the_linux_driver_installs(monkeypatch):
    installed = {}
    monkeypatch.setattr(signal, "signal", lambda sig, handler: installed.update({sig: handler}))
    allowed = [False]
    driver = sigcont_only_when(LinuxDriver, lambda: allowed[0])(App())
    assert isinstance(driver, LinuxDriver)
    resumed = []
    monkeypatch.setattr(driver, "resume_application_mode", lambda: resumed.append(1))
    driver._auto_restart = True
    installed[signal.SIGCONT]()  # what the kernel's SIGCONT runs
    assert resumed == []  # not allowed: left alone
    allowed[0] = True
    installed[signal.SIGCONT]()
    assert resumed == [1]  # allowed: Textual's own handling, which resumes the terminal


PRIVATE = ("_scroll_update", "_display", "_refresh_layout", "_compositor_refresh",
           "_sigcont_application")


async def test_toasts_above_lifts_the_screens_toasts_off_its_last_lines():
    app = Small()
    async with app.run_test(size=(40, 24), notifications=True) as pilot:
        await pilot.pause()
        toasts_above(app.screen, 4)
        app.notify("a toast")
        await until(lambda: any(t.region.height for t in app.screen.query("Toast")), pilot,
                    what="the toast")
        toast = next(t for t in app.screen.query("Toast") if t.region.height)
        assert toast.region.bottom == 24 - 4, toast.region


def test_no_module_but_textual_compat_uses_those_names():
    import ast
    from pathlib import Path

    package = Path(__file__).resolve().parents[1] / "muxtop"
    bad = []
    for path in sorted(package.rglob("*.py")):
        if path.name == "textual_compat.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            name = node.attr if isinstance(node, ast.Attribute) else getattr(node, "name", "")
            if name in PRIVATE:
                bad.append(f"{path.relative_to(package)}:{node.lineno} {name}")
    assert not bad, bad
