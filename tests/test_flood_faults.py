"""The fault patterns (slicer, stall, slow-close, latency, limit) against muxtop's engine on every
backend and trigger mode and against a plain asyncio echo server, each checking what it can;
and a server that hangs up on a slow peer, which slow-close catches and echo cannot."""

from __future__ import annotations

import json

import pytest
from conftest import MODE_IDS, MODES
from echo_servers import AsyncioEchoServer, ImpatientEchoServer

from muxtop.flood import cli

# pattern: (args, expected summary fields, further check of the summary)
FAULT_CASES = {
    # Six 64-byte messages a client in slices of 1..16 bytes: more writes than messages, and
    # every echo still whole and right (the server read them in pieces).
    "slicer": (["--clients", "6", "--messages", "4"],
               {"messages_echoed": 24, "bytes_received": 24 * 64},
               lambda s: s["slices"] >= 2 * 24),
    # 512 KiB a client, then 0.3 s of neither reading nor writing: the server must keep the
    # connection and every byte while its peer is stuck, and give them all back after.
    "stall": (["--clients", "4", "--messages", "2", "--size", "262144", "--hold", "0.3"],
              {"held": 4, "messages_echoed": 8, "bytes_received": 8 * 262144},
              lambda s: s["rtt_ms"]["p50"] >= 300),
    # Every echo back, then 0.3 s before the close: the server must not hang up first nor
    # send anything more.
    "slow-close": (["--clients", "6", "--messages", "3", "--hold", "0.3"],
                   {"held": 6, "messages_echoed": 18},
                   lambda s: s["elapsed_s"] >= 0.3),
    # Each message held back 30 ms ± 10 ms: every round trip carries at least 20 ms of it.
    "latency": (["--clients", "6", "--messages", "3", "--delay", "0.03", "--jitter", "0.01"],
                {"delayed": 18, "messages_echoed": 18},
                lambda s: s["rtt_ms"]["p50"] >= 20),
    # 250 bytes of 100-byte messages: two whole echoes, half of the third written, then the
    # close, exactly at the limit.
    "limit": (["--clients", "6", "--messages", "3", "--size", "100", "--limit-bytes", "250"],
              {"cut": 6, "bytes_sent": 6 * 250, "messages_echoed": 12},
              lambda s: s["messages_sent"] == 18),
}


def run_fault(capsys, host: str, port: int, pattern: str) -> dict:
    args, expected, check = FAULT_CASES[pattern]
    code = cli.main([f"{host}:{port}", "--pattern", pattern, *args, "--timeout", "5",
                     "--json"])
    summary = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert summary["type"] == "summary"
    assert code == 0, summary
    assert summary["failed"] == {} and summary["mismatches"] == 0, summary
    assert summary["completed"] == summary["clients"] and summary["unfinished"] == 0
    for key, value in expected.items():
        assert summary[key] == value, (key, summary)
    assert check(summary), summary
    return summary


@pytest.mark.timeout(20)
@pytest.mark.parametrize("pattern", list(FAULT_CASES))
@pytest.mark.parametrize(("backend", "trigger"), MODES, ids=MODE_IDS)
def test_each_fault_against_the_engine(capsys, make_engine, backend, trigger, pattern):
    engine = make_engine(backend=backend, trigger=trigger)
    run_fault(capsys, *engine.address, pattern)
    assert engine.running, engine.error


@pytest.mark.timeout(20)
@pytest.mark.parametrize("pattern", list(FAULT_CASES))
def test_each_fault_against_an_asyncio_echo_server(capsys, pattern):
    with AsyncioEchoServer() as server:
        run_fault(capsys, *server.address, pattern)


@pytest.mark.timeout(20)
def test_slow_close_catches_a_server_that_hangs_up_first(capsys):
    with ImpatientEchoServer(idle=0.1) as server:
        host, port = server.address
        echo = cli.main([f"{host}:{port}", "--clients", "3", "--messages", "3", "--json"])
        assert echo == 0, capsys.readouterr().out   # a quick echo never sees it
        capsys.readouterr()
        code = cli.main([f"{host}:{port}", "--pattern", "slow-close", "--clients", "3",
                         "--messages", "3", "--hold", "0.5", "--json"])
    summary = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert code == 1
    assert summary["failed"] == {"EOF": 3} and summary["messages_echoed"] == 9
    assert summary["held"] == 0


@pytest.mark.timeout(20)
@pytest.mark.parametrize("pattern", ["slicer", "slow-close", "latency", "limit"])
def test_echoed_faults_keep_an_open_loop_schedule(capsys, pattern):
    # 5 messages per client due 10 ms apart: every one sent on schedule (limit: up to its
    # cut), every echo that came back checked.
    args = ["--clients", "4", "--messages", "5", "--rate", "100", "--open-loop",
            "--timeout", "5", "--json"]
    extra = {"slow-close": ["--hold", "0.1"], "latency": ["--delay", "0.01"],
             "limit": ["--limit-bytes", "200"]}.get(pattern, [])
    with AsyncioEchoServer() as server:
        host, port = server.address
        code = cli.main([f"{host}:{port}", "--pattern", pattern, *args, *extra])
    summary = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert code == 0 and summary["mode"] == "open-loop", summary
    assert summary["mismatches"] == 0 and summary["completed"] == 4
    if pattern == "limit":   # 200 bytes: three whole 64-byte messages and 8 bytes of a fourth
        assert summary["bytes_sent"] == 4 * 200 and summary["messages_sent"] == 16
    else:
        assert summary["messages_echoed"] == 20
