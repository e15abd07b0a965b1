"""toxiproxy's HTTP API over real sockets on 127.0.0.1: routes, JSON shapes and status codes
as toxiproxy's README and api_test.go give them, the proxies' listeners handed to an engine
and taken back, and hostile requests bounded."""

from __future__ import annotations

import http.client
import json
import random
import socket
import threading
import time

import pytest

from muxtop.proxy.api import MAX_BODY, ApiServer, ApiStartError, api_address, parse_body
from muxtop.proxy.errors import ApiError
from muxtop.proxy.registry import Listener, Registry

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def api():
    registry = Registry(rng=random.Random(1))
    server = ApiServer(registry, ("127.0.0.1", 0), poll_interval=0.05).start()
    yield server
    server.stop()
    registry.clear()


def call(api: ApiServer, method: str, path: str, body: object = None,
         headers: dict | None = None, raw: bytes | None = None) -> tuple[int, object]:
    conn = http.client.HTTPConnection(*api.address, timeout=10)
    try:
        data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
        conn.request(method, path, body=data, headers=headers or {})
        response = conn.getresponse()
        payload = response.read()
        kind = response.getheader("Content-Type", "")
        return response.status, json.loads(payload) if "json" in kind else payload
    finally:
        conn.close()


def refused(address: str) -> bool:
    host, _, port = address.rpartition(":")
    with socket.socket() as sock:
        sock.settimeout(5)
        return sock.connect_ex((host, int(port))) != 0


def test_version(api):
    status, body = call(api, "GET", "/version")
    assert status == 200 and "toxiproxy" in body["version"]


def test_a_proxy_made_shown_and_deleted(api):
    assert call(api, "GET", "/proxies") == (200, {})
    status, made = call(api, "POST", "/proxies", {"name": "redis", "listen": "127.0.0.1:0",
                                                  "upstream": "127.0.0.1:6379"})
    assert status == 201
    assert made["listen"].startswith("127.0.0.1:") and made["listen"] != "127.0.0.1:0"
    assert made == {"name": "redis", "listen": made["listen"], "upstream": "127.0.0.1:6379",
                    "enabled": True, "toxics": []}
    assert not refused(made["listen"])  # listening, as the response says
    assert call(api, "GET", "/proxies") == (200, {"redis": made})
    assert call(api, "GET", "/proxies/redis") == (200, made)
    assert call(api, "DELETE", "/proxies/redis") == (204, b"")
    assert refused(made["listen"])
    with socket.create_connection(api.address, timeout=10) as sock:  # keep-alive past a 204
        sock.sendall(b"POST /reset HTTP/1.1\r\nHost: x\r\n\r\n"
                     b"GET /version HTTP/1.1\r\nHost: x\r\n\r\n")
        answers = b""
        while not answers.endswith(b"}\n") and (chunk := sock.recv(4096)):
            answers += chunk
        assert answers.startswith(b"HTTP/1.1 204") and b"Content-Length: 0" not in answers
        assert b"HTTP/1.1 200" in answers
    assert call(api, "DELETE", "/proxies/redis") == (
        404, {"error": "proxy not found", "status": 404})


@pytest.mark.parametrize(("body", "status", "error"), [
    ({"upstream": "127.0.0.1:1"}, 400, "missing required field: name"),
    ({"name": "a"}, 400, "missing required field: upstream"),
    ({"name": "a", "upstream": "nowhere"}, 400, "bad request body: upstream 'nowhere'"),
    ({"name": "a", "upstream": "127.0.0.1:1", "enabled": "yes"}, 400, "bad request body"),
    ({"name": "a", "upstream": "127.0.0.1:1", "listen": "local373"}, 400, "bad request body"),
    ({"name": "a", "upstream": "127.0.0.1:1", "listen": "0.0.0.0:0"}, 403, "--allow-remote"),
])
def test_a_bad_proxy_is_refused_in_toxiproxys_words(api, body, status, error):
    got, answer = call(api, "POST", "/proxies", body)
    assert got == answer["status"] == status and error in answer["error"]
    assert call(api, "GET", "/proxies") == (200, {})


def test_a_duplicate_is_409_and_a_taken_address_500(api):
    _, made = call(api, "POST", "/proxies", {"name": "a", "listen": "127.0.0.1:0",
                                             "upstream": "127.0.0.1:1"})
    assert call(api, "POST", "/proxies", {"name": "a", "upstream": "127.0.0.1:1"}) == (
        409, {"error": "proxy already exists", "status": 409})
    status, answer = call(api, "POST", "/proxies", {"name": "b", "listen": made["listen"],
                                                    "upstream": "127.0.0.1:1"})
    assert status == 500
    assert answer["error"] == f"listen tcp {made['listen']}: bind: address already in use"


