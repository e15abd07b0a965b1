"""`flood --clients` is bounded by what any fd limit could give the workers, and a flood of the
most clients allowed starts at once, keeps its memory, and stops on --duration and SIGTERM.

Each flood runs as a child under RLIMIT_AS (so a flood that grows without bound fails with
MemoryError instead of taking the machine) and a small RLIMIT_NOFILE (the clients past it fail
with EMFILE and are counted, as they should)."""

from __future__ import annotations

import json
import resource
import signal
import socket
import subprocess
import sys
import time

import pytest

from muxtop.flood.cli import FD_RESERVE, fd_ceiling

pytestmark = pytest.mark.timeout(60)

MEMORY = 1 << 30


def bounded() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY, MEMORY))
    resource.setrlimit(resource.RLIMIT_NOFILE, (128, 128))


@pytest.fixture
def listener():
    """A server that accepts into its backlog and never reads: clients connect and wait."""
    with socket.create_server(("127.0.0.1", 0)) as server:
        yield f"127.0.0.1:{server.getsockname()[1]}"


def flood(target: str, *argv: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "muxtop", "flood", target, *argv, "--json"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=bounded)


def summary_of(out: str) -> dict:
    return next(r for r in map(json.loads, out.splitlines()) if r["type"] == "summary")


def test_clients_past_what_any_fd_limit_allows_are_a_usage_error(listener):
    # Was: 4 GB of client ids before the first connect, past --duration, deaf to SIGTERM
    # (here, under RLIMIT_AS: a MemoryError traceback).
    most = fd_ceiling() - FD_RESERVE
    proc = flood(listener, "-c", "100000000", "--duration", "1")
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 2 and out == "" and "Traceback" not in err, err
    assert f"--clients 100,000,000 is over the {most:,} connections 1 worker" in err
    proc = flood(listener, "-c", str(2 * most + 1), "--workers", "2")
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 2 and f"{2 * most:,} connections 2 worker processes" in err


@pytest.mark.parametrize("workers", ["1", "2"])
def test_the_most_clients_allowed_stop_on_duration_and_on_sigterm(listener, workers):
    clients = str(int(workers) * (fd_ceiling() - FD_RESERVE))
    started = time.monotonic()
    proc = flood(listener, "-c", clients, "-w", workers, "--pattern", "idle", "--duration", "1")
    out, err = proc.communicate(timeout=30)
    assert "Traceback" not in err and "MemoryError" not in err, err
    assert summary_of(out)["stopped_by"] == "duration" and time.monotonic() - started < 15
    proc = flood(listener, "-c", clients, "-w", workers, "--pattern", "idle")
    try:
        assert json.loads(proc.stdout.readline())["type"] == "start"
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=15)  # was, at -c 100000000: still running
    finally:
        proc.kill()
        proc.wait()
    assert "Traceback" not in err, err
    assert summary_of(out)["stopped_by"] == "signal"
