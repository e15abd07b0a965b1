"""Launch and watch a flood from a UI without blocking it: ``FloodProcess`` runs
``python -m muxtop flood ... --json`` as a child process (its own GIL), and a daemon thread
parses its JSON lines into ``.progress`` and ``.summary``, which the UI reads whenever it likes.

    flood = FloodProcess(DEFAULT_FLOOD.at("127.0.0.1", port))
    ...                     # each UI tick: flood.progress, flood.running, flood.local_ports()
    flood.stop()            # SIGTERM: the flood stops, prints its summary, exits
    flood.reason            # why it failed, in words, once it has (None otherwise)
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
from collections import deque
from dataclasses import dataclass, replace
from typing import Self

import psutil

from muxtop import children


@dataclass(frozen=True)
class FloodSettings:
    """What `muxtop flood` is asked to do (the flags of the same names)."""

    host: str
    port: int
    pattern: str = "echo"
    clients: int = 500
    messages: int = 3
    size: int = 64
    rate: float = 0.0
    connect_rate: float = 0.0
    duration: float | None = None
    open_loop: bool = False

    def at(self, host: str, port: int) -> FloodSettings:
        """The same flood aimed at another server."""
        return replace(self, host=host, port=port)

    def argv(self) -> list[str]:
        """The `muxtop flood` arguments (after the word `flood`) for these settings."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        args = [f"{host}:{self.port}", "--pattern", self.pattern,
                "--clients", str(self.clients), "--messages", str(self.messages),
                "--size", str(self.size), "--rate", repr(float(self.rate)),
                "--connect-rate", repr(float(self.connect_rate))]
        if self.duration is not None:
            args += ["--duration", repr(float(self.duration))]
        if self.open_loop:
            args.append("--open-loop")
        return args


# Placeholder targets: use .at(host, port).
# The dashboard's `f`: 500 clients × 20 echoed messages at 2/s each, about 10 s on screen.
DEFAULT_FLOOD = FloodSettings(host="127.0.0.1", port=0, messages=20, rate=2.0)
SEED_FLOOD = FloodSettings(host="127.0.0.1", port=0)  # the seed's: 500 × 3 as fast as echoed
# The dashboard's `h`: connections that only sit there, the cost select and poll pay.
IDLE_HERD = FloodSettings(host="127.0.0.1", port=0, pattern="idle", clients=1000, messages=0)
TREND_SECONDS = 120   # per-second latency intervals kept for the dashboard's trend


class FloodProcess:
    """One running (or finished) `muxtop flood` child. Starts on construction.

    ``progress`` and ``summary`` are dicts parsed from the child's JSON lines, replaced whole
    (never mutated), so reading them from another thread needs no lock. ``errors`` keeps the
    last lines the child wrote to stderr (refusals, fd-limit notices). ``trend`` holds the
    latest per-second latency intervals (``interval_ms`` of each progress line), oldest first,
    as a tuple replaced whole."""

    def __init__(self, settings: FloodSettings, *, extra_args: tuple[str, ...] = (),
                 python: str = sys.executable) -> None:
        self.args = settings
        self.progress: dict | None = None
        self.summary: dict | None = None
        self.start_info: dict | None = None
        self.trend: tuple[dict, ...] = ()
        self.errors: deque[str] = deque(maxlen=50)
        command = [python, "-m", "muxtop", "flood", *settings.argv(), *extra_args, "--json"]
        self._popen = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True, bufsize=1)
        self.pid = self._popen.pid
        self._stdout_reader = threading.Thread(target=self._read_stdout, daemon=True,
                                               name=f"flood-{self.pid}-stdout")
        self._stderr_reader = threading.Thread(target=self._read_stderr, daemon=True,
                                               name=f"flood-{self.pid}-stderr")
        self._stdout_reader.start()
        self._stderr_reader.start()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ---------------------------------------------------------------- readers (own threads)

    def _read_stdout(self) -> None:
        for line in self._popen.stdout:
            try:
                record = json.loads(line)
            except ValueError:
                continue   # not ours to interpret
            kind = record.get("type") if isinstance(record, dict) else None
            if kind == "progress":
                self.progress = record
                interval = record.get("interval_ms")
                if isinstance(interval, dict):
                    self.trend = (*self.trend[1 - TREND_SECONDS:], interval)
            elif kind == "summary":
                self.summary = record
            elif kind == "start":
                self.start_info = record
        self._popen.stdout.close()

    def _read_stderr(self) -> None:
        for line in self._popen.stderr:
            self.errors.append(line.rstrip("\n"))
        self._popen.stderr.close()

    # ---------------------------------------------------------------- state

    @property
    def running(self) -> bool:
        return self._popen.poll() is None

    @property
    def returncode(self) -> int | None:
        return self._popen.poll()

    @property
    def reason(self) -> str | None:
        """Why the flood failed, in a few words, once it has: the signal that killed it, the
        failures and mismatches its summary counts, or the last line it wrote to stderr (a
        usage error, a crash). None while it runs and when it ended cleanly."""
        code = self._popen.poll()
        if code is None or code == 0:
            return None
        if code < 0:
            try:
                name = signal.Signals(-code).name
            except ValueError:
                name = f"signal {-code}"
            return f"killed by {name}" + (" before its first report"
                                          if self.progress is None else "")
        summary = self.summary
        if summary is not None:
            parts = []
            failed = summary.get("failed") or {}
            if failed:
                parts.append(f"{sum(failed.values()):,} connections failed (" + ", ".join(
                    f"{why} {count:,}" for why, count in sorted(failed.items())) + ")")
            if summary.get("mismatches"):
                parts.append(f"{summary['mismatches']:,} echoes mismatched")
            if parts:
                return "; ".join(parts)
        # Read as they stand (never wait here: the UI asks every tick, and the child's last
        # words, if still in the pipe, show on a later one).
        lines = [line.strip() for line in self.errors if line.strip()]
        if lines:
            return lines[-1].removeprefix("muxtop flood: ")
        return f"exit {code} with no message"

    def wait(self, timeout: float | None = None) -> int:
        """Wait for the flood to end by itself; its summary is parsed when this returns."""
        code = self._popen.wait(timeout)
        self._stdout_reader.join(timeout)
        self._stderr_reader.join(timeout)
        return code

    def stop(self, timeout: float = 5.0) -> dict | None:
        """SIGTERM, then wait for the summary and the exit (SIGKILL after ``timeout`` s).
        Returns the summary (None if the child died without one)."""
        children.end(self._popen, grace=timeout)
        self._stdout_reader.join(timeout)
        self._stderr_reader.join(timeout)
        return self.summary

    def local_ports(self) -> set[int]:
        """Local TCP ports the flood (and its worker processes) hold open now; best effort,
        an empty set once it is gone."""
        ports: set[int] = set()
        try:
            parent = psutil.Process(self.pid)
            procs = [parent, *parent.children(recursive=True)]
        except (psutil.Error, OSError):  # OSError: out of fds (EMFILE) reading /proc
            return ports
        for proc in procs:
            try:
                for conn in proc.net_connections(kind="tcp"):
                    if conn.laddr:
                        ports.add(conn.laddr.port)
            except (psutil.Error, OSError):
                continue
        return ports
