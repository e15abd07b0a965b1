"""The keys everywhere: ctrl+c quits from every screen; every key of the table of actions says
why when it cannot act, over every kind of source and in the palette; below the smallest size
the notice takes no key but q and ctrl+c."""

from __future__ import annotations

import re

import pytest
from textual.command import CommandPalette
from ui_helpers import until

from muxtop.engine.source import EngineSource
from muxtop.replay.source import ReplaySource
from muxtop.ui import actions
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


def table_keys() -> list[str]:
    return list(dict.fromkeys(key for a in actions.ACTIONS for key in a.keys))


@pytest.fixture
def proxy_engine(make_engine):
    """A proxy without toxics (no --toxic, no --api) in front of an echo engine."""
    echo = make_engine()
    return make_engine(publish_interval=0.05, upstream=echo.address)


def sources(kind: str, request) -> MuxtopApp:
    if kind == "live":
        return MuxtopApp(EngineSource(request.getfixturevalue("make_engine")(
            publish_interval=0.05)), interval=0.05)
    if kind == "proxy":
        return MuxtopApp(EngineSource(request.getfixturevalue("proxy_engine")), interval=0.05)
    if kind == "replay":
        return MuxtopApp(ReplaySource(request.getfixturevalue("recording")), interval=None)
    from test_ui_actions import TwoProcesses

    from muxtop.attach.source import TargetsSource

    source = TargetsSource(TwoProcesses())  # type: ignore[arg-type]
    source.read_now()
    return MuxtopApp(source, interval=None)


@pytest.mark.parametrize("kind", ["live", "proxy", "replay", "attach"])
async def test_every_key_of_the_table_says_why_it_does_not_act(kind, request):
    """Pressed where none of its actions acts (this source has none, or not now), a key of
    the table says why, in words that say where it acts; esc alone stays quiet. The palette's
    entries say why too, never just "not now"."""
    app = sources(kind, request)
    async with app.run_test(size=SIZE) as pilot:
        await until(lambda: app.latest is not None and app.dashboard.ready, pilot)
        now = app.now()
        silent = [key for key in table_keys() if key != "escape"
                  and not any(a.exists(now) and key in a.at(now).keys and a.why_not(now) is None
                              for a in actions.ACTIONS)
                  and not actions.refusal(key, now)]
        assert silent == [], silent
        assert actions.refusal("escape", now) is None
        for action in actions.listed(now):
            assert action.why_not(now) is None or actions.why_not(action.name, now), action.name
        # As pressed: a key this source does not have says where it acts.
        key, words = {"live": ("comma", "muxtop replay"), "proxy": ("T", "--toxic"),
                      "replay": ("L", "changes nothing"),
                      "attach": ("n", "muxtop only looks")}[kind]
        await pilot.press(key)
        await until(lambda: any(words in n.message for n in app._notifications), pilot,
                    what=lambda: [(n.title, n.message) for n in app._notifications])


async def test_the_palette_says_why_an_action_cannot_act(make_engine):
    app = MuxtopApp(EngineSource(make_engine(publish_interval=0.05)), interval=0.05)
    async with app.run_test(size=SIZE) as pilot:
        await until(lambda: app.latest is not None and app.dashboard.ready, pilot)
        for name in ("answer", "lesson_next", "leave_lesson", "clear_filter"):
            await app._palette_run(actions.BY_NAME[name])

        def said() -> list[str]:
            return [n.message for n in app._notifications]

        await until(lambda: len(said()) == 4, pilot, what=said)
        said = said()
        assert "not now" not in said and said.count("no lesson is running: L picks one") == 3, said
        assert "no filter is set: / sets one" in said


# A lesson file is the user's, but its title is text like any other: never read as markup.
MARKED_UP = '''title = "T\\u001b]0;pwned\\u0007 [bold red]markup[/]"
summary = "markup in the title"

[[step]]
say = "[bold red]markup[/] in the body"
ask = "which?"
choices = ["[red]a", "b"]
answer = 1
explain = "the first"
'''


async def test_a_lessons_title_is_not_read_as_markup(make_engine):
    from muxtop.lessons.format import parse

    app = MuxtopApp(EngineSource(make_engine(publish_interval=0.05)), interval=0.05)
    async with app.run_test(size=SIZE) as pilot:
        await until(lambda: app.latest is not None and app.dashboard.ready, pilot)
        app.start_lesson(parse(MARKED_UP, "marked"))
        panel = app.dashboard.lesson
        await until(lambda: panel.region.height > 0, pilot, what="the lesson panel")

        def top() -> str:  # the border's title as drawn, after Textual has read it
            return panel._border_title.plain if panel._border_title is not None else ""

        await until(lambda: "lesson:" in top(), pilot, what=top)
        assert "T?]0;pwned? [bold red]markup[/] · step 1 of 1" in top(), top()


