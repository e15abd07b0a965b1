"""`muxtop attach` on a process whose name, argv and unix socket path hold Textual markup and
terminal escape sequences: the dashboard (pilot), `--text` and `--once` show them as plain,
escaped text, through the process's exit — nothing reaches the terminal raw, nothing crashes."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from ui_helpers import until

from muxtop.attach.reader import Attacher
from muxtop.attach.source import AttachSource
from muxtop.printable import printable
from muxtop.ui.app import MuxtopApp

pytestmark = pytest.mark.timeout(60)

NAME = "[b red]X[/]\x1b[2J"  # 15 bytes: all of a comm; `[/]` alone was a MarkupError
TITLE = "\x1b]0;owned\x07"  # sets the terminal's title when printed raw
ARGV = ["[b red]argv[/]", TITLE + "\x1b[2J"]
# An abstract unix socket's name (nothing left on disk), one per test run: two runs at once
# on one machine would otherwise share it and the second one's bind fail.
SOCKET = TITLE + f"[/]sock{os.getpid()}"
RAW = ("\x1b", "\x07")

HOSTILE = r'''
import ctypes, select, socket, sys
ctypes.CDLL(None).prctl(15, sys.argv[1].encode(), 0, 0, 0)  # PR_SET_NAME
unix = socket.socket(socket.AF_UNIX)
unix.bind("\0" + sys.argv[2])
unix.listen(4)
ep = select.epoll()
ep.register(unix.fileno(), select.EPOLLIN)
print("ready", flush=True)
sys.stdin.readline()  # exits when told (or when the test's end closes stdin)
'''


@pytest.fixture
def target():
    proc = subprocess.Popen([sys.executable, "-c", HOSTILE, NAME, SOCKET, *ARGV],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline() == "ready\n"
    yield proc
    if proc.poll() is None:
        proc.stdin.close()
        proc.wait(10)
    proc.stdout.close()


def end(proc: subprocess.Popen) -> None:
    proc.stdin.close()
    proc.wait(10)


def attach(*args: str, timeout: float = 30) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "muxtop", "attach", *args],
                          capture_output=True, text=True, timeout=timeout)


def test_printable_escapes_what_a_terminal_would_obey():
    assert printable(NAME) == "[b red]X[/]\\x1b[2J"
    assert printable("a\nb\u202e\udcff") == "a\\nb\\u202e\\udcff"
    assert printable("plain /tmp/x.sock") == "plain /tmp/x.sock"


def test_once_prints_the_targets_text_escaped(target):
    result = attach(str(target.pid), "--once")
    assert result.returncode == 0, result.stderr
    assert not any(c in result.stdout for c in RAW), result.stdout
    assert "[b red]X[/]\\x1b[2J" in result.stdout  # the name, as text
    assert "\\x1b]0;owned\\x07" in result.stdout  # argv and the socket path
    assert "[/]sock" in result.stdout
    as_json = attach(str(target.pid), "--once", "--json")
    assert not any(c in as_json.stdout for c in RAW)  # JSON escapes them itself


def test_text_loop_and_the_exit_line_are_escaped(target):
    proc = subprocess.Popen([sys.executable, "-m", "muxtop", "attach", str(target.pid),
                             "--text", "--interval", "0.1"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        seen = ""
        while "[/]sock" not in seen:
            seen += proc.stdout.readline()
        end(target)  # the target exits while watched
        out, err = proc.communicate(timeout=20)
        assert proc.returncode == 1
        assert not any(c in seen + out + err for c in RAW)
        assert err == f"muxtop attach: process {target.pid} ([b red]X[/]\\x1b[2J) exited\n"
    finally:
        proc.kill()
        proc.wait()


async def test_dashboard_shows_the_name_plain_and_survives_the_exit(target):
    source = AttachSource(Attacher(target.pid), interval=0.05).start()
    app = MuxtopApp(source, interval=0.05)
    try:
        # notifications=True: run_test draws no toast otherwise (and the one below is the point).
        async with app.run_test(size=(160, 48), notifications=True) as pilot:
            header = app.dashboard.header
            await until(lambda: "[b red]X[/]" in header.render().plain, pilot)
            assert not any(c in header.render().plain for c in RAW)
            spans = header.render().spans  # plain text: no style came from the name
            assert not any("red" in str(span.style) for span in spans)
            end(target)  # its exit notice names it: `[/]` used to raise MarkupError here
            await until(lambda: "EXITED" in header.render().plain, pilot)

            def exit_notice() -> list[str]:
                return [n.message for n in app._notifications if "exited" in n.message]

            await until(exit_notice, pilot)
            assert exit_notice() == [f"process {target.pid} ([b red]X[/]?[2J) exited"]
            assert not any(n.markup for n in app._notifications)  # none read as markup
            # The toast is laid out and drawn: before, MarkupError ended the app here.
            await until(lambda: any(t.region.height and "exited" in t.render().plain
                                    for t in app.screen.query("Toast")), pilot, what="the toast")
            assert app.is_running
    finally:
        source.stop()
