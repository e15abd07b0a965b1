"""One table of actions (muxtop.ui.actions): the footer, the palette and the help list each
action exactly once (the footer: while it acts), at three sizes and over each kind of source
(live, replay, a picture, attach, a lesson at a question), and what each draws holds nothing
the table did not write."""

from __future__ import annotations

import dataclasses

import pytest
from textual.app import App
from textual.command import CommandList, CommandPalette
from ui_helpers import until

from muxtop.backends import NAMES
from muxtop.bench import synthetic
from muxtop.commands import Switch
from muxtop.engine.source import EngineSource
from muxtop.record.control import Recordable, RecorderControl
from muxtop.replay.source import ReplaySource
from muxtop.source import FixedSource
from muxtop.ui import actions
from muxtop.ui.app import MuxtopApp
from muxtop.ui.rows import can_act_on
from muxtop.ui.screens.help import HelpScreen
from muxtop.ui.widgets.key_bar import KeyBar

pytestmark = pytest.mark.timeout(120)
SIZES = ((80, 24), (160, 48), (250, 70))


def screen_row(app: MuxtopApp, y: int) -> tuple[str, set[type]]:
    """Row y of the screen as drawn: its characters, and the kinds of widget that drew them."""
    chars, kinds = [], set()
    for x in range(app.size.width):
        widget, region = app.screen.get_widget_at(x, y)
        kinds.add(type(widget))
        text = widget.render_line(y - region.y).text
        chars.append(text[x - region.x] if x - region.x < len(text) else " ")
    return "".join(chars), kinds


def assert_footer(app: MuxtopApp) -> None:
    """The bottom rows: each action that acts now, in table order, once, and nothing else."""
    bar = app.dashboard.query_one(KeyBar)
    now = app.now()
    expected = [f"{a.display} {a.label}" for a in actions.footer(now)]
    assert all(a.why_not(now) is None for a in actions.footer(now))
    assert actions.footer(now) == [a.at(now) for a in actions.ACTIONS if a.why_not(now) is None]
    assert bar.region.bottom == app.size.height and bar.region.width == app.size.width
    items = list(expected)
    for y in range(bar.region.y, bar.region.bottom):
        row, kinds = screen_row(app, y)
        assert kinds == {KeyBar}, (y, kinds)  # nothing drawn over it
        row = row.rstrip()
        at = 0
        while items and at < len(row):
            while row.startswith(" ", at):
                at += 1
            assert row.startswith(items[0], at), (row, at, items[0])
            at += len(items.pop(0))
        assert at >= len(row), f"characters the table did not write: {row[at:]!r} in {row!r}"
    assert not items, f"not on screen: {items}"


def assert_palette_and_help(app: MuxtopApp) -> None:
    now = app.now()
    titles = [c.title for c in app.get_system_commands(app.dashboard)]
    for action in actions.listed(now):
        if action.name != "command_palette":
            named = [t for t in titles if t.startswith(f"{action.label} (")]
            assert named == [f"{action.label} ({action.display})"], (action.name, titles)
    assert titles.count("Quit") + titles.count("quit (q)") == 1
    assert {"backend: select", "backend: poll", "backend: epoll"} <= set(titles)
    rows = app.key_help()
    for action in actions.listed(now):
        assert rows.count((action.help_keys, action.label, action.description)) == 1, \
            action.name
    assert len({(keys, what) for keys, what, _ in rows}) == len(rows)


def help_keys_drawn(app: MuxtopApp) -> list[tuple[str, str, str]]:
    """The help's Keys section as drawn: (keys, what, why) a row, a wrapped why joined again.
    A character in a gap between the columns, or one the rows do not have, fails."""
    body = app.screen.query_one("#help-body")
    lines = [body.render_line(y).text.rstrip() for y in range(body.size.height)]
    start = lines.index("Keys") + 1
    section = lines[start:lines.index("", start)]
    expected = app.key_help()
    what_at = max(len(keys) for keys, _, _ in expected) + 2  # the grid's padding: 2
    why_at = what_at + max(len(what) for _, what, _ in expected) + 2
    rows: list[tuple[str, str, str]] = []
    for line in section:
        gaps = line[what_at - 2:what_at] + line[why_at - 2:why_at]
        assert not gaps.strip(), f"a character between the columns: {line!r}"
        if line[:why_at].strip():
            rows.append((line[:what_at].rstrip(), line[what_at:why_at].rstrip(),
                         line[why_at:].strip()))
        else:  # the why goes on
            assert rows, f"a help line before the first key: {line!r}"
            keys, what, why = rows[-1]
            rows[-1] = (keys, what, f"{why} {line.strip()}")
    return rows


