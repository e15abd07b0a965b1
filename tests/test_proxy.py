"""The proxy (`muxtop --upstream HOST:PORT`): bytes both ways on every backend and trigger,
half-close and reset crossing the pair, backpressure bounding memory, upstream failures as
notes and findings, and real traffic: redis behind it, a verifying flood while it switches."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import shutil
import socket
import struct
import subprocess
import sys
import threading
import time

import pytest
from conftest import READINESS_IDS, READINESS_MODES

from muxtop.engine import Switch
from muxtop.findings import UPSTREAM_FAILED, UPSTREAM_NOT_READING
from muxtop.flood.process import FloodProcess, FloodSettings
from muxtop.snapshot import CLOSED, KIND_CONN, KIND_LISTENER, READ_PAUSED

pytestmark = pytest.mark.timeout(60)


def until(predicate, timeout: float = 10.0, what: str = ""):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or predicate}")
        time.sleep(0.02)


def legs(engine):
    return [v for v in engine.snapshot().connections if v.kind == KIND_CONN]


def recv_exactly(sock: socket.socket, n: int) -> bytes:
    got = bytearray()
    while len(got) < n:
        chunk = sock.recv(min(1 << 20, n - len(got)))
        if not chunk:
            break
        got += chunk
    return bytes(got)


class Upstream:
    """A one-connection upstream the test drives by hand."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(10)
        self.address = self.listener.getsockname()

    def accept(self) -> socket.socket:
        conn, _ = self.listener.accept()
        conn.settimeout(10)
        return conn

    def close(self) -> None:
        self.listener.close()


@pytest.fixture
def upstream():
    server = Upstream()
    yield server
    server.close()


@pytest.mark.parametrize(("backend", "trigger"), READINESS_MODES, ids=READINESS_IDS)
def test_bytes_cross_both_ways_and_the_legs_show_as_a_pair(make_engine, backend, trigger):
    echo = make_engine()
    proxy = make_engine(backend=backend, trigger=trigger, upstream=echo.address)
    with socket.create_connection(proxy.address, timeout=10) as client:
        for i in range(40):
            message = os.urandom(1 + i * 7919 % 300_000)  # past the 64 KiB read, some of them
            client.sendall(message)
            assert recv_exactly(client, len(message)) == message
        views = until(lambda: len(legs(proxy)) == 2 and legs(proxy), what="two legs")
        client_leg, up_leg = sorted(views, key=lambda v: v.cid)
        assert client_leg.peer.endswith(f"⇄ fd {up_leg.fd}")
        assert up_leg.peer == f"upstream 127.0.0.1:{echo.address[1]} ⇄ fd {client_leg.fd}"
        client.shutdown(socket.SHUT_WR)
        assert client.recv(1) == b""  # the FIN crossed, the echo server closed, that crossed
    until(lambda: all(v.state == CLOSED for v in legs(proxy)), what="both legs closed")
    assert proxy.running, proxy.error


@pytest.mark.parametrize(("backend", "trigger"), [("epoll", "level"), ("epoll", "edge"),
                                                  ("poll", "level")])
def test_half_close_crosses_each_way(make_engine, upstream, backend, trigger):
    proxy = make_engine(backend=backend, trigger=trigger, upstream=upstream.address)
    with socket.create_connection(proxy.address, timeout=10) as client:
        server = upstream.accept()
        client.sendall(b"request")
        client.shutdown(socket.SHUT_WR)  # the client is done sending...
        assert recv_exactly(server, 7) == b"request"
        assert server.recv(1) == b""  # ...and the upstream sees that FIN
        server.sendall(b"late answer" * 1000)  # the other direction still flows
        assert recv_exactly(client, 11000) == b"late answer" * 1000
        server.shutdown(socket.SHUT_WR)
        assert client.recv(1) == b""
        server.close()
    until(lambda: all(v.state == CLOSED for v in legs(proxy)), what="both legs closed")


@pytest.mark.parametrize("side", ["client", "upstream"])
def test_a_reset_crosses_as_a_reset(make_engine, upstream, side):
    proxy = make_engine(upstream=upstream.address)
    client = socket.create_connection(proxy.address, timeout=10)
    server = upstream.accept()
    client.sendall(b"x")
    assert server.recv(1) == b"x"
    gone, other = (client, server) if side == "client" else (server, client)
    gone.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    gone.close()
    with pytest.raises(ConnectionResetError):
        while other.recv(1024):
            pass
    other.close()
    views = until(lambda: [v for v in legs(proxy) if v.state == CLOSED] if len(
        [v for v in legs(proxy) if v.state == CLOSED]) == 2 else None, what="both closed")
    assert any("reset crossed" in v.note for v in views), [v.note for v in views]


