"""`--api HOST:PORT`: toxiproxy's HTTP API over a Registry, on threads of its own, so the
toxiproxy client libraries and the test suites built on them drive muxtop unchanged.

Routes, JSON shapes and status codes are toxiproxy's (its api.go and api_test.go): 201 a proxy
made, 204 a deletion or a reset, 400 bad JSON or a missing field, 404 a missing name, 409 a
name taken, 500 a listen that cannot bind, and 403 for a browser's User-Agent (toxiproxy's
guard against pages on other sites). Everything a client sends is bounded: the head by
http.server (100 headers, 64 KiB a line), the body by MAX_BODY (sized or chunked), the JSON's
nesting by MAX_DEPTH, the clients served at once by MAX_CLIENTS, a silent client by TIMEOUT.
"""

from __future__ import annotations

import argparse
import json
import socket
import socketserver
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlsplit

from muxtop import __version__
from muxtop.arguments import remote_refused
from muxtop.printable import printable
from muxtop.proxy.errors import ApiError, bad_body
from muxtop.proxy.registry import Registry, is_loopback, join_address, resolve

DEFAULT_ADDRESS = ("127.0.0.1", 8474)  # toxiproxy's
MAX_BODY = 256 * 1024  # a /populate of every proxy muxtop allows fits many times over
MAX_DEPTH = 8  # toxiproxy's shapes nest 3 deep (populate: list, proxy, attributes)
MAX_CLIENTS = 32
MAX_LINE = 1024  # a chunk-size or trailer line
MAX_TRAILERS = 16
TIMEOUT = 10.0  # s a client may stay silent mid-request or between requests
VERSION = f"muxtop {__version__} (toxiproxy 2.12 API)"


class ApiStartError(Exception):
    """Why the API cannot be served, in one plain line."""


def api_address(text: str) -> tuple[str, int]:
    """argparse type for `--api HOST:PORT` ([::1]:PORT for IPv6; port 0 picks one)."""
    host, colon, port = text.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not colon or not host or not port.isdigit() or int(port) > 65535:
        raise argparse.ArgumentTypeError(
            f"{printable(text)!r} is not HOST:PORT (toxiproxy's is 127.0.0.1:8474)")
    return host, int(port)


def parse_body(body: bytes) -> object:
    """The JSON of a request's body; ApiError 400 (toxiproxy's "bad request body: ...")."""
    try:
        value = json.loads(body, parse_constant=_no_constant)
    except RecursionError:
        raise bad_body("nested too deep") from None
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError, int digits limit
        raise bad_body(str(exc).splitlines()[0] if str(exc) else "not JSON") from None
    stack = [(value, 0)]  # the nesting checked with a stack: the depth is what is measured
    while stack:
        item, depth = stack.pop()
        if isinstance(item, (dict, list)):
            if depth >= MAX_DEPTH:
                raise bad_body(f"nested over {MAX_DEPTH} deep")
            stack.extend((v, depth + 1) for v in (item.values() if isinstance(item, dict)
                                                 else item))
    return value


