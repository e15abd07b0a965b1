"""The toxics menu (T): the dashboard of a proxy with toxics lists them, adds a preset and
removes one, through the registry the engine and the API share."""

from __future__ import annotations

import pytest
from ui_helpers import until

from muxtop.engine import Engine, EngineConfig
from muxtop.engine.source import EngineSource
from muxtop.proxy.registry import Registry
from muxtop.ui.app import MuxtopApp
from muxtop.ui.screens.toxics_menu import ToxicsMenu

pytestmark = pytest.mark.timeout(60)
SIZE = (160, 48)


@pytest.fixture
def engines():
    echo = Engine(EngineConfig(port=0)).start()
    registry = Registry()
    proxy = Engine(EngineConfig(port=0, publish_interval=0.05, upstream=echo.address,
                                registry=registry)).start()
    yield proxy, registry
    proxy.stop()
    echo.stop()


async def test_t_adds_a_preset_toxic_and_removes_it(engines):
    from textual.widgets import OptionList

    proxy, registry = engines
    app = MuxtopApp(EngineSource(proxy), interval=0.05)
    async with app.run_test(size=SIZE) as pilot:
        await until(lambda: app.latest is not None, pilot)
        await pilot.press("T")
        await until(lambda: isinstance(app.screen, ToxicsMenu), pilot, what="the menu")
        options = app.screen.query_one(OptionList)
        options.highlighted = options.get_option_index("add\0" + "0")  # latency 100 ms
        await pilot.press("enter")
        await until(lambda: [t.name for t in registry.get("muxtop").toxics.all()]
                    == ["latency_downstream"], pilot, what="the toxic added")
        await until(lambda: options.get_option_index(
            "del\0muxtop\0latency_downstream") is not None, pilot, what="it listed")
        options.highlighted = options.get_option_index("del\0muxtop\0latency_downstream")
        await pilot.press("enter")
        await until(lambda: not registry.get("muxtop").toxics.all(), pilot, what="removed")
        await pilot.press("escape")
        await until(lambda: not isinstance(app.screen, ToxicsMenu), pilot, what="closed")


async def test_t_is_not_a_key_of_the_echo_server():
    from muxtop.ui import actions

    engine = Engine(EngineConfig(port=0, publish_interval=0.05)).start()
    try:
        app = MuxtopApp(EngineSource(engine), interval=0.05)
        async with app.run_test(size=SIZE) as pilot:
            await until(lambda: app.latest is not None, pilot)
            assert actions.state("toxics", app.now()) is False  # not shown, not greyed
            await pilot.press("T")
            await pilot.pause()
            assert not isinstance(app.screen, ToxicsMenu)
    finally:
        engine.stop()


async def test_echo_floods_are_refused_through_a_proxy_with_the_reason_and_h_is_not(engines):
    from muxtop.ui import actions

    proxy, _ = engines
    app = MuxtopApp(EngineSource(proxy), interval=0.05)
    async with app.run_test(size=SIZE) as pilot:
        await until(lambda: app.latest is not None, pilot)
        now = app.now()
        for name in ("flood", "flood_form", "lessons"):
            assert actions.state(name, now) is None, name  # greyed out: pressing it says why
            assert "need not echo" in actions.why_not(name, now), name
        assert actions.state("idle_herd", now) is True  # only holds connections
        said = []
        app.notify = lambda message, **kw: said.append(message)
        await pilot.press("f")
        await until(lambda: said, pilot, what="f's refusal")
        assert "need not echo" in said[0] and not app.floods.running
