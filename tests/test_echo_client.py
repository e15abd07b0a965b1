"""muxtop's C echo load client: built on first use into the user's cache, it verifies every
echoed byte, says what went wrong in one line, and the bench falls back to the Python client
(saying why) when no C compiler exists."""

from __future__ import annotations

import json
import math
import os
import resource
import selectors
import socket
import struct
import subprocess
import sys
import threading
import tomllib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from echo_server import EchoServer

from muxtop.bench import compiler, loadgen
from muxtop.bench.compiler import BuildError

pytestmark = pytest.mark.timeout(60)

REPO = Path(__file__).resolve().parents[1]
FIGURES = ("rtt_per_s", "p50_us", "p99_us", "max_us", "completed", "client_cpu_pct",
           "server_cpu_pct")


@pytest.fixture(scope="module")
def client(tmp_path_factory) -> loadgen.Client:
    """The C client, built from the packaged source into a cache of this module's own."""
    with pytest.MonkeyPatch.context() as env:
        env.setenv("XDG_CACHE_HOME", str(tmp_path_factory.mktemp("cache")))
        env.delenv(loadgen.SOURCE_ENV, raising=False)
        try:
            built = loadgen.find_client("loadgen")
        except loadgen.ClientError as exc:
            pytest.skip(f"the C client cannot be built here: {exc}")
        yield built


def run(client: loadgen.Client, port: int, *flags: str, timeout: float = 30):
    """One client run: (exit status, its JSON line or None, stderr)."""
    proc = subprocess.run([*client.argv, "-p", str(port), *flags], capture_output=True,
                          text=True, timeout=timeout, check=False)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    return proc.returncode, (json.loads(lines[-1]) if lines else None), proc.stderr