async def assert_palette_drawn(app: MuxtopApp, pilot) -> None:
    """ctrl+p: the palette's entries are Textual's own (theme, screenshot...), each action this
    source has once, named from the table, and each backend: nothing else, nothing twice."""
    ours = [f"{a.label} ({a.display})\n{a.description}" for a in actions.listed(app.now())
            if a.name != "command_palette"]
    ours += [f"backend: {name}\nSwitch live to {name}" for name in NAMES]
    textuals = [f"{c.title}\n{c.help}" for c in App.get_system_commands(app, app.dashboard)
                if c.title not in ("Quit", "Keys")]
    expected = sorted(ours + textuals)
    assert len(set(expected)) == len(expected), expected
    await pilot.press("ctrl+p")
    await until(lambda: isinstance(app.screen, CommandPalette), pilot, what="the palette")
    entries = app.screen.query_one(CommandList)

    def drawn() -> list[str]:
        return sorted(entries.get_option_at_index(i).prompt.plain
                      for i in range(entries.option_count))

    await until(lambda: drawn() == expected, pilot, what=lambda: repr(
        (sorted(set(drawn()) - set(expected)), sorted(set(expected) - set(drawn())))))
    await pilot.press("escape")
    await until(lambda: app.screen is app.dashboard, pilot, what="the palette closed")


async def check_everywhere(make_app, prepare=None) -> None:
    for size in SIZES:
        await check_at(make_app(), size, prepare)


async def check_at(app: MuxtopApp, size: tuple[int, int], prepare) -> None:
    async with app.run_test(size=size) as pilot:
        await until(lambda: app.latest is not None and app.dashboard.ready, pilot)
        if prepare is not None:
            await prepare(app, pilot)
        await pilot.pause()
        bar = app.dashboard.query_one(KeyBar)
        await until(lambda: bar.actions == tuple(actions.footer(app.now()))
                    and bar.region.height == len(bar.lines()), pilot,
                    what=lambda: f"the footer's keys {[a.display for a in bar.actions]}, the "
                    f"table's {[a.display for a in actions.footer(app.now())]}")
        assert_footer(app)
        assert_palette_and_help(app)
        await assert_palette_drawn(app, pilot)
        await pilot.press("question_mark")
        await until(lambda: isinstance(app.screen, HelpScreen), pilot)
        assert app.screen.keys == app.key_help()
        await until(lambda: app.screen.query_one("#help-body").size.height > 0, pilot)
        assert help_keys_drawn(app) == app.key_help()


async def select_a_connection(app: MuxtopApp, pilot) -> None:
    table = app.dashboard.table
    table.move_to(next(i for i, v in enumerate(table.rows) if can_act_on(v)))
    await until(lambda: app.check_action("close_connection", ()), pilot)


@pytest.mark.parametrize("backend", ["epoll", "select"])
async def test_an_engine_picture_lists_each_action_once(backend):
    snapshot = synthetic.snapshot(40, 3, backend=backend)
    await check_everywhere(lambda: MuxtopApp(FixedSource(snapshot), interval=None),
                           select_a_connection)


async def test_a_read_only_source_lists_each_action_once():
    snapshot = synthetic.snapshot(40, 3)
    await check_everywhere(
        lambda: MuxtopApp(FixedSource(snapshot, commands=False), interval=None))


async def test_a_recording_lists_each_action_once(recording):
    await check_everywhere(lambda: MuxtopApp(ReplaySource(recording), interval=None))


async def test_a_live_engine_lists_each_action_once(make_engine, tmp_path):
    engine = make_engine(publish_interval=0.05)
    inner = EngineSource(engine)
    control = RecorderControl(inner, ["test"], directory=str(tmp_path))
    await check_everywhere(lambda: MuxtopApp(Recordable(inner, control), interval=0.05))


