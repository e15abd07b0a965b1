"""Lessons: every built-in lesson runs end to end over a real engine with scripted answers and
puts the server back as it was; a broken lesson file is refused with its line and problem."""

from __future__ import annotations

import os
import re
import resource
import time

import pytest
from ui_helpers import until

from muxtop.cli import lesson as lesson_cli
from muxtop.engine import Engine, EngineConfig
from muxtop.engine.source import EngineSource
from muxtop.flood.process import FloodProcess
from muxtop.lessons import runner as lesson_module
from muxtop.lessons.format import ACTIONS, LessonError, builtin, parse
from muxtop.lessons.runner import ASK, DOING, DONE, EXPLAIN, SETUP, FloodLauncher, LessonRun
from muxtop.ui.app import MuxtopApp
from muxtop.ui.widgets.lesson_panel import LessonPanel

LESSONS = builtin()


# What each built-in lesson must have shown, in its own measured words: (step, pattern).
SHOWN = {
    "01-select-wall": [(0, r"refused \(select cannot watch fd 1[01]\d\d"), (2, r"is on select")],
    "02-scan": [(0, r"looking at 1,00\d fds"), (1, r"against poll's")],
    "03-level-edge": [(0, r"[2-9] of them read from the connection"),
                      (1, r"Wait calls that read: 1,")],
    "04-edge-trap": [(0, r"Findings: .*stuck-read"), (1, r"Findings now: none")],
    "05-oneshot": [(1, r"Findings: .*interest-mismatch")],
    "06-busy-loop": [(1, r"Findings: busy-loop")],
    "07-backpressure": [(0, r"^[1-5] connections are paused"), (1, r"stuck-write")],
    "08-out-of-fds": [(0, r"accept\(\) failed [1-9][\d,]* times"),
                      (1, r"[\d.,]+[kM]? failed accepts")],
    "09-readiness-completion": [(0, r"; [2-9] of them read from the connection"),
                                (1, r"for the connection: [1-9], ")],
}


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


# The lessons' clock in these tests: each step runs for this share of its `after`, and a queue
# counts as stuck after this share of the default 2 s. What each lesson shows is checked
# against SHOWN all the same. Backpressure keeps more of its time: a slow reader's kernel
# buffers take seconds to fill before muxtop's out-buffer passes its high-water mark.
PACE = {"07-backpressure": 0.75}
FAST = 0.5


@pytest.mark.timeout(120)
@pytest.mark.parametrize("lesson", LESSONS, ids=[lesson.name for lesson in LESSONS])
async def test_a_lesson_runs_end_to_end_and_restores_the_server(lesson, monkeypatch):
    pace = PACE.get(lesson.name, FAST)
    monkeypatch.setattr(lesson_module, "PACE", pace)
    engine = Engine(EngineConfig(port=0, publish_interval=0.1, backend="epoll",
                                 trigger="level", stuck_after=2.0 * pace)).start()
    limit = resource.getrlimit(resource.RLIMIT_NOFILE)
    fds = open_fds()
    try:
        app = MuxtopApp(EngineSource(engine), interval=0.1)
        async with app.run_test(size=(160, 48)) as pilot:
            await until(lambda: app.latest is not None, pilot)
            app.start_lesson(lesson)
            run = app.lesson
            panel = app.dashboard.query_one(LessonPanel)
            explained: list[str] = []
            for number, step in enumerate(lesson.steps):
                await until(lambda n=number, s=step: run.index == n and run.phase in (
                    (ASK,) if s.ask else (SETUP, EXPLAIN)), pilot, timeout=30)
                assert panel.has_class("-shown")
                if step.ask:
                    # A wrong answer on odd steps: the explanation says which is right.
                    wrong = step.answer % len(step.choices) + 1
                    choice = wrong if number % 2 else step.answer
                    await pilot.press(str(choice))
                    assert run.chosen == choice
                await until(lambda: run.phase == EXPLAIN, pilot, timeout=60,
                            what=lambda: f"step {run.index + 1} in {run.phase}: {run.trouble}")
                shown = panel.render().plain
                assert run.explained and run.explained[:40] in " ".join(shown.split())[:2000] \
                    or run.explained.split()[0] in shown
                assert "{" not in run.explained, run.explained
                assert not run.trouble, run.trouble
                if step.ask:
                    assert ("Right:" in shown) == (choice == step.answer)
                explained.append(run.explained)
                await pilot.press("n")
            for number, pattern in SHOWN[lesson.name]:
                assert re.search(pattern, explained[number]), explained[number]
            await until(lambda: run.phase == DONE and app.lesson is None, pilot)
            await until(lambda: (engine.snapshot().backend, engine.snapshot().trigger,
                                 engine.snapshot().lab, engine.snapshot().step) ==
                        ("epoll", "level", frozenset(), None), pilot, timeout=15,
                        what=lambda: repr((engine.snapshot().backend, engine.snapshot().lab)))
            assert not app.floods.running
            assert not panel.has_class("-shown")
            await until(lambda: engine.snapshot().open_connections == 0, pilot, timeout=15)
    finally:
        engine.stop()
    assert resource.getrlimit(resource.RLIMIT_NOFILE) == limit
    deadline = time.monotonic() + 5
    while open_fds() > fds + 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert open_fds() <= fds + 2  # the held fds and the lesson's clients are let go