def _no_constant(name: str) -> object:
    raise ValueError(f"{name} is not JSON")  # Go refuses NaN and Infinity too


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 64

    def __init__(self, address: tuple, handler: type, registry: Registry, family: int) -> None:
        self.address_family = family
        self.registry = registry
        self.slots = threading.BoundedSemaphore(MAX_CLIENTS)
        super().__init__(address, handler)

    def server_bind(self) -> None:
        # HTTPServer's own asks getfqdn(host): a reverse DNS lookup that may hang on start.
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = self.server_address[:2]

    def process_request(self, request, client_address) -> None:  # noqa: ANN001
        if not self.slots.acquire(blocking=False):
            self.shutdown_request(request)  # full: the client sees the connection close
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self.slots.release()
            raise

    def process_request_thread(self, request, client_address) -> None:  # noqa: ANN001
        try:
            super().process_request_thread(request, client_address)
        finally:
            self.slots.release()

    def handle_error(self, request, client_address) -> None:  # noqa: ANN001
        pass  # a client that vanished mid-request is not worth a traceback on the terminal


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as toxiproxy's Go server
    server_version = "muxtop"
    sys_version = ""
    timeout = TIMEOUT
    server: _Server

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass  # the dashboard owns the terminal

    def do_GET(self) -> None:  # noqa: N802
        self._serve("GET")

    def do_POST(self) -> None:  # noqa: N802
        self._serve("POST")

    def do_PATCH(self) -> None:  # noqa: N802
        self._serve("PATCH")

    def do_DELETE(self) -> None:  # noqa: N802
        self._serve("DELETE")

    # PUT and OPTIONS get the JSON 405 (or 404) of their path; what http.server refuses
    # itself (HEAD, a bad request line, a line or head too long) goes through send_error.
    def do_PUT(self) -> None:  # noqa: N802
        self._serve("PUT")

    def do_OPTIONS(self) -> None:  # noqa: N802
        self._serve("OPTIONS")

    def _serve(self, method: str) -> None:
        try:
            body = self._body()
            if body is None:
                return
            if self.headers.get("User-Agent", "").startswith("Mozilla/"):
                self._send(403, b"User agent not allowed\n", "text/plain; charset=utf-8")
                return
            status, answer = self._route(method, body)
        except ApiError as exc:
            status, answer = exc.status, exc.plain()
        except Exception as exc:  # noqa: BLE001 - one line to the client, never a traceback
            status, answer = 500, {"error": printable(f"{type(exc).__name__}: {exc}"),
                                   "status": 500}
        if status == 204:
            self._send(204, b"", None)
        elif isinstance(answer, bytes):
            self._send(status, answer, "text/plain; charset=utf-8")
        else:
            self._send(status, json.dumps(answer).encode() + b"\n", "application/json")

    def _body(self) -> bytes | None:
        """The request's body, bounded; None once an error has been answered."""
        coding = self.headers.get("Transfer-Encoding")
        if coding is not None:
            body = self._chunked() if coding.strip().lower() == "chunked" else None
            if body is None:
                self.close_connection = True
                self._send(400 if coding.strip().lower() == "chunked" else 501,
                           b"a body in bad chunks, or too large\n", "text/plain; charset=utf-8")
            return body
        length = self.headers.get("Content-Length", "0").strip() or "0"
        if not length.isdigit() or len(length) > 12:
            self.close_connection = True
            self._send(400, b"bad Content-Length\n", "text/plain; charset=utf-8")
            return None
        if int(length) > MAX_BODY:
            self.close_connection = True  # its bytes are not read: the connection cannot go on
            error = {"error": f"a body of at most {MAX_BODY} bytes", "status": 413}
            self._send(413, json.dumps(error).encode() + b"\n", "application/json")
            return None
        body = self.rfile.read(int(length))
        if len(body) < int(length):
            self.close_connection = True
            return None
        return body

    def _chunked(self) -> bytes | None:
        """A chunked body (some clients send one), bounded as a sized one; None if bad."""
        body = bytearray()
        while True:
            line = self.rfile.readline(MAX_LINE)
            size = line.split(b";", 1)[0].strip()
            if not line.endswith(b"\n") or not size or len(size) > 8 \
                    or size.strip(b"0123456789abcdefABCDEF"):
                return None
            length = int(size, 16)
            if len(body) + length > MAX_BODY:
                return None
            if length == 0:
                break
            data = self.rfile.read(length)
            body += data
            if len(data) < length or self.rfile.readline(MAX_LINE) not in (b"\r\n", b"\n"):
                return None
        for _ in range(MAX_TRAILERS):  # trailers, up to the blank line
            if self.rfile.readline(MAX_LINE) in (b"\r\n", b"\n", b""):
                return bytes(body)
        return None

    def send_error(self, code: int, message: str | None = None,
                   explain: str | None = None) -> None:
        """http.server's own refusals (501, 400, 414, 431) in toxiproxy's JSON shape, not
        its HTML page."""
        reason = message or self.responses.get(code, ("error",))[0]
        self.close_connection = True
        if self.request_version == "HTTP/0.9":  # no version read: a status line all the same
            self.request_version = self.protocol_version
        body = json.dumps({"error": printable(reason), "status": code}).encode() + b"\n"
        if self.command == "HEAD" or code < 200 or code in (204, 304):
            body = b""  # the head alone, as http.server's own send_error does
        self.send_response(code, reason)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)

    def _send(self, status: int, body: bytes, kind: str | None) -> None:
        self.send_response(status)
        if kind is not None:
            self.send_header("Content-Type", kind)
        if status != 204:  # RFC 9110: a 204 carries no Content-Length
            self.send_header("Content-Length", str(len(body)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)

    def _route(self, method: str, body: bytes) -> tuple[int, object]:
        parts = [unquote(p) for p in urlsplit(self.path).path.split("/")[1:]]
        match parts:
            case ["version"]:
                return _allow(method, "GET") or (200, {"version": VERSION})
            case ["reset"]:
                _allow(method, "POST")
                self.server.registry.reset()
                return 204, None
            case ["populate"]:
                _allow(method, "POST")
                return _populate(self.server.registry, body)
            case ["proxies"]:
                return _proxies(self.server.registry, method, body)
            case ["proxies", name]:
                return _proxy(self.server.registry, method, name, body)
            case ["proxies", name, "toxics"]:
                return _toxics(self.server.registry, method, name, body)
            case ["proxies", name, "toxics", toxic]:
                return _toxic(self.server.registry, method, name, toxic, body)
        return 404, b"404 page not found\n"


def _allow(method: str, *methods: str) -> None:
    if method not in methods:
        raise ApiError("method not allowed", 405)


def _populate(registry: Registry, body: bytes) -> tuple[int, object]:
    try:
        proxies, error = registry.populate(parse_body(body))
    except ApiError as exc:  # refused before any proxy was made: toxiproxy's null list
        return exc.status, {**exc.plain(), "proxies": None}
    answer = {"proxies": [p.plain() for p in proxies]}
    if error is not None:  # toxiproxy answers the error with the proxies made before it
        return error.status, {**error.plain(), **answer}
    return 201, answer


def _proxies(registry: Registry, method: str, body: bytes) -> tuple[int, object]:
    _allow(method, "GET", "POST")
    if method == "GET":
        return 200, {p.name: p.plain() for p in registry.proxies()}
    return 201, registry.create(parse_body(body)).plain()


def _proxy(registry: Registry, method: str, name: str, body: bytes) -> tuple[int, object]:
    _allow(method, "GET", "POST", "PATCH", "DELETE")  # toxiproxy updates with either
    if method == "GET":
        return 200, registry.find(name).plain()
    if method == "DELETE":
        registry.delete(name)
        return 204, None
    registry.find(name)  # 404 before 400, as toxiproxy
    return 200, registry.update(name, parse_body(body)).plain()


def _toxics(registry: Registry, method: str, name: str, body: bytes) -> tuple[int, object]:
    _allow(method, "GET", "POST")
    if method == "GET":
        return 200, [t.plain() for t in registry.find(name).toxics.all()]
    registry.find(name)
    return 200, registry.add_toxic(name, parse_body(body)).plain()


def _toxic(registry: Registry, method: str, name: str, toxic: str,
           body: bytes) -> tuple[int, object]:
    _allow(method, "GET", "POST", "PATCH", "DELETE")
    if method == "GET":
        return 200, registry.get_toxic(name, toxic).plain()
    if method == "DELETE":
        registry.remove_toxic(name, toxic)
        return 204, None
    registry.get_toxic(name, toxic)
    return 200, registry.update_toxic(name, toxic, parse_body(body)).plain()


class ApiServer:
    """toxiproxy's API for `registry` at `address`; start() binds (ApiStartError says why
    it cannot) and serves on a daemon thread; stop() ends it."""

    def __init__(self, registry: Registry, address: tuple[str, int] = DEFAULT_ADDRESS, *,
                 allow_remote: bool = False, poll_interval: float = 0.5) -> None:
        self.registry = registry
        self.poll_interval = poll_interval  # how soon stop() is noticed
        self.requested = address
        self.allow_remote = allow_remote
        self.warning: str | None = None  # one line to show when it serves other machines
        self._httpd: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def address(self) -> tuple[str, int]:
        """Where it listens (the real port when 0 was asked)."""
        assert self._httpd is not None, "start() first"
        return self._httpd.server_address[:2]

    @property
    def url(self) -> str:
        return f"http://{join_address(*self.address)}"

    def start(self) -> ApiServer:
        host, port = self.requested
        try:
            family, sockaddr = resolve(host, port)
        except socket.gaierror as exc:  # in the words --host uses
            raise ApiStartError(f"--api: cannot use host {printable(host)!r}: "
                                f"{exc.strerror}") from None
        except UnicodeError:  # idna: a label over 63 characters, or not encodable at all
            raise ApiStartError(f"--api: cannot use host {printable(host)!r}: "
                                "not a valid host name") from None
        except OSError as exc:
            raise ApiStartError(f"--api {printable(host)}: {exc}") from None
        if not is_loopback(sockaddr):
            where = f"{sockaddr[0]} (--api {printable(host)})"
            if not self.allow_remote:
                raise ApiStartError(remote_refused("serve the API", sockaddr[0], "--api", host))
            self.warning = (f"warning: serving the toxiproxy API on {where}, reachable from "
                            "other machines, with no authentication (--allow-remote)")
        try:
            self._httpd = _Server(sockaddr[:2], _Handler, self.registry, family)
        except OSError as exc:
            raise ApiStartError(f"cannot serve the API on {join_address(sockaddr[0], port)}: "
                                f"{exc.strerror or exc}") from None
        self._thread = threading.Thread(target=self._httpd.serve_forever,
                                        kwargs={"poll_interval": self.poll_interval},
                                        name="muxtop-api", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

