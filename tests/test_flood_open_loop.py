"""Open and closed loop: the coordinated-omission difference through a SIGSTOPped server, the
rate an open loop keeps, the mode every summary states, per-second latency in progress lines,
the HdrHistogram interval log read back with the hdrhistogram package's own reader, and the
alarm that wakes the loop when a message is due."""

from __future__ import annotations

import json
import select
import subprocess
import sys
import time

import pytest
from echo_server import EchoServer
from hdrh.log import HistogramLogReader

from muxtop.bench.flood import StallPlan, _ms, run_stall, table
from muxtop.flood import cli
from muxtop.flood.alarm import Alarm
from muxtop.flood.latency import new_histogram


def interval_log(path) -> list:
    """Every interval histogram in an interval log, through hdrh's HistogramLogReader."""
    reader = HistogramLogReader(str(path), new_histogram())
    intervals = []
    try:
        while (histogram := reader.get_next_interval_histogram()) is not None:
            intervals.append(histogram)
    finally:
        reader.close()
    return intervals


def flood_json(capsys, *argv: str) -> tuple[int, list[dict]]:
    code = cli.main([*argv, "--json"])
    return code, [json.loads(line) for line in capsys.readouterr().out.splitlines()]


@pytest.fixture
def echo_server():
    with EchoServer() as server:
        yield server


@pytest.mark.timeout(40)
def test_a_stalled_server_shows_in_open_loop_p99_and_hides_in_closed_loop(tmp_path):
    # 20 clients × 100 msg/s for 5 s, the server SIGSTOPped for 1 s after 2 s, both floods at
    # once. Open loop: the ~2,000 messages due in the stall are all late, 0..1 s, a fifth of
    # the samples, so p99 is near a second. Closed loop: each client has one message stuck,
    # 20 samples of ~8,000, so the stall reaches p99.9 but not p99.
    log = tmp_path / "open.hlog"
    plan = StallPlan(clients=20, rate=100, duration=5, stall_at=2, stall=1, hdr_log=str(log))
    result = run_stall(plan)
    assert 0.95 <= result.stalled_for <= 1.5 and 1.5 <= result.stalled_at <= 3
    open_loop, closed = result.summaries["open-loop"], result.summaries["closed-loop"]
    assert (open_loop["mode"], closed["mode"]) == ("open-loop", "closed-loop")
    for summary in (open_loop, closed):
        assert summary["ok"] and summary["mismatches"] == 0 and summary["failed"] == {}
        assert summary["rtt_ms"]["max"] >= 900   # both saw the stall...
    assert open_loop["rtt_ms"]["p99"] >= 500     # ...the open loop counts it...
    assert closed["rtt_ms"]["p99"] <= open_loop["rtt_ms"]["p99"] / 5   # ...the closed hides it
    assert closed["rtt_ms"]["p99.9"] >= 500      # (one slow sample per client, not a second's)
    # The closed loop simply did not send while it waited: the omitted samples.
    assert open_loop["messages_sent"] - closed["messages_sent"] >= 0.5 * 20 * 100
    # The open loop kept its schedule through the stall: every message due was sent.
    assert open_loop["messages_sent"] >= 0.95 * 20 * 100 * 5
    # The bench's table: both floods' percentiles side by side, as the summaries have them.
    lines = table(result).splitlines()
    assert any(line.split() == ["open-loop", "closed-loop"] for line in lines)
    p99_row = next(line for line in lines if line.startswith("latency p99 ms"))
    # As the table rounds them (3 decimals under 10 ms, 1 above).
    assert p99_row[22:].split() == [_ms(open_loop["rtt_ms"]["p99"]), _ms(closed["rtt_ms"]["p99"])]
    intervals = interval_log(log)
    assert sum(h.get_total_count() for h in intervals) == open_loop["latency_samples"]
    assert max(h.get_max_value() for h in intervals) >= 0.9e9   # ns
    starts = [h.get_start_time_stamp() for h in intervals]
    assert starts == sorted(starts) and len(intervals) >= 5


