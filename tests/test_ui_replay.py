"""The dashboard over a recording (the same app, read-only, with a timeline) and R recording a
live one: keys driven by the pilot."""

from __future__ import annotations

import dataclasses
import os

import pytest
from recordings import Clock
from ui_helpers import until

from muxtop.bench import synthetic
from muxtop.engine import Engine, EngineConfig
from muxtop.engine.source import EngineSource
from muxtop.record.control import Recordable, RecorderControl
from muxtop.record.encoder import RecordingEncoder
from muxtop.record.reader import Recording
from muxtop.replay.source import READ_ONLY, ReplaySource
from muxtop.ui.app import MuxtopApp
from muxtop.ui.widgets.interest_lists import InterestLists
from muxtop.ui.widgets.ready_log import ReadyLog
from muxtop.ui.widgets.timeline import TimelineBar

pytestmark = pytest.mark.timeout(60)
SIZE = (160, 48)




def newest(app: MuxtopApp) -> int:
    return app.latest.waits[-1].seq


async def test_full_stop_and_comma_move_exactly_one_wait_call(recording):
    app = MuxtopApp(ReplaySource(recording, at=0.4), interval=None)
    async with app.run_test(size=SIZE) as pilot:
        await until(lambda: app.latest is not None, pilot, what="the first Snapshot")
        start = newest(app)
        waits = app.latest.totals.waits
        for expected in (start + 1, start + 2, start + 3):
            await pilot.press("full_stop")
            assert newest(app) == expected == app.shown.waits[-1].seq
        assert app.latest.totals.waits == waits + 3
        log = app.dashboard.query_one(ReadyLog)
        assert log._record(0).seq == start + 3  # the newest line of the ready list
        await pilot.press("comma")
        assert newest(app) == start + 2
        await pilot.press("comma", "comma")
        assert newest(app) == start
        bar = app.dashboard.query_one(TimelineBar)
        assert f"after wait call #{start:,}" in bar.render().plain


async def test_the_ready_list_says_replay_not_live_at_the_newest_record(recording):
    app = MuxtopApp(ReplaySource(recording), interval=None)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("G")  # the recording's newest record
        log = app.dashboard.query_one(ReadyLog)
        await until(lambda: "REPLAY" in str(log.border_title), pilot, what="the title")
        assert "LIVE" not in str(log.border_title)


async def test_space_plays_and_the_speed_keys_change_how_fast(recording):
    clock = Clock()
    source = ReplaySource(recording, clock=clock)
    app = MuxtopApp(source, interval=None)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("right_square_bracket", "right_square_bracket")
        assert source.player.speed == 4.0
        await pilot.press("space")
        assert source.player.playing
        before = newest(app)
        clock.now += 0.1  # 0.4 s of the recording at ×4
        app.tick()
        assert newest(app) > before
        assert "▶ playing  ×4" in app.dashboard.query_one(TimelineBar).render().plain
        await pilot.press("space")
        assert not source.player.playing
        await pilot.press("G")
        assert source.player.at_end and newest(app) == recording.runs[-1].b
        await pilot.press("g")
        assert source.player.position == source.player.timeline.first()


async def test_engine_keys_are_greyed_with_the_reason_and_pause_is_play(recording):
    app = MuxtopApp(ReplaySource(recording), interval=None)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        for action in ("cycle_backend", "cycle_trigger", "lab", "flood"):
            assert app.check_action(action, ()) is None  # greyed, still in the footer
        assert app.check_action("toggle_pause", ()) is False  # space plays instead
        assert app.check_action("record", ()) is False
        assert app.check_action("play", ()) is True
        await pilot.press("b")
        await until(lambda: any(READ_ONLY in n.message for n in app._notifications), pilot)
        assert app.latest.backend == "epoll"
        keys = [row[0] for row in app.key_help()]
        assert {"space", ".", ",", "]", "[", "g", "G"} <= set(keys) and "R" not in keys


