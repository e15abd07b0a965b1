"""The toxics panel of a proxy's dashboard: each proxy and its toxics per direction, in
toxiproxy's words, with the legs each applies to; readable at 80×24, 160×48 and 220×60; and
absent when muxtop is no proxy."""

from __future__ import annotations

import dataclasses
import socket

import pytest
from ui_helpers import until

from muxtop.engine import Engine, EngineConfig
from muxtop.engine.source import EngineSource
from muxtop.proxy.registry import Registry
from muxtop.proxy.toxics import Toxic
from muxtop.snapshot import FLAG_TOXIC, ProxyView, ToxicView
from muxtop.ui.app import MuxtopApp
from muxtop.ui.views.toxics import toxic_lines
from muxtop.ui.widgets.toxics_panel import ToxicsPanel

pytestmark = pytest.mark.timeout(60)
SIZES = [(80, 24), (160, 48), (220, 60)]


@pytest.fixture
def proxied():
    """An echo engine behind a proxy engine with a 100 ms downstream latency toxic, and one
    client through it."""
    echo = Engine(EngineConfig(port=0)).start()
    registry = Registry()
    proxy = Engine(EngineConfig(port=0, publish_interval=0.05, upstream=echo.address,
                                registry=registry)).start()
    registry.add_toxic("muxtop", Toxic("latency_downstream", "latency", "downstream", 1.0,
                                       {"latency": 100}))
    client = socket.create_connection(proxy.address, timeout=10)
    client.sendall(b"ping")
    assert client.recv(4) == b"ping"  # through the toxic: the pair is up and it applies
    yield proxy
    client.close()
    proxy.stop()
    echo.stop()


def panel_text(app) -> str:
    panel = app.screen.query_one(ToxicsPanel)
    return "\n".join(line.plain for line in panel.render().split("\n"))


@pytest.mark.parametrize("size", SIZES, ids=[f"{w}x{h}" for w, h in SIZES])
async def test_the_panel_shows_the_toxic_and_its_legs_whole_at_each_size(proxied, size):
    app = MuxtopApp(EngineSource(proxied), interval=0.05)
    async with app.run_test(size=size) as pilot:
        def toxic_leg() -> int | None:  # the upstream leg reads what the toxic delays
            s = app.latest
            return next((v.fd for v in s.connections if FLAG_TOXIC in v.flags), None) \
                if s is not None else None

        fd = await until(toxic_leg, pilot, what="a leg flagged ~")
        panel = app.screen.query_one(ToxicsPanel)
        await until(lambda: f"fd {fd}" in panel_text(app), pilot,
                    what=lambda: f"fd {fd} in the panel: {panel_text(app)!r}")
        text = panel_text(app)
        assert "latency latency=100ms" in text and "downstream" in text, text
        assert text.startswith("muxtop "), text
        await pilot.pause()
        # Whole on screen: shown, inside the screen, every line of it in its region.
        assert panel.display and panel.has_class("-shown")
        region, screen = panel.region, app.screen.region
        assert region.width >= 20 and screen.contains_region(region), (region, screen)
        assert region.height >= len(text.splitlines()), (region, text)
        assert app.screen.query_one("#side").region.contains_region(region)


async def test_no_panel_when_muxtop_is_no_proxy():
    engine = Engine(EngineConfig(port=0, publish_interval=0.05)).start()
    try:
        app = MuxtopApp(EngineSource(engine), interval=0.05)
        async with app.run_test(size=(160, 48)) as pilot:
            await until(lambda: app.latest is not None, pilot)
            await pilot.pause()
            assert app.latest.proxies == ()
            panel = app.screen.query_one(ToxicsPanel)
            assert not panel.has_class("-shown") and not panel.display
            assert "toxics" not in (app.screen.query_one("#side").border_title or "")
    finally:
        engine.stop()


def test_lines_say_each_toxic_in_toxiproxys_words():
    slicer = ToxicView("cut", "slicer", "upstream", 0.5,
                       (("average_size", 64), ("size_variation", 0), ("delay", 10)),
                       tuple(range(10, 74, 2)), 40)
    timeout = ToxicView("timeout_downstream", "timeout", "downstream", 1.0,
                        (("timeout", 0),), (), 0)
    proxies = (ProxyView("db", "127.0.0.1:7000", "127.0.0.1:5432", False, (slicer, timeout)),
               ProxyView("[bold]x[/]", "127.0.0.1:7001", "h:1", True, ()))
    text = "\n".join(line for line, _ in toxic_lines(proxies, 80))
    assert "upstream · client → server" in text and "downstream · server → client" in text
    # Custom names are shown, default ones (TYPE_STREAM) not; units as toxiproxy's README
    # (the slicer's delay in µs); a zero attribute left out unless all are.
    assert "cut: slicer average_size=64B delay=10µs" in text, text
    assert "timeout timeout=0ms · on no open leg" in text, text
    assert "50% of connections · on fd 10 12 14 16 18 20 22 24 … (40 legs)" in text, text
    assert "down: new clients refused" in text and "[bold]x[/] 127.0.0.1:7001" in text
    narrow = toxic_lines(proxies, 36)
    assert all(len(line) <= 36 for line, _ in narrow), narrow
    assert any(line.strip().startswith("upstream cut: slicer") for line, _ in narrow), narrow


def test_metrics_say_each_proxy_and_the_legs_each_toxic_applies_to():
    from prometheus_client import CollectorRegistry, generate_latest
    from test_metrics import samples, value

    from muxtop.bench import synthetic
    from muxtop.metrics.collector import SnapshotCollector

    toxic = ToxicView("slow", "latency", "downstream", 0.5, (("latency", 100),), (9, 11), 2)
    plain = synthetic.snapshot(4, 1)
    shots = [dataclasses.replace(plain, proxies=(
        ProxyView("db", "127.0.0.1:7000", "127.0.0.1:5432", True, (toxic,)),
        ProxyView("cache", "127.0.0.1:7001", "127.0.0.1:6379", False, ()))), plain]
    registry = CollectorRegistry()
    registry.register(SnapshotCollector(lambda: shots[0]))
    found = samples(generate_latest(registry).decode())
    assert value(found, "muxtop_proxy_enabled", proxy="db") == 1
    assert value(found, "muxtop_proxy_enabled", proxy="cache") == 0
    assert value(found, "muxtop_proxy_toxic_legs", proxy="db", toxic="slow", type="latency",
                 stream="downstream") == 2
    shots.pop(0)  # no proxy: no proxy family at all
    assert not any(name.startswith("muxtop_proxy") for name, _ in
                   samples(generate_latest(registry).decode()))
