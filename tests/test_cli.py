"""The command line: headless status lines, clean errors for bad input, never a traceback."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys

import pytest

from muxtop.cli import SUBCOMMANDS

pytestmark = pytest.mark.timeout(60)


def muxtop(*args: str, timeout: float = 30) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "muxtop", *args], capture_output=True,
                          text=True, timeout=timeout)


def test_headless_json_lines():
    result = muxtop("--headless", "--json", "--port", "0", "--duration", "2.5")
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(lines) >= 2
    for key in ("backend", "trigger", "connections", "waits_per_s", "events_per_s", "bytes_in",
                "bytes_out", "diagnoses", "limits", "closed_by_limit"):
        assert key in lines[0]
    assert lines[0]["backend"] == "epoll" and lines[0]["trigger"] == "level"
    # The protections are off by default: each is None, and nothing was closed by one.
    assert lines[0]["limits"] == {"idle_timeout": None, "header_timeout": None,
                                  "max_out_buffer": None}
    assert set(lines[0]["closed_by_limit"].values()) == {0}


def test_headless_json_shows_the_limits_and_their_closes():
    proc = subprocess.Popen([sys.executable, "-m", "muxtop", "--headless", "--json", "--port",
                             "0", "--idle-timeout", "0.3", "--max-out-buffer", "100000"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        first = json.loads(proc.stdout.readline())
        assert first["limits"] == {"idle_timeout": 0.3, "header_timeout": None,
                                   "max_out_buffer": 100000}
        host, port = first["listen"].rsplit(":", 1)
        with socket.create_connection((host, int(port)), timeout=5) as idle:
            assert idle.recv(1) == b""  # closed after 0.3 s of silence
        line = first
        while line["closed_by_limit"]["idle_timeout"] != 1:
            line = json.loads(proc.stdout.readline())
    finally:
        proc.terminate()
        proc.wait(10)
        proc.stdout.close()
        proc.stderr.close()


def test_closing_stdout_ends_headless_quietly():
    """`muxtop --headless | head -c1`: exit 0 and no BrokenPipeError traceback."""
    proc = subprocess.Popen([sys.executable, "-m", "muxtop", "--headless", "--port", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert proc.stdout.read(1) == b"m"
        proc.stdout.close()  # the reader leaves; the next status line meets a closed pipe
        assert proc.wait(10) == 0
        assert proc.stderr.read() == b""
    finally:
        proc.kill()
        proc.wait()
        proc.stderr.close()


def test_a_host_other_machines_reach_needs_allow_remote():
    refused = muxtop("--headless", "--port", "0", "--duration", "0", "--host", "0.0.0.0")
    assert refused.returncode == 1
    assert refused.stderr.count("\n") == 1 and "--allow-remote" in refused.stderr
    allowed = muxtop("--headless", "--port", "0", "--duration", "0", "--host", "0.0.0.0",
                     "--allow-remote")
    assert allowed.returncode == 0
    (warning,) = allowed.stderr.splitlines()
    assert warning.startswith("muxtop: warning: listening on 0.0.0.0")
    quiet = muxtop("--headless", "--port", "0", "--duration", "0", "--host", "localhost")
    assert (quiet.returncode, quiet.stderr) == (0, "")


def test_max_conns_0_holds_every_client_in_the_backlog():
    result = muxtop("--headless", "--port", "0", "--duration", "0", "--max-conns", "0")
    assert (result.returncode, result.stderr) == (0, "")


@pytest.mark.parametrize("args", [["bench", "wait", "--fds", "10", "--backends", "poll"],
                                  ["lesson"], ["--help"]], ids=["bench-wait", "lesson", "help"])
def test_a_reader_that_leaves_ends_any_command_quietly(args):
    # `| head -c0`: the reader is gone before the first write, so every write fails (EPIPE).
    gone, stdout = os.pipe()
    os.close(gone)
    try:
        result = subprocess.run([sys.executable, "-m", "muxtop", *args], stdout=stdout,
                                stderr=subprocess.PIPE, timeout=30)
    finally:
        os.close(stdout)
    assert (result.returncode, result.stderr) == (0, b"")


def test_help_names_every_subcommand():
    result = muxtop("--help")
    assert result.returncode == 0
    said = " ".join(result.stdout.split())
    for name in SUBCOMMANDS:
        assert f"muxtop {name}" in said, name


@pytest.mark.parametrize(("word", "said"), [
    ("lessons", "'lessons' is not a muxtop command; did you mean 'muxtop lesson'?"),
    ("flod", "did you mean 'muxtop flood'?"),
    ("foo", "'foo' is not a muxtop command (the commands: flood, bench, attach, web, replay, "
            "lesson; muxtop --help says more)"),
])
def test_a_mistyped_subcommand_names_the_nearest_one(word, said):
    # Was: the server's 10-line usage and "unrecognized arguments: lessons".
    result = muxtop(word, "--port", "0")
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.splitlines() == [result.stderr.strip()] and said in result.stderr


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP], ids=["sigterm", "sighup"])
def test_headless_text_and_sigterm_or_sighup_stop_cleanly(sig):
    proc = subprocess.Popen([sys.executable, "-m", "muxtop", "--headless", "--port", "0",
                             "--backend", "poll"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        first = proc.stdout.readline()
        assert "echo server on 127.0.0.1:" in first and "poll/level" in first
        assert "poll/level" in proc.stdout.readline()
        proc.send_signal(sig)
        assert proc.wait(10) == 0
        assert proc.stderr.read() == ""
    finally:
        proc.kill()
        proc.wait()
        proc.stdout.close()
        proc.stderr.close()


def test_port_in_use_is_one_clear_line():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = muxtop("--headless", "--port", str(port))
    assert result.returncode == 1
    assert result.stderr.strip() == f"muxtop: port {port} is already in use on 127.0.0.1"


@pytest.mark.parametrize("args", [
    ["--port", "99999"], ["--port", "abc"], ["--backend", "kqueue"], ["--trigger", "sideways"],
    ["--max-conns", "-1"], ["--duration", "-1"], ["--protocol", "smtp"], ["--json"],
    ["--lab", "nonsense"], ["--header-timeout", "5"], ["--host", "0.0.0.0", "--allow-remote",
                                                     "--idle-timeout", "0"],
])
def test_bad_flags_are_usage_errors(args):
    result = muxtop(*args)
    assert result.returncode == 2
    assert "usage:" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize(("args", "message"), [
    (["--host", "nosuch.invalid"], "cannot use host 'nosuch.invalid'"),
    (["--host", "a" * 300], "not a valid host name"),
    (["--host", "192.0.2.1", "--allow-remote"], "192.0.2.1 is not an address of this machine"),
    (["--backend", "select", "--trigger", "edge"], "select has no edge trigger mode"),
])
def test_bad_values_are_one_line_errors(args, message):
    result = muxtop("--headless", "--port", "0", *args)
    assert result.returncode == 1
    assert message in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def _headless_on_a_pipe(*extra: str) -> tuple[subprocess.Popen, int, int, tuple[str, int]]:
    """muxtop --headless --json with its stdout a pipe this test reads only the first line
    of; the pipe's two ends (the test keeps the write end too) and the listen address."""
    read_end, write_end = os.pipe()
    proc = subprocess.Popen([sys.executable, "-m", "muxtop", "--headless", "--json", "--port",
                             "0", *extra], stdout=write_end, stderr=subprocess.PIPE)
    first = b""
    while not first.endswith(b"\n"):
        first += os.read(read_end, 1)
    host, port = json.loads(first)["listen"].rsplit(":", 1)
    return proc, read_end, write_end, (host, int(port))


