"""Step mode from the dashboard: `.` stops the engine and then makes one wait call per press,
the step panel says what each did, `c` runs free again."""

from __future__ import annotations

import socket

import pytest
from test_ui_engine import app_for
from ui_helpers import until

from muxtop.engine import Engine, EngineConfig
from muxtop.ui.widgets.header import StatusHeader
from muxtop.ui.widgets.step_panel import StepPanel

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def engine():
    engine = Engine(EngineConfig(port=0, publish_interval=0.05)).start()
    yield engine
    engine.stop()


def panel_text(app) -> str:
    return app.dashboard.query_one(StepPanel).render().plain


async def test_dot_steps_one_wait_call_per_press_and_c_continues(engine):
    app = app_for(engine)
    with socket.create_connection(engine.address, timeout=5) as client:
        async with app.run_test(size=(160, 48)) as pilot:
            assert app.check_action("continue_engine", ()) is False  # not stepping: hidden
            await pilot.press("full_stop")
            await until(lambda: app.latest.step is not None, pilot)
            panel = app.dashboard.query_one(StepPanel)
            assert panel.has_class("-shown") and "Stopped before the next" in panel_text(app)
            header = app.dashboard.query_one(StatusHeader)
            assert "STEPPING" in str(header.render())
            client.sendall(b"ping")
            seqs, texts = [], []
            for _ in range(5):
                steps = app.latest.step.steps
                await pilot.press("full_stop")
                await until(lambda s=steps: app.latest.step.steps == s + 1, pilot)
                # The panel shows that wait call (a busy process redraws it every other tick).
                await until(lambda: f"wait #{app.latest.step.seq:,}:" in panel_text(app), pilot)
                seqs.append(app.latest.step.seq)
                texts.append(panel_text(app))
            assert [b - a for a, b in zip(seqs, seqs[1:])] == [1, 1, 1, 1]
            assert any("read 4B, one read" in t and "sent 4B" in t for t in texts), \
                "\n---\n".join(texts)
            assert client.recv(10) == b"ping"
            await pilot.press("c")
            await until(lambda: app.latest.step is None, pilot)
            assert not panel.has_class("-shown")


async def test_stepping_the_header_has_no_wait_figures_to_give_and_the_log_says_stepping(engine):
    """Stopped before a wait call, the rates' window holds none: the header's wait p50 and
    p99 are '-', not 0ns; the ready-list log says STEPPING, not LIVE."""
    app = app_for(engine)
    async with app.run_test(size=(160, 48)) as pilot:
        await pilot.press("full_stop")
        await until(lambda: app.latest.step is not None and app.latest.rates.waits == 0, pilot)
        header = app.dashboard.query_one(StatusHeader)
        log = app.dashboard.ready_log
        await until(lambda: "wait p50 -" in str(header.render()), pilot,
                    what=lambda: str(header.render()))
        assert "p99 -" in str(header.render()) and "0ns" not in str(header.render())
        await until(lambda: "STEPPING" in str(log.border_title), pilot,
                    what=lambda: str(log.border_title))
        assert "LIVE" not in str(log.border_title)
        await pilot.press("c")
        await until(lambda: "LIVE" in str(log.border_title), pilot,
                    what=lambda: str(log.border_title))