async def test_a_lessons_switches_are_not_toasted_over_its_panel(make_engine):
    """The engine's info notices ("switched epoll/edge → epoll/level") covered the lesson's
    text; the lesson says what it switched. Outside a lesson they are toasted."""
    from muxtop.commands import Switch
    from muxtop.lessons.format import parse

    engine = make_engine(publish_interval=0.05)
    app = MuxtopApp(EngineSource(engine), interval=0.05)

    def toasted(text: str) -> bool:
        return any(text in str(n.message) for n in app._notifications)

    async with app.run_test(size=SIZE) as pilot:
        await until(lambda: app.latest is not None and app.dashboard.ready, pilot)
        app.start_lesson(parse(MARKED_UP, "marked"))
        await until(lambda: app.lesson is not None, pilot, what="the lesson")
        assert engine.submit(Switch("poll", "level")).result(10).ok
        await until(lambda: app.latest.backend == "poll", pilot, what="the switch shown")
        await pilot.pause()
        assert not toasted("switched epoll/level → poll/level")
        app.action_leave_lesson()
        await until(lambda: app.lesson is None or app.lesson.phase == "done", pilot)
        assert engine.submit(Switch("select", "level")).result(10).ok
        await until(lambda: toasted("→ select/level"), pilot, what="the toast after it")


@pytest.mark.parametrize("key", ["question_mark", "F", "ctrl+p", "L", "enter", "slash", "tab"])
async def test_below_the_smallest_size_only_q_and_ctrl_c_act(make_engine, key):
    """At 40x10 the notice 'needs at least 60x16' is all there is: no help, no palette, no
    flood form (its enter would launch a flood unseen) opens behind it; q still quits."""
    app = MuxtopApp(EngineSource(make_engine(publish_interval=0.05)), interval=0.05)
    async with app.run_test(size=(40, 10)) as pilot:
        await until(lambda: app.latest is not None and app.dashboard.has_class("-tiny"), pilot)
        focused = app.focused
        await pilot.press(key, "enter")
        await until(lambda: app.latest is not None and app.return_code is None, pilot)
        await pilot.pause()
        assert app.screen is app.dashboard and app.focused is focused, app.screen
        assert not app.floods.floods and not app.dashboard.filter_box.has_class("-active")
        await pilot.press("q")
        await until(lambda: app.return_code is not None, pilot, what="q quits")


@pytest.mark.parametrize("key", ["question_mark", "F", "ctrl+p"])
async def test_shrinking_below_the_smallest_size_closes_what_a_key_opened(make_engine, key):
    """Help, the flood form or the palette open at 160x48, then the terminal shrinks to 40x10:
    the notice is what shows, not the dialog over it (whose enter could still launch)."""
    app = MuxtopApp(EngineSource(make_engine(publish_interval=0.05)), interval=0.05)
    async with app.run_test(size=(160, 48)) as pilot:
        await until(lambda: app.latest is not None and app.dashboard.ready, pilot)
        await pilot.press(key)
        await until(lambda: app.screen is not app.dashboard, pilot, what=f"{key} opens")
        await pilot.resize_terminal(40, 10)
        await until(lambda: app.screen is app.dashboard and app.dashboard.has_class("-tiny"),
                    pilot, what=lambda: app.screen)
        await pilot.press("enter")
        await pilot.pause()
        assert not app.floods.floods
        # Again, with the terminal shrinking, growing and shrinking before anything runs, and
        # an esc after: the pops are done at once, never twice (was a ScreenStackError).
        await pilot.resize_terminal(160, 48)
        await until(lambda: not app.dashboard.has_class("-tiny"), pilot, what="grown")
        await pilot.press(key)
        await until(lambda: app.screen is not app.dashboard, pilot, what=f"{key} opens again")
        for size in ((40, 10), (160, 48), (40, 10)):
            await pilot.resize_terminal(*size)
        await pilot.press("escape")
        await until(lambda: app.screen is app.dashboard and app.dashboard.has_class("-tiny"),
                    pilot, what=lambda: app.screen)


async def test_at_the_smallest_size_the_table_shows_its_first_rows(make_engine):
    app = MuxtopApp(EngineSource(make_engine(publish_interval=0.05)), interval=0.05)
    async with app.run_test(size=(60, 16)) as pilot:
        await until(lambda: app.latest is not None and app.dashboard.ready, pilot)
        table = app.dashboard.table
        assert not app.dashboard.has_class("-tiny")

        def lines() -> list[str]:
            height = table.scrollable_content_region.height
            return [table.render_line(y).text for y in range(height)]

        # The column header, then the epoll instance, the listener and the control rows.
        await until(lambda: len(lines()) >= 4 and "listen" in "".join(lines()), pilot,
                    what=lambda: f"{table.region}: {lines()}")


