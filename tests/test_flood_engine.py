"""`muxtop flood` against muxtop's own engine: every pattern on every backend and trigger mode,
and the slow reader driving the engine's backpressure."""

from __future__ import annotations

import json
import time

import pytest
from conftest import MODE_IDS, MODES

from muxtop.flood import cli
from muxtop.flood.process import FloodProcess, FloodSettings
from muxtop.snapshot import KIND_CONN, READ_PAUSED

# pattern: (extra args, expected summary fields). Small counts: the select backend shares
# this process's fds (under FD_SETSIZE) with the flood's own sockets.
PATTERN_CASES = {
    "echo": (["--clients", "20", "--messages", "5"],
             {"connected": 20, "completed": 20, "messages_echoed": 100}),
    "idle": (["--clients", "20", "--duration", "0.3"],
             {"connected": 20, "completed": 20, "messages_sent": 0}),
    "slow-reader": (["--clients", "4", "--messages", "8", "--size", "4096"],
                    {"connected": 4, "completed": 4, "messages_echoed": 32}),
    "half-close": (["--clients", "20", "--messages", "5", "--size", "1000"],
                   {"connected": 20, "completed": 20, "messages_echoed": 100}),
    "reset": (["--clients", "20", "--messages", "3"],
              {"connected": 20, "completed": 20, "resets": 20}),
    "burst": (["--clients", "30"], {"connected": 30, "completed": 30}),
}


@pytest.mark.timeout(20)
@pytest.mark.parametrize("pattern", list(PATTERN_CASES))
@pytest.mark.parametrize(("backend", "trigger"), MODES, ids=MODE_IDS)
def test_each_pattern_against_the_engine(capsys, make_engine, backend, trigger, pattern):
    engine = make_engine(backend=backend, trigger=trigger)
    host, port = engine.address
    extra, expected = PATTERN_CASES[pattern]
    code = cli.main([f"{host}:{port}", "--pattern", pattern, *extra, "--timeout", "5", "--json"])
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    summary = lines[-1]
    assert summary["type"] == "summary"
    assert code == 0, summary
    assert summary["failed"] == {} and summary["mismatches"] == 0 and summary["unfinished"] == 0
    for key, value in expected.items():
        assert summary[key] == value, (key, summary)
    assert engine.running, engine.error


@pytest.mark.timeout(30)
@pytest.mark.parametrize(("backend", "trigger"), [("epoll", "level"), ("epoll", "edge")])
def test_slow_reader_drives_the_engine_into_backpressure(make_engine, backend, trigger):
    engine = make_engine(backend=backend, trigger=trigger)
    host, port = engine.address
    settings = FloodSettings(host, port, pattern="slow-reader", clients=3, messages=0,
                             size=65536)
    with FloodProcess(settings) as flood:
        deadline = time.monotonic() + 15
        paused = []
        while not paused and time.monotonic() < deadline:
            time.sleep(0.1)
            conns = [c for c in engine.snapshot().connections if c.kind == KIND_CONN]
            paused = [c for c in conns if c.state == READ_PAUSED or "B" in c.flags]
        assert paused, "no connection reached the high-water mark"
        summary = flood.stop()
    assert summary is not None, list(flood.errors)
    assert summary["mismatches"] == 0 and summary["failed"] == {}, summary
    assert flood.returncode == 0
    assert engine.running, engine.error
