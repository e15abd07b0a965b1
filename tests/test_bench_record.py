"""`muxtop bench echo`'s recorded variant and `muxtop bench replay`, in tiny configurations: the
figures have the right shape and are positive. No test here asserts a speed."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest

from muxtop.bench import cli, echo

pytestmark = pytest.mark.timeout(90)


def bench(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "muxtop", "bench", *args], capture_output=True,
                          text=True, timeout=80, check=False)


def positive(value) -> bool:
    return isinstance(value, int | float) and math.isfinite(value) and value > 0


def test_the_recorded_variant_brings_its_server_and_is_paired_with_it():
    chosen = [s.name for s in echo.choose_servers(["muxtop-epoll-level-recorded"])]
    assert chosen == ["muxtop-epoll-level", "muxtop-epoll-level-recorded"]
    plain = echo.Cell("muxtop-epoll-level", 100, [{"run": 1, "rtt_per_s": 100.0},
                                                  {"run": 2, "rtt_per_s": 200.0}])
    recorded = echo.Cell("muxtop-epoll-level-recorded", 100, [
        {"run": 1, "rtt_per_s": 96.0, "bytes_per_wait": 30.0, "bytes_per_conn_s": 900.0,
         "record_gaps": 0},
        {"run": 2, "rtt_per_s": 196.0, "bytes_per_wait": 32.0, "bytes_per_conn_s": 1100.0,
         "record_gaps": 1}])
    (row,) = [r for r in echo.summary([plain, recorded]) if r.get("vs_pair")]
    pair = row["vs_pair"]
    assert pair["server"] == "muxtop-epoll-level" and pair["rtt_per_s"] == 0.97
    assert pair["rtt_per_s_range"] == (0.96, 0.98) and pair["gaps"] == 1
    assert (pair["bytes_per_wait"], pair["bytes_per_conn_s"]) == (31.0, 1000.0)
    table = "\n".join(cli.recorded_table([row]))
    assert "0.970" in table and "1,000" in table and "6.0" in table  # MB a minute at 100


def test_echo_records_and_says_what_the_recording_holds():
    proc = bench("echo", "--conns", "10", "--duration", "0.5", "--runs", "1", "--servers",
                 "muxtop-epoll-level-recorded", "--busy-retries", "0", "--json")
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["servers"] == ["muxtop-epoll-level", "muxtop-epoll-level-recorded"]
    (row,) = [r for r in doc["results"] if r["server"].endswith("-recorded")]
    assert row["good_runs"] == 1, row["failures"]
    pair = row["vs_pair"]
    assert positive(pair["rtt_per_s"]) and positive(pair["bytes_per_wait"])
    assert positive(pair["bytes_per_conn_s"]) and pair["gaps"] == 0


def test_replay_bench_writes_opens_jumps_and_steps():
    proc = bench("replay", "--minutes", "0.05", "--conns", "20", "--waits", "500", "--steps",
                 "3", "--json")
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["bench"] == "replay" and doc["snapshots"] == 13 and doc["wait_calls"] == 1500
    for key in ("open_s", "read_all_s", "jump_s", "decode_one_snapshot_s",
                "step_forward_median_s", "step_forward_max_s", "step_back_median_s",
                "step_back_max_s"):
        assert positive(doc[key]), key
    assert doc["cold_open_and_jump_s"] is None or positive(doc["cold_open_and_jump_s"])
    text = bench("replay", "--minutes", "0.05", "--conns", "20", "--waits", "500", "--steps", "2")
    assert text.returncode == 0 and "jump to the middle" in text.stdout
