"""How a flood reports: a progress line a second (human on stderr, or JSON lines on stdout with
--json) with that second's latency percentiles, a final summary (human on stdout, or one JSON
object with "type": "summary"), and, with --hdr-log, each second's latency histogram."""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable
from typing import TextIO

from muxtop.flood.hdrlog import IntervalLog
from muxtop.flood.latency import percentiles_ms
from muxtop.flood.stats import FloodStats


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.3g} ms"


def _failures(failed: dict[str, int]) -> str:
    if not failed:
        return "0"
    total = sum(failed.values())
    return f"{total} (" + ", ".join(f"{k} {v}" for k, v in sorted(failed.items())) + ")"


def _percentiles(shown: dict) -> str:
    return ", ".join(f"{name} {_ms(value)}" for name, value in shown.items())


def describe_mode(header: dict) -> str:
    """One line on how the messages were paced and where a latency counts from."""
    rate = header.get("rate") or 0
    if header.get("mode") == "open-loop":
        return (f"open loop: {rate:g} msg/s per client on a fixed schedule, whatever the "
                "server does; latency counts from when each message was due")
    pace = f", at most {rate:g} msg/s per client" if rate else ""
    return ("closed loop (the default): the next message goes when the pattern allows "
            f"(echo: once the last echo is back){pace}; latency counts from each send")


class Reporter:
    """Turns stats into lines. ``header`` holds the settings every JSON line repeats."""

    def __init__(self, header: dict, *, as_json: bool, out: TextIO | None = None,
                 err: TextIO | None = None, hdr_log: IntervalLog | None = None) -> None:
        self.header = header
        self.as_json = as_json
        self.out = out or sys.stdout
        self.err = err or sys.stderr
        self.hdr_log = hdr_log
        self.started = time.perf_counter()
        self.started_epoch = time.time()
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

    def _epoch_ms(self, perf: float) -> float:
        return (self.started_epoch + perf - self.started) * 1000.0

    def _emit_json(self, record: dict) -> None:
        self._write(self.out, json.dumps(record, separators=(",", ":")) + "\n")

    def start(self, extra: dict) -> None:
        if self.as_json:
            self._emit_json({"type": "start", **self.header, **extra})

    def notice(self, text: str) -> None:
        """A one-off message worth a human's attention (e.g. out of file descriptors)."""
        self.notices.append(text)
        self._write(self.err, f"muxtop flood: {text}\n")

    def _interval(self, stats: FloodStats, now: float) -> dict:
        """Close the latency interval since the last line: its percentiles (and a line of
        the interval log)."""
        latency = stats.latency
        latency.fold()
        interval_max = latency.interval_max
        interval = latency.cut(self._epoch_ms(self._last_time), self._epoch_ms(now))
        if self.hdr_log is not None:
            self.hdr_log.write(interval)
        shown = percentiles_ms(interval, interval_max or None)
        return {"count": interval.get_total_count(), **shown}

    def progress(self, stats: FloodStats) -> dict:
        now = time.perf_counter()
        dt = max(now - self._last_time, 1e-9)
        interval = self._interval(stats, now)
        record = {
            "type": "progress",
            "elapsed_s": round(now - self.started, 3),
            **stats.as_dict(),
            "interval_ms": interval,
            "round_trips_per_s": round((stats.messages_echoed - self._last_echoed) / dt, 1),
            "connects_per_s": round((stats.connected - self._last_connected) / dt, 1),
        }
        self._last_time, self._last_echoed = now, stats.messages_echoed
        self._last_connected = stats.connected
        if self.as_json:
            self._emit_json(record)
        else:
            self._write(
                self.err,
                f"[{record['elapsed_s']:6.1f}s] connected {stats.connected:,} "
                f"active {stats.active:,} failed {_failures(stats.failed)} | "
                f"echoed {stats.messages_echoed:,} ({record['round_trips_per_s']:,.0f}/s) "
                f"mismatches {stats.mismatches:,} | latency this second: p50 "
                f"{_ms(interval['p50'])} p99 {_ms(interval['p99'])} "
                f"p99.9 {_ms(interval['p99.9'])} max {_ms(interval['max'])}\n")
        return record

    def summary(self, stats: FloodStats, *, stopped_by: str, unfinished: int,
                fd_limit: tuple[int, int]) -> dict:
        elapsed = self.elapsed()
        now = time.perf_counter()
        if self.hdr_log is not None:   # the last, partial interval
            self._interval(stats, now)
            self.hdr_log.close()
        counters = stats.as_dict()
        ok = stats.mismatches == 0 and stats.failed_total == 0
        record = {
            "type": "summary",
            **self.header,
            "elapsed_s": round(elapsed, 3),
            "stopped_by": stopped_by,
            "unfinished": unfinished,
            **counters,
            "latency_samples": stats.latency.count(),
            "round_trips_per_s": round(stats.messages_echoed / elapsed, 1) if elapsed else 0.0,
            "fd_limit": {"soft": fd_limit[0], "hard": fd_limit[1]},
            "notices": self.notices,
            "ok": ok,
        }
        if self.as_json:
            self._emit_json(record)
            return record
        h = self.header
        resets = f", resets sent {stats.resets:,}" if stats.resets else ""
        lines = [
            (f"muxtop flood: {h['pattern']} -> {h['target']}, {h['clients']:,} clients, "
             f"{elapsed:.2f} s ({stopped_by})"),
            f"  mode         {describe_mode(h)}",
            (f"  connections  connected {stats.connected:,}, completed {stats.completed:,}, "
             f"failed {_failures(stats.failed)}, unfinished {unfinished:,}"),
            (f"  messages     sent {stats.messages_sent:,}, echoed {stats.messages_echoed:,} "
             f"({record['round_trips_per_s']:,.0f}/s), mismatches {stats.mismatches:,}{resets}"),
            f"  bytes        sent {stats.bytes_sent:,}, received {stats.bytes_received:,}",
            (f"  latency      {_percentiles(counters['rtt_ms'])} "
             f"({record['latency_samples']:,} samples)"),
        ]
        faults = [f"{name} {counters[name]:,}" for name in ("slices", "delayed", "held", "cut")
                  if counters[name]]
        if faults:
            lines.append("  faults       " + ", ".join(faults))
        for reason in ("EMFILE", "ENFILE"):
            if reason in stats.failed:
                lines.append(
                    f"  fd limit     {stats.failed[reason]:,} connections could not be opened: "
                    f"out of file descriptors ({reason}; RLIMIT_NOFILE soft {fd_limit[0]}, "
                    f"hard {fd_limit[1]}). Raise `ulimit -n` or use fewer --clients.")
        lines.append("  result       " + ("OK" if ok else "FAILED"))
        self._write(self.out, "\n".join(lines) + "\n")
        return record