async def test_b_skips_a_backend_that_cannot_take_the_open_fds():
    snapshot = synthetic.snapshot(10, 0, backend="uring")  # b: uring -> select (no) -> poll
    live = next(v for v in snapshot.connections if can_act_on(v))
    snapshot = dataclasses.replace(
        snapshot, connections=(*snapshot.connections, live._replace(cid=999, fd=1500)))
    source = FixedSource(snapshot)
    app = MuxtopApp(source, interval=None)
    async with app.run_test(size=(160, 48)) as pilot:
        await until(lambda: app.latest is not None, pilot)
        await pilot.press("b")
        await until(lambda: any(isinstance(c, Switch) for c in source.sent), pilot)
        assert [c for c in source.sent if isinstance(c, Switch)] == [Switch(backend="poll")]


async def test_full_stop_in_a_recording_says_nothing(recording):
    app = MuxtopApp(ReplaySource(recording, at=0.4), interval=None)
    async with app.run_test(size=(160, 48)) as pilot:
        await until(lambda: app.latest is not None, pilot)
        start = app.latest.waits[-1].seq
        await pilot.press("full_stop")
        await until(lambda: app.latest.waits[-1].seq == start + 1, pilot)
        await pilot.pause()
        assert not [n for n in app._notifications if "not now" in n.title], \
            [n.title for n in app._notifications]


class TwoProcesses:
    """Targets (muxtop.attach.targets) stand-in: two fixed attach pictures, the second named
    with markup and a control character (a process names itself as it likes)."""

    name = None
    read_seconds = 0.0

    def __init__(self) -> None:
        from test_attach_ui import fixed_attach_snapshot

        from muxtop.attach.targets import Target

        first = fixed_attach_snapshot()
        hostile = "[b red]X[/]\x1b"
        second = dataclasses.replace(
            first, target=first.target._replace(pid=4343),
            process=first.process._replace(pid=4343, name=hostile), diagnoses=())
        self.last = (Target(1, 4242, first.process.name, first), Target(2, 4343, hostile, second))

    def read(self):
        return self.last

    def take_changes(self) -> list:
        return []

    def close(self) -> None:
        pass


async def test_several_processes_list_each_action_once():
    from muxtop.attach.source import TargetsSource
    from muxtop.ui.widgets.target_bar import TargetBar

    def make_app() -> MuxtopApp:
        source = TargetsSource(TwoProcesses())  # type: ignore[arg-type]
        source.read_now()
        return MuxtopApp(source, interval=None)

    await check_everywhere(make_app)
    app = make_app()
    async with app.run_test(size=SIZES[1]) as pilot:
        await until(lambda: app.latest is not None and app.dashboard.ready, pilot)
        assert {"next_target", "previous_target"} <= {a.name for a in actions.footer(app.now())}
        bar = app.dashboard.query_one(TargetBar)
        await until(lambda: bar.render().plain.split()[:3] == ["1/2", "ets-server", "4242"],
                    pilot)
        # The first one's finding (!1), then the second drawn plain: the markup as its
        # characters, the control character as '?'.
        assert bar.render().plain.split()[3:] == ["!1", "[b", "red]X[/]?", "4343"]


async def test_the_help_reopens_at_the_top_and_the_palette_has_no_textual_keys_panel():
    app = MuxtopApp(FixedSource(synthetic.snapshot(20, 0)), interval=None)
    async with app.run_test(size=(80, 24)) as pilot:
        await until(lambda: app.latest is not None, pilot, what="the first Snapshot")
        # The keys are muxtop's help (?): Textual's own Keys panel, which esc does not
        # close, is not offered beside it.
        titles = [c.title for c in app.get_system_commands(app.dashboard)]
        assert "Keys" not in titles and "help (?)" in titles
        await pilot.press("question_mark")
        await until(lambda: isinstance(app.screen, HelpScreen), pilot, what="the help")
        panel = app.screen.query_one("#help-panel")
        await until(lambda: panel.max_scroll_y > 0, pilot, what="the help laid out")
        await pilot.press("end")
        await until(lambda: panel.scroll_y > 0, pilot, what="the help scrolled")
        await pilot.press("escape")
        await until(lambda: app.screen is app.dashboard, pilot, what="the help closed")
        await pilot.press("question_mark")
        await until(lambda: isinstance(app.screen, HelpScreen), pilot, what="the help again")
        await until(lambda: panel.scroll_y == 0, pilot, what=lambda: f"at {panel.scroll_y}")


