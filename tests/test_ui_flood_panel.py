"""The flood panel's words for real `muxtop flood` children: why a failed flood failed (no stale
"starting…" under it), and each flood's latency percentiles and their per-second trend."""

from __future__ import annotations

import signal
import socket
import time
from collections import defaultdict

import pytest
from echo_server import EchoServer

from muxtop.flood.process import FloodProcess, FloodSettings
from muxtop.ui.widgets.flood_panel import describe, trend

pytestmark = pytest.mark.timeout(30)
PALETTE = defaultdict(str)   # describe() only styles with it


def panel_lines(flood: FloodProcess, width: int = 100) -> list[str]:
    return [text.plain for text in describe(flood, 1, width, PALETTE)]


def closed_port() -> int:
    with socket.socket() as probe:   # free a moment ago: nobody listens
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_a_flood_killed_before_its_first_report_says_so_and_not_starting():
    with socket.create_server(("127.0.0.1", 0)) as silent:   # accepts, never answers
        flood = FloodProcess(FloodSettings("127.0.0.1", silent.getsockname()[1], clients=2))
        try:
            deadline = time.monotonic() + 10
            while flood.start_info is None and time.monotonic() < deadline:
                time.sleep(0.02)
            assert flood.progress is None
            flood._popen.send_signal(signal.SIGKILL)
            flood.wait(10)
        finally:
            flood.stop()
    lines = panel_lines(flood)
    assert "failed: exit -9" in lines[0]
    assert not any("starting" in line for line in lines), lines
    assert lines[1:] == ["  killed by SIGKILL before its first report"], lines


def test_a_failed_flood_says_why_not_only_its_exit_status():
    flood = FloodProcess(FloodSettings("127.0.0.1", closed_port(), clients=3))
    try:
        assert flood.wait(20) == 1
    finally:
        flood.stop()
    lines = panel_lines(flood)
    assert "failed: exit 1" in lines[0]
    assert lines[-1] == "  3 connections failed (ECONNREFUSED 3)", lines
    assert flood.reason == "3 connections failed (ECONNREFUSED 3)"


def test_a_refused_flood_shows_the_usage_error():
    flood = FloodProcess(FloodSettings("127.0.0.1", closed_port(), pattern="stall",
                                       messages=0))
    try:
        assert flood.wait(20) == 2
    finally:
        flood.stop()
    deadline = time.monotonic() + 5   # the last stderr line may trail the exit a moment
    while "stall needs" not in (flood.reason or "") and time.monotonic() < deadline:
        time.sleep(0.02)
    lines = panel_lines(flood)
    assert lines[-1] == "  error: stall needs --messages 1 or more (it holds still after them)"
    assert len(lines) == 2, lines


def test_a_flood_shows_its_percentiles_and_their_trend():
    with EchoServer() as server:
        settings = FloodSettings(*server.address, clients=4, messages=0, rate=50.0,
                                 duration=2.6, open_loop=True)
        flood = FloodProcess(settings)
        try:
            assert flood.wait(20) == 0
        finally:
            flood.stop()
    assert len(flood.trend) >= 2 and all(i["count"] > 0 for i in flood.trend)
    lines = panel_lines(flood)
    assert "open loop" in lines[3]
    assert lines[4].startswith("p50 ") and " · p99 " in lines[4] and " · p99.9 " in lines[4]
    prefix, _, rest = lines[5].partition(" ")
    assert prefix == "p99/s" and any(block in rest for block in "▁▂▃▄▅▆▇█")
    assert flood.reason is None and len(lines) == 6


def test_the_trend_is_log_scaled_so_a_stall_stands_out_and_the_rest_still_shows():
    # 0.05 ms seconds, a 1 s stall, a 5 ms second, and a second without any echo.
    bars = trend([0.05, 0.05, 1000.0, 5.0, None], 10)
    assert bars[2] == "█" and bars[4] == " "
    assert bars[0] == bars[1] and "▁" <= bars[0] < bars[3] < "█"
    steady = trend([0.05] * 30, 8)   # newest last, cut to the width; low, not a wall
    assert len(steady) == 8 and len(set(steady)) == 1 and steady[0] < "▄"
    assert trend([], 8) == ""


def test_a_finished_flood_reads_whole_in_the_side_column_at_80_columns():
    """At 80x24 the floods panel is 26 cells wide: every line says what it is for whole
    (the count echoed back, bad 0, p99), shorter, instead of cut at the width."""
    from types import SimpleNamespace

    summary = {"elapsed_s": 10.0, "connected": 500, "failed_total": 0, "active": 0,
               "messages_sent": 10_000, "messages_echoed": 10_000, "mismatches": 0,
               "bytes_sent": 640_000, "bytes_received": 640_000, "stopped_by": None,
               "rtt_ms": {"p50": 0.065, "p99": 6.37, "p99.9": 9.5}}
    flood = SimpleNamespace(
        args=FloodSettings("127.0.0.1", 1, clients=500, messages=20, rate=2.0), summary=summary,
        progress=summary, returncode=0, running=False, reason=None, errors=[],
        trend=[{"p99": 2.9, "count": 5}] * 12)
    wide = [text.plain for text in describe(flood, 2, 100, PALETTE)]
    narrow = [text.plain for text in describe(flood, 2, 26, PALETTE)]
    assert not any("…" in line for line in wide), wide
    assert not any("…" in line for line in narrow), narrow
    assert all(len(line) <= 26 for line in narrow), narrow
    assert narrow[0].startswith("#2 echo 500×20") and narrow[0].endswith("done 10.0s")
    text = "\n".join(narrow)
    for shown in ("failed 0", "10,000/10,000", "bad 0", "p99 6.37ms"):
        assert shown in text, narrow
    flood.returncode, flood.running = None, True  # while it runs: its number and time whole
    head = describe(flood, 2, 26, PALETTE)[0].plain
    assert head.split() == ["#2", "echo", "500×20", "run", "10.0s"]
    assert describe(flood, 2, 40, PALETTE)[0].plain.startswith("#2 echo 500 × 20 msgs ")


def test_the_panels_first_line_reads_whole_at_80_columns():
    from muxtop.ui.widgets.flood_panel import title

    assert title(1, 40) == "floods · 1 running · x stops"
    assert title(1, 26) == "1 running · x stops"  # was 'floods · 1 running · x st…'
    assert title(0, 26) == "floods · 0 running"


@pytest.mark.parametrize("width", [26, 36, 44, 60, 100])
def test_a_flood_keeps_its_name_from_running_to_stopped(width):
    """The idle herd read '#1 idle 1,000 × no limit' while it ran and '#1 idle 1,000×∞' once
    stopped (the longer state took the room): a flood's name is chosen for the longest state
    it can show, so it stays the same for its life."""
    from muxtop.flood.process import IDLE_HERD
    from muxtop.ui.widgets.flood_panel import headline

    names = {headline(IDLE_HERD, 1, state, width)[0].rstrip()
             for state in ("running 3.0s", "stopped 123.4s", "done 12.3s", "failed: exit 1 0.3s")}
    assert len(names) == 1 and "#1 idle 1,000" in names.pop(), names