@pytest.mark.timeout(60)
async def test_esc_leaves_a_lesson_midway_and_the_server_is_as_it_was():
    engine = Engine(EngineConfig(port=0, publish_interval=0.1, backend="poll")).start()
    try:
        app = MuxtopApp(EngineSource(engine), interval=0.1)
        async with app.run_test(size=(100, 30)) as pilot:
            await until(lambda: app.latest is not None, pilot)
            await pilot.press("L")
            await pilot.press("down", "down", "enter")  # the third: level vs edge
            await until(lambda: app.lesson is not None and engine.snapshot().step is not None
                        and engine.snapshot().trigger == "level"
                        and engine.snapshot().backend == "epoll", pilot, timeout=20)
            await pilot.press("escape")
            await until(lambda: app.lesson is None and engine.snapshot().step is None
                        and engine.snapshot().backend == "poll", pilot, timeout=15)
    finally:
        engine.stop()


@pytest.mark.timeout(60)
async def test_n_is_not_offered_while_a_question_waits_and_says_to_answer_first(monkeypatch):
    from muxtop.ui import actions
    from muxtop.ui.widgets.key_bar import KeyBar

    monkeypatch.setattr(lesson_module, "PACE", FAST)

    engine = Engine(EngineConfig(port=0, publish_interval=0.1, backend="epoll")).start()
    try:
        app = MuxtopApp(EngineSource(engine), interval=0.1)
        async with app.run_test(size=(100, 30)) as pilot:
            await until(lambda: app.latest is not None, pilot)
            app.start_lesson(next(lesson for lesson in LESSONS if lesson.name == "03-level-edge"))
            run = app.lesson
            await until(lambda: run.phase == ASK, pilot, timeout=20)
            choices = len(run.step.choices)
            assert "n" not in [a.display for a in actions.footer(app.now())]
            await pilot.press("n")
            await until(lambda: [m for m in app._notifications
                                 if m.message == f"answer first: 1–{choices}"], pilot)
            assert run.phase == ASK and run.index == 0
            await pilot.press("1")
            await until(lambda: run.phase == EXPLAIN, pilot, timeout=40)
            bar = app.dashboard.query_one(KeyBar)  # the footer follows the phase by itself
            await until(lambda: "n next" in bar.render().plain, pilot,
                        what=lambda: bar.render().plain)
            assert "1-6" not in bar.render().plain
            await pilot.press("escape")
            await until(lambda: app.lesson is None, pilot, timeout=15)
    finally:
        engine.stop()


HEADLESS = '''title = "headless"
summary = "a lesson with no dashboard"

[[step]]
say = "poll, three idle clients, two wait calls"
do = { backend = "poll", herd = 3, step = 2 }
explain = "{stepped} wait calls over {connections} connections"
'''


