"""`muxtop flood` against plain echo servers run by the tests (not muxtop's engine): every
pattern, a 1,000-client flood, a lying server, refusals, bad usage, the fd limit, workers, and
the FloodProcess API."""

from __future__ import annotations

import json
import os
import re
import resource
import socket
import subprocess
import sys
import time

import pytest
from echo_server import EchoServer
from echo_servers import AsyncioEchoServer

from muxtop.flood import cli
from muxtop.flood.latency import Latency
from muxtop.flood.payload import Payloads
from muxtop.flood.process import DEFAULT_FLOOD, SEED_FLOOD, FloodProcess, FloodSettings
from muxtop.flood.stats import FloodStats

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# ------------------------------------------------------------------------------ helpers


def flood_inline(capsys, *argv: str) -> tuple[int, dict, list[dict]]:
    """Run `muxtop flood ARGV --json` in this process: (exit status, summary, progress lines)."""
    code = cli.main([*argv, "--json"])
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    summaries = [rec for rec in lines if rec["type"] == "summary"]
    assert len(summaries) == 1, lines
    return code, summaries[0], [rec for rec in lines if rec["type"] == "progress"]


def flood_subprocess(*argv: str, timeout: float = 60, **popen) -> tuple[int, dict | None, str]:
    """Run `python -m muxtop flood ARGV --json` as a child: (status, summary, stderr)."""
    proc = subprocess.run([sys.executable, "-m", "muxtop", "flood", *argv, "--json"],
                          check=False, capture_output=True, text=True, timeout=timeout,
                          cwd=ROOT, **popen)
    summary = None
    for line in proc.stdout.splitlines():
        record = json.loads(line)
        if record["type"] == "summary":
            summary = record
    return proc.returncode, summary, proc.stderr


@pytest.fixture
def echo_server():
    with EchoServer() as server:
        yield server


def target(server) -> str:
    host, port = server.address
    return f"{host}:{port}"


# ------------------------------------------------------------------------------ patterns


PATTERN_CASES = {
    # pattern: (extra args, expected summary fields)
    "echo": (["--clients", "20", "--messages", "5"],
             {"connected": 20, "completed": 20, "messages_echoed": 100,
              "bytes_received": 100 * 64, "stopped_by": "complete"}),
    "idle": (["--clients", "20", "--duration", "0.4"],
             {"connected": 20, "completed": 20, "messages_sent": 0, "stopped_by": "duration"}),
    "slow-reader": (["--clients", "4", "--messages", "8", "--size", "4096"],
                    {"connected": 4, "completed": 4, "messages_echoed": 32,
                     "bytes_received": 32 * 4096, "stopped_by": "complete"}),
    "half-close": (["--clients", "20", "--messages", "5", "--size", "1000"],
                   {"connected": 20, "completed": 20, "messages_echoed": 100,
                    "stopped_by": "complete"}),
    "reset": (["--clients", "20", "--messages", "3"],
              {"connected": 20, "completed": 20, "resets": 20, "messages_sent": 60,
               "stopped_by": "complete"}),
    "burst": (["--clients", "30"],
              {"connected": 30, "completed": 30, "messages_sent": 0, "stopped_by": "complete"}),
}


@pytest.mark.timeout(20)
@pytest.mark.parametrize("pattern", list(PATTERN_CASES))
def test_each_pattern_against_a_plain_echo_server(capsys, echo_server, pattern):
    extra, expected = PATTERN_CASES[pattern]
    code, summary, _ = flood_inline(capsys, target(echo_server), "--pattern", pattern, *extra)
    assert code == 0, summary
    assert summary["ok"] and summary["failed"] == {} and summary["mismatches"] == 0
    assert summary["unfinished"] == 0 and summary["active"] == 0
    for key, value in expected.items():
        assert summary[key] == value, (key, summary)


@pytest.mark.timeout(20)
def test_burst_with_a_duration_keeps_reconnecting(capsys, echo_server):
    code, summary, _ = flood_inline(capsys, target(echo_server), "--pattern", "burst",
                                    "--clients", "5", "--duration", "0.5",
                                    "--connect-rate", "200")
    assert code == 0, summary
    # 200 connects/s for 0.5 s: about 100, far more than the 5 slots, and no more than allowed.
    assert 20 < summary["connected"] <= 130, summary
    assert summary["stopped_by"] == "duration"