@pytest.mark.timeout(20)
def test_open_loop_keeps_its_rate_and_every_line_says_which_mode_ran(capsys, echo_server):
    host, port = echo_server.address
    code, lines = flood_json(capsys, f"{host}:{port}", "--clients", "4", "--messages", "0",
                             "--total-rate", "200", "--open-loop", "--duration", "1.5")
    assert code == 0
    start, *progress, summary = lines
    for record in (start, summary):
        assert record["mode"] == "open-loop" and record["rate"] == 50.0
        assert record["total_rate"] == 200.0
    # 200/s for 1.5 s, on schedule (each client on its own phase of the clock)
    assert 270 <= summary["messages_sent"] <= 305, summary
    assert summary["messages_echoed"] >= summary["messages_sent"] - 4
    # Each progress line carries that second's percentiles; they add up to the run's samples.
    assert progress and all(p["type"] == "progress" for p in progress)
    for record in progress:
        assert set(record["interval_ms"]) == {"count", "p50", "p90", "p99", "p99.9",
                                              "p99.99", "max"}
        assert record["interval_ms"]["count"] > 0
    assert sum(p["interval_ms"]["count"] for p in progress) <= summary["latency_samples"]
    code, lines = flood_json(capsys, f"{host}:{port}", "--clients", "2", "--messages", "2")
    assert code == 0 and lines[-1]["mode"] == "closed-loop" and lines[-1]["rate"] == 0


@pytest.mark.timeout(20)
def test_the_human_summary_names_the_mode_and_five_percentiles(capsys, echo_server):
    host, port = echo_server.address
    assert cli.main([f"{host}:{port}", "--clients", "2", "--messages", "3"]) == 0
    closed = capsys.readouterr().out
    assert "closed loop (the default)" in closed and "latency counts from each send" in closed
    assert cli.main([f"{host}:{port}", "--clients", "2", "--messages", "3", "--rate", "100",
                     "--open-loop"]) == 0
    opened = capsys.readouterr().out
    assert "open loop: 100 msg/s per client" in opened and "when each message was due" in opened
    latency = next(line for line in opened.splitlines() if line.strip().startswith("latency"))
    for name in ("p50", "p90", "p99", "p99.9", "p99.99", "max"):
        assert f" {name} " in latency, latency
    assert "(6 samples)" in latency


@pytest.mark.timeout(30)
def test_the_interval_log_of_a_split_flood_adds_up(tmp_path, echo_server):
    # Two workers: each ships its intervals encoded, the parent adds them up and logs them.
    host, port = echo_server.address
    log = tmp_path / "split.hlog"
    proc = subprocess.run([sys.executable, "-m", "muxtop", "flood", f"{host}:{port}",
                           "--clients", "6", "--messages", "0", "--rate", "40", "--duration",
                           "1.5", "--workers", "2", "--hdr-log", str(log), "--json"],
                          capture_output=True, text=True, timeout=25, check=False)
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout.splitlines()[-1])
    assert summary["workers"] == 2 and summary["latency_samples"] == summary["messages_echoed"]
    text = log.read_text()
    assert "#[Histogram log format version 1.2]" in text and "#[StartTime: " in text
    intervals = interval_log(log)
    assert len(intervals) >= 2, text
    assert sum(h.get_total_count() for h in intervals) == summary["latency_samples"]


@pytest.mark.timeout(10)
def test_the_alarm_wakes_an_epoll_wait_at_the_time_it_was_set():
    # The open loop's wakeups: a timerfd in the epoll set, not epoll's millisecond timeout.
    alarm = Alarm()
    ep = select.epoll()
    try:
        ep.register(alarm.fd, select.EPOLLIN)
        assert ep.poll(0) == []
        when = time.perf_counter() + 0.05
        alarm.at(when)
        assert ep.poll(5) == [(alarm.fd, select.EPOLLIN)]   # long before the 5 s timeout
        assert time.perf_counter() >= when
        alarm.clear()
        assert ep.poll(0) == []
        alarm.at(time.perf_counter() - 1)   # already past: readable at once
        assert ep.poll(1) == [(alarm.fd, select.EPOLLIN)]
    finally:
        ep.close()
        alarm.close()
