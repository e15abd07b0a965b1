"""A tracing tool (bpftrace or strace) running against one process, its output parsed on a
thread of ours into calls that `drain()` hands over.

The tool is a child in its own session (Ctrl-C in a terminal reaches muxtop, which stops it
in order) that dies with muxtop (PR_SET_PDEATHSIG) if muxtop is killed outright. Its output
is read as it comes; what was parsed waits in a bounded list until drained, so a reader that
stops draining costs memory up to PENDING_MAX calls, then drops the oldest (counted as lost).
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from typing import Protocol

from muxtop.snapshot import TRACE_STARTING, TRACE_STOPPED, TRACE_TRACING
from muxtop.trace.calls import TracedCtl, TracedIo, TracedIoSummary, TracedWait

PENDING_MAX = 500_000  # parsed calls kept between drains (a second of a very busy target)
STOP_WAIT = 2.0  # seconds a tool gets to detach after SIGINT before it is killed
_PR_SET_PDEATHSIG = 1


class TraceUnavailable(Exception):
    """No tracer can run against the process; the message says what is missing and how to
    get it, in one or more short lines."""


class Parser(Protocol):
    unread: int
    messages: list[str]
    exited: bool

    def feed(self, line: str) -> TracedWait | TracedIo | TracedCtl | None: ...


def _die_with_parent() -> None:
    # Runs in the child between fork and exec: if muxtop dies without stopping the tracer, the
    # kernel sends it SIGTERM, so no strace stays attached to a process nobody watches.
    try:
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        pass


class Tracer:
    """`start()` runs the tool and returns once it traces (or raises TraceUnavailable with
    what it said); `drain()` returns the calls parsed since the last drain; `stop()` ends it.

    `ready(tracer)` says when the tool has attached: bpftrace prints a line, strace shows as
    the target's TracerPid. `lost()` adds what the tool itself reports dropping."""

    def __init__(self, name: str, argv: list[str], parser: Parser, *, pid: int,
                 ready: Callable[[Tracer], bool], note: str = "", io: bool = True,
                 env: dict[str, str] | None = None, detached_at_once: bool = False) -> None:
        self.name = name
        self.argv = argv
        self.parser = parser
        self.pid = pid
        self.io = io
        self.note = note  # what a person must know while it runs (strace's slowdown)
        self.detached_at_once = detached_at_once
        self.state = TRACE_STARTING
        self.since = time.monotonic()
        self.waits = self.io_calls = self.dropped = 0
        self.lines_seen = 0
        self.ended = ""  # why it stopped, once it has
        self._ready = ready
        self._env = env
        self._proc: subprocess.Popen | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._pending: list[TracedWait | TracedIo | TracedCtl] = []
        self._stopping = False

    # ---- life --------------------------------------------------------------------------

    def start(self, timeout: float = 20.0) -> Tracer:
        env = dict(os.environ, **self._env) if self._env else None
        try:
            self._proc = subprocess.Popen(
                self.argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT, text=True, errors="replace", bufsize=1, env=env,
                start_new_session=True, preexec_fn=_die_with_parent)
        except OSError as exc:
            raise TraceUnavailable(f"{self.name} could not start: {exc.strerror}") from None
        self._thread = threading.Thread(target=self._read, daemon=True,
                                        name=f"{self.name}-{self.pid}")
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._ready(self):
            if self._proc.poll() is not None:
                self._thread.join(1.0)
                failure = self._failure()
                self._proc.stdout.close()  # the tool is gone: nothing more to read
                raise TraceUnavailable(failure)
            if time.monotonic() > deadline:
                self.stop()
                raise TraceUnavailable(f"{self.name} did not start tracing within "
                                       f"{timeout:g} s")
            time.sleep(0.02)
        self.state = TRACE_TRACING
        self.since = time.monotonic()
        return self

    @property
    def child_pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def stop(self) -> None:
        """Stop the tool (SIGINT: strace detaches, bpftrace removes its probes); kill it if
        it takes longer than STOP_WAIT. A tool that says `detached_at_once` (bpftrace: the
        target never stopped, and the kernel takes seconds to remove probes) finishes on a
        thread of its own; the others are waited for, so the target is free on return."""
        self._stopping = True
        proc = self._proc
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            if self.detached_at_once:
                threading.Thread(target=self._finish, daemon=True,
                                 name=f"{self.name}-stop").start()
            else:
                self._finish()
        if self.state != TRACE_STOPPED:
            self.state = TRACE_STOPPED
            self.ended = self.ended or "stopped"

    def _finish(self) -> None:
        proc = self._proc
        assert proc is not None
        try:
            proc.wait(STOP_WAIT)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(STOP_WAIT)
        if self._thread is not None:
            self._thread.join(STOP_WAIT)
        if proc.stdout is not None:
            proc.stdout.close()

    # ---- output ------------------------------------------------------------------------

    def _read(self) -> None:
        proc = self._proc
        assert proc is not None and proc.stdout is not None
        feed = self.parser.feed
        try:
            for line in proc.stdout:
                self.lines_seen += 1
                call = feed(line)
                if call is None:
                    continue
                with self._lock:
                    pending = self._pending
                    pending.append(call)
                    if len(pending) > PENDING_MAX:
                        # A tenth at once: dropping one per line would shift the whole list
                        # for every line, just when the tracer is busiest.
                        drop = len(pending) - PENDING_MAX * 9 // 10
                        del pending[:drop]
                        self.dropped += drop
        except (OSError, ValueError):
            pass  # the pipe closed under us: stop() is under way
        if not self._stopping:
            proc.wait()
            self.state = TRACE_STOPPED
            self.ended = self._failure()

    def drain(self) -> list[TracedWait | TracedIo | TracedCtl]:
        """The calls parsed since the last drain, in the order the tool printed them."""
        with self._lock:
            calls, self._pending = self._pending, []
        for call in calls:
            if isinstance(call, TracedWait):
                self.waits += 1
            elif isinstance(call, TracedIo):
                self.io_calls += 1
            elif isinstance(call, TracedIoSummary):
                self.io_calls += call.reads + call.writes
        return calls

    def lost(self) -> int:
        return self.dropped + getattr(self.parser, "lost", 0) + self.parser.unread

    def _failure(self) -> str:
        """Why the tool ended, from its last lines."""
        code = self._proc.returncode if self._proc is not None else None
        said = "; ".join(line.strip() for line in self.parser.messages
                         if line.strip() and "RLIMIT_MEMLOCK" not in line)
        if self.parser.exited:
            return "the traced process exited"
        if said:
            return f"{self.name} stopped: {said}"
        return f"{self.name} exited with status {code}"