async def test_the_view_is_the_recorded_kind_of_source(tmp_path):
    path = tmp_path / "attach.muxrec"
    encoder = RecordingEncoder(str(path), "attach", [])
    for tick in range(3):
        encoder.add_snapshot(dataclasses.replace(synthetic.snapshot(4, tick, wait_count=0),
                                                 source="attach"))
    encoder.end(encoder.end_record("stopped"))
    with Recording.open(str(path)) as rec:
        app = MuxtopApp(ReplaySource(rec), interval=None)
        async with app.run_test(size=SIZE) as pilot:
            await pilot.pause()
            assert app.dashboard.query(InterestLists) and not app.dashboard.query(ReadyLog)
            await pilot.press("full_stop")
            assert app.source.player.position.index == 1
            assert "Snapshot 2 of 3" in app.dashboard.query_one(TimelineBar).render().plain


async def test_live_keys_have_no_replay_keys(tmp_path):
    engine = Engine(EngineConfig(port=0, publish_interval=0.05)).start()
    try:
        inner = EngineSource(engine)
        control = RecorderControl(inner, ["test"], directory=str(tmp_path))
        app = MuxtopApp(Recordable(inner, control), interval=0.05)
        async with app.run_test(size=SIZE) as pilot:
            await pilot.pause()
            assert app.check_action("play", ()) is False and app.check_action("step", ()) is False
            assert app.check_action("toggle_pause", ()) is True
            assert not app.dashboard.query(TimelineBar)
            await pilot.press("space")
            assert app.paused  # space pauses the display, as ever
            await pilot.press("space")
            await pilot.press("R")  # record
            await until(lambda: control.active is not None, pilot)
            await until(lambda: "REC " in app.dashboard.header.render().plain, pilot)
            path = control.recorder.path
            assert any(f"recording to {path}" in n.message for n in app._notifications)
            await until(lambda: control.recorder.status().snapshots >= 3, pilot)
            await pilot.press("R")  # stop
            await until(lambda: "REC " not in app.dashboard.header.render().plain, pilot)
            assert control.active is None
        assert os.path.dirname(path) == str(tmp_path)
        with Recording.open(path) as rec:
            assert rec.end["reason"] == "stopped" and len(rec.snapshots) >= 3
    finally:
        engine.stop()


def record_with_notices(path) -> Recording:
    """Five notices made before the recording started (every Snapshot carries them), one made
    half a second in (from the third Snapshot on), one in the last Snapshot (1.75 s in)."""
    from muxtop.snapshot import Notice

    old = tuple(Notice(i, synthetic.STARTED_AT + i, "info",
                       f"switched epoll/edge → epoll/oneshot (100{i} fds)") for i in range(1, 6))
    encoder = RecordingEncoder(str(path), "engine", ["test"])
    for tick in range(8):
        at = synthetic.STARTED_AT + 60 + tick * 0.25
        notices = old + ((Notice(6, at, "warning", "made 0.5 s in"),) if tick >= 2 else ()) \
            + ((Notice(7, at, "warning", "made 1.75 s in"),) if tick == 7 else ())
        encoder.add_snapshot(synthetic.snapshot(10, tick, notices=notices, wait_count=0))
        encoder.flush()
    encoder.end(encoder.end_record("stopped"))
    return Recording.open(str(path))


@pytest.mark.parametrize(("at", "news"), [(0.0, ["made 0.5 s in", "made 1.75 s in"]),
                                          (0.5, ["made 1.75 s in"])])
async def test_notices_older_than_the_recording_or_the_position_do_not_toast(tmp_path, at, news):
    clock = Clock()
    source = ReplaySource(record_with_notices(tmp_path / "n.muxrec"), at=at, clock=clock)
    app = MuxtopApp(source, interval=None)
    async with app.run_test(size=(80, 24)) as pilot:
        await until(lambda: app.latest is not None, pilot, what="the first Snapshot")
        await pilot.press("space")
        clock.now += 10  # past the end: what was made after the position is news
        app.tick()
        toasts = lambda: [n.message for n in app._notifications]  # noqa: E731
        await until(lambda: "made 1.75 s in" in toasts(), pilot, what="the last notice")
        assert toasts() == news
