"""A program on a pseudo-terminal, as a person runs it: its own process, the pty its controlling
terminal, a terminal emulator (pyte) keeping the screen it draws. The benches press keys into it
and time how long the screen takes to show what a key did; or only drain and count its output.

Each read from the pty is stamped with the moment it returned and handed to a second thread
that feeds the emulator, so a figure ends when the bytes reached the terminal, not when this
(pure Python, slow) emulator finished parsing them. Colour escapes (SGR) are dropped before
parsing: they never move the cursor, and they are most of what pyte spends its time on.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import pty
import queue
import re
import signal
import struct
import termios
import threading
import time
from collections.abc import Callable
from time import perf_counter

SGR = re.compile(rb"\x1b\[[0-9;:]*m")
# An escape sequence cut by the end of a read: kept for the next read, so SGR sees it whole.
CUT_ESCAPE = re.compile(rb"\x1b(\[[0-9;:?]*)?$")
SHOWN_LINES = 8  # of the screen, in the error when it never showed what was awaited


class TerminalError(Exception):
    """The program under the terminal failed or never showed what was awaited."""


class Terminal:
    """`argv` on a pty of `width` x `height` (its controlling terminal, TERM=xterm-256color).
    `emulate`: keep its screen with pyte (for `wait_for`); else only count the bytes."""

    def __init__(self, argv: list[str], width: int, height: int, *, emulate: bool = True,
                 env: dict[str, str] | None = None) -> None:
        self.width, self.height = width, height
        self.bytes_out = 0  # everything the program wrote to its terminal
        self._closed = False
        self._chunks: queue.SimpleQueue = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._waiter: tuple[Callable[[str], bool], threading.Event, list[float]] | None = None
        self._screen = self._stream = None
        if emulate:
            import pyte  # the `bench` extra

            self._screen = pyte.Screen(width, height)
            self._stream = pyte.ByteStream(self._screen)
        child_env = dict(os.environ if env is None else env, TERM="xterm-256color",
                         COLUMNS=str(width), LINES=str(height))
        winsize = struct.pack("HHHH", height, width, 0, 0)
        self.pid, self._fd = pty.fork()
        if self.pid == 0:  # the child: the pty is its stdin, stdout, stderr and terminal
            try:
                fcntl.ioctl(0, termios.TIOCSWINSZ, winsize)
                os.execvpe(argv[0], argv, child_env)
            finally:
                os._exit(127)
        self._reader = threading.Thread(target=self._read, daemon=True, name="bench-pty-read")
        self._reader.start()
        self._parser = None
        if emulate:
            self._parser = threading.Thread(target=self._parse, daemon=True,
                                            name="bench-pty-parse")
            self._parser.start()

    # ---- the two threads ------------------------------------------------------------------

    def _read(self) -> None:
        while True:
            try:
                data = os.read(self._fd, 65536)
            except OSError:  # EIO: the program closed its side (exited)
                data = b""
            if not data:
                self._chunks.put(None)
                return
            self.bytes_out += len(data)
            if self._stream is not None:
                self._chunks.put((perf_counter(), data))

    def _parse(self) -> None:
        carry = b""
        while (item := self._chunks.get()) is not None:
            at, data = item
            data = carry + data
            cut = CUT_ESCAPE.search(data)
            carry, data = (data[cut.start():], data[:cut.start()]) if cut else (b"", data)
            with self._lock:
                self._stream.feed(SGR.sub(b"", data))
                waiter = self._waiter
                if waiter is not None and waiter[0](self._text()):
                    waiter[2].append(at)
                    waiter[1].set()
                    self._waiter = None

    def _text(self) -> str:
        return "\n".join(self._screen.display)

    # ---- what a bench does ----------------------------------------------------------------

    def screen_text(self) -> str:
        with self._lock:
            return self._text()

    def press(self, keys: bytes) -> float:
        """Type `keys`; the moment they were written."""
        at = perf_counter()
        os.write(self._fd, keys)
        return at

    def expect(self, shows: Callable[[str], bool]) -> Callable[[float], float]:
        """Start watching for a screen where `shows(text)` holds (checked after each read
        from now on); returns `wait(timeout)`, which gives the moment the read that made it
        true returned. Call it before the key that should cause it."""
        done, at = threading.Event(), []
        with self._lock:
            self._waiter = (shows, done, at)

        def wait(timeout: float) -> float:
            if not done.wait(timeout):
                with self._lock:
                    self._waiter = None
                    text = self._text()
                alive = "running" if self.alive() else "exited"
                shown = [line.rstrip() for line in text.splitlines() if line.strip()]
                raise TerminalError(f"the screen did not change as expected in {timeout:g} s "
                                    f"(program {alive}); its first lines:\n"
                                    + "\n".join(shown[:SHOWN_LINES]))
            return at[0]
        return wait

    def wait_for(self, shows: Callable[[str], bool], timeout: float) -> float:
        """Wait until the screen shows what `shows` looks for (now or later)."""
        wait = self.expect(shows)
        with self._lock:
            if self._waiter is not None and shows(self._text()):
                self._waiter = None
                return perf_counter()
        return wait(timeout)

    def alive(self) -> bool:
        try:
            pid, _ = os.waitpid(self.pid, os.WNOHANG)
        except ChildProcessError:
            return False
        if pid:
            self.pid = -self.pid  # reaped: never signal that number again
            return False
        return True

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM (muxtop and the bare app quit cleanly on it), SIGKILL after `timeout`."""
        if self._closed:
            return
        self._closed = True
        if self.pid > 0 and self.alive():
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGTERM)
            deadline = time.monotonic() + timeout
            while self.alive() and time.monotonic() < deadline:
                time.sleep(0.02)
            if self.alive():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(self.pid, signal.SIGKILL)
                with contextlib.suppress(ChildProcessError):
                    os.waitpid(self.pid, 0)
        self._reader.join(5)  # EIO once the last holder of the pty's other side is gone
        if self._parser is not None:
            self._parser.join(5)
        os.close(self._fd)

    def __enter__(self) -> Terminal:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def thread_cpu(pid: int) -> dict[str, float]:
    """CPU seconds (user + system) of each thread of `pid` by its name (/proc/PID/task/*/stat;
    same-named threads add up): subtract two readings for a window."""
    tick = os.sysconf("SC_CLK_TCK")
    out: dict[str, float] = {}
    with contextlib.suppress(OSError):
        for tid in os.listdir(f"/proc/{pid}/task"):
            with contextlib.suppress(OSError, ValueError, IndexError):
                with open(f"/proc/{pid}/task/{tid}/stat", "rb") as f:
                    stat = f.read()
                # comm is in parentheses and may hold spaces: split after its last ')'.
                name = stat[stat.index(b"(") + 1:stat.rindex(b")")].decode(errors="replace")
                fields = stat[stat.rindex(b")") + 2:].split()
                out[name] = out.get(name, 0.0) + (int(fields[11]) + int(fields[12])) / tick
    return out