async def test_the_listeners_rx_q_is_a_count_of_connections(make_engine):
    """On the listener rx-q is the accept queue: connections, as attach writes it (0/511),
    not bytes (it read 0B)."""
    app = MuxtopApp(EngineSource(make_engine(publish_interval=0.05)), interval=0.05)
    async with app.run_test(size=SIZE) as pilot:
        await until(lambda: app.latest is not None and app.dashboard.ready, pilot)
        table = app.dashboard.table

        def listener() -> str:
            return next((table.render_line(y).text for y in range(1, 8)
                         if " listen " in table.render_line(y).text), "")

        await until(listener, pilot, what="the listener's row")
        assert " 0B " not in listener() and " 0/" in listener(), listener()


@pytest.mark.parametrize("size", [(80, 24), (160, 48)])
async def test_toasts_leave_the_footer_uncovered(size):
    """The footer is wrapped, never cut: a toast sits above it, whatever its height."""
    from test_ui_actions import screen_row

    from muxtop.bench import synthetic
    from muxtop.source import FixedSource
    from muxtop.ui.widgets.key_bar import KeyBar

    app = MuxtopApp(FixedSource(synthetic.snapshot(10, 0, backend="poll")), interval=None)
    async with app.run_test(size=size, notifications=True) as pilot:
        await until(lambda: app.latest is not None and app.dashboard.ready, pilot)
        await pilot.press("t")  # poll has no edge: a toast says why
        await until(lambda: any(t.region.height for t in app.screen.query("Toast")), pilot,
                    what="the toast")
        await pilot.pause()
        bar = app.dashboard.query_one(KeyBar)
        toast = next(t for t in app.screen.query("Toast") if t.region.height)
        assert toast.region.bottom <= bar.region.y, (toast.region, bar.region)
        for y in range(bar.region.y, bar.region.bottom):
            assert screen_row(app, y)[1] == {KeyBar}, screen_row(app, y)


NUMBERED = '''title = "numbered"
summary = "choices that start with a number"

[[step]]
say = "how many?"
ask = "how many wait calls?"
choices = ["1: the edge is reported once", "2, as with level"]
answer = 1
explain = "once"
'''


async def test_a_wrong_answer_names_the_right_choice_apart_from_its_number(make_engine):
    """'Not quite: it is 1, 1: the edge…' read as a stutter: the key and the choice's own
    words are told apart."""
    from muxtop.lessons.format import parse

    app = MuxtopApp(EngineSource(make_engine(publish_interval=0.05)), interval=0.05)
    async with app.run_test(size=SIZE) as pilot:
        await until(lambda: app.latest is not None and app.dashboard.ready, pilot)
        app.start_lesson(parse(NUMBERED, "numbered"))
        await until(lambda: app.lesson.phase == "ask", pilot, what="the question")
        await pilot.press("2")
        panel = app.dashboard.lesson
        await until(lambda: "Not quite" in str(panel.render()), pilot,
                    what=lambda: str(panel.render()))
        assert 'Not quite: you chose 2; the answer is 1, "1: the edge is reported once".' \
            in str(panel.render()), str(panel.render())


async def test_a_dashboard_key_on_another_screen_says_where_it_acts(make_engine):
    """b in the help did nothing and said nothing: it says where it acts."""
    app = MuxtopApp(EngineSource(make_engine(publish_interval=0.05)), interval=0.05)
    async with app.run_test(size=SIZE) as pilot:
        await until(lambda: app.latest is not None and app.dashboard.ready, pilot)
        await pilot.press("question_mark")
        await until(lambda: isinstance(app.screen, HelpScreen), pilot, what="the help")
        await pilot.press("b")
        await until(lambda: any(n.message == "b acts on the dashboard: esc goes back to it"
                                for n in app._notifications), pilot,
                    what=lambda: [n.message for n in app._notifications])
        assert isinstance(app.screen, HelpScreen) and app._intended is None  # no switch
        await pilot.press("question_mark")  # the help's own key still closes it
        await until(lambda: app.screen is app.dashboard, pilot, what="the help closed")


@pytest.mark.parametrize("width", [70, 80, 100])
async def test_the_lesson_picker_keeps_a_lessons_minutes_on_one_line(make_engine, width):
    """"3 min" at a line's end came out as "3" and, on the next line, "min"."""
    app = MuxtopApp(EngineSource(make_engine(publish_interval=0.05)), interval=0.05)
    async with app.run_test(size=(width, 40)) as pilot:
        await until(lambda: app.latest is not None and app.dashboard.ready, pilot)
        await pilot.press("L")
        await until(lambda: isinstance(app.screen, LessonPicker), pilot, what="the picker")
        options = app.screen.query_one("#lesson-list")
        await pilot.pause()
        lines = [options.render_line(y).text for y in range(options.size.height)]
        text = "\n".join(lines)
        assert len(re.findall(r"\d min\b", text)) == len(app.screen.lessons), text