@pytest.mark.timeout(20)
def test_rate_limited_echo_paces_messages(capsys, echo_server):
    code, summary, progress = flood_inline(capsys, target(echo_server), "--clients", "10",
                                           "--messages", "0", "--rate", "20",
                                           "--duration", "1.5")
    assert code == 0, summary
    assert progress and progress[0]["type"] == "progress"
    # 10 clients × 20/s × 1.5 s ≈ 300 (each on its own phase of the clock)
    assert 200 <= summary["messages_sent"] <= 340, summary
    assert summary["completed"] == 10 and summary["stopped_by"] == "duration"


@pytest.mark.timeout(20)
def test_slow_reader_outpaces_its_reading(capsys, echo_server):
    # Unlimited 64 KiB messages for a second, read 16 KiB at a time 4×/s: the writes stall on
    # full buffers (the server's backpressure) long before the reads catch up.
    code, summary, _ = flood_inline(capsys, target(echo_server), "--pattern", "slow-reader",
                                    "--clients", "2", "--messages", "0", "--size", "65536",
                                    "--duration", "1")
    assert code == 0, summary
    assert summary["bytes_received"] <= 2 * 5 * 16384
    assert summary["bytes_sent"] > 4 * summary["bytes_received"]


# ------------------------------------------------------------------------------ at scale


@pytest.mark.timeout(60)
def test_thousand_clients_against_asyncio_echo_server_match_every_byte():
    with AsyncioEchoServer() as server:
        host, port = server.address
        code, summary, err = flood_subprocess(f"{host}:{port}", "--clients", "1000",
                                              "--messages", "5", "--size", "100")
    assert summary is not None, err
    assert code == 0, (summary, err)
    assert summary["connected"] == 1000 and summary["completed"] == 1000
    assert summary["messages_echoed"] == 5000 and summary["mismatches"] == 0
    assert summary["bytes_received"] == 5000 * 100
    assert summary["rtt_ms"]["p50"] is not None


@pytest.mark.timeout(30)
def test_workers_split_the_clients_and_merge_their_stats(echo_server):
    code, summary, err = flood_subprocess(target(echo_server), "--clients", "60",
                                          "--messages", "4", "--workers", "3")
    assert code == 0, (summary, err)
    assert summary["workers"] == 3
    assert summary["connected"] == 60 and summary["messages_echoed"] == 240


# ------------------------------------------------------------------------------ faults


@pytest.mark.timeout(20)
def test_a_server_that_corrupts_bytes_yields_mismatches_and_status_1(capsys):
    def flip_last_byte(data: bytes) -> bytes:
        return data[:-1] + bytes([data[-1] ^ 0xFF])

    with EchoServer(transform=flip_last_byte) as server:
        code, summary, _ = flood_inline(capsys, target(server), "--clients", "10",
                                        "--messages", "3")
    assert code == 1
    assert summary["mismatches"] > 0 and not summary["ok"]