@pytest.mark.timeout(60)
def test_a_lesson_runs_on_a_source_and_a_flood_launcher_with_no_dashboard():
    """The runner needs no Textual: a Source, something that launches floods, and ticks."""
    engine = Engine(EngineConfig(port=0, publish_interval=0.05, backend="epoll")).start()
    launched: list[FloodProcess] = []

    def launch(settings):
        launched.append(FloodProcess(settings))
        return launched[-1]

    def ticked_until(predicate, what: str) -> None:
        deadline = time.monotonic() + 20
        while not predicate():
            assert time.monotonic() < deadline, f"not in time: {what} ({run.trouble})"
            run.tick()
            time.sleep(0.02)

    try:
        source = EngineSource(engine)
        first = time.monotonic() + 10
        while source.latest() is None:
            assert time.monotonic() < first, "no Snapshot"
            time.sleep(0.02)
        run = LessonRun(source, FloodLauncher(launch, FloodProcess.stop),
                        parse(HEADLESS, "headless"))
        run.start()
        ticked_until(lambda: run.phase == EXPLAIN, "the explanation")
        assert run.explained == "2 wait calls over 3 connections", run.explained
        assert engine.snapshot().backend == "poll" and len(launched) == 1
        assert run.next() and run.phase == DONE
        ticked_until(lambda: engine.snapshot().backend == "epoll" and
                     engine.snapshot().step is None and not launched[0].running,
                     "the server as it was")
    finally:
        for flood in launched:
            flood.stop()
        engine.stop()


def test_every_action_a_lesson_file_may_name_is_one_the_runner_does():
    assert DOING.keys() == ACTIONS.keys()


GOOD = '''title = "t"
summary = "s"

[[step]]
say = "a"
ask = "q?"
choices = ["x", "y"]
answer = 1
explain = "e {cpu_per_call}"
'''


@pytest.mark.parametrize(("change", "line", "problem"), [
    (("answer = 1", "answer = 1\nwhy = 2"), 9, "unknown key 'why'"),
    (("answer = 1", "answer = 3"), 8, "answer must be the number of the right choice"),
    (('explain = "e {cpu_per_call}"', ""), 6, "a question needs an explain"),
    (('say = "a"', 'say = "a"\ndo = { backend = "kqueue" }'), 6, "do.backend: one of"),
    (('say = "a"', 'say = "a"\ndo = { warp = 9 }'), 6, "do.warp: no such action"),
    (("{cpu_per_call}", "{speed}"), 9, "{speed} is no measure"),
    (('title = "t"', 'titel = "t"'), 1, "unknown key 'titel'"),
    (('summary = "s"', ""), 1, "summary must be a non-empty text"),
    (('choices = ["x", "y"]', 'choices = ["x"]'), 7, "a list of 2 to 6 texts"),
    (('answer = 1', 'answer = 1\nwatch = "sky"'), 9, "no panel 'sky'"),
    (('say = "a"', 'say = "a"\ndo = { flood = { pattern = "stall", messages = 0 } }'), 6,
     "do.flood: messages: stall needs messages 1 or more"),
])
def test_check_names_the_line_and_the_problem(tmp_path, capsys, change, line, problem):
    parse(GOOD, "good")
    path = tmp_path / "bad.toml"
    path.write_text(GOOD.replace(*change))
    assert lesson_cli.main(["--check", str(path)]) == 1
    message = capsys.readouterr().err
    assert f"bad.toml:{line}:" in message and problem in message, message
    # Running it is refused with the same message.
    assert lesson_cli.main([str(path)]) == 1
    assert capsys.readouterr().err == message


def test_check_says_ok_and_refuses_what_is_not_a_lesson(tmp_path, capsys):
    for lesson in LESSONS:
        assert lesson.steps and 1 <= lesson.minutes <= 5
    path = tmp_path / "cut.toml"
    path.write_text(GOOD[:30])  # a truncated file
    assert lesson_cli.main(["--check", str(path)]) == 1
    assert "not TOML" in capsys.readouterr().err
    path.write_bytes(b"\xff\xfe title")
    assert lesson_cli.main(["--check", str(path)]) == 1
    assert "cannot read" in capsys.readouterr().err
    assert lesson_cli.main(["--check", str(tmp_path / "missing.toml")]) == 1
    assert "cannot read" in capsys.readouterr().err
    good = tmp_path / "good.toml"
    good.write_text(GOOD)
    assert lesson_cli.main(["--check", str(good)]) == 0
    assert "OK" in capsys.readouterr().out
    with pytest.raises(LessonError, match="no lesson"):
        lesson_cli.find("no-such-lesson")
    for blank in ("", " "):  # Path("") is ".": it said "cannot read '.'"
        with pytest.raises(LessonError, match=f"no lesson '{blank}'; the lessons are"):
            lesson_cli.find(blank)
