"""`muxtop web` in a real browser: Debian's chromium, driven by Playwright, loads the page, sees
the dashboard name its backend, sends `b`, and sees the backend change. The dashboard reaches
the browser as terminal output on textual-serve's websocket; the test reads those frames (the
terminal draws on a canvas, which holds no text to query). The page is opened at the URL
`muxtop web` prints (its token lets the browser in); a page of another origin in the same
browser, holding the cookie, cannot open the dashboard's websocket."""

from __future__ import annotations

import contextlib
import http.server
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time

import pytest

from muxtop.kernel import uring

pytestmark = pytest.mark.timeout(90)

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
# Flags the browser needs here: root, no GPU, and no calls home on a closed network.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync"]


class AnotherSite(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = b"<p>another site</p>"
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@contextlib.contextmanager
def another_site():
    """The URL of a page on 127.0.0.1, served on a port of its own."""
    with http.server.ThreadingHTTPServer(("127.0.0.1", 0), AnotherSite) as site:
        thread = threading.Thread(target=site.serve_forever, daemon=True)
        thread.start()
        try:
            yield f"http://127.0.0.1:{site.server_port}/"
        finally:
            site.shutdown()
            thread.join()


# Opens a WebSocket from the page it runs in: "open" or "refused".
OPEN_WEBSOCKET = """url => new Promise(resolve => {
    const ws = new WebSocket(url);
    ws.onopen = () => { ws.close(); resolve("open"); };
    ws.onerror = () => resolve("refused");
})"""


def test_web_refuses_a_remote_address_and_headless():
    for args, said, code in ((["web", "--host", "0.0.0.0"], "--allow-remote", 1),
                             (["web", "--", "--headless"], "no dashboard", 2)):
        result = subprocess.run([sys.executable, "-m", "muxtop", *args], capture_output=True,
                                text=True, timeout=30)
        assert result.returncode == code and said in result.stderr, result.stderr
        assert "Traceback" not in result.stderr


@pytest.mark.skipif(CHROMIUM is None, reason="no chromium here (.ci/run installs it with apt "
                    "when the package registry is reachable)")
def test_the_dashboard_in_a_browser_switches_backend_on_b():
    playwright = pytest.importorskip("playwright.sync_api", reason="playwright not installed")
    server = subprocess.Popen(
        [sys.executable, "-m", "muxtop", "web", "--port", "0", "--", "--backend", "epoll"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True, text=True)
    try:
        banner = server.stdout.readline()  # printed once it serves
        found = re.search(r"(http://127\.0\.0\.1:(\d+))/\?token=\S+", banner)
        assert found, banner + server.stderr.read()
        url, origin, port = found[0], found[1], int(found[2])
        frames: list[str] = []
        with playwright.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            try:
                page = browser.new_page(viewport={"width": 1600, "height": 1000})
                page.on("websocket", lambda ws: ws.on(
                    "framereceived", lambda frame: frames.append(
                        frame if isinstance(frame, str) else frame.decode("utf-8", "replace"))))
                asked: list[str] = []  # every URL the page requests (its font was Google's)
                page.on("request", lambda r: asked.append(r.url))
                page.goto(url)

                def seen(text: str, since: int = 0, timeout: float = 30) -> int:
                    end = time.monotonic() + timeout
                    while time.monotonic() < end:
                        if any(text in f for f in frames[since:]):
                            return len(frames)
                        page.wait_for_timeout(200)
                    raise AssertionError(f"the page never showed {text!r}")

                after = seen("epoll/level")
                assert asked and all(u.startswith((origin + "/", f"ws://127.0.0.1:{port}/"))
                                     for u in asked), asked
                page.locator(".xterm-screen").click()
                page.keyboard.press("b")  # epoll -> uring (select where io_uring is unavailable)
                seen(f"{'uring' if uring.unavailable() is None else 'select'}/level", since=after)

                # A page served on another port of loopback: the same site (so the cookie goes
                # along; and a real server, as the browser lets only local pages reach
                # loopback), another origin: refused.
                with another_site() as other_url:
                    other = browser.new_page()
                    other.goto(other_url)
                    assert other.evaluate(OPEN_WEBSOCKET, f"ws://127.0.0.1:{port}/ws") == \
                        "refused"
                assert page.evaluate(OPEN_WEBSOCKET, f"ws://127.0.0.1:{port}/ws") == "open"
                assert origin == page.evaluate("location.origin")
            finally:
                browser.close()
    finally:
        os.killpg(server.pid, signal.SIGTERM)  # the page's muxtops too
        try:
            server.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
        server.stdout.close()
        server.stderr.close()