# Two questions, one of 3 choices and one of 2, and nothing to set up: the answer keys follow
# the question (a question may have 2 to 6 choices; the table binds 1-6). The first is as long
# as the built-in ones, and watches the lower half (at 80x24 the table gives way to it).
QUESTIONS = '''title = "questions"
summary = "two questions, nothing set up"

[[step]]
say = """muxtop is on epoll, level-triggered, and has stopped the engine before its next \
wait call (STEPPING in the header). A client of the lesson connects and sends one 100 KB \
message: it waits in the kernel's receive queue. Each read asks for 64 KiB."""
ask = "Level-triggered: how many wait calls will report this connection before it is all read?"
choices = ["one", "two", "three"]
answer = 1
watch = "ready-log"
explain = "the first"

[[step]]
say = "two choices"
ask = "which now?"
choices = ["one", "two"]
answer = 2
explain = "the second"
'''


async def at_a_question(app: MuxtopApp, pilot, choices: int = 3) -> None:
    from muxtop.lessons.format import parse
    from muxtop.lessons.runner import ASK

    if app.lesson is None:
        app.start_lesson(parse(QUESTIONS, "questions"))
    await until(lambda: app.lesson is not None and app.lesson.phase == ASK
                and len(app.lesson.step.choices) == choices, pilot, what="the question")


async def test_a_lesson_at_a_question_lists_each_action_once(make_engine):
    async def prepare(app: MuxtopApp, pilot) -> None:
        await at_a_question(app, pilot)
        assert actions.BY_NAME["answer"].at(app.now()) in actions.footer(app.now())

    await check_everywhere(lambda: MuxtopApp(EngineSource(make_engine(publish_interval=0.05)),
                                             interval=0.05), prepare)


async def test_the_answer_keys_are_the_questions_choices(make_engine):
    engine = make_engine(publish_interval=0.05)
    app = MuxtopApp(EngineSource(engine), interval=0.05)
    async with app.run_test(size=(160, 48)) as pilot:
        await until(lambda: app.latest is not None and app.dashboard.ready, pilot)
        for choices in (3, 2):
            await answer_a_question(app, pilot, choices)


async def answer_a_question(app: MuxtopApp, pilot, choices: int) -> None:
    """The footer, the palette and the help offer 1-`choices`; the key after says why it does
    nothing; 1 answers, n goes on."""
    await at_a_question(app, pilot, choices)
    bar = app.dashboard.query_one(KeyBar)
    keys = f"1-{choices}"
    await until(lambda: f"{keys} answer" in bar.render().plain, pilot,
                what=lambda: bar.render().plain)
    assert "1-6" not in bar.render().plain
    assert f"answer ({keys})" in [c.title for c in app.get_system_commands(app.dashboard)]
    assert [r for r in app.key_help() if r[1] == "answer"][0][0] == keys
    await pilot.press("question_mark")  # the help, installed at the first question, follows
    await until(lambda: isinstance(app.screen, HelpScreen), pilot, what="the help")
    assert [r for r in help_keys_drawn(app) if r[1] == "answer"][0][0] == keys
    await pilot.press("escape")
    await until(lambda: app.screen is app.dashboard, pilot, what="the help closed")
    # A key past the last choice says so, once, and answers nothing.
    past = str(choices + 1)
    await pilot.press(past)

    def said() -> list[str]:
        return [n.message for n in app._notifications if n.title == f"{past}: not now"]

    await until(said, pilot, what=lambda: [(n.title, n.message) for n in app._notifications])
    assert said() == [f"no choice {past}: the question has {choices}, 1–{choices}"]
    assert app.lesson.phase == "ask" and app.lesson.chosen == 0
    await pilot.press("1")
    await until(lambda: app.lesson.phase == "explain", pilot, what="the explanation")
    await pilot.press("n")
