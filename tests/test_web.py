"""`muxtop web` in a real browser: Debian's chromium, driven by Playwright, loads the page, sees
the dashboard name its backend, sends `b`, and sees the backend change. The dashboard reaches
the browser as terminal output on textual-serve's websocket; the test reads those frames (the
terminal draws on a canvas, which holds no text to query)."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time

import pytest

pytestmark = pytest.mark.timeout(90)

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
# Flags the browser needs here: root, no GPU, and no calls home on a closed network.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_web_refuses_a_remote_address_and_headless():
    for args, said in ((["web", "--host", "0.0.0.0"], "--allow-remote"),
                       (["web", "--", "--headless"], "no dashboard")):
        result = subprocess.run([sys.executable, "-m", "muxtop", *args], capture_output=True,
                                text=True, timeout=30)
        assert result.returncode == 2 and said in result.stderr, result.stderr
        assert "Traceback" not in result.stderr


@pytest.mark.skipif(CHROMIUM is None, reason="no chromium here (.ci/run installs it with apt "
                    "when the package registry is reachable)")
def test_the_dashboard_in_a_browser_switches_backend_on_b():
    playwright = pytest.importorskip("playwright.sync_api", reason="playwright not installed")
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "muxtop", "web", "--port", str(port), "--", "--backend",
         "epoll"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert server.poll() is None, server.stderr.read().decode()
                assert time.monotonic() < deadline, "muxtop web never listened"
                time.sleep(0.2)
        frames: list[str] = []
        with playwright.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            try:
                page = browser.new_page(viewport={"width": 1600, "height": 1000})
                page.on("websocket", lambda ws: ws.on(
                    "framereceived", lambda frame: frames.append(
                        frame if isinstance(frame, str) else frame.decode("utf-8", "replace"))))
                page.goto(f"http://127.0.0.1:{port}/")

                def seen(text: str, since: int = 0, timeout: float = 30) -> int:
                    end = time.monotonic() + timeout
                    while time.monotonic() < end:
                        if any(text in f for f in frames[since:]):
                            return len(frames)
                        page.wait_for_timeout(200)
                    raise AssertionError(f"the page never showed {text!r}")

                after = seen("epoll/level")
                page.locator(".xterm-screen").click()
                page.keyboard.press("b")  # epoll -> select
                seen("select/level", since=after)
            finally:
                browser.close()
    finally:
        os.killpg(server.pid, signal.SIGTERM)  # the page's muxtops too
        try:
            server.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
        server.stderr.close()