def test_down_closes_the_listener_and_up_opens_it_on_the_same_port(api):
    _, made = call(api, "POST", "/proxies", {"name": "a", "listen": "127.0.0.1:0",
                                             "upstream": "127.0.0.1:1"})
    status, down = call(api, "POST", "/proxies/a", {"enabled": False})
    assert status == 200 and down == {**made, "enabled": False}
    assert refused(made["listen"])  # new connections refused
    status, up = call(api, "PATCH", "/proxies/a", {"enabled": True})
    assert (status, up) == (200, made) and not refused(made["listen"])
    status, moved = call(api, "POST", "/proxies/a", {"upstream": "127.0.0.1:2"})
    assert status == 200 and moved["upstream"] == "127.0.0.1:2" and moved["enabled"]
    assert call(api, "POST", "/proxies/nope", {"enabled": False})[0] == 404


def test_toxics_made_listed_updated_and_removed(api):
    call(api, "POST", "/proxies", {"name": "a", "listen": "127.0.0.1:0",
                                   "upstream": "127.0.0.1:1"})
    status, latency = call(api, "POST", "/proxies/a/toxics", {
        "type": "latency", "attributes": {"latency": 100}})
    assert status == 200 and latency == {
        "attributes": {"latency": 100, "jitter": 0}, "name": "latency_downstream",
        "type": "latency", "stream": "downstream", "toxicity": 1.0}
    status, cut = call(api, "POST", "/proxies/a/toxics", {
        "name": "cut", "type": "limit_data", "stream": "upstream", "toxicity": 0.5,
        "attributes": {"bytes": 10}})
    assert status == 200 and cut["stream"] == "upstream"
    # toxiproxy lists upstream's chain, then downstream's.
    assert call(api, "GET", "/proxies/a/toxics") == (200, [cut, latency])
    assert call(api, "GET", "/proxies/a")[1]["toxics"] == [cut, latency]
    assert call(api, "GET", "/proxies/a/toxics/cut") == (200, cut)
    assert call(api, "POST", "/proxies/a/toxics", {"name": "cut", "type": "noop"}) == (
        409, {"error": "toxic already exists", "status": 409})
    status, updated = call(api, "POST", "/proxies/a/toxics/latency_downstream", {
        "attributes": {"jitter": 5}})
    assert status == 200 and updated["attributes"] == {"latency": 100, "jitter": 5}
    assert updated["toxicity"] == 1.0
    assert call(api, "DELETE", "/proxies/a/toxics/cut") == (204, b"")
    assert call(api, "GET", "/proxies/a/toxics/cut") == (
        404, {"error": "toxic not found", "status": 404})
    assert call(api, "POST", "/proxies/b/toxics", {"type": "noop"}) == (
        404, {"error": "proxy not found", "status": 404})
    status, answer = call(api, "POST", "/proxies/a/toxics", {"type": "warp"})
    assert (status, answer["error"]) == (400, "invalid toxic type")


def test_reset_enables_every_proxy_and_removes_every_toxic(api):
    _, made = call(api, "POST", "/proxies", {"name": "a", "listen": "127.0.0.1:0",
                                             "upstream": "127.0.0.1:1", "enabled": False})
    assert made["enabled"] is False and made["listen"] == "127.0.0.1:0"
    call(api, "POST", "/proxies/a/toxics", {"type": "timeout"})
    assert call(api, "POST", "/reset") == (204, b"")
    _, after = call(api, "GET", "/proxies/a")
    assert after["enabled"] is True and after["toxics"] == [] and not refused(after["listen"])


def test_populate_makes_keeps_and_replaces(api):
    proxies = [{"name": "one", "listen": "127.0.0.1:0", "upstream": "127.0.0.1:1"},
               {"name": "two", "upstream": "127.0.0.1:2", "enabled": False}]
    status, answer = call(api, "POST", "/populate", proxies)
    assert status == 201 and [p["name"] for p in answer["proxies"]] == ["one", "two"]
    one = answer["proxies"][0]
    assert answer["proxies"][1]["enabled"] is False
    # The same listen (as bound) and upstream: kept as it is.
    status, again = call(api, "POST", "/populate", [
        {"name": "one", "listen": one["listen"], "upstream": "127.0.0.1:1"}])
    assert (status, again["proxies"]) == (201, [one])


