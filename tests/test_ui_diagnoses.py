"""Diagnoses and the bug lab in the dashboard: the side panel lists findings (newest first,
never as markup), the lab menu flips switches in a real engine, and a real stuck read shows
up in the panel, the flags column and the detail view."""

from __future__ import annotations

import os
import socket

import pytest
from ui_helpers import detail_body, until

from muxtop.bench import synthetic
from muxtop.engine import Engine, EngineConfig
from muxtop.engine.source import EngineSource
from muxtop.snapshot import KIND_CONN, Diagnosis
from muxtop.source import FixedSource
from muxtop.ui.app import MuxtopApp
from muxtop.ui.screens.help import HelpScreen
from muxtop.ui.screens.lab_menu import LabMenu

pytestmark = pytest.mark.timeout(60)
SIZE = (160, 48)


def panel_text(app: MuxtopApp) -> str:
    return app.dashboard.diagnoses.render().plain


async def test_panel_lists_findings_newest_first_as_plain_text():
    now = synthetic.STARTED_AT + 60
    older = Diagnosis("stuck-write", 14, "the peer [bold]is not[/] reading",
                      (("out_buffer", 300_000),), now - 9.0)
    newer = Diagnosis("busy-loop", None, "4,000 waits/s move no bytes [red",
                      (("waits_per_s", 4000),), now - 1.0)
    app = MuxtopApp(FixedSource(synthetic.snapshot(20, 0, diagnoses=(older, newer))),
                    interval=None)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        panel = app.dashboard.diagnoses
        assert panel.has_class("-shown") and panel.region.height > 0
        text = panel_text(app)
        assert "2 findings" in text
        assert text.index("busy-loop process") < text.index("stuck-write fd 14")
        assert "[bold]is not[/]" in text and "[red" in text  # shown literally
        assert "for 9.0s" in text and "for 1.0s" in text
        assert "diagnoses" in app.dashboard.side.border_title


async def test_a_process_wide_finding_shows_in_the_detail_of_each_fd_it_names():
    now = synthetic.STARTED_AT + 60
    base = synthetic.snapshot(20, 0, diagnoses=())
    conn = next(v for v in base.connections if v.kind == KIND_CONN)
    spin = Diagnosis("busy-loop", None, "4,000 waits/s move no bytes",
                     (("fds", (conn.fd,)), ("events", ("WRITE",))), now - 2.0)
    assert spin.named_fds() == (conn.fd,)
    app = MuxtopApp(FixedSource(synthetic.snapshot(20, 0, diagnoses=(spin,))), interval=None)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        table = app.dashboard.table
        table.move_to(next(i for i, v in enumerate(table.rows) if v.cid == conn.cid))
        await pilot.press("enter")
        body = await until(lambda: detail_body(app), pilot, what="the detail view")
        assert "busy-loop  (the process; names this fd)" in body
        assert "none for this fd" not in body


async def test_no_findings_no_panel():
    app = MuxtopApp(FixedSource(synthetic.snapshot(20, 0, diagnoses=())), interval=None)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        assert not app.dashboard.diagnoses.has_class("-shown")
        assert app.dashboard.side.border_title == "trends"
        assert not app.dashboard.has_class("-side-busy")


