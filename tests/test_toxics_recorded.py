"""A proxy's toxics in recordings: recorded from a live proxy they replay (the panel shows
them, `replay --json` lists them); an older recording without them still replays; a crafted
one with bad toxic fields is a corrupt frame, told in one line."""

from __future__ import annotations

import json
import socket
import time

import pytest
from test_hostile_recordings import craft, one_corrupt_frame_line, plain_snapshot, replay
from ui_helpers import until

from muxtop.cli import replay as replay_cli
from muxtop.engine import Engine, EngineConfig
from muxtop.engine.source import EngineSource
from muxtop.proxy.registry import Registry
from muxtop.proxy.toxics import Toxic
from muxtop.record.reader import Recording
from muxtop.record.recorder import Recorder
from muxtop.replay.source import ReplaySource
from muxtop.snapshot import FLAG_TOXIC
from muxtop.ui.app import MuxtopApp
from muxtop.ui.widgets.toxics_panel import ToxicsPanel

pytestmark = pytest.mark.timeout(60)
SIZE = (160, 48)


def panel_text(app) -> str:
    return app.screen.query_one(ToxicsPanel).render().plain


@pytest.fixture
def recorded(tmp_path):
    """A recording of a proxy with a 100 ms downstream latency toxic and a client through it;
    yields (path, the fd of the leg the toxic applied to)."""
    echo = Engine(EngineConfig(port=0)).start()
    registry = Registry()
    proxy = Engine(EngineConfig(port=0, publish_interval=0.05, upstream=echo.address,
                                registry=registry)).start()
    path = tmp_path / "proxy.muxrec"
    try:
        registry.add_toxic("muxtop", Toxic("latency_downstream", "latency", "downstream", 1.0,
                                           {"latency": 100, "jitter": 5}))
        recorder = Recorder(EngineSource(proxy), str(path), ["test"]).start()
        with socket.create_connection(proxy.address, timeout=10) as client:
            client.sendall(b"ping")
            assert client.recv(4) == b"ping"
            leg, deadline = None, time.monotonic() + 10
            while time.monotonic() < deadline:  # until a Snapshot has the toxic on a leg
                s = proxy.snapshot()
                leg = next((v.fd for v in s.connections if FLAG_TOXIC in v.flags), None)
                if leg is not None and s.proxies and s.proxies[0].toxics[0].applied:
                    break
                time.sleep(0.02)
            assert leg is not None
            status = recorder.stop()
        assert status.error is None
    finally:
        proxy.stop()
        echo.stop()
    return str(path), leg


async def test_a_recorded_latency_toxic_replays_in_the_panel(recorded):
    path, leg = recorded
    with Recording.open(path) as rec:
        app = MuxtopApp(ReplaySource(rec), interval=None)
        async with app.run_test(size=SIZE) as pilot:
            await pilot.press("G")  # the last Snapshot: the toxic on the open pair
            await until(lambda: app.latest is not None and app.latest.proxies, pilot)
            await pilot.pause()
            assert not rec.problems
            text = panel_text(app)
            assert "downstream · server → client" in text, text
            assert "latency latency=100ms jitter=5ms" in text and f"fd {leg}" in text, text


def test_replay_json_lists_the_recorded_toxics(recorded, capsys):
    path, leg = recorded
    assert replay_cli.main([path, "--json"]) == 0
    last = json.loads(capsys.readouterr().out.splitlines()[-1])
    [proxy] = last["proxies"]
    assert proxy["name"] == "muxtop" and proxy["enabled"] is True
    [toxic] = proxy["toxics"]
    assert toxic == {"name": "latency_downstream", "type": "latency", "stream": "downstream",
                     "toxicity": 1.0, "attributes": {"latency": 100, "jitter": 5},
                     "legs": [leg], "applied": 1}


async def test_an_older_recording_without_proxies_replays(tmp_path, capsys):
    old = plain_snapshot()
    del old["proxies"]
    path = craft(tmp_path / "old.muxrec", [old])
    code, out, err = replay(capsys, path, "--json")
    assert code == 0 and err == "" and json.loads(out)["proxies"] == []
    with Recording.open(path) as rec:
        app = MuxtopApp(ReplaySource(rec), interval=None)
        async with app.run_test(size=SIZE) as pilot:
            await until(lambda: app.latest is not None, pilot)
            assert not rec.problems and app.latest.proxies == ()
            assert not app.screen.query_one(ToxicsPanel).has_class("-shown")