def test_populate_checks_names_first_and_stops_at_the_first_failure(api):
    status, answer = call(api, "POST", "/populate", [
        {"name": "one", "upstream": "127.0.0.1:1"}, {"upstream": "127.0.0.1:2"}])
    assert (status, answer) == (400, {"error": "missing required field: name at proxy 2",
                                      "status": 400, "proxies": None})
    assert call(api, "GET", "/proxies") == (200, {})
    status, answer = call(api, "POST", "/populate", [
        {"name": "one", "upstream": "127.0.0.1:1"},
        {"name": "two", "upstream": "127.0.0.1:2", "listen": "local373"},
        {"name": "three", "upstream": "127.0.0.1:3"}])
    assert status == 400 and [p["name"] for p in answer["proxies"]] == ["one"]
    assert list(call(api, "GET", "/proxies")[1]) == ["one"]


def test_a_browser_is_refused_as_toxiproxy_refuses_it(api):
    status, body = call(api, "GET", "/proxies", headers={"User-Agent": "Mozilla/5.0"})
    assert (status, body) == (403, b"User agent not allowed\n")


@pytest.mark.parametrize(("method", "path", "raw", "status"), [
    ("POST", "/proxies", b"{not json", 400),
    ("POST", "/proxies", b"[" * 100_000 + b"]" * 100_000, 400),  # past the C parser's depth
    ("POST", "/proxies", json.dumps({"a": [[[[[[[[[1]]]]]]]]]}).encode(), 400),
    ("POST", "/proxies", b'{"name": NaN}', 400),
    ("POST", "/proxies", b"9" * 5000, 400),  # past int's digit limit
    ("GET", "/nowhere", None, 404),
    ("PUT", "/proxies", None, 405),
    ("DELETE", "/proxies", None, 405),
    ("GET", "/proxies/a/b/c/d", None, 404),
])
def test_hostile_requests_get_one_answer_each(api, method, path, raw, status):
    got, body = call(api, method, path, raw=raw)
    assert got == status
    assert call(api, "GET", "/proxies") == (200, {})  # still serving, nothing made


def test_a_body_past_the_bound_is_refused_unread(api):
    with socket.create_connection(api.address, timeout=10) as sock:
        sock.sendall(b"POST /proxies HTTP/1.1\r\nHost: x\r\nContent-Length: "
                     + str(MAX_BODY + 1).encode() + b"\r\n\r\n")
        answer = b""
        while chunk := sock.recv(4096):  # it closes the connection after: read to the end
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 413")
    head, _, body = answer.partition(b"\r\n\r\n")
    assert json.loads(body) == {"error": f"a body of at most {MAX_BODY} bytes", "status": 413}


@pytest.mark.parametrize("method", ["PUT", "OPTIONS"])
def test_any_other_method_gets_a_json_405_not_an_html_page(api, method):
    status, body = call(api, method, "/proxies")
    assert status == 405 and body == {"error": "method not allowed", "status": 405}


def test_a_float_for_a_whole_number_says_what_it_got(api):
    made = call(api, "POST", "/proxies", {"name": "f", "upstream": "127.0.0.1:1",
                                          "enabled": False})
    assert made[0] == 201
    status, body = call(api, "POST", "/proxies/f/toxics",
                        {"type": "latency", "attributes": {"latency": 1e18}})
    assert status == 400 and body["error"].endswith(", not 1e+18"), body


def test_a_chunked_body_is_read_and_bounded(api):
    body = json.dumps({"name": "a", "upstream": "127.0.0.1:1", "enabled": False}).encode()
    chunks = b"".join(b"%x\r\n%s\r\n" % (len(body[i:i + 7]), body[i:i + 7])
                      for i in range(0, len(body), 7)) + b"0\r\n\r\n"
    status, made = call(api, "POST", "/proxies", raw=chunks,
                        headers={"Transfer-Encoding": "chunked"})
    assert status == 201 and made["name"] == "a"
    too_big = b"%x\r\n" % (MAX_BODY + 1)
    for bad in (too_big, b"zz\r\n", b"5\r\nabc"):
        with socket.create_connection(api.address, timeout=10) as sock:
            sock.sendall(b"POST /proxies HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked"
                         b"\r\n\r\n" + bad)
            sock.shutdown(socket.SHUT_WR)
            assert sock.recv(4096).startswith(b"HTTP/1.1 400")