async def test_lab_menu_flips_a_switch_on_and_off():
    engine = Engine(EngineConfig(port=0, publish_interval=0.05)).start()
    try:
        app = MuxtopApp(EngineSource(engine), interval=0.05)

        # What the app notified, kept: a notification leaves app._notifications once it
        # expires (3 s for an outcome), and a loaded machine can take longer to get here.
        said: list[str] = []
        notify = app.notify
        app.notify = lambda message, **settings: (said.append(message),
                                                  notify(message, **settings))[1]

        async with app.run_test(size=SIZE) as pilot:
            await pilot.press("l")
            await until(lambda: isinstance(app.screen, LabMenu), pilot, what="the lab menu")
            menu = app.screen
            await pilot.press("down", "enter")  # the second switch: busy-writable
            await until(lambda: engine.snapshot().lab == {"busy-writable"}, pilot,
                        what="lab on in the engine")
            await until(lambda: menu.lab == {"busy-writable"}, pilot, what="menu shows it")
            await until(lambda: "LAB busy-writable" in app.dashboard.header.render().plain,
                        pilot, what="header badge")
            assert "bug lab busy-writable on" in said, said  # by the tick that showed it
            await pilot.press("space")  # flips the highlighted one back
            await until(lambda: not engine.snapshot().lab, pilot, what="lab off")
            await until(lambda: not menu.lab, pilot, what="menu shows off")
            assert "bug lab busy-writable off" in said, said
            await pilot.press("escape")
            await until(lambda: app.screen is app.dashboard, pilot, what="the menu closes")
    finally:
        engine.stop()


async def test_a_real_stuck_read_shows_in_the_panel_the_flags_and_the_detail_view():
    engine = Engine(EngineConfig(port=0, trigger="edge", read_size=1024, stuck_after=0.5,
                                 publish_interval=0.05, lab=frozenset({"naive-edge"}))).start()
    client = socket.create_connection(engine.address, timeout=5)
    try:
        app = MuxtopApp(EngineSource(engine), interval=0.05)
        async with app.run_test(size=SIZE) as pilot:
            client.sendall(os.urandom(100_000))  # one 1 KiB read per edge: the rest sits
            await until(lambda: "stuck-read fd" in panel_text(app), pilot, what="finding")
            assert "LAB naive-edge" in app.dashboard.header.render().plain
            (finding,) = [d for d in app.latest.diagnoses if d.kind == "stuck-read"]
            assert f"stuck-read fd {finding.fd}" in panel_text(app)
            table = app.dashboard.table
            await until(lambda: any(v.fd == finding.fd and "!" in v.flags
                                    for v in table.rows), pilot, what="! flag")
            table.move_to(next(i for i, v in enumerate(table.rows)
                               if v.fd == finding.fd and v.kind == KIND_CONN))
            await pilot.press("enter")
            body = await until(lambda: detail_body(app), pilot, what="the detail view")
            assert "stuck-read" in body and "kernel rx queue" in body and "EAGAIN" in body
    finally:
        client.close()
        engine.stop()


async def test_help_tells_the_new_keys_the_lab_switches_and_the_detectors():
    app = MuxtopApp(FixedSource(synthetic.snapshot(10, 0)), interval=None)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("question_mark")
        await until(lambda: isinstance(app.screen, HelpScreen), pilot, what="the help screen")
        keys = {key for key, _, _ in app.screen.keys}
        assert {"f", "F", "x", "l"} <= keys
        body = app.screen.query_one("#help-body")
        text = "\n".join(strip.text for strip in body.render_lines(body.region.reset_offset))
        for word in ("naive-edge", "busy-writable", "no-backpressure", "emfile-spin",
                     "stuck-read", "stuck-write", "busy-loop", "fd-pressure",
                     "interest-mismatch", "500 clients"):
            assert word in text, word


@pytest.mark.parametrize("size", [(80, 24), (60, 16), (160, 48)])
async def test_the_lab_menu_fits_the_screen_with_its_border_and_key_hint(size):
    app = MuxtopApp(FixedSource(synthetic.snapshot(20, 0)), interval=None)
    async with app.run_test(size=size) as pilot:
        await until(lambda: app.latest is not None, pilot, what="the first Snapshot")
        await pilot.press("l")
        await until(lambda: isinstance(app.screen, LabMenu), pilot, what="the lab menu")
        panel = app.screen.query_one("#lab-panel")
        await until(lambda: panel.region.height > 0, pilot, what="the menu laid out")
        # The bottom border carries the key hint: on screen, not cut off.
        assert panel.region.y >= 0 and panel.region.bottom <= size[1], panel.region