def _end(proc: subprocess.Popen, *fds: int) -> None:
    proc.terminate()
    try:
        assert proc.wait(10) == 0
    finally:
        for fd in fds:
            os.close(fd)
        proc.stderr.close()


def test_headless_serves_on_one_thread():
    """The engine's loop runs on the main thread: the process has one thread, as the servers
    `bench echo` and `bench proxy` measure it against (single-threaded paths in the kernel
    and the C library)."""
    proc, read_end, write_end, _ = _headless_on_a_pipe()
    try:
        assert sorted(os.listdir(f"/proc/{proc.pid}/task")) == [str(proc.pid)]
    finally:
        _end(proc, read_end, write_end)


def test_a_reader_that_stops_reading_does_not_stop_the_server():
    """Status lines go out on the serving thread: with the pipe full they are skipped, and
    clients are still served (a write would block the loop at the next line, within 1 s)."""
    import time

    proc, read_end, write_end, address = _headless_on_a_pipe()
    try:
        # A second open of the same pipe, non-blocking on its own (O_NONBLOCK on the first
        # would be the server's stdout's too).
        filler = os.open(f"/proc/self/fd/{write_end}", os.O_WRONLY | os.O_NONBLOCK)
        try:
            for chunk in (4096, 256, 1):  # the reader stops reading: no byte fits any more
                try:
                    while True:
                        os.write(filler, b"\0" * chunk)
                except BlockingIOError:
                    pass
        finally:
            os.close(filler)
        until = time.monotonic() + 2.5  # past the next two status lines
        rounds = 0
        while time.monotonic() < until:
            with socket.create_connection(address, timeout=2) as client:
                client.sendall(b"ping")
                assert client.recv(4) == b"ping"
            rounds += 1
        assert rounds > 1
    finally:
        _end(proc, read_end, write_end)