def test_too_many_headers_are_refused(api):
    with socket.create_connection(api.address, timeout=10) as sock:
        # 101 headers, no more: the server reads them all before it refuses, so no unread
        # byte turns its close into a reset that could beat its answer.
        sock.sendall(b"GET /version HTTP/1.1\r\n" + b"X: y\r\n" * 101)
        assert sock.recv(4096).startswith(b"HTTP/1.1 431")


def test_a_host_that_does_not_resolve_is_said_as_for_host():
    with pytest.raises(ApiStartError, match=r"^--api: cannot use host 'no-such-host\.invalid': "
                       r"[^\[]+$"):  # the resolver's words, not its "[Errno -2]"
        ApiServer(Registry(), ("no-such-host.invalid", 0)).start()


def test_the_api_serves_only_loopback_without_allow_remote():
    with pytest.raises(ApiStartError, match="--allow-remote"):
        ApiServer(Registry(), ("0.0.0.0", 0)).start()
    server = ApiServer(Registry(), ("0.0.0.0", 0), allow_remote=True).start()
    try:
        assert server.warning and "--allow-remote" in server.warning
    finally:
        server.stop()
    assert api_address("127.0.0.1:8474") == ("127.0.0.1", 8474)
    assert api_address("[::1]:0") == ("::1", 0)


def test_parse_body_bounds():
    assert parse_body(b'{"a": [1, {"b": 2}]}') == {"a": [1, {"b": 2}]}
    with pytest.raises(ApiError, match="nested over"):
        parse_body(b"[" * 9 + b"]" * 9)


class FakeEngine:
    """What the engine does with the registry's listeners: adopt, and on retirement close
    them (and their connections) and release them, on a thread of its own."""

    def __init__(self, registry: Registry) -> None:
        self.registry = registry
        self.wake = threading.Event()
        self.adopted: list[Listener] = []
        self.released: list[Listener] = []
        self.stopping = False
        registry.on_change = self.wake.set
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self) -> None:
        while not self.stopping:
            self.wake.wait(5)
            self.wake.clear()
            for proxy in self.registry.proxies():
                listener = proxy.listener
                if listener is not None and listener not in self.adopted \
                        and listener.adopt() is not None:
                    self.adopted.append(listener)
            for listener in [lst for lst in self.adopted if lst.retired]:
                self.adopted.remove(listener)
                listener.release()
                self.released.append(listener)

    def adopts(self, listener: Listener) -> None:
        """Wait (bounded) until this engine has adopted `listener` on its thread."""
        deadline = time.monotonic() + 10
        while listener not in self.adopted:
            assert time.monotonic() < deadline, "the engine did not adopt the listener"
            self.wake.set()
            time.sleep(0.01)

    def stop(self) -> None:
        self.stopping = True
        self.wake.set()
        self.thread.join(5)


def test_a_listener_the_engine_adopted_is_closed_by_the_engine_before_down_returns():
    registry = Registry()
    engine = FakeEngine(registry)
    try:
        made = registry.create({"name": "a", "upstream": "127.0.0.1:1",
                                "listen": "127.0.0.1:0"})
        first = made.listener
        assert first is not None
        engine.adopts(first)
        down = registry.update("a", {"enabled": False})
        # Returned only once the engine had released it: nothing listens any more.
        assert first in engine.released and down.listener is None and refused(made.listen)
        up = registry.update("a", {"enabled": True})
        assert up.listen == made.listen and up.listener is not first
        assert not refused(up.listen)
        engine.adopts(up.listener)
        registry.clear()
        assert up.listener in engine.released
    finally:
        engine.stop()


@pytest.mark.parametrize(("raw", "status"), [
    (b"GARBAGE\r\n\r\n", 400),  # no method, path and version
    (b"GET /" + b"x" * 70_000 + b" HTTP/1.1\r\n\r\n", 414),  # a request line too long
    (b"BREW /proxies HTTP/1.1\r\nHost: x\r\n\r\n", 501),  # a method http.server has no do_ for
])
def test_what_http_server_refuses_itself_is_answered_in_json(api, raw, status):
    """Was: http.server's HTML error page, where toxiproxy's clients read JSON."""
    with socket.create_connection(api.address, timeout=10) as sock:
        sock.sendall(raw)
        answer = b""
        while chunk := sock.recv(65536):  # it closes after an error
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 %d" % status) or head.startswith(b"HTTP/1.0 %d" % status)
    assert b"application/json" in head and json.loads(body)["status"] == status, answer[:300]
