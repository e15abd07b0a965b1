"""Shared fixtures: engines on ephemeral loopback ports, and the backend/trigger modes."""

from __future__ import annotations

import os
import signal

import pytest
from recordings import write

from muxtop.engine import Engine, EngineConfig
from muxtop.record.reader import Recording

# Every `python -m muxtop` a test starts imports the installed copy, as the tests do: not the
# work tree that Python would put first on sys.path from the current directory.
os.environ["PYTHONSAFEPATH"] = "1"
# A suite started in the background of a script (`cmd &`) inherits SIGINT ignored, and so would
# every muxtop it starts: the tests of Ctrl-C need it as a terminal delivers it.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

MODES = [("select", "level"), ("poll", "level"), ("epoll", "level"), ("epoll", "edge"),
         ("epoll", "oneshot"), ("uring", "level"), ("uring", "edge"), ("uring", "oneshot"),
         ("uring", "completion")]
MODE_IDS = [f"{b}-{t}" for b, t in MODES]
# The modes where the kernel reports readiness and muxtop reads itself: the proxy's (uring's
# completion mode serves muxtop's own protocols only).
READINESS_MODES = [(b, t) for b, t in MODES if t != "completion"]
READINESS_IDS = [f"{b}-{t}" for b, t in READINESS_MODES]


@pytest.fixture
def make_engine():
    """Start engines on 127.0.0.1:0; every one is stopped (and its fds closed) at teardown."""
    engines: list[Engine] = []

    def start(**settings) -> Engine:
        settings.setdefault("port", 0)
        engine = Engine(EngineConfig(**settings)).start()
        engines.append(engine)
        return engine

    yield start
    for engine in engines:
        engine.stop()


@pytest.fixture
def recording(tmp_path):
    """An open made-up recording: 8 Snapshots, 40 wait calls apart (seq 1-320)."""
    path = tmp_path / "made-up.muxrec"
    write(path, ticks=8, per_tick=40)
    with Recording.open(str(path)) as rec:
        yield rec