def one_line(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("echo_client: ")
    return lines[0]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ------------------------------------------------------------------------ building


def test_builds_into_the_cache_once_per_source(client, tmp_path, monkeypatch):
    binary = Path(client.argv[0])
    assert binary.name.startswith("echo_client-") and binary.parent.name == "muxtop"
    assert binary.stat().st_mode & 0o777 == 0o700
    assert client.note == f"muxtop's C echo client (epoll), {binary}"
    built_at = binary.stat().st_mtime_ns
    monkeypatch.setenv("XDG_CACHE_HOME", str(binary.parent.parent))
    assert loadgen.find_client("loadgen") == client  # found, not rebuilt
    assert binary.stat().st_mtime_ns == built_at
    # Another source (an upgrade, or a yardstick) gets a binary of its own.
    other = tmp_path / "echo_client.c"
    other.write_bytes(resources_source().read_bytes() + b"\n/* upgraded */\n")
    monkeypatch.setenv(loadgen.SOURCE_ENV, str(other))
    upgraded = loadgen.find_client("loadgen")
    assert upgraded.argv != client.argv and Path(upgraded.argv[0]).parent == binary.parent
    assert f"${loadgen.SOURCE_ENV}" in upgraded.note
    assert not [p for p in binary.parent.iterdir() if p.name.startswith(".")]  # no leftovers


def test_a_built_client_runs_once_the_compiler_is_gone(client, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(Path(client.argv[0]).parent.parent))
    monkeypatch.setenv("CC", str(tmp_path / "no-such-cc"))
    monkeypatch.setenv("PATH", str(tmp_path))
    assert loadgen.find_client("auto", warn=pytest.fail) == client


def resources_source() -> Path:
    return REPO / "muxtop" / "bench" / loadgen.SOURCE_NAME


def test_the_source_ships_in_the_package():
    data = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert "*.c" in data["package-data"]["muxtop.bench"]
    assert resources_source().is_file()


def test_a_binary_others_could_have_planted_is_never_run(client, tmp_path, monkeypatch):
    shared = tmp_path / "cache" / "muxtop"
    shared.mkdir(parents=True)
    shared.chmod(0o777)
    planted = shared / compiler.binary_name(resources_source())
    marker = tmp_path / "planted-binary-ran"
    planted.write_text(f"#!/bin/sh\ntouch {marker}\n")
    planted.chmod(0o755)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setattr(compiler.tempfile, "tempdir", str(tmp_path))
    binary = compiler.build(resources_source())
    assert binary == planted and not marker.exists()
    assert shared.stat().st_mode & 0o777 == 0o755  # no longer writable by others
    assert subprocess.run([binary, "-h"], capture_output=True, text=True,
                          timeout=10).stdout.startswith("usage: echo_client")


@pytest.mark.skipif(os.getuid() != 0, reason="needs root to give a folder to another user")
def test_a_folder_of_another_user_is_passed_over(client, tmp_path, monkeypatch):
    theirs = tmp_path / "cache" / "muxtop"
    theirs.mkdir(parents=True)
    os.chown(theirs, 65534, 65534)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setattr(compiler.tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    binary = compiler.build(resources_source())
    assert binary.parent == tmp_path / "tmp" / f"muxtop-{os.getuid()}"
    assert list(theirs.iterdir()) == []


def test_two_builds_at_once_both_get_a_whole_binary(client, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    with ThreadPoolExecutor(2) as pool:
        built = list(pool.map(lambda _: compiler.build(resources_source()), range(2)))
    assert built[0] == built[1] and compiler.does_not_run(built[0]) is None
    assert [p.name for p in (tmp_path / "muxtop").iterdir()] == [built[0].name]


def test_a_failing_compiler_is_quoted(client, tmp_path, monkeypatch):
    broken = tmp_path / "broken.c"
    broken.write_text("#include <no_such_header.h>\nint main(void) { return 0; }\n")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    with pytest.raises(BuildError, match="no_such_header.h: No such file"):
        compiler.build(broken)
    assert not list((tmp_path / "muxtop").iterdir())  # the partial output is gone


def test_a_missing_override_is_an_error_not_a_fallback(monkeypatch, tmp_path):
    monkeypatch.setenv(loadgen.SOURCE_ENV, str(tmp_path / "gone.c"))
    with pytest.raises(loadgen.ClientError, match="gone.c: no such file"):
        loadgen.find_client("auto", warn=pytest.fail)


def test_without_a_compiler_the_bench_says_so_and_uses_python(tmp_path):
    empty = tmp_path / "bin"
    empty.mkdir()
    env = dict(os.environ, CC=str(tmp_path / "no-such-cc"), PATH=str(empty),
               XDG_CACHE_HOME=str(tmp_path / "cache"), TMPDIR=str(tmp_path))
    env.pop(loadgen.SOURCE_ENV, None)
    proc = subprocess.run(
        [sys.executable, "-m", "muxtop", "bench", "echo", "--servers", "selectors", "--conns",
         "3", "--duration", "0.3", "--runs", "1", "--busy-retries", "0", "--json"],
        capture_output=True, text=True, timeout=60, check=False, env=env)
    assert proc.returncode == 0, proc.stderr
    warning = [line for line in proc.stderr.splitlines() if "warning" in line]
    assert len(warning) == 1, proc.stderr
    assert "no C compiler found" in warning[0] and "no-such-cc" in warning[0]
    assert "apt install gcc" in warning[0] and "Python echo client" in warning[0]
    doc = json.loads(proc.stdout)
    assert doc["client"] == "python" and "no C compiler found" in doc["client_note"]
    assert doc["results"][0]["good_runs"] == 1


def test_auto_without_a_compiler_warns_once(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setattr(compiler.tempfile, "tempdir", str(tmp_path))
    monkeypatch.setenv("CC", str(tmp_path / "no-such-cc"))
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.delenv(loadgen.SOURCE_ENV, raising=False)
    said: list[str] = []
    chosen = loadgen.find_client("auto", warn=said.append)
    assert chosen.kind == "python" and len(said) == 1 and "no C compiler" in said[0]
    with pytest.raises(loadgen.ClientError, match="no C compiler"):
        loadgen.find_client("loadgen", warn=said.append)


# ------------------------------------------------------------------------ running


def test_a_verified_echo_has_positive_finite_figures(client):
    with EchoServer() as server:
        status, doc, err = run(client, server.address[1], "-c", "4", "-d", "0.5", "-w", "0.2",
                               "-P", str(os.getpid()))
    assert status == 0, err
    assert err == ""
    assert doc["conns"] == 4 and doc["size"] == 64 and doc["inflight"] == 1
    assert doc["mismatches"] == 0 and doc["errors"] == 0
    for key in FIGURES:
        value = doc[key]
        assert isinstance(value, int | float) and math.isfinite(value) and value > 0, key
    assert doc["p50_us"] <= doc["p99_us"] <= doc["max_us"]
    assert doc["rtt_per_s"] == pytest.approx(doc["completed"] / 0.5, abs=1)
    assert server.accepted == 4


def test_large_messages_in_flight_survive_partial_writes(client):
    # 4 x 256 KiB in flight on each connection is more than the socket buffers hold: sends
    # are cut short and resumed, reads arrive in pieces, and every byte is still checked.
    with EchoServer() as server:
        status, doc, err = run(client, server.address[1], "-c", "2", "-d", "0.5", "-w", "0",
                               "-s", str(256 * 1024), "-k", "4")
    assert status == 0, err
    assert doc["completed"] > 0 and doc["mismatches"] == 0 and doc["errors"] == 0


def test_a_corrupting_server_is_caught(client):
    def flip_first_byte(chunk: bytes) -> bytes:
        return bytes([chunk[0] ^ 0x01]) + chunk[1:]

    with EchoServer(transform=flip_first_byte) as server:
        status, doc, err = run(client, server.address[1], "-c", "2", "-d", "0.3", "-w", "0")
    assert status == 1
    assert doc["mismatches"] > 0 and doc["completed"] == 0
    line = one_line(err)
    assert "differed from what was sent" in line and "byte 0" in line


def test_echoing_bytes_never_sent_is_a_mismatch(client):
    with EchoServer(transform=lambda chunk: chunk + b"!") as server:
        status, doc, err = run(client, server.address[1], "-c", "1", "-d", "0.2", "-w", "0")
    assert status == 1 and doc["mismatches"] > 0
    assert "more than were sent" in one_line(err)


class ResettingServer:
    """Echoes each connection's first ``keep`` bytes, then resets it (SO_LINGER 0): a server
    that drops its clients mid-run."""

    def __init__(self, keep: int) -> None:
        self.keep = keep
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self._stop_r, self._stop_w = socket.socketpair()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def __enter__(self) -> ResettingServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop_w.send(b"x")
        self._thread.join(10)
        self._stop_w.close()

    def _serve(self) -> None:
        sel = selectors.DefaultSelector()
        sel.register(self.listener, selectors.EVENT_READ)
        sel.register(self._stop_r, selectors.EVENT_READ)
        echoed: dict[socket.socket, int] = {}
        try:
            while True:
                for key, _ in sel.select():
                    if key.fileobj is self._stop_r:
                        return
                    if key.fileobj is self.listener:
                        sock, _ = self.listener.accept()
                        echoed[sock] = 0
                        sel.register(sock, selectors.EVENT_READ)
                        continue
                    sock = key.fileobj
                    try:
                        data = sock.recv(65536)
                        sock.sendall(data)
                    except OSError:
                        data = b""
                    echoed[sock] += len(data)
                    if echoed[sock] >= self.keep or not data:
                        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                        struct.pack("ii", 1, 0))
                        sel.unregister(sock)
                        sock.close()
                        del echoed[sock]
        finally:
            for sock in echoed:
                sock.close()
            sel.close()
            self.listener.close()
            self._stop_r.close()


def test_reset_connections_are_counted_and_named(client):
    with ResettingServer(keep=64 * 20) as server:
        status, doc, err = run(client, server.port, "-c", "3", "-d", "2", "-w", "0")
    assert status == 1
    assert doc["errors"] == 3 and doc["mismatches"] == 0
    assert doc["secs"] < 1.5  # every connection gone: it stops without waiting the run out
    line = one_line(err)
    assert "3 of 3 connections were lost" in line
    assert "Connection reset by peer" in line or "the server closed it" in line


def test_a_refused_connect_is_one_line_and_no_result(client):
    status, doc, err = run(client, free_port(), "-c", "2", "-d", "0.2")
    assert status == 1 and doc is None
    assert "Connection refused" in one_line(err)


def test_a_low_fd_limit_is_explained(client):
    def small_limit() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (64, 64))

    proc = subprocess.run([*client.argv, "-p", str(free_port()), "-c", "100"],
                          capture_output=True, text=True, timeout=30, check=False,
                          preexec_fn=small_limit)
    assert proc.returncode == 1 and proc.stdout == ""
    line = one_line(proc.stderr)
    assert "100 connections need" in line and "ulimit -n" in line


def test_the_soft_fd_limit_is_raised_when_the_hard_one_allows(client):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 300:
        pytest.skip(f"the hard fd limit here is {hard}")

    def low_soft_limit() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (64, hard))

    with EchoServer() as server:
        proc = subprocess.run([*client.argv, "-p", str(server.address[1]), "-c", "100", "-d",
                               "0.2", "-w", "0"], capture_output=True, text=True, timeout=30,
                              check=False, preexec_fn=low_soft_limit)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["errors"] == 0


@pytest.mark.parametrize("flags, complaint", [
    ((), "-p PORT is required"),
    (("-p", "80", "-c", "0"), "-c 0: want a whole number from 1"),
    (("-p", "http"), "-p http: want a whole number"),
    (("-p", "80", "-d", "soon"), "-d soon: want seconds"),
    (("-p", "80", "-x"), "unknown flag -x"),
    (("-p", "80", "-s"), "-s needs a value"),
])
def test_bad_flags_exit_2_with_one_line(client, flags, complaint):
    proc = subprocess.run([*client.argv, *flags], capture_output=True, text=True, timeout=10,
                          check=False)
    assert proc.returncode == 2 and proc.stdout == ""
    assert complaint in one_line(proc.stderr)
