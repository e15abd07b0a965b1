"""Who gets in to `muxtop web`: a real `muxtop web --port 0` answers real WebSocket handshakes
on 127.0.0.1. A foreign Origin (another site's page), a foreign Host (a DNS-rebound name) or a
missing token is refused before any muxtop starts; the printed URL's token lets the page in;
--max-sessions caps the muxtops running at once. And the command line refuses, in one line,
what would fail in every tab or cannot be served."""

from __future__ import annotations

import base64
import contextlib
import io
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from muxtop import cli
from muxtop.cli.web import muxtop_command

pytest.importorskip("textual_serve", reason="muxtop web needs textual-serve")
pytestmark = pytest.mark.timeout(60)


@dataclass
class Web:
    """A running `muxtop web`: its real port and the token of the URL it printed."""
    port: int
    token: str
    log: str = ""  # what it wrote to stderr, once it has stopped

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def cookie(self) -> str:
        return f"muxtop-web-{self.port}={self.token}"


@contextlib.contextmanager
def muxtop_web(*args: str) -> Iterator[Web]:
    server = subprocess.Popen(
        [sys.executable, "-m", "muxtop", "web", "--port", "0", *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    running = None
    try:
        banner = server.stdout.readline()  # printed once it serves
        found = re.search(r"http://127\.0\.0\.1:(\d+)/\?token=(\S+)", banner)
        assert found, banner + server.stderr.read()
        running = Web(int(found[1]), found[2])
        yield running
    finally:
        os.killpg(server.pid, signal.SIGTERM)  # and the muxtops the sessions started
        try:
            server.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
        if running is not None:
            running.log = server.stderr.read()
        server.stdout.close()
        server.stderr.close()


@dataclass
class Answer:
    status: int
    body: str
    headers: str
    conn: socket.socket  # still open: a 101 is a session as long as it stays open


def request(web: Web, path: str = "/ws", websocket: bool = True, **headers: str) -> Answer:
    """One request on a new connection, headers as a browser would send them (`Host` defaults
    to the served address; None leaves a header out)."""
    fields = {"Host": f"127.0.0.1:{web.port}"}
    if websocket:
        fields |= {"Upgrade": "websocket", "Connection": "Upgrade", "Sec-WebSocket-Version": "13",
                   "Sec-WebSocket-Key": base64.b64encode(os.urandom(16)).decode()}
    fields |= {name.replace("_", "-"): value for name, value in headers.items()}
    head = "".join(f"{name}: {value}\r\n" for name, value in fields.items() if value is not None)
    conn = socket.create_connection(("127.0.0.1", web.port), timeout=20)
    conn.sendall(f"GET {path} HTTP/1.1\r\n{head}\r\n".encode())
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        assert chunk, f"connection closed before an answer: {data!r}"
        data += chunk
    top, _, body = data.partition(b"\r\n\r\n")
    status = int(top.split()[1])
    length = re.search(rb"(?i)content-length: (\d+)", top)
    while status != 101 and length and len(body) < int(length[1]):
        body += conn.recv(65536)
    return Answer(status, body.decode(errors="replace"), top.decode(), conn)


def status(web: Web, **headers: str) -> int:
    answer = request(web, **headers)
    answer.conn.close()
    return answer.status


@pytest.fixture
def web() -> Iterator[Web]:
    with muxtop_web("--max-sessions", "2") as running:
        yield running


def test_port_0_prints_the_port_it_listens_on(web):
    assert web.port != 0
    socket.create_connection(("127.0.0.1", web.port), timeout=5).close()


def test_a_websocket_from_another_sites_page_is_refused(web):
    # What a page on evil.example sends: its own Origin (the cookie would not even be sent).
    assert status(web, Origin="http://evil.example", Cookie=web.cookie) == 403
    assert status(web, Origin="null", Cookie=web.cookie) == 403  # a sandboxed iframe, file://
    # The same port on another loopback name is another origin too.
    assert status(web, Origin=f"http://localhost:{web.port}", Cookie=web.cookie) == 403


def test_a_foreign_host_is_refused_even_with_the_token(web):
    # DNS rebinding: evil.example now resolves to 127.0.0.1, and its page's requests say so.
    for host in (f"evil.example:{web.port}", "evil.example", f"127.0.0.1:{web.port + 1}"):
        assert status(web, Host=host, Origin=f"http://{host}", Cookie=web.cookie) == 403, host
    # No Host at all: aiohttp itself answers 400 to HTTP/1.1 without one.
    assert status(web, Host=None, Cookie=web.cookie) in (400, 403)


def test_no_token_or_a_wrong_one_is_refused(web):
    assert status(web, Origin=web.origin) == 403
    answer = request(web, Origin=web.origin, Cookie=f"muxtop-web-{web.port}={web.token[:-1]}x")
    answer.conn.close()
    assert answer.status == 403 and "token" in answer.body
    assert status(web, path=f"/ws?token={web.token}x") == 403
    assert status(web, path="/ws?token=%C3%A9") == 403  # not ASCII: refused, not a crash
    # Every page is guarded, not only the WebSocket.
    assert request(web, path="/", websocket=False).status == 403


def test_the_printed_url_lets_the_page_in(web):
    # The page: the token in its URL sets a cookie that its scripts and WebSocket carry.
    page = request(web, path=f"/?token={web.token}", websocket=False)
    page.conn.close()
    assert page.status == 200 and f"ws://127.0.0.1:{web.port}/ws" in page.body
    cookie = re.search(r"(?i)set-cookie: ([^;\r\n]+)(.*)", page.headers)
    assert cookie and cookie[1] == web.cookie
    assert "httponly" in cookie[2].lower() and "samesite=strict" in cookie[2].lower()
    script = request(web, path="/static/js/textual.js", websocket=False, Cookie=web.cookie)
    script.conn.close()
    assert script.status == 200
    assert status(web, Origin=web.origin, Cookie=web.cookie) == 101
    # A client that is not a browser sends no Origin; the token may ride in the query.
    assert status(web, path=f"/ws?token={web.token}") == 101


def test_the_page_asks_nothing_of_another_machine(web):
    # Was: <link rel="stylesheet" href="https://fonts.googleapis.com/css?family=Roboto%20Mono">
    # in textual-serve's page: every tab opened fetched a font from Google.
    page = request(web, path=f"/?token={web.token}", websocket=False)
    page.conn.close()
    assert page.status == 200
    links = re.findall(r"""(?:href|src)\s*=\s*["']([^"']*)""", page.body)
    urls = re.findall(r"""url\(\s*["']?([^"')]*)""", page.body)
    assert links and urls and "googleapis" not in page.body
    for url in links + urls:
        assert not re.match(r"(?i)([a-z][a-z0-9+.-]*:)?//", url) or \
            url.startswith((web.origin + "/", f"ws://127.0.0.1:{web.port}/")), url
    # The font is textual-serve's own copy, served under the page's origin.
    font = re.search(r"""url\("(/static/fonts/RobotoMono-VariableFont_wght\.ttf)"\)""",
                     page.body)
    assert font and 'font-family: "Roboto Mono"' in page.body
    answer = request(web, path=font[1], websocket=False, Cookie=web.cookie)
    answer.conn.close()
    assert answer.status == 200


def wait_for_a_session(web: Web, timeout: float = 30) -> Answer:
    """The next WebSocket let in once a session has ended (its muxtop takes a moment to quit)."""
    deadline = time.monotonic() + timeout
    while True:
        answer = request(web, Origin=web.origin, Cookie=web.cookie)
        if answer.status == 101:
            return answer
        answer.conn.close()
        assert answer.status == 503 and time.monotonic() < deadline, answer.body
        time.sleep(0.1)


def test_sessions_are_capped_with_a_page_that_says_so(web):
    with contextlib.ExitStack() as stack:
        held = [request(web, Origin=web.origin, Cookie=web.cookie) for _ in range(2)]
        for answer in held:
            stack.callback(answer.conn.close)
        assert [answer.status for answer in held] == [101, 101]
        full = request(web, Origin=web.origin, Cookie=web.cookie)
        full.conn.close()
        assert full.status == 503 and "all 2 sessions are in use" in full.body
        page = request(web, path=f"/?token={web.token}", websocket=False)
        page.conn.close()
        assert page.status == 503 and "all 2 sessions are in use" in page.body
        assert "--max-sessions" in page.body and "reload" in page.body
        held[0].conn.close()  # a tab closed: its muxtop ends, and a new tab gets in
        stack.callback(wait_for_a_session(web).conn.close)


def run(argv: list[str]) -> tuple[int, str]:
    """muxtop's main in this process: (exit status, stderr)."""
    err = io.StringIO()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
        try:
            code = cli.main(argv)
        except SystemExit as exc:
            code = exc.code
    return code, err.getvalue()


def error_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert "Traceback" not in err and lines, err
    return lines[-1]


def test_an_unresolvable_host_is_said_so_not_called_remote():
    code, err = run(["web", "--host", "no-such-host.invalid"])
    assert code == 1 and len(err.strip().splitlines()) == 1, err
    assert "cannot use host 'no-such-host.invalid'" in err and "other machines" not in err


@pytest.mark.parametrize(("options", "said"), [
    (["--headl"], "no dashboard"), (["--headless"], "no dashboard"),
    (["--he"], "ambiguous option"),  # --headless or --header-timeout: argparse refuses
    (["--bogus"], "unrecognized arguments: --bogus"),
    (["--backend", "kqueue"], "invalid choice: 'kqueue'"),
    (["--theme", "nope"], "no theme 'nope'"),
    (["--header-timeout", "5"], "needs --protocol http"),
    (["--help"], "show no dashboard"), (["--vers"], "show no dashboard"),
    (["--record", "x.muxrec"], "press R in a tab"),  # every tab would open the one file
    (["--port", "9000"], "only one can listen there"),  # --max-sessions is 4 by default
    (["--api", "127.0.0.1:8474"], "--api 127.0.0.1:8474: every browser tab"),
    (["--host", "0.0.0.0"], "after --: refusing to listen on 0.0.0.0 (--host '0.0.0.0'): "
                            "other machines could reach it; pass --allow-remote if you mean it"),
])
def test_tab_options_that_would_fail_in_every_tab_are_refused_up_front(options, said):
    code, err = run(["web", "--", *options])
    assert code == 2 and said in error_line(err), err
    assert error_line(err).startswith("muxtop web: error: ")


def test_bad_requests_get_a_400_and_one_log_line_without_the_token():
    """Was: /ws without WebSocket headers got no answer at all; a request line over 8 KB got
    its 400; and each wrote a boxed traceback (with its locals) to the terminal, the access
    log the token of every URL."""
    with muxtop_web() as web:
        plain = request(web, f"/ws?token={web.token}", websocket=False)
        plain.conn.close()
        assert plain.status == 400 and "takes a WebSocket" in plain.body
        half = request(web, f"/ws?token={web.token}", websocket=False,
                       Upgrade="websocket", Connection="Upgrade")  # no key, no version
        half.conn.close()
        assert half.status == 400 and "takes a WebSocket" in half.body
        long = request(web, "/?token=" + "x" * 9000, websocket=False)
        long.conn.close()
        assert long.status == 400
        page = request(web, f"/?token={web.token}", websocket=False)
        page.conn.close()
        assert page.status == 200
    lines = web.log.splitlines()
    assert lines and web.token not in web.log, web.log
    assert "Traceback" not in web.log and "│" not in web.log, web.log
    assert all(len(line) <= 300 for line in lines), web.log


def test_tab_options_muxtop_takes_pass_through():
    # Any spelling of --port keeps the tab's own; without one, each tab picks a free port.
    assert muxtop_command(["--backend", "poll"]).endswith("--backend poll --port 0")
    assert muxtop_command(["--po", "9000"]).endswith("--po 9000")
    assert muxtop_command(["--port=9000"]).endswith("--port=9000")
    # Port 0 is a port of each tab's own, however many tabs (it was refused as a fixed one).
    assert muxtop_command(["--port", "0"], sessions=4).endswith("--port 0")
    assert muxtop_command(["--api", "127.0.0.1:0"], sessions=4).endswith("127.0.0.1:0")
    # --api alone takes no --port (muxtop refuses one): none is added.
    assert "--port" not in muxtop_command(["--api", "127.0.0.1:0"])
    assert muxtop_command(["--api", "127.0.0.1:0", "--upstream", "127.0.0.1:1"]).endswith(
        "--port 0")


def test_a_remote_host_is_refused_in_muxtops_own_words():
    # Was: "error: 0.0.0.0 can be reached from other machines: add --allow-remote if that is
    # what you want", after the usage (exit 2), where muxtop --host 0.0.0.0 says this line.
    code, err = run(["web", "--host", "0.0.0.0"])
    assert (code, err) == (1, "muxtop web: refusing to serve on 0.0.0.0 (--host '0.0.0.0'): "
                              "other machines could reach it; pass --allow-remote if you mean "
                              "it\n")


def test_a_port_in_use_is_said_once():
    # Was: "Address already in use (while attempting to bind on address ('127.0.0.1', N))".
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        code, err = run(["web", "--port", str(port)])
    assert (code, err) == (1, f"muxtop web: cannot serve on 127.0.0.1:{port}: Address already "
                              "in use\n")


def test_every_address_is_refused_with_what_to_name_instead():
    code, err = run(["web", "--host", "0.0.0.0", "--allow-remote"])
    assert code == 2 and "is every address" in error_line(err), err
