"""Floods from the dashboard, against a real engine on an ephemeral loopback port: f, the F
form (and its refusals), x, the flood panel, the F flag, and no flood outliving the app."""

from __future__ import annotations

import psutil
import pytest
from textual.widgets import Button
from ui_helpers import until

from muxtop.bench import synthetic
from muxtop.engine import Engine, EngineConfig
from muxtop.engine.source import EngineSource
from muxtop.flood.patterns import PATTERNS
from muxtop.flood.process import DEFAULT_FLOOD, FloodSettings
from muxtop.snapshot import KIND_CONN
from muxtop.source import FixedSource
from muxtop.ui.app import MuxtopApp
from muxtop.ui.floods import Floods
from muxtop.ui.screens.flood_form import FloodForm

pytestmark = pytest.mark.timeout(60)
SIZE = (160, 48)
# A flood that keeps its connections open until x: a few clients, a message a second each.
STEADY = FloodSettings(host="127.0.0.1", port=0, clients=12, messages=0, rate=1.0)


@pytest.fixture
def engine():
    engine = Engine(EngineConfig(port=0, publish_interval=0.05)).start()
    yield engine
    engine.stop()


def open_conns(engine) -> list:
    return [v for v in engine.snapshot().connections
            if v.kind == KIND_CONN and v.state != "closed"]


def panel_text(app: MuxtopApp) -> str:
    return app.dashboard.floods.render().plain


async def test_f_launches_a_flood_shown_in_the_panel_flagged_and_x_stops_it(engine):
    app = MuxtopApp(EngineSource(engine), interval=0.05, flood=STEADY)
    try:
        async with app.run_test(size=SIZE) as pilot:
            assert app.check_action("stop_floods", ()) is None  # nothing to stop yet
            await pilot.press("f")
            (flood,) = app.floods.floods
            assert flood.args.at("h", 1) == STEADY.at("h", 1)
            assert flood.args.port == engine.address[1]
            await until(lambda: len(open_conns(engine)) >= 12, pilot, what="12 connections")
            await until(lambda: "conns 12" in panel_text(app), pilot, what="panel progress")
            text = panel_text(app)
            assert "#1 echo 12 × no limit" in text and "running" in text and "bad 0" in text
            assert app.dashboard.side.border_title.startswith("floods")
            # The engine's connections from the flood carry the F flag in the table.
            await until(lambda: sum("F" in v.flags for v in app.dashboard.table.rows) >= 12,
                        pilot, what="F flags")
            assert not any("F" in v.flags for v in app.dashboard.table.rows
                           if v.kind != KIND_CONN)
            assert app.check_action("stop_floods", ()) is True
            await pilot.press("x")
            await until(lambda: not flood.running, pilot, what="flood stopped")
            await until(lambda: not open_conns(engine), pilot, what="connections closed")
            await until(lambda: "stopped" in panel_text(app), pilot, what="panel says stopped")
            assert app.check_action("stop_floods", ()) is None
    finally:
        app.floods.close()


async def test_f_launches_a_flood_that_stays_on_screen_and_x_stops_it(engine):
    app = MuxtopApp(EngineSource(engine), interval=0.05)
    assert app.flood_settings == DEFAULT_FLOOD
    try:
        async with app.run_test(size=SIZE) as pilot:
            await pilot.press("f")
            (flood,) = app.floods.floods
            assert (flood.args.pattern, flood.args.clients, flood.args.messages,
                    flood.args.rate) == ("echo", 500, 20, 2.0)
            await until(lambda: engine.snapshot().open_connections == 500, pilot, timeout=20,
                        what="500 connections open at once")
            await pilot.pause(1.0)
            assert flood.running and engine.snapshot().open_connections == 500  # still there
            await pilot.press("x")
            await until(lambda: flood.summary is not None, pilot, timeout=20, what="summary")
            assert flood.summary["mismatches"] == 0 and flood.summary["connected"] == 500
    finally:
        app.floods.close()


async def open_form(app, pilot) -> FloodForm:
    """Press F and return the flood form it opened."""
    await pilot.press("F")
    await until(lambda: isinstance(app.screen, FloodForm), pilot, what="the flood form")
    return app.screen


