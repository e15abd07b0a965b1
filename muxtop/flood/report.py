"""How a flood reports: a progress line a second (human on stderr, or JSON lines on stdout with
--json) and a final summary (human on stdout, or one JSON object with "type": "summary")."""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable
from typing import TextIO

from muxtop.flood.stats import FloodStats


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.3g} ms"


def _failures(failed: dict[str, int]) -> str:
    if not failed:
        return "0"
    total = sum(failed.values())
    return f"{total} (" + ", ".join(f"{k} {v}" for k, v in sorted(failed.items())) + ")"


class Reporter:
    """Turns stats into lines. ``header`` holds the settings every JSON line repeats."""

    def __init__(self, header: dict, *, as_json: bool, out: TextIO | None = None,
                 err: TextIO | None = None) -> None:
        self.header = header
        self.as_json = as_json
        self.out = out or sys.stdout
        self.err = err or sys.stderr
        self.started = time.perf_counter()
        self._last_time = self.started
        self._last_echoed = 0
        self._last_connected = 0
        self.notices: list[str] = []
        self.on_broken_pipe: Callable[[], None] | None = None

    def _write(self, stream: TextIO, text: str) -> None:
        try:
            stream.write(text)
            stream.flush()
        except BrokenPipeError:
            # Nobody reads us any more (the dashboard went away, or `| head` had enough):
            # send the rest to /dev/null and stop the flood rather than run on unwatched.
            try:
                devnull = os.open(os.devnull, os.O_WRONLY)
                os.dup2(devnull, stream.fileno())
                os.close(devnull)
            except (OSError, ValueError):
                pass
            if self.on_broken_pipe is not None:
                self.on_broken_pipe()

    def elapsed(self) -> float:
        return time.perf_counter() - self.started

    def _emit_json(self, record: dict) -> None:
        self._write(self.out, json.dumps(record, separators=(",", ":")) + "\n")

    def start(self, extra: dict) -> None:
        if self.as_json:
            self._emit_json({"type": "start", **self.header, **extra})

    def notice(self, text: str) -> None:
        """A one-off message worth a human's attention (e.g. out of file descriptors)."""
        self.notices.append(text)
        self._write(self.err, f"muxtop flood: {text}\n")

    def progress(self, stats: FloodStats) -> dict:
        now = time.perf_counter()
        dt = max(now - self._last_time, 1e-9)
        record = {
            "type": "progress",
            "elapsed_s": round(now - self.started, 3),
            **stats.as_dict(),
            "round_trips_per_s": round((stats.messages_echoed - self._last_echoed) / dt, 1),
            "connects_per_s": round((stats.connected - self._last_connected) / dt, 1),
        }
        self._last_time, self._last_echoed = now, stats.messages_echoed
        self._last_connected = stats.connected
        if self.as_json:
            self._emit_json(record)
        else:
            rtt = record["rtt_ms"]
            self._write(
                self.err,
                f"[{record['elapsed_s']:6.1f}s] connected {stats.connected:,} "
                f"active {stats.active:,} failed {_failures(stats.failed)} | "
                f"echoed {stats.messages_echoed:,} ({record['round_trips_per_s']:,.0f}/s) "
                f"mismatches {stats.mismatches:,} | rtt p50 {_ms(rtt['p50'])} "
                f"p99 {_ms(rtt['p99'])}\n")
        return record

    def summary(self, stats: FloodStats, *, stopped_by: str, unfinished: int,
                fd_limit: tuple[int, int]) -> dict:
        elapsed = self.elapsed()
        counters = stats.as_dict()
        ok = stats.mismatches == 0 and stats.failed_total == 0
        record = {
            "type": "summary",
            **self.header,
            "elapsed_s": round(elapsed, 3),
            "stopped_by": stopped_by,
            "unfinished": unfinished,
            **counters,
            "round_trips_per_s": round(stats.messages_echoed / elapsed, 1) if elapsed else 0.0,
            "fd_limit": {"soft": fd_limit[0], "hard": fd_limit[1]},
            "notices": self.notices,
            "ok": ok,
        }
        if self.as_json:
            self._emit_json(record)
            return record
        h = self.header
        rtt = counters["rtt_ms"]
        resets = f", resets sent {stats.resets:,}" if stats.resets else ""
        lines = [
            (f"muxtop flood: {h['pattern']} -> {h['target']}, {h['clients']:,} clients, "
             f"{elapsed:.2f} s ({stopped_by})"),
            (f"  connections  connected {stats.connected:,}, completed {stats.completed:,}, "
             f"failed {_failures(stats.failed)}, unfinished {unfinished:,}"),
            (f"  messages     sent {stats.messages_sent:,}, echoed {stats.messages_echoed:,} "
             f"({record['round_trips_per_s']:,.0f}/s), mismatches {stats.mismatches:,}{resets}"),
            f"  bytes        sent {stats.bytes_sent:,}, received {stats.bytes_received:,}",
            (f"  round trip   p50 {_ms(rtt['p50'])}, p99 {_ms(rtt['p99'])}, "
             f"max {_ms(rtt['max'])}"),
        ]
        for reason in ("EMFILE", "ENFILE"):
            if reason in stats.failed:
                lines.append(
                    f"  fd limit     {stats.failed[reason]:,} connections could not be opened: "
                    f"out of file descriptors ({reason}; RLIMIT_NOFILE soft {fd_limit[0]}, "
                    f"hard {fd_limit[1]}). Raise `ulimit -n` or use fewer --clients.")
        lines.append("  result       " + ("OK" if ok else "FAILED"))
        self._write(self.out, "\n".join(lines) + "\n")
        return record
