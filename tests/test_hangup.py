"""A hang-up ends muxtop as SIGTERM does: the dashboard in a pseudo-terminal whose master is
closed (the window went away) exits, frees its port and leaves a recording that reads to its
end, whether or not the terminal was its controlling terminal (only then does SIGHUP come)."""

from __future__ import annotations

import fcntl
import os
import pty
import select
import socket
import struct
import subprocess
import sys
import termios
import time

import pytest

from muxtop.record.reader import Recording

pytestmark = pytest.mark.timeout(60)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def take_terminal() -> None:
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)  # in the child, after setsid: SIGHUP comes to it


@pytest.mark.parametrize("controlling", [True, False], ids=["sighup", "no-sighup"])
def test_closing_the_terminal_ends_muxtop_and_its_recording(tmp_path, controlling):
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 100, 0, 0))
    port, record = free_port(), tmp_path / "hup.mxr"
    proc = subprocess.Popen(
        [sys.executable, "-m", "muxtop", "--port", str(port), "--record", str(record)],
        stdin=slave, stdout=slave, stderr=slave, start_new_session=True, close_fds=True,
        preexec_fn=take_terminal if controlling else None,
        env={**os.environ, "TERM": "xterm-256color"})
    os.close(slave)
    try:
        screen, deadline = b"", time.monotonic() + 30
        while b"conns" not in screen and time.monotonic() < deadline:  # the dashboard is up
            if select.select([master], [], [], 0.5)[0]:
                try:
                    screen += os.read(master, 65536)
                except OSError:
                    break
        assert b"conns" in screen, screen[-500:]
        assert listening(port)
        os.close(master)
        master = -1
        assert proc.wait(timeout=10) == 0
    finally:
        if master >= 0:
            os.close(master)
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert not listening(port)
    with Recording(str(record)) as recording:
        assert recording.end_frame is not None, recording.problems
        assert not recording.problems, recording.problems