@pytest.mark.timeout(20)
def test_echo_from_another_connection_is_a_mismatch(capsys):
    # Same length, same shape, wrong client: only content derived from (client, seq) sees it.
    payloads = Payloads(64)

    def impostor(data: bytes) -> bytes:
        return b"".join(payloads.message(999_999, 0) for _ in range(len(data) // 64))

    with EchoServer(transform=impostor) as server:
        code, summary, _ = flood_inline(capsys, target(server), "--clients", "3",
                                        "--messages", "2")
    assert code == 1 and summary["mismatches"] == 6


@pytest.mark.timeout(20)
def test_connection_refused_is_counted_and_exits_1(capsys):
    with socket.socket() as probe:   # a port that was free a moment ago: nobody listens
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    code, summary, _ = flood_inline(capsys, f"127.0.0.1:{port}", "--clients", "7")
    assert code == 1
    assert summary["failed"] == {"ECONNREFUSED": 7} and summary["connected"] == 0


@pytest.mark.timeout(20)
def test_a_server_that_never_answers_times_out(capsys):
    with socket.create_server(("127.0.0.1", 0)) as silent:   # accepts (backlog), never reads
        host, port = silent.getsockname()[:2]
        code, summary, _ = flood_inline(capsys, f"{host}:{port}", "--clients", "3",
                                        "--timeout", "0.5")
    assert code == 1 and summary["failed"] == {"timeout": 3}


@pytest.mark.timeout(30)
def test_running_out_of_fds_is_counted_with_a_clear_message(echo_server):
    def low_fd_limit() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (64, 64))

    code, summary, err = flood_subprocess(target(echo_server), "--clients", "200",
                                          preexec_fn=low_fd_limit)
    assert "Traceback" not in err
    assert code == 1
    assert summary["failed"]["EMFILE"] > 0
    assert summary["connected"] + summary["failed"]["EMFILE"] == 200
    assert summary["mismatches"] == 0
    assert "out of file descriptors" in err and "RLIMIT_NOFILE" in err


# ------------------------------------------------------------------------------ usage


@pytest.mark.timeout(10)
@pytest.mark.parametrize("address", ["192.0.2.1:80", "8.8.8.8:53", "[2001:db8::1]:80"])
def test_non_loopback_targets_are_refused(capsys, address):
    assert cli.main([address]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.count("\n") == 1 and "--allow-remote" in err and "loopback" in err


@pytest.mark.timeout(10)
@pytest.mark.parametrize("argv", [
    ["127.0.0.1:80", "--clients", "0"],
    ["127.0.0.1:80", "--clients", "many"],
    ["127.0.0.1:80", "--messages", "-1"],
    ["127.0.0.1:80", "--size", "0"],
    ["127.0.0.1:80", "--rate", "-5"],
    ["127.0.0.1:80", "--connect-rate", "inf"],
    ["127.0.0.1:80", "--duration", "0"],
    ["127.0.0.1:80", "--pattern", "flood"],
    ["127.0.0.1:80", "--workers", "0"],
    [],
    ["127.0.0.1"],
    ["127.0.0.1:0"],
    ["127.0.0.1:http"],
    ["127.0.0.1:70000"],
    ["::1:80"],
    ["no-such-host.invalid:80"],
])
def test_bad_usage_exits_2_without_a_traceback(capsys, argv):
    assert cli.main(argv) == 2
    out, err = capsys.readouterr()
    assert "Traceback" not in err and err.strip() and out == ""


@pytest.mark.timeout(20)
def test_bad_flag_from_the_command_line_exits_2_without_a_traceback():
    proc = subprocess.run([sys.executable, "-m", "muxtop", "flood", "127.0.0.1:80",
                           "--clients", "-3"], check=False, capture_output=True, text=True,
                          timeout=15, cwd=ROOT)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr and "usage:" in proc.stderr


@pytest.mark.timeout(30)
def test_a_flood_whose_reader_goes_away_stops(echo_server):
    # A dashboard that dies (or `| head`) closes the pipe: the flood must not run on unwatched.
    proc = subprocess.Popen([sys.executable, "-m", "muxtop", "flood", target(echo_server),
                             "--clients", "5", "--messages", "0", "--rate", "10",
                             "--duration", "60", "--json"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        assert json.loads(proc.stdout.readline())["type"] == "start"
        proc.stdout.close()
        assert proc.wait(10) == 0
        assert "Traceback" not in proc.stderr.read()
    finally:
        proc.kill()
        proc.wait()
        proc.stderr.close()


# ------------------------------------------------------------------------------ FloodProcess


@pytest.mark.timeout(30)
def test_flood_process_reports_progress_ports_and_a_summary_on_stop(echo_server):
    host, port = echo_server.address
    settings = FloodSettings(host, port, clients=20, messages=0, rate=50.0)
    with FloodProcess(settings) as flood:
        assert flood.pid > 0 and flood.args is settings
        deadline = time.monotonic() + 15
        while flood.progress is None and time.monotonic() < deadline:
            time.sleep(0.05)
        progress = flood.progress
        assert progress is not None and progress["type"] == "progress", list(flood.errors)
        assert flood.running and flood.returncode is None and flood.summary is None
        ports = flood.local_ports()
        assert len(ports) == 20 and port not in ports
        summary = flood.stop()
    assert summary is flood.summary and summary["type"] == "summary"
    assert summary["stopped_by"] == "signal" and summary["ok"]
    assert summary["connected"] == 20 and summary["messages_echoed"] > 0
    assert not flood.running and flood.returncode == 0
    assert flood.local_ports() == set()


@pytest.mark.timeout(30)
def test_flood_process_runs_to_completion_by_itself(echo_server):
    flood = FloodProcess(SEED_FLOOD.at(*echo_server.address))
    assert flood.wait(20) == 0
    assert flood.summary["connected"] == 500 and flood.summary["messages_echoed"] == 1500
    assert flood.stop() is flood.summary   # stopping a finished flood is harmless


@pytest.mark.timeout(30)
def test_flood_process_shows_why_a_flood_was_refused():
    flood = FloodProcess(FloodSettings("192.0.2.1", 80))
    assert flood.wait(20) == 2
    assert flood.summary is None and any("loopback" in line for line in flood.errors)


def test_settings_turn_into_the_flags_of_the_same_names():
    assert (SEED_FLOOD.pattern, SEED_FLOOD.clients, SEED_FLOOD.messages) == ("echo", 500, 3)
    # The dashboard's f: the same clients, long enough to watch (~10 s).
    assert (DEFAULT_FLOOD.clients, DEFAULT_FLOOD.messages / DEFAULT_FLOOD.rate) == (500, 10)
    settings = FloodSettings("::1", 9000, pattern="slow-reader", clients=7, messages=0,
                             size=100, rate=2.5, connect_rate=10.0, duration=3.0)
    args = cli.build_parser().parse_args(settings.argv())
    assert args.target == "[::1]:9000"
    assert (args.pattern, args.clients, args.messages, args.size, args.rate,
            args.connect_rate, args.duration) == ("slow-reader", 7, 0, 100, 2.5, 10.0, 3.0)
    assert "--duration" not in DEFAULT_FLOOD.argv()


# ------------------------------------------------------------------------------ parts


def test_messages_depend_on_client_and_sequence():
    for size in (1, 5, 12, 13, 64, 5000):
        payloads = Payloads(size)
        seen = {payloads.message(c, s) for c in range(20) for s in range(20)}
        assert all(len(m) == size for m in seen)
        assert len(seen) == 400 or size < 4   # 1..3 bytes cannot all differ
        assert payloads.message(3, 4) == Payloads(size).message(3, 4)


def test_latency_percentiles_are_within_hdr_precision_and_merge_across_processes():
    samples = [0.0001 * 1.01 ** i for i in range(1000)]   # 0.1 ms .. ~2 s
    parts = [FloodStats(), FloodStats()]
    for i, value in enumerate(samples):
        parts[i % 2].latency.pending.append(value)
    # One part merged in this process, the other as a worker ships it: encoded intervals.
    parent = Latency()
    parent.merge(parts[0].latency)
    parts[1].latency.fold()
    parent.absorb(parts[1].latency.cut().encode(), parts[1].latency.max)
    merged = FloodStats.merged(parts, parent)
    assert merged.latency.count() == 1000
    whole = merged.latency.whole_run()
    for q in (50.0, 90.0, 99.0, 99.9):
        exact = samples[max(1, int(q / 100 * 1000 + 0.5)) - 1]   # HdrHistogram's rank
        # 3 significant figures: within 0.1 %, plus 0.025 % for grouping the raw samples.
        assert abs(whole.get_value_at_percentile(q) / 1e9 - exact) <= 0.00125 * exact
    assert merged.as_dict()["rtt_ms"]["max"] == round(max(samples) * 1000, 3)
    empty = FloodStats()
    assert empty.as_dict()["rtt_ms"] == {"p50": None, "p90": None, "p99": None,
                                         "p99.9": None, "p99.99": None, "max": None}


@pytest.mark.parametrize("seconds", [0.01546, 1.0023, 0.000123, 3.21])
def test_no_percentile_is_above_the_max(seconds):
    # Was: "p99.9":15.466,"p99.99":15.466,"max":15.46: a percentile is the top of its
    # HdrHistogram bucket, above every sample in it.
    latency = Latency()
    latency.pending.extend([seconds / 2] * 50 + [seconds] * 50)
    shown = latency.summary_ms()
    assert shown["max"] == round(seconds * 1000, 3)
    assert all(shown[name] <= shown["max"] for name in ("p50", "p90", "p99", "p99.9",
                                                        "p99.99")), shown
    assert shown["p99.99"] == shown["max"]


def test_the_guides_sample_table_has_no_percentile_above_its_max():
    with open(os.path.join(ROOT, "docs", "flood.md"), encoding="utf-8") as file:
        guide = file.read()
    rows = dict(re.findall(r"^latency (p[\d.]+|max) ms +(.+)$", guide, re.M))
    columns = list(zip(*([float(v.replace(",", "")) for v in row.split()]
                         for row in rows.values())))
    assert list(rows) == ["p50", "p90", "p99", "p99.9", "p99.99", "max"] and columns
    for column in columns:
        assert list(column) == sorted(column), column


@pytest.mark.timeout(20)
def test_flood_never_imports_textual():
    code = ("import sys, muxtop.flood.cli, muxtop.flood.process; "
            "sys.exit('textual' in sys.modules)")
    proc = subprocess.run([sys.executable, "-c", code], check=False, cwd=ROOT, timeout=15)
    assert proc.returncode == 0