def test_a_client_that_does_not_read_bounds_memory_and_stops_the_upstream_read(
        make_engine, upstream):
    high = 256 * 1024
    proxy = make_engine(upstream=upstream.address, high_water=high, low_water=64 * 1024,
                        stuck_after=0.5)
    client = socket.create_connection(proxy.address, timeout=10)
    client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
    server = upstream.accept()
    server.settimeout(0.2)
    total = 32 * 1024 * 1024
    block = os.urandom(1024 * 1024)
    sent = 0
    try:  # the upstream sends until its socket stops taking bytes: the proxy stopped reading
        while sent < total:
            sent += server.send(block)
    except TimeoutError:
        pass
    assert sent < total, "the proxy read everything the upstream sent"
    up_fd = until(lambda: next((v.fd for v in legs(proxy) if v.peer.startswith("upstream")),
                               None), what="the upstream's leg")
    views = until(lambda: [v for v in legs(proxy) if v.fd == up_fd and v.state == READ_PAUSED],
                  what="the upstream's leg paused")
    assert views
    out = sum(v.out_buffer for v in legs(proxy))
    assert out <= high + proxy.config.read_size, out
    finding = until(lambda: [d for d in proxy.snapshot().diagnoses
                             if d.kind == "client-not-reading"], what="client-not-reading")
    assert "client is not reading" in finding[0].explanation
    # The client reads at last: every byte comes through, in order.
    server.settimeout(30)
    rest = threading.Thread(target=server.sendall, args=(block * ((total - sent) // len(block)),))
    rest.start()
    expected = sent + len(block) * ((total - sent) // len(block))
    got = 0
    client.settimeout(30)
    while got < expected:
        chunk = client.recv(1 << 20)
        assert chunk
        got += len(chunk)
    rest.join(30)
    assert got == expected
    client.close()
    server.close()


def test_an_upstream_that_does_not_read_is_named(make_engine, upstream):
    proxy = make_engine(upstream=upstream.address, stuck_after=0.5, sndbuf=65536)
    client = socket.create_connection(proxy.address, timeout=10)
    server = upstream.accept()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
    client.settimeout(0.2)
    try:
        while True:
            client.send(b"q" * 65536)
    except TimeoutError:
        pass
    found = until(lambda: [d for d in proxy.snapshot().diagnoses
                           if d.kind == UPSTREAM_NOT_READING], what="upstream-not-reading")
    assert "upstream is not reading" in found[0].explanation
    assert " bytes " not in found[0].explanation  # sizes as the other findings give them
    assert "B for it wait" in found[0].explanation
    client.close()
    server.close()


def test_refused_upstream_is_the_clients_note_and_a_finding(make_engine):
    spare = socket.create_server(("127.0.0.1", 0))
    address = spare.getsockname()
    spare.close()  # nothing listens there now: connect is refused
    proxy = make_engine(upstream=address)
    with socket.create_connection(proxy.address, timeout=10) as client:
        assert client.recv(1) == b""  # the client is closed, not left hanging
    found = until(lambda: [d for d in proxy.snapshot().diagnoses if d.kind == UPSTREAM_FAILED],
                  what="an upstream-failed finding")
    assert "refused" in found[0].explanation
    closed = until(lambda: [v for v in legs(proxy) if "refused" in v.note], what="a note")
    assert any(not v.peer.startswith("upstream") for v in closed)
    assert proxy.running


def test_connect_timeout(make_engine):
    # A listener whose accept queue is full drops new SYNs: a connect to it hangs.
    full = socket.socket()
    full.bind(("127.0.0.1", 0))
    full.listen(0)
    waiting = []
    for _ in range(4):
        s = socket.socket()
        s.setblocking(False)
        s.connect_ex(full.getsockname())
        waiting.append(s)
    try:
        proxy = make_engine(upstream=full.getsockname(), connect_timeout=0.3)
        started = time.monotonic()
        with socket.create_connection(proxy.address, timeout=10) as client:
            views = until(lambda: [v for v in legs(proxy) if v.state == "connecting"] or
                          [v for v in legs(proxy) if "timeout" in v.note], what="connecting")
            assert views
            assert client.recv(1) == b""
        assert time.monotonic() - started >= 0.3
        found = until(lambda: [d for d in proxy.snapshot().diagnoses
                               if d.kind == UPSTREAM_FAILED], what="finding")
        assert "connect timeout" in found[0].explanation
    finally:
        for s in waiting:
            s.close()
        full.close()


def test_an_upstream_that_does_not_resolve_stops_the_start(make_engine):
    from muxtop.engine import EngineStartError

    with pytest.raises(EngineStartError, match="cannot resolve upstream"):
        make_engine(upstream=("no-such-host.invalid", 80))


def test_api_alone_listens_only_on_the_api_and_its_proxies_and_says_so_plainly(make_engine):
    import psutil

    echo = make_engine()
    server = subprocess.Popen([sys.executable, "-m", "muxtop", "--headless", "--api",
                               "127.0.0.1:0"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True)
    try:
        start = server.stdout.readline()
        assert start.startswith("muxtop ") and "proxies of the API only" in start, start
        assert "→" not in start and "server on" not in start  # was "proxy → the API's..."
        said = server.stderr.readline()
        assert said.startswith("muxtop: toxiproxy API on http://"), said
        url = said.split(" on ", 1)[1].strip()
        api_port = int(url.rsplit(":", 1)[1])

        def listening() -> set[int]:
            return {c.laddr.port for c in psutil.Process(server.pid).net_connections("tcp")
                    if c.status == psutil.CONN_LISTEN}

        assert until(lambda: listening() == {api_port} or None, what="the API alone")
        status, made = _api(f"{url}/proxies", "POST", {
            "name": "one", "listen": "127.0.0.1:0", "upstream": f"127.0.0.1:{echo.address[1]}"})
        assert status == 201, made
        port = int(made["listen"].rsplit(":", 1)[1])
        assert listening() == {api_port, port}
        _round_trip(("127.0.0.1", port))
    finally:
        server.terminate()
        server.communicate(timeout=30)


def test_a_proxys_header_says_legs_open_and_clients_accepted(make_engine):
    from muxtop.cli.serve import status_line
    from muxtop.ui.views.base import Header
    from muxtop.ui.views.engine import header

    echo = make_engine()
    proxy = make_engine(upstream=echo.address)
    clients = [socket.create_connection(proxy.address, timeout=10) for _ in range(2)]
    try:
        for client in clients:
            assert _echoed(client)
        snapshot = until(lambda: (s := proxy.snapshot()).open_connections == 4 and s,
                         what="two pairs")
        drawn = Header(lambda style: "", 200)
        header(drawn, snapshot)
        text = drawn.finish().plain
        assert "conns 4 legs open / 2 clients accepted" in text, text  # was "4 open / 2 accepted"
        assert "  legs 4  " in status_line(snapshot, as_json=False)
        one = dataclasses.replace(snapshot, open_connections=1,
                                  totals=snapshot.totals._replace(accepted=1))
        drawn = Header(lambda style: "", 200)
        header(drawn, one)
        assert "conns 1 leg open / 1 client accepted" in drawn.finish().plain
    finally:
        for client in clients:
            client.close()


def _echoed(client: socket.socket) -> bool:
    client.sendall(b"x")
    return recv_exactly(client, 1) == b"x"


def _headless_echo() -> tuple[subprocess.Popen, tuple[str, int]]:
    server = subprocess.Popen(
        [sys.executable, "-m", "muxtop", "--headless", "--json", "--port", "0"],
        stdout=subprocess.PIPE, text=True)
    line = server.stdout.readline()
    host, _, port = json.loads(line)["listen"].rpartition(":")
    return server, (host, int(port))


@pytest.mark.timeout(120)
def test_a_verifying_flood_through_the_proxy_loses_nothing_while_it_switches(make_engine):
    server, address = _headless_echo()
    try:
        proxy = make_engine(upstream=address)
        host, port = proxy.address
        settings = FloodSettings(host, port, pattern="echo", clients=20, messages=400,
                                 size=3000)
        modes = [("poll", "level"), ("epoll", "edge"), ("select", "level"),
                 ("epoll", "oneshot"), ("epoll", "level")]
        switches = 0
        with FloodProcess(settings) as flood:
            while flood.running:
                backend, trigger = modes[switches % len(modes)]
                assert proxy.submit(Switch(backend, trigger)).result(5).ok
                switches += 1
                time.sleep(0.05)
            summary = flood.stop()
        assert summary is not None, list(flood.errors)
        assert summary["mismatches"] == 0 and summary["failed"] == {}, summary
        assert summary["messages_echoed"] == 20 * 400, summary
        assert switches >= 3, switches
        assert proxy.running, proxy.error
    finally:
        server.terminate()
        server.wait(10)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def redis_server():
    if shutil.which("redis-server") is None or shutil.which("redis-benchmark") is None:
        pytest.skip("redis-server and redis-benchmark are not installed "
                    "(apt-get install redis-server redis-tools)")
    port = _free_port()
    server = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "no", "--protected-mode", "yes"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def answers():
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                s.sendall(b"PING\r\n")
                return s.recv(16) == b"+PONG\r\n"
        except OSError:
            return False

    try:
        until(answers, what="redis-server answering")
        yield ("127.0.0.1", port)
    finally:
        server.terminate()
        server.wait(10)


def _resp(*words: bytes) -> bytes:
    return b"*%d\r\n" % len(words) + b"".join(b"$%d\r\n%s\r\n" % (len(w), w) for w in words)


@pytest.mark.parametrize(("backend", "trigger"), READINESS_MODES, ids=READINESS_IDS)
def test_redis_behind_the_proxy(make_engine, redis_server, backend, trigger):
    proxy = make_engine(backend=backend, trigger=trigger, upstream=redis_server)
    host, port = proxy.address
    result = subprocess.run(
        ["redis-benchmark", "-h", host, "-p", str(port), "-t", "set,get", "-n", "2000",
         "-c", "10", "-q"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "SET:" in result.stdout and "GET:" in result.stdout, result.stdout
    # Every answer right: values of all sizes, pipelined, read back through the proxy.
    values = {b"k%d" % i: os.urandom(i * 331 % 100_000) for i in range(50)}
    with socket.create_connection((host, port), timeout=10) as client:
        client.sendall(b"".join(_resp(b"SET", k, v) for k, v in values.items()))
        assert recv_exactly(client, 5 * len(values)) == b"+OK\r\n" * len(values)
        for key, value in values.items():
            client.sendall(_resp(b"GET", key))
            head = b"$%d\r\n" % len(value)
            assert recv_exactly(client, len(head) + len(value) + 2) == head + value + b"\r\n"
    assert proxy.running, proxy.error


def test_a_step_on_either_leg_names_the_pair(make_engine, upstream):
    from muxtop.commands import Continue, Step
    from muxtop.ui.widgets.step_panel import fd_line

    proxy = make_engine(upstream=upstream.address)
    client = socket.create_connection(proxy.address, timeout=10)
    server = upstream.accept()
    until(lambda: len([v for v in legs(proxy) if v.state == "open"]) == 2, what="open pair")
    assert proxy.submit(Step()).result(5).ok
    until(lambda: proxy.snapshot().step is not None, what="stepping")
    client.sendall(b"ping")
    steps = []
    for _ in range(20):  # step until the client's leg has read it
        assert proxy.submit(Step()).result(5).ok
        steps = [f for f in proxy.snapshot().step.fds if f.read]
        if steps:
            break
    (read,) = steps
    up_fd = next(v.fd for v in legs(proxy) if v.peer.startswith("upstream"))
    assert read.role == f"client leg ⇄ fd {up_fd}"
    (sent,) = [f for f in proxy.snapshot().step.fds if f.fd == up_fd]
    assert sent.sent == 4 and sent.role.startswith("upstream leg")
    assert fd_line(sent).startswith("upstream leg ⇄ fd") and "sent 4B" in fd_line(sent)
    assert recv_exactly(server, 4) == b"ping"
    assert proxy.submit(Continue()).result(5).ok
    client.close()
    server.close()


def test_the_detail_of_one_leg_shows_both_and_the_ready_list_names_the_partner(
        make_engine, upstream):
    from muxtop.snapshot import partner_of
    from muxtop.ui.screens.detail import describe
    from muxtop.ui.views import ENGINE
    from muxtop.ui.widgets.ready_log import partners

    proxy = make_engine(upstream=upstream.address)
    client = socket.create_connection(proxy.address, timeout=10)
    server = upstream.accept()
    snapshot = until(lambda: proxy.snapshot() if len(legs(proxy)) == 2 else None, what="pair")
    client_leg, up_leg = sorted(legs(proxy), key=lambda v: v.cid)
    assert partner_of(client_leg, snapshot.connections) == up_leg
    assert partner_of(up_leg, snapshot.connections) == client_leg
    text = describe(ENGINE, client_leg, snapshot).plain
    assert f"its partner leg: fd {up_leg.fd}" in text
    assert partners(snapshot) == {client_leg.fd: up_leg.fd, up_leg.fd: client_leg.fd}
    assert snapshot.protocol == f"proxy → 127.0.0.1:{upstream.address[1]}"
    client.close()
    server.close()


class HoldingPipe:
    """A pipe as muxtop/proxy/toxics.py's are (the contract's Pipe): holds every byte `delay`
    seconds, gives at most `slice` bytes a take, lets the FIN through after the bytes, and
    says "reset" once `reset_after` bytes have been fed."""

    def __init__(self, delay: float, slice: int, reset_after: int | None = None) -> None:
        self.delay, self.slice, self.reset_after = delay, slice, reset_after
        self.held: list[tuple[float, bytearray]] = []
        self.fed = 0
        self.eof_at: float | None = None

    def feed(self, data: bytes, now: float) -> None:
        self.fed += len(data)
        self.held.append((now + self.delay, bytearray(data)))

    def feed_eof(self, now: float) -> None:
        self.eof_at = now

    def take(self, now: float, limit: int) -> bytes:
        if not self.held or self.held[0][0] > now:
            return b""
        due, data = self.held[0]
        out = bytes(data[:min(limit, self.slice)])
        del data[:len(out)]
        if not data:
            self.held.pop(0)
        return out

    def due(self, now: float) -> float | None:
        return self.held[0][0] if self.held and self.held[0][0] > now else None

    def verdict(self, now: float) -> str | None:
        if self.reset_after is not None and self.fed >= self.reset_after:
            return "reset"
        return "eof" if self.eof_at is not None and not self.held else None

    @property
    def buffered(self) -> int:
        return sum(len(d) for _, d in self.held)

    @property
    def applied(self) -> tuple[str, ...]:
        return ("holding",)


@pytest.mark.parametrize(("backend", "trigger"), [("epoll", "level"), ("epoll", "edge"),
                                                  ("poll", "level")])
def test_pipes_hold_bytes_on_the_loops_timers_and_the_fin_waits_behind_them(
        make_engine, backend, trigger):
    echo = make_engine()
    pipes = []

    def pipe(stream, cid, now):
        pipes.append((stream, cid))
        return HoldingPipe(0.1 if stream == "downstream" else 0.0, 7)

    proxy = make_engine(backend=backend, trigger=trigger, upstream=echo.address, pipes=pipe)
    with socket.create_connection(proxy.address, timeout=10) as client:
        message = os.urandom(5000)
        started = time.monotonic()
        client.sendall(message)
        assert recv_exactly(client, len(message)) == message  # 7 bytes a take, all of them
        assert time.monotonic() - started >= 0.1  # held downstream on a timer
        client.sendall(b"last words")
        client.shutdown(socket.SHUT_WR)
        assert recv_exactly(client, 10) == b"last words"  # before the FIN, not lost behind it
        assert client.recv(1) == b""
    assert sorted(s for s, _ in pipes) == ["downstream", "upstream"]


def test_a_pipes_reset_verdict_resets_both_legs(make_engine, upstream):
    proxy = make_engine(upstream=upstream.address,
                        pipes=lambda stream, cid, now: HoldingPipe(0.0, 1 << 20, 3))
    client = socket.create_connection(proxy.address, timeout=10)
    server = upstream.accept()
    client.sendall(b"abc")
    with pytest.raises(ConnectionResetError):
        while client.recv(1024):
            pass
    with pytest.raises(ConnectionResetError):
        while server.recv(1024):
            pass
    client.close()
    server.close()


@pytest.mark.parametrize(("args", "said"), [
    (["--upstream", "nowhere"], "is not HOST:PORT"),
    (["--upstream", "127.0.0.1:0"], "port 0 cannot be connected to"),
    (["--upstream", "127.0.0.1:99999"], "out of range"),
    (["--connect-timeout", "1"], "--connect-timeout needs --upstream"),
    (["--upstream", "127.0.0.1:6379", "--protocol", "http"], "--protocol does not apply"),
    (["--upstream", "127.0.0.1:6379", "--connect-timeout", "-1"], "connect-timeout"),
    (["--api", "127.0.0.1:0"], "--port needs --upstream"),  # toxiproxy has no port of its own
])
def test_the_cli_refuses_bad_proxy_options_in_one_line(args, said):
    result = subprocess.run([sys.executable, "-m", "muxtop", "--headless", "--port", "0",
                             "--duration", "0", *args], capture_output=True, text=True,
                            timeout=30)
    assert result.returncode == 2, result
    assert said in result.stderr and "Traceback" not in result.stderr, result.stderr


def test_an_upstream_that_does_not_resolve_is_one_line_and_status_1():
    result = subprocess.run([sys.executable, "-m", "muxtop", "--headless", "--port", "0",
                             "--duration", "0", "--upstream", "no-such-host.invalid:80"],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 1
    assert result.stderr.startswith("muxtop: cannot resolve upstream 'no-such-host.invalid'")
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_headless_proxy_with_metrics(make_engine, tmp_path):
    pytest.importorskip("prometheus_client")
    echo = make_engine()
    err = open(tmp_path / "stderr", "w+")  # noqa: SIM115 - closed below
    server = subprocess.Popen(
        [sys.executable, "-m", "muxtop", "--headless", "--json", "--port", "0", "--upstream",
         f"127.0.0.1:{echo.address[1]}", "--metrics", "127.0.0.1:0"],
        stdout=subprocess.PIPE, stderr=err, text=True)
    try:
        status = json.loads(server.stdout.readline())
        host, _, port = status["listen"].rpartition(":")

        def metrics_url():
            err.seek(0)
            return next((line.split("metrics on ", 1)[1].strip()
                         for line in err.read().splitlines() if "metrics on " in line), None)

        url = until(metrics_url, what="the metrics line")
        with socket.create_connection((host, int(port)), timeout=10) as client:
            client.sendall(b"through")
            assert recv_exactly(client, 7) == b"through"

            def open_legs():
                import urllib.request
                with urllib.request.urlopen(url, timeout=10) as answer:
                    text = answer.read().decode()
                return 'muxtop_connections{state="open"} 2.0' in text

            until(open_legs, what="two open legs in /metrics")
    finally:
        server.terminate()
        server.wait(10)
        server.stdout.close()
        err.close()


def _api(url: str, method: str = "GET", body: object | None = None):
    import urllib.error
    import urllib.request

    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method)
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            text = answer.read().decode()
            return answer.status, json.loads(text) if text else None
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read().decode() or "null")


def _round_trip(address, payload: bytes = b"ping") -> float:
    with socket.create_connection(address, timeout=10) as client:
        started = time.monotonic()
        client.sendall(payload)
        assert recv_exactly(client, len(payload)) == payload
        return time.monotonic() - started


@pytest.fixture
def api_engine(make_engine):
    """An echo upstream, a proxy engine with a registry, toxiproxy's API over it."""
    from muxtop.proxy.api import ApiServer
    from muxtop.proxy.registry import Registry

    echo = make_engine()
    registry = Registry()
    proxy = make_engine(upstream=echo.address, registry=registry)
    api = ApiServer(registry, ("127.0.0.1", 0)).start()
    yield echo, proxy, api
    api.stop()


def test_the_apis_toxics_act_on_the_upstream_proxy_live(api_engine):
    echo, proxy, api = api_engine
    status, found = _api(f"{api.url}/proxies/muxtop")
    assert status == 200 and found["upstream"] == f"127.0.0.1:{echo.address[1]}"
    assert found["listen"] == f"127.0.0.1:{proxy.address[1]}"
    _round_trip(proxy.address)
    status, _ = _api(f"{api.url}/proxies/muxtop/toxics", "POST",
                     {"type": "latency", "attributes": {"latency": 150}})
    assert status == 200
    with socket.create_connection(proxy.address, timeout=10) as client:
        started = time.monotonic()
        client.sendall(b"ping")
        assert recv_exactly(client, 4) == b"ping"
        assert time.monotonic() - started >= 0.15  # a new connection: the toxic applies
        flagged = until(lambda: [v for v in legs(proxy) if "~" in v.flags
                                 and v.state != CLOSED], what="a ~ flag")
        assert [v.peer.startswith("upstream") for v in flagged] == [True]  # downstream's
    assert _api(f"{api.url}/proxies/muxtop/toxics/latency_downstream", "DELETE")[0] == 204
    with socket.create_connection(proxy.address, timeout=10) as client:
        client.sendall(b"ping")
        assert recv_exactly(client, 4) == b"ping"
        up_fd = until(lambda: max((v.fd for v in legs(proxy) if v.state == "open"
                                   and v.peer.startswith("upstream")), default=None),
                      what="the new pair")
        until(lambda: [v for v in legs(proxy) if v.fd == up_fd and "~" not in v.flags],
              what="no ~ flag once the toxic is gone")


def test_a_proxy_made_over_the_api_serves_and_goes_down_and_up(api_engine):
    echo, proxy, api = api_engine
    status, made = _api(f"{api.url}/proxies", "POST", {
        "name": "second", "listen": "127.0.0.1:0", "upstream": f"127.0.0.1:{echo.address[1]}"})
    assert status == 201, made
    host, _, port = made["listen"].rpartition(":")
    address = (host, int(port))
    held = socket.create_connection(address, timeout=10)
    held.sendall(b"hello")
    assert recv_exactly(held, 5) == b"hello"
    until(lambda: any("upstream 127.0.0.1" in v.peer for v in legs(proxy)), what="its legs")
    listeners = [v for v in proxy.snapshot().connections if v.kind == "listener"]
    assert any(v.peer.startswith(f"second {made['listen']} → ") for v in listeners), listeners
    status, _ = _api(f"{api.url}/proxies/second", "POST", {"enabled": False})  # down
    assert status == 200
    assert held.recv(10) == b""  # its open connection closed
    held.close()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(address, timeout=5)
    status, back = _api(f"{api.url}/proxies/second", "POST", {"enabled": True})  # up
    assert status == 200, back
    host, _, port = back["listen"].rpartition(":")
    _round_trip((host, int(port)))
    _round_trip(proxy.address)  # the --upstream proxy never stopped
    assert proxy.running, proxy.error


def test_toxic_flag_from_the_command_line(make_engine):
    echo = make_engine()
    server = subprocess.Popen(
        [sys.executable, "-m", "muxtop", "--headless", "--json", "--port", "0", "--upstream",
         f"127.0.0.1:{echo.address[1]}", "--toxic", "downstream:latency:latency=120"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        status = json.loads(server.stdout.readline())
        host, _, port = status["listen"].rpartition(":")
        assert _round_trip((host, int(port))) >= 0.12
    finally:
        server.terminate()
        server.wait(10)
        server.stdout.close()
        server.stderr.close()


def test_toxic_flag_needs_an_upstream_and_a_valid_toxic():
    for args, said in ((["--toxic", "downstream:latency:latency=1"], "--toxic needs --upstream"),
                       (["--upstream", "127.0.0.1:1", "--toxic", "sideways:latency"], "stream")):
        result = subprocess.run([sys.executable, "-m", "muxtop", "--headless", "--port", "0",
                                 "--duration", "0", *args], capture_output=True, text=True,
                                timeout=30)
        assert result.returncode == 2 and said in result.stderr, result.stderr


def test_the_upstream_proxy_itself_goes_down_and_up_over_the_api(api_engine):
    echo, proxy, api = api_engine
    held = socket.create_connection(proxy.address, timeout=10)
    held.sendall(b"x")
    assert recv_exactly(held, 1) == b"x"
    assert _api(f"{api.url}/proxies/muxtop", "POST", {"enabled": False})[0] == 200
    assert held.recv(1) == b""
    held.close()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(proxy.address, timeout=5)
    status, back = _api(f"{api.url}/proxies/muxtop", "POST", {"enabled": True})
    assert status == 200, back
    host, _, port = back["listen"].rpartition(":")
    assert int(port) == proxy.address[1]  # the same address, bound anew
    _round_trip((host, int(port)))
    assert proxy.running, proxy.error
    # One listener row for that address, a live fd: the released one stayed as a row on fd -1.
    asked = proxy.snapshot().taken_at
    until(lambda: proxy.snapshot().taken_at > asked, what="a Snapshot after it")
    listeners = [v for v in proxy.snapshot().connections if v.kind == KIND_LISTENER]
    assert all(v.fd >= 0 for v in listeners), listeners
    assert sum(f":{port}" in v.peer for v in listeners) == 1, listeners


def test_an_upstream_that_never_answers_is_a_one_way_finding(make_engine, upstream):
    from muxtop.findings import ONE_WAY

    proxy = make_engine(upstream=upstream.address, stuck_after=0.3)
    client = socket.create_connection(proxy.address, timeout=10)
    server = upstream.accept()
    client.sendall(b"GET / HTTP/1.0\r\n\r\n")
    assert recv_exactly(server, 18) == b"GET / HTTP/1.0\r\n\r\n"  # delivered, never answered
    found = until(lambda: [d for d in proxy.snapshot().diagnoses if d.kind == ONE_WAY],
                  what="a one-way finding")
    assert "has answered nothing" in found[0].explanation
    server.sendall(b"HTTP/1.0 200 OK\r\n\r\n")  # the answer comes: the finding goes
    assert recv_exactly(client, 19) == b"HTTP/1.0 200 OK\r\n\r\n"
    until(lambda: not [d for d in proxy.snapshot().diagnoses if d.kind == ONE_WAY],
          what="the finding gone")
    client.close()
    server.close()


def test_an_upstream_that_closes_first_is_noted_and_its_fin_crosses(make_engine, upstream):
    proxy = make_engine(upstream=upstream.address)
    client = socket.create_connection(proxy.address, timeout=10)
    server = upstream.accept()
    client.sendall(b"GET / HTTP/1.0\r\n\r\n")
    assert recv_exactly(server, 18) == b"GET / HTTP/1.0\r\n\r\n"
    server.shutdown(socket.SHUT_WR)  # no answer
    assert client.recv(1) == b""  # the upstream's FIN crossed
    client.sendall(b"still here")  # the other way still flows, half-closed
    assert recv_exactly(server, 10) == b"still here"
    found = until(lambda: [d for d in proxy.snapshot().diagnoses
                           if d.kind == UPSTREAM_FAILED], what="upstream closed first")
    assert "closed first, without answering the client's last bytes" in found[0].explanation
    assert dict(found[0].evidence)["upstream"] == f"127.0.0.1:{upstream.address[1]}"
    client.close()
    server.close()
    closed = until(lambda: [v for v in legs(proxy) if v.note == "upstream closed first"],
                   what="the client's note")
    assert not closed[0].peer.startswith("upstream")


def test_an_upstream_that_answers_then_closes_is_no_failure(make_engine, upstream):
    """An HTTP/1.0 server closes after each response, redis after QUIT's +OK: each of those
    closes was an upstream-failed finding, and every client of the pair was flagged."""
    proxy = make_engine(upstream=upstream.address, publish_interval=0.05)
    client = socket.create_connection(proxy.address, timeout=10)
    server = upstream.accept()
    client.sendall(b"GET / HTTP/1.0\r\n\r\n")
    assert recv_exactly(server, 18) == b"GET / HTTP/1.0\r\n\r\n"
    server.sendall(b"HTTP/1.0 200 OK\r\n\r\nhello")
    server.shutdown(socket.SHUT_WR)
    assert recv_exactly(client, 24) == b"HTTP/1.0 200 OK\r\n\r\nhello"
    assert client.recv(1) == b""
    until(lambda: [v for v in legs(proxy) if v.note == "upstream closed first"],
          what="the client's row notes it")
    later = proxy.snapshot().taken_at + 0.6  # past the detectors' next runs (every 0.5 s)
    until(lambda: proxy.snapshot().taken_at > later, what="the detectors run")
    assert not [d for d in proxy.snapshot().diagnoses if d.kind == UPSTREAM_FAILED]
    client.close()
    server.close()


def test_an_upstream_reset_is_a_failure_of_its_own_upstream(make_engine, upstream):
    """An RST from the upstream crossed to the client, with no finding."""
    proxy = make_engine(upstream=upstream.address)
    client = socket.create_connection(proxy.address, timeout=10)
    server = upstream.accept()
    client.sendall(b"ping")
    assert recv_exactly(server, 4) == b"ping"
    server.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    server.close()  # RST
    with pytest.raises(ConnectionResetError):
        client.recv(1)
    found = until(lambda: [d for d in proxy.snapshot().diagnoses
                           if d.kind == UPSTREAM_FAILED], what="the reset's finding")
    assert "reset the connection" in found[0].explanation
    assert dict(found[0].evidence)["why"] == "reset"
    client.close()


@pytest.mark.timeout(180)
def test_bench_proxy_measures_every_route(tmp_path):
    from muxtop.bench.compiler import BuildError, find_compiler

    try:
        find_compiler()
    except BuildError as exc:
        pytest.skip(f"no C compiler for the bench's client and upstream: {exc}")
    result = subprocess.run(
        [sys.executable, "-m", "muxtop", "bench", "proxy", "--conns", "4", "--runs", "1",
         "--duration", "0.3", "--toxic", "downstream:latency:latency=20", "--json"],
        capture_output=True, text=True, timeout=170, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    rows = {r["route"]: r for r in json.loads(result.stdout)["results"]}
    assert set(rows) == {"direct", "selectors-proxy", "muxtop-epoll-level",
                         "muxtop-epoll-edge", "muxtop-epoll-level-bare"}
    assert all(r["good_runs"] == 1 and r["rtt_per_s"] for r in rows.values()), rows
    assert rows["muxtop-epoll-level"]["p50_us"] >= 20_000 > rows["muxtop-epoll-level-bare"][
        "p50_us"]


def test_an_upstream_that_is_muxtops_own_address_is_refused(make_engine):
    from muxtop.engine import EngineStartError

    port = _free_port()
    with pytest.raises(EngineStartError, match="muxtop's own address"):
        make_engine(port=port, upstream=("127.0.0.1", port))
    with pytest.raises(EngineStartError, match="muxtop's own address"):
        make_engine(host="0.0.0.0", port=port, upstream=("127.0.0.1", port))
    other = _free_port()
    assert make_engine(port=port, upstream=("127.0.0.1", other)).running


OUT_OF_FDS_SERVER = """
import json, resource, sys
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (64, hard))
from muxtop.engine import Engine, EngineConfig
from muxtop.proxy.registry import Registry
host, _, port = sys.argv[1].rpartition(":")
if sys.argv[2] == "api":  # a proxy made over the API, on a listener of its own
    registry = Registry()
    engine = Engine(EngineConfig(port=0, publish_interval=0.05, registry=registry)).start()
    made = registry.create({"name": "p", "listen": "127.0.0.1:0", "upstream": sys.argv[1]})
    print(made.listen.rpartition(":")[2], flush=True)
else:  # --upstream, on the engine's own listener
    engine = Engine(EngineConfig(port=0, publish_interval=0.05,
                                 upstream=(host, int(port)))).start()
    print(engine.address[1], flush=True)
for line in sys.stdin:  # each line asks for the totals of a Snapshot taken after it
    import time
    if line.strip() == "one more fd":  # accept() succeeds; the upstream's socket() does not
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft + 1, hard))
    asked = time.monotonic()
    while engine.snapshot().taken_at <= asked and time.monotonic() < asked + 10:
        time.sleep(0.01)
    print(json.dumps(engine.snapshot().totals._asdict()), flush=True)
engine.stop()
"""


@pytest.mark.parametrize("listener", ["upstream", "api"])
@pytest.mark.parametrize("fails", ["accept", "upstream socket"])
def test_a_proxy_listener_out_of_fds_pauses_instead_of_spinning(make_engine, listener, fails):
    """Its pause doubles up to a second, as the main listener's does: a proxy made over the
    API once retried every 100 ms for as long as the table stayed full."""
    import psutil

    def accept_errors(ask: str = "report") -> int:
        server.stdin.write(ask + "\n")
        server.stdin.flush()
        return json.loads(server.stdout.readline())["accept_errors"]

    echo = make_engine()
    server = subprocess.Popen(
        [sys.executable, "-c", OUT_OF_FDS_SERVER, f"127.0.0.1:{echo.address[1]}", listener],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    clients: list[socket.socket] = []
    try:
        port = int(server.stdout.readline())
        for _ in range(80):  # two fds a pair: the server runs out long before
            clients.append(socket.create_connection(("127.0.0.1", port), timeout=5))
        until(lambda: server.poll() is None and len(psutil.Process(server.pid).net_connections())
              >= 50, what="the server out of fds")
        proc = psutil.Process(server.pid)
        # With one fd free, each client is accepted and then finds none for its upstream:
        # that accept had set the pause back to 50 ms, every time.
        errors = accept_errors("one more fd" if fails == "upstream socket" else "report")
        before, started = proc.cpu_times(), time.monotonic()
        time.sleep(2.0)  # what it burns meanwhile: a spinning loop ~2 s, a paused one little
        after = proc.cpu_times()
        busy = (after.user - before.user) + (after.system - before.system)
        assert busy < 0.5, f"server used {busy:.2f} s of CPU in 2 s while out of fds"
        # Pauses of 50, 100, 200, 400 and 800 ms, then one a second: at most ~6 in the first
        # 2 s, one a second after; a fixed 100 ms pause makes 10 a second.
        tries, elapsed = accept_errors() - errors, time.monotonic() - started
        assert tries <= 6 + elapsed, f"{tries} failed accepts in {elapsed:.1f} s"
        for client in clients:
            client.close()
        clients.clear()
        # Every pair closes and the backlog (clients gone already) drains: fds come back.
        until(lambda: proc.num_fds() < 32, timeout=20, what="the server's fds back")
        fresh = socket.create_connection(("127.0.0.1", port), timeout=10)
        clients.append(fresh)
        fresh.sendall(b"again")
        assert recv_exactly(fresh, 5) == b"again"
        assert accept_errors() > 0
    finally:
        for client in clients:
            client.close()
        server.kill()
        server.wait(10)
        server.stdout.close()
        server.stdin.close()


def test_max_conns_counts_the_apis_proxies_and_their_backlog_waits(make_engine):
    """--max-conns 2 is one pair: a second client of a proxy made over the API waits in its
    listener's backlog, unanswered, until the first pair closes; then it is served."""
    from muxtop.proxy.registry import Registry

    echo = make_engine()
    registry = Registry()
    proxy = make_engine(registry=registry, max_conns=2, publish_interval=0.05)
    made = registry.create({"name": "p", "listen": "127.0.0.1:0",
                            "upstream": f"127.0.0.1:{echo.address[1]}"})
    address = ("127.0.0.1", int(made.listen.rpartition(":")[2]))
    first = socket.create_connection(address, timeout=10)
    second = socket.create_connection(address, timeout=10)  # the kernel's backlog takes it
    try:
        first.sendall(b"one")
        assert recv_exactly(first, 3) == b"one"
        second.sendall(b"two")
        until(lambda: proxy.snapshot().totals.accepted == 1
              and len([v for v in legs(proxy) if v.state != CLOSED]) == 2, what="one pair")
        second.settimeout(0.3)
        with pytest.raises(TimeoutError):
            second.recv(3)  # not accepted: nobody reads it
        assert proxy.snapshot().totals.accepted == 1
        first.close()
        second.settimeout(10)
        assert recv_exactly(second, 3) == b"two"
    finally:
        first.close()
        second.close()


def test_an_api_proxy_whose_upstream_is_its_own_address_is_refused(make_engine):
    """Each client's connect would be accepted as a new client, which connects again, until
    the fds run out: refused with a 400, as --upstream to muxtop's own port is at start."""
    from muxtop.proxy.errors import ApiError
    from muxtop.proxy.registry import Registry

    registry = Registry()
    make_engine(registry=registry)
    made = registry.create({"name": "p", "listen": "127.0.0.1:0", "upstream": "127.0.0.1:1"})
    with pytest.raises(ApiError, match="own listen address") as refused:
        registry.update("p", {"upstream": made.listen, "listen": made.listen})
    assert refused.value.status == 400
    assert not registry.get("p").enabled  # as toxiproxy leaves a proxy it cannot start
    _, error = registry.populate([{"name": "r", "listen": made.listen,
                                   "upstream": made.listen}])
    assert error is not None and "own listen address" in str(error)


@pytest.mark.parametrize(("backend", "trigger"), READINESS_MODES, ids=READINESS_IDS)
def test_each_leg_counts_what_crossed_it_open_and_closed(make_engine, backend, trigger):
    """A forward is counted once, on the leg it was read from (Leg.echoed_*), and shows as
    that leg's in and its partner's out; the pair folds it into plain counts when it comes
    apart. Each row and the totals say the bytes that crossed, while open and once closed."""
    echo = make_engine()
    proxy = make_engine(backend=backend, trigger=trigger, upstream=echo.address,
                        publish_interval=0.05)
    sizes = [1, 64, 1000, 65536, 7]
    total = sum(sizes)
    with socket.create_connection(proxy.address, timeout=10) as client:
        for size in sizes:
            client.sendall(b"x" * size)
            assert recv_exactly(client, size) == b"x" * size
        rows = until(lambda: [v for v in legs(proxy) if v.bytes_in == total], what="both legs")
        assert [(v.bytes_in, v.bytes_out) for v in rows] == [(total, total)] * 2
        assert all(v.msgs_in >= 1 and v.msgs_out >= 1 for v in rows)
    closed = until(lambda: [v for v in legs(proxy) if v.state == CLOSED] if len(
        [v for v in legs(proxy) if v.state == CLOSED]) == 2 else None, what="both closed")
    assert [(v.bytes_in, v.bytes_out) for v in closed] == [(total, total)] * 2
    totals = proxy.snapshot().totals
    assert (totals.bytes_in, totals.bytes_out) == (2 * total, 2 * total)


def test_each_upstream_fails_in_a_finding_of_its_own(make_engine):
    """A refused connect to the --upstream and one to a proxy made over the API were one
    finding, naming the --upstream for both."""
    from muxtop.proxy.registry import Registry

    first, second = _free_port(), _free_port()  # nothing listens on either: refused
    registry = Registry()
    proxy = make_engine(upstream=("127.0.0.1", first), registry=registry)
    made = registry.create({"name": "b", "listen": "127.0.0.1:0",
                            "upstream": f"127.0.0.1:{second}"})
    for port in (proxy.address[1], int(made.listen.rpartition(":")[2])):
        with socket.create_connection(("127.0.0.1", port), timeout=10) as client:
            client.settimeout(10)
            with contextlib.suppress(ConnectionError):
                client.recv(1)  # closed (or reset) once the connect is refused

    def named() -> set[str]:
        return {dict(d.evidence)["upstream"] for d in proxy.snapshot().diagnoses
                if d.kind == UPSTREAM_FAILED}

    found = until(lambda: len(named()) == 2 and named(), what=named)
    assert found == {f"127.0.0.1:{first}", f"127.0.0.1:{second}"}


def test_what_a_toxic_holds_counts_in_the_receiving_legs_app_out(make_engine, upstream):
    """A bandwidth toxic held ~800 KB of a download while every row said app-out 0 B (and
    the client's B flag said 'out-buffer over high water')."""
    from muxtop.proxy.registry import Registry

    registry = Registry()
    proxy = make_engine(upstream=upstream.address, registry=registry, publish_interval=0.05)
    registry.add_toxic("muxtop", {"type": "bandwidth", "stream": "downstream",
                                  "attributes": {"rate": 1}})  # 1 KB/s
    client = socket.create_connection(proxy.address, timeout=10)
    server = upstream.accept()
    try:
        server.sendall(b"x" * 200_000)  # read by the proxy at once, let out 1 KB a second

        def client_row():
            rows = [v for v in legs(proxy) if not v.peer.startswith("upstream")]
            return rows[0] if rows and rows[0].out_buffer >= 100_000 else None

        row = until(client_row, what=lambda: [(v.peer, v.out_buffer) for v in legs(proxy)])
        assert row.out_buffer <= 200_000
    finally:
        client.close()
        server.close()


def test_an_upstream_legs_history_begins_at_connecting(make_engine, upstream):
    """It read open, connecting, open: a leg is made open, then its connect began."""
    proxy = make_engine(upstream=upstream.address, publish_interval=0.05)
    client = socket.create_connection(proxy.address, timeout=10)
    server = upstream.accept()
    try:
        row = until(lambda: next((v for v in legs(proxy) if v.peer.startswith("upstream")
                                  and v.state == "open"), None), what="the upstream leg")
        states = [state for _, state in row.history]
        assert states in (["connecting", "open"], ["open"]), row.history  # ["open"]: at once
    finally:
        client.close()
        server.close()
