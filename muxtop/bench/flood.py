"""`muxtop bench flood`: coordinated omission, shown. Start `muxtop --headless --port 0`, run an
open-loop and a closed-loop flood at the same fixed rate against it at the same time, SIGSTOP
the server for a second in the middle, and print both floods' latency percentiles side by side.

Both floods see the very same stall because they run together. The closed loop sends nothing
while it waits, so the stall costs it one slow sample per client; the open loop keeps its
schedule, so every message due during the stall is late, and its percentiles say so.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field

from muxtop import children
from muxtop.flood.latency import PERCENTILES
from muxtop.flood.process import FloodProcess, FloodSettings
from muxtop.userfiles import UserFileError, create

START_TIMEOUT = 15.0   # seconds for the server to say where it listens
_LISTEN = re.compile(r"server on (\S+):(\d+),")


class BenchError(Exception):
    """The bench cannot run as asked; the message says why."""


@dataclass(frozen=True)
class StallPlan:
    clients: int = 20
    rate: float = 100.0        # messages/s per client, in both floods
    size: int = 64
    duration: float = 5.0      # seconds each flood runs
    stall_at: float = 2.0      # seconds into the floods the server is stopped...
    stall: float = 1.0         # ...for this long
    backend: str = "epoll"
    hdr_log: str | None = None  # the open-loop flood's interval log, if wanted


@dataclass
class StallResult:
    plan: StallPlan
    server: str                                  # "127.0.0.1:PORT epoll"
    stalled_at: float = 0.0                      # seconds after both floods had started
    stalled_for: float = 0.0                     # as measured around SIGSTOP/SIGCONT
    summaries: dict[str, dict] = field(default_factory=dict)   # mode -> flood summary
    trends: dict[str, list[dict]] = field(default_factory=dict)  # mode -> interval_ms/s
    errors: dict[str, list[str]] = field(default_factory=dict)

    def as_json(self) -> dict:
        return {"bench": "flood", "plan": self.plan.__dict__, "server": self.server,
                "stalled_at_s": round(self.stalled_at, 3),
                "stalled_for_s": round(self.stalled_for, 3), "summaries": self.summaries,
                "trends": self.trends, "errors": self.errors}


class HeadlessServer:
    """`muxtop --headless --port 0` in a child process; the port is read from its first line.
    Its output goes to a temporary file, not a pipe, so a stopped reader can never block it."""

    def __init__(self, backend: str) -> None:
        self._out = tempfile.TemporaryFile(mode="w+")  # noqa: SIM115  (closed in stop())
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "muxtop", "--headless", "--port", "0", "--backend", backend],
            stdin=subprocess.DEVNULL, stdout=self._out, stderr=subprocess.STDOUT)
        self.host, self.port = self._listening()

    def _listening(self) -> tuple[str, int]:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            self._out.seek(0)
            text = self._out.read()
            found = _LISTEN.search(text)
            if found:
                return found.group(1).strip("[]"), int(found.group(2))
            if self.proc.poll() is not None:
                raise BenchError(f"the server exited ({self.proc.returncode}): {text.strip()}")
            time.sleep(0.02)
        raise BenchError(f"the server did not say where it listens in {START_TIMEOUT:g} s")

    def stop(self) -> None:
        """Always safe: a stopped server is continued first, so SIGTERM can reach it."""
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.proc.pid, signal.SIGCONT)
        children.end(self.proc, grace=5)
        self._out.close()


def run_stall(plan: StallPlan, progress=lambda text: None) -> StallResult:
    """Both floods against one server, stalled once; their summaries and per-second trends."""
    server = HeadlessServer(plan.backend)
    result = StallResult(plan, f"{server.host}:{server.port} {plan.backend}")
    floods: dict[str, FloodProcess] = {}
    try:
        for mode in ("open-loop", "closed-loop"):
            settings = FloodSettings(server.host, server.port, clients=plan.clients,
                                     messages=0, size=plan.size, rate=plan.rate,
                                     duration=plan.duration, open_loop=mode == "open-loop")
            # main() made the file (new, or --force): the flood may replace it.
            extra = ("--hdr-log", plan.hdr_log, "--force") \
                if plan.hdr_log and mode == "open-loop" else ()
            floods[mode] = FloodProcess(settings, extra_args=extra)
        deadline = time.monotonic() + START_TIMEOUT
        while any(f.start_info is None and f.running for f in floods.values()):
            if time.monotonic() > deadline:
                raise BenchError("the floods did not start")
            time.sleep(0.01)
        started = time.monotonic()
        time.sleep(max(0.0, plan.stall_at - (time.monotonic() - started)))
        progress(f"SIGSTOP the server for {plan.stall:g} s")
        stop_time = time.monotonic()
        os.kill(server.proc.pid, signal.SIGSTOP)
        try:
            time.sleep(plan.stall)
        finally:
            os.kill(server.proc.pid, signal.SIGCONT)
        result.stalled_for = time.monotonic() - stop_time
        result.stalled_at = stop_time - started
        progress("SIGCONT: the server runs again")
        for mode, flood in floods.items():
            flood.wait(plan.duration + 30)
            if flood.summary is None:
                raise BenchError(f"the {mode} flood ended without a summary: "
                                 f"{flood.reason or 'no reason given'}")
            result.summaries[mode] = flood.summary
            result.trends[mode] = list(flood.trend)
            result.errors[mode] = list(flood.errors)
    finally:
        for flood in floods.values():
            flood.stop()
        server.stop()
    return result


def _ms(value: float | None) -> str:
    if value is None:
        return "—"
    return f"{value:,.3f}" if value < 10 else f"{value:,.1f}"


def table(result: StallResult) -> str:
    """The two floods side by side: what was sent, and each latency percentile."""
    p = result.plan
    modes = ("open-loop", "closed-loop")
    summaries = [result.summaries[m] for m in modes]
    col = 14
    lines = [
        (f"muxtop bench flood: {p.clients} clients × {p.rate:g} msg/s each, {p.size}-byte "
         f"echo, {p.duration:g} s, against muxtop --headless ({result.server}); both floods at "
         "once"),
        (f"server SIGSTOPped {result.stalled_at:.2f} s into the floods for "
         f"{result.stalled_for:.3f} s"),
        "",
        f"{'':<22}" + "".join(f"{m:>{col}}" for m in modes),
    ]
    for key, name in (("messages_sent", "messages sent"), ("messages_echoed", "echoed"),
                      ("mismatches", "mismatches"), ("failed_total", "failed connections"),
                      ("latency_samples", "latency samples")):
        lines.append(f"{name:<22}" + "".join(f"{s[key]:>{col},}" for s in summaries))
    for _, pname in (*PERCENTILES, (None, "max")):
        lines.append(f"{'latency ' + pname + ' ms':<22}"
                     + "".join(f"{_ms(s['rtt_ms'][pname]):>{col}}" for s in summaries))
    lines.append("")
    lines.append("p99 each second, ms:")
    for mode in modes:
        cells = " ".join(_ms(i.get("p99")) for i in result.trends[mode])
        lines.append(f"  {mode:<12} {cells}")
    lines += ["",
              "open loop: messages are due on a fixed schedule whatever the server does, and a",
              "  latency counts from when its message was due: the stall shows as a second's",
              "  worth of late messages;",
              "closed loop: a client waits for each echo before it sends the next, so during the",
              "  stall it sends nothing and the stall shows as one slow sample per client",
              "  (coordinated omission)."]
    return "\n".join(lines)


def parser():
    from muxtop.arguments import Parser, file_name, positive_float, positive_int
    from muxtop.backends import NAMES

    p = Parser(
        prog="muxtop bench flood",
        usage="muxtop bench flood [options] (--help lists them)",
        description="Coordinated omission, shown: an open-loop and a closed-loop flood at the "
        "same fixed rate against muxtop --headless, which is SIGSTOPped for a while in the "
        "middle; their latency percentiles side by side.")
    p.add_argument("--clients", type=positive_int, default=StallPlan.clients,
                   help=f"connections per flood (default {StallPlan.clients})")
    p.add_argument("--rate", type=positive_float, default=StallPlan.rate, metavar="R",
                   help=f"messages/s per connection, both floods (default {StallPlan.rate:g})")
    p.add_argument("--size", type=positive_int, default=StallPlan.size,
                   help=f"message bytes (default {StallPlan.size})")
    p.add_argument("--duration", type=positive_float, default=StallPlan.duration, metavar="S",
                   help=f"seconds each flood runs (default {StallPlan.duration:g})")
    p.add_argument("--stall-at", type=positive_float, default=StallPlan.stall_at, metavar="S",
                   help=f"seconds into the floods to stop the server (default "
                   f"{StallPlan.stall_at:g})")
    p.add_argument("--stall", type=positive_float, default=StallPlan.stall, metavar="S",
                   help=f"seconds the server stays stopped (default {StallPlan.stall:g})")
    p.add_argument("--backend", choices=NAMES, default=StallPlan.backend,
                   help=f"the server's backend (default {StallPlan.backend})")
    p.add_argument("--hdr-log", metavar="FILE", type=file_name,
                   help="the open-loop flood's interval log (a new file unless --force)")
    p.add_argument("--force", action="store_true", help="let --hdr-log replace a file")
    p.add_argument("--json", action="store_true", help="print one JSON document instead")
    return p


def main(argv: list[str]) -> int:
    import json

    p = parser()
    args = p.parse_args(argv)
    if args.stall_at + args.stall >= args.duration:
        p.error(f"--stall-at {args.stall_at:g} + --stall {args.stall:g} must end before "
                f"--duration {args.duration:g}: the floods must see the server come back")
    if args.hdr_log is not None:
        try:  # refused here, before a server starts, rather than by the flood child
            create(args.hdr_log, force=args.force).close()
        except UserFileError as exc:
            print(f"muxtop bench: --hdr-log: {exc}", file=sys.stderr)
            return 1
    plan = StallPlan(clients=args.clients, rate=args.rate, size=args.size,
                     duration=args.duration, stall_at=args.stall_at, stall=args.stall,
                     backend=args.backend, hdr_log=args.hdr_log)

    def progress(text: str) -> None:
        print(f"  {text}", file=sys.stderr, flush=True)

    # SIGTERM unwinds like Ctrl-C, so the finally blocks continue and kill the server.
    previous = signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        result = run_stall(plan, progress)
    except BenchError as exc:
        print(f"muxtop bench: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("muxtop bench: interrupted; the server and floods were stopped", file=sys.stderr)
        return 130
    finally:
        signal.signal(signal.SIGTERM, previous)
    if args.json:
        print(json.dumps(result.as_json(), indent=1))
    else:
        print(table(result))
    return 0