async def test_the_seed_flood_is_a_preset_of_the_form_and_it_verifies(engine):
    app = MuxtopApp(EngineSource(engine), interval=0.05)
    try:
        async with app.run_test(size=SIZE) as pilot:
            form = await open_form(app, pilot)
            form.query_one("#preset").value = "seed"  # the form fills in on Select.Changed
            await until(lambda: form.query_one("#messages").value == "3", pilot,
                        what=lambda: f"messages {form.query_one('#messages').value!r}")
            await pilot.click("#launch")
            await until(lambda: app.floods.floods, pilot, what="the flood starts")
            (flood,) = app.floods.floods
            assert (flood.args.pattern, flood.args.clients, flood.args.messages) == \
                ("echo", 500, 3)
            await until(lambda: flood.summary is not None, pilot, timeout=30, what="summary")
            await until(lambda: "done" in panel_text(app), pilot, what="panel says done")
            assert flood.summary["connected"] == 500
            assert flood.summary["messages_echoed"] == 1500
            assert flood.summary["mismatches"] == 0 and flood.returncode == 0
            assert "conns 500" in panel_text(app) and "1,500 back" in panel_text(app)
            assert engine.snapshot().totals.accepted >= 500
    finally:
        app.floods.close()


async def test_flood_form_rejects_bad_values_then_launches_the_chosen_pattern(engine):
    app = MuxtopApp(EngineSource(engine), interval=0.05)
    try:
        async with app.run_test(size=SIZE) as pilot:
            form = await open_form(app, pilot)
            for field, bad, said in (("clients", "lots", "not a whole number"),
                                     ("clients", "0", "outside"),
                                     ("size", "99999999999", "outside"),
                                     ("rate", "-1", "0 or more"),
                                     ("duration", "0", "more than 0")):
                form.query_one(f"#{field}").value = bad
                # A click here could miss: the last rejection focused a field and the form may
                # still be scrolling to it. Press the button itself (the seed test clicks it).
                form.query_one("#launch", Button).press()
                shown = f"{field}={bad!r}"
                await until(lambda said=said, field=field: said in form.error
                            and field in form.error, pilot,
                            what=lambda shown=shown: f"{shown}: the form says {form.error!r}")
                assert app.screen is form
                form.query_one(f"#{field}").value = {"clients": "5", "size": "64", "rate": "0",
                                                     "duration": ""}[field]
            assert not app.floods.floods  # nothing launched by a bad form
            form.query_one("#pattern").value = "idle"
            form.query_one("#clients").value = "7"
            form.query_one("#clients").focus()
            await pilot.press("enter")
            await until(lambda: app.screen is app.dashboard and app.floods.floods, pilot,
                        what="the form closes and the flood starts")
            (flood,) = app.floods.floods
            assert (flood.args.pattern, flood.args.clients) == ("idle", 7)
            await until(lambda: len(open_conns(engine)) == 7, pilot, what="7 idle connections")
            await until(lambda: "#1 idle 7 ×" in panel_text(app), pilot, what="panel")
            await pilot.press("x")
            await until(lambda: not flood.running, pilot, what="idle flood stopped")
            # esc leaves the form without launching anything.
            await pilot.press("F")
            await until(lambda: isinstance(app.screen, FloodForm), pilot, what="the form")
            await pilot.press("escape")
            await until(lambda: app.screen is app.dashboard, pilot, what="the form closes")
            assert len(app.floods.floods) == 1
    finally:
        app.floods.close()


async def test_quitting_stops_running_floods(engine):
    app = MuxtopApp(EngineSource(engine), interval=0.05, flood=STEADY)
    try:
        async with app.run_test(size=SIZE) as pilot:
            await pilot.press("f")
            (flood,) = app.floods.floods
            pid = flood.pid
            await until(lambda: len(open_conns(engine)) >= 12, pilot, what="connections")
            await pilot.press("q")
            await pilot.pause()
        assert not flood.running
        assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == "zombie"
    finally:
        app.floods.close()


async def test_flood_keys_are_greyed_out_without_an_engine():
    snapshots = [synthetic.snapshot(20, t) for t in range(2)]
    app = MuxtopApp(FixedSource(snapshots[0], commands=False), interval=None)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        for action in ("flood", "flood_form", "stop_floods", "lab"):
            assert app.check_action(action, ()) is None, action
        await pilot.press("f", "F", "x", "l")  # nothing happens, nothing breaks
        await pilot.pause()
        assert app.screen is app.dashboard and not app.floods.floods


def test_mark_flags_connections_whose_peer_port_a_flood_holds():
    snapshot = synthetic.snapshot(30, 0)  # peers 10.0.0.N:40000+i
    floods = Floods()
    assert floods.mark(snapshot) is snapshot  # no flood: untouched
    floods.ports = frozenset({40003, 40010, 8080})
    marked = floods.mark(snapshot)
    assert floods.mark(snapshot) is marked  # same Snapshot in, same object out
    flagged = {v.peer for v in marked.connections if "F" in v.flags}
    assert flagged == {"10.0.0.4:40003", "10.0.0.11:40010"}  # not the listener on :8080
    assert [v.cid for v in marked.connections] == [v.cid for v in snapshot.connections]