LATENCY = ["latency_downstream", "latency", "downstream", 1.0, [["latency", 100]], [9], 1]


def proxy(*toxics, name="muxtop", listen="127.0.0.1:8080", upstream="127.0.0.1:6379"):
    return [name, listen, upstream, True, list(toxics)]


def toxic(**changes):
    row = list(LATENCY)
    for i, key in enumerate(("name", "type", "stream", "toxicity", "attributes", "legs",
                             "applied")):
        if key in changes:
            row[i] = changes[key]
    return row


BAD_PROXIES = [
    ("proxies a dict", {"muxtop": {}}),
    ("a proxy too short", [["muxtop", "127.0.0.1:1"]]),
    ("enabled a string", [["muxtop", "a:1", "b:2", "yes", []]]),
    ("a name with an escape", [proxy(name="\x1b]0;pwned\x07")]),
    ("an empty name", [proxy(name="")]),
    ("a name of 201 characters", [proxy(name="x" * 201)]),
    ("an upstream of 301 characters", [proxy(upstream="h" * 301)]),
    ("a listen an int", [proxy(listen=8080)]),
    ("257 proxies", [proxy(name=f"p{i}") for i in range(257)]),
    ("65 toxics", [proxy(*[toxic(name=f"t{i}") for i in range(65)])]),
    ("a toxic a dict", [proxy({"name": "x"})]),
    ("a stream sideways", [proxy(toxic(stream="sideways"))]),
    ("a toxicity of 2", [proxy(toxic(toxicity=2.0))]),
    ("a toxicity a string", [proxy(toxic(toxicity="1"))]),
    ("a negative attribute", [proxy(toxic(attributes=[["latency", -1]]))]),
    ("an attribute a float", [proxy(toxic(attributes=[["latency", 1.5]]))]),
    ("an attribute past int64", [proxy(toxic(attributes=[["latency", 2**63]]))]),
    ("attributes a dict", [proxy(toxic(attributes={"latency": 100}))]),
    ("an attribute name with a newline", [proxy(toxic(attributes=[["a\nb", 1]]))]),
    ("17 attributes", [proxy(toxic(attributes=[[f"a{i}", 1] for i in range(17)]))]),
    ("a type with a control", [proxy(toxic(type="lat\x00ency"))]),
    ("legs not fds", [proxy(toxic(legs=["9"]))]),
    ("a negative leg", [proxy(toxic(legs=[-1]))]),
    ("more legs than applied", [proxy(toxic(legs=[9, 10], applied=1))]),
    ("65 legs", [proxy(toxic(legs=list(range(65)), applied=65))]),
]


@pytest.mark.parametrize("proxies", [p for _, p in BAD_PROXIES], ids=[n for n, _ in BAD_PROXIES])
def test_bad_toxic_fields_are_a_corrupt_frame_in_one_line(tmp_path, capsys, proxies):
    path = craft(tmp_path / "bad.muxrec", [plain_snapshot(), plain_snapshot(1, proxies=proxies)])
    for mode in (["--summary"], ["--summary", "--json"], ["--json"]):
        code, out, err = replay(capsys, path, *mode)
        one_corrupt_frame_line(code, err)


def test_good_toxic_fields_read(tmp_path, capsys):
    """The bounds above are bounds, not refusals of what a proxy holds: the same rows in range
    replay (a toxic of an older muxtop without legs and applied too)."""
    proxies = [proxy(toxic(), LATENCY[:5], name="x" * 200, upstream="h" * 300),
               proxy(*[toxic(name=f"t{i}") for i in range(64)], name="many")]
    path = craft(tmp_path / "good.muxrec", [plain_snapshot(), plain_snapshot(1, proxies=proxies)])
    code, out, err = replay(capsys, path, "--json")
    assert code == 0 and err == "", err
    assert [len(p["toxics"]) for p in json.loads(out.splitlines()[-1])["proxies"]] == [2, 64]
