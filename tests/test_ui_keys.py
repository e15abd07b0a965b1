"""The keys everywhere: ctrl+c quits from every screen; every key of the table of actions says
why when it cannot act, over every kind of source and in the palette; below the smallest size
the notice takes no key but q and ctrl+c."""

from __future__ import annotations

import pytest
from textual.command import CommandPalette
from ui_helpers import until

from muxtop.engine.source import EngineSource
from muxtop.ui.app import MuxtopApp
from muxtop.ui.rows import can_act_on
from muxtop.ui.screens.detail import DetailScreen
from muxtop.ui.screens.flood_form import FloodForm
from muxtop.ui.screens.help import HelpScreen
from muxtop.ui.screens.lab_menu import LabMenu
from muxtop.ui.screens.lesson_picker import LessonPicker

pytestmark = pytest.mark.timeout(60)
SIZE = (160, 48)


async def select_a_connection(app: MuxtopApp, pilot) -> None:
    table = app.dashboard.table
    await until(lambda: any(can_act_on(v) for v in table.rows), pilot, what="a connection")
    table.move_to(next(i for i, v in enumerate(table.rows) if can_act_on(v)))


# Each screen on top of the dashboard: the keys that open it, and what it is.
SCREENS = {
    "help": (("question_mark",), HelpScreen),
    "palette": (("ctrl+p",), CommandPalette),
    "lab": (("l",), LabMenu),
    "lessons": (("L",), LessonPicker),
    "detail": (("enter",), DetailScreen),
    "flood form": (("F",), FloodForm),  # an Input has the focus: ctrl+c is its copy
}


@pytest.mark.parametrize("screen", list(SCREENS))
async def test_ctrl_c_quits_from_every_screen(make_engine, screen):
    keys, kind = SCREENS[screen]
    engine = make_engine(publish_interval=0.05)
    app = MuxtopApp(EngineSource(engine), interval=0.05)
    async with app.run_test(size=SIZE) as pilot:
        await until(lambda: app.latest is not None and app.dashboard.ready, pilot)
        if screen == "detail":  # the listener's row: a row is all enter needs
            app.dashboard.table.move_to(0)
        await pilot.press(*keys)
        await until(lambda: isinstance(app.screen, kind), pilot, what=screen)
        await pilot.press("ctrl+c")
        await until(lambda: app.return_code is not None, pilot,
                    what=lambda: f"still running, on {type(app.screen).__name__}")
        assert app.return_code == 0