async def test_flood_form_offers_the_fault_patterns_and_open_loop(engine):
    app = MuxtopApp(EngineSource(engine), interval=0.05)
    try:
        async with app.run_test(size=SIZE) as pilot:
            form = await open_form(app, pilot)
            help_of = form.query_one("#pattern-help")
            for pattern in ("slicer", "stall", "slow-close", "latency", "limit"):
                form.query_one("#pattern").value = pattern   # refused were it not offered
                await until(lambda p=pattern: help_of.content == PATTERNS[p].does, pilot,
                            what=lambda: f"the help says {help_of.content!r}")  # explained
            form.query_one("#pattern").value = "stall"
            form.query_one("#messages").value = "0"
            await pilot.click("#launch")
            await until(lambda: "stall needs messages 1 or more" in form.error, pilot,
                        what=lambda: f"the form says {form.error!r}")
            assert app.screen is form
            form.query_one("#pattern").value = "slicer"
            form.query_one("#messages").value = "0"
            form.query_one("#clients").value = "4"
            form.query_one("#open-loop").value = True
            form.query_one("#rate").value = "0"
            launch = form.query_one("#launch", Button)
            launch.press()  # not a click: the last rejection focused a field, maybe scrolling
            await until(lambda: form.error.startswith("rate: open loop needs"), pilot,
                        what=lambda: f"the form says {form.error!r}")
            assert app.screen is form
            form.query_one("#rate").value = "5"
            launch.press()
            await until(lambda: app.screen is app.dashboard, pilot, what="the form closes")
            (flood,) = app.floods.floods
            assert (flood.args.pattern, flood.args.open_loop, flood.args.rate) == (
                "slicer", True, 5.0)
            await until(lambda: "open loop" in panel_text(app), pilot, timeout=15,
                        what=lambda: panel_text(app))
            await until(lambda: "p99/s" in panel_text(app), pilot, what="latency trend")
            assert flood.running, list(flood.errors)
            await pilot.press("x")
            await until(lambda: not flood.running, pilot, what="flood stopped")
            assert flood.summary["mode"] == "open-loop" and flood.summary["slices"] > 0
            assert flood.summary["mismatches"] == 0
    finally:
        app.floods.close()


@pytest.mark.parametrize("size", [(80, 24), SIZE])
async def test_flood_form_shows_the_focused_field_in_words_and_typing_edits(engine, size):
    """In a plain capture (no colour) the focused field is marked; typing edits a value
    (500 then 0 is 5000), it does not replace it; open loop says on or off in words."""
    from textual.widgets import Checkbox, Input, Label

    app = MuxtopApp(EngineSource(engine), interval=0.05)
    try:
        async with app.run_test(size=size) as pilot:
            form = await open_form(app, pilot)

            def marked() -> list[str]:
                return [str(label.render()).split()[-1] for label in form.query(Label)
                        if str(label.render()).startswith("▸")]

            await until(lambda: marked() == ["clients"], pilot, what=lambda: marked())
            clients = form.query_one("#clients", Input)
            assert clients.value == str(DEFAULT_FLOOD.clients)
            await pilot.press("0")
            await until(lambda: clients.value == f"{DEFAULT_FLOOD.clients}0", pilot,
                        what=lambda: clients.value)
            await pilot.press("tab")
            await until(lambda: marked() == ["messages"], pilot, what=lambda: marked())
            loop = form.query_one("#open-loop", Checkbox)
            assert not loop.value and str(loop.label).endswith("off"), loop.label
            loop.focus()
            await until(lambda: marked() == ["loop"], pilot, what=lambda: marked())
            await pilot.press("space")
            await until(lambda: loop.value and str(loop.label).endswith("on"), pilot,
                        what=lambda: str(loop.label))
    finally:
        app.floods.close()


@pytest.mark.parametrize(("field", "text", "said"), [
    ("rate", "1e20", "rate: must be at most 1,000,000,000"),  # was taken; the flood then died
    ("duration", "1e20", "duration: must be at most 1,000,000,000"),
    ("rate", "nan", "is not a finite number"), ("duration", "0", "must be more than 0"),
])
def test_the_forms_numbers_are_refused_where_the_floods_command_line_would(field, text, said):
    from muxtop.flood.process import DEFAULT_FLOOD
    from muxtop.ui.screens.flood_form import BadValue, parse

    values = {"clients": "10", "messages": "100", "size": "64", "rate": "0", "duration": ""}
    values[field] = text
    with pytest.raises(BadValue, match=said):
        parse(values, "burst", DEFAULT_FLOOD)
