"""`muxtop [options]`: start the engine, then the dashboard or (--headless) status lines."""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
import time

from muxtop import __version__
from muxtop.backends import NAMES, TRIGGERS
from muxtop.cli.types import non_negative_float, port_number, positive_float, positive_int
from muxtop.engine import LABS, Engine, EngineConfig, EngineStartError
from muxtop.engine.protocols import PROTOCOLS
from muxtop.snapshot import Snapshot


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="muxtop",
        description="A TCP server over select, poll or epoll, and a live dashboard of how the "
        "multiplexer sees it. Subcommands: muxtop flood HOST:PORT, muxtop bench, "
        "muxtop attach PID (each has --help).")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=port_number, default=8080,
                   help="TCP port (default 8080; 0 picks one)")
    p.add_argument("--backend", choices=NAMES, default="epoll", help="multiplexer (default epoll)")
    p.add_argument("--trigger", choices=TRIGGERS, default="level",
                   help="trigger mode; edge and oneshot need epoll (default level)")
    p.add_argument("--protocol", choices=tuple(PROTOCOLS), default="echo",
                   help="what the server answers (default echo)")
    p.add_argument("--max-conns", type=positive_int, default=None, metavar="N",
                   help="stop accepting at N open connections")
    p.add_argument("--lab", action="append", choices=LABS, default=[], metavar="NAME",
                   help=f"turn on a bug-lab switch ({', '.join(LABS)}); repeatable")
    p.add_argument("--stuck-after", type=non_negative_float, default=2.0, metavar="S",
                   help="seconds before a connection counts as stuck (default 2)")
    p.add_argument("--headless", action="store_true", help="no dashboard: one status line a second")
    p.add_argument("--json", action="store_true", help="with --headless: JSON lines")
    p.add_argument("--duration", type=non_negative_float, default=None, metavar="S",
                   help="stop after S seconds")
    p.add_argument("--refresh", type=refresh_interval, default=0.25, metavar="S",
                   help="seconds between dashboard redraws (default 0.25, at least 0.05)")
    p.add_argument("--theme", metavar="NAME", default=None,
                   help="dashboard colours: textual-dark (default), textual-light (for a "
                        "projector), nord, gruvbox, ... (ctrl+p, theme, lists them all)")
    p.add_argument("--version", action="version", version=f"muxtop {__version__}")
    return p


def refresh_interval(text: str) -> float:
    value = positive_float(text)
    if value < 0.05:
        raise argparse.ArgumentTypeError(f"{text!r} is more often than 20 redraws a second")
    return value


def main(argv: list[str]) -> int:
    args = parser().parse_args(argv)
    if args.json and not args.headless:
        parser().error("--json needs --headless")
    if args.theme is not None:
        if args.headless:
            parser().error("--theme needs the dashboard (not --headless)")
        from muxtop.ui.app import THEMES

        if args.theme not in THEMES:
            parser().error(f"no theme {args.theme!r} (choose from {', '.join(THEMES)})")
    config = EngineConfig(
        host=args.host, port=args.port, backend=args.backend, trigger=args.trigger,
        protocol=args.protocol, max_conns=args.max_conns, lab=frozenset(args.lab),
        stuck_after=args.stuck_after)
    try:
        engine = Engine(config).start()
    except EngineStartError as exc:
        print(f"muxtop: {exc}", file=sys.stderr)
        return 1
    try:
        if args.headless:
            return run_headless(engine, args.duration, args.json)
        from muxtop.ui.app import run_dashboard

        return run_dashboard(engine, duration=args.duration, refresh=args.refresh,
                             theme=args.theme)
    finally:
        engine.stop()


def run_headless(engine: Engine, duration: float | None, as_json: bool,
                 out=None) -> int:
    """Print one status line a second until SIGINT/SIGTERM or `duration` runs out."""
    out = out or sys.stdout
    done = threading.Event()

    def stop(signum, frame):
        done.set()

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    deadline = None if duration is None else time.monotonic() + duration
    try:
        if not as_json:
            s = engine.snapshot()
            print(f"muxtop {__version__}: {s.protocol} server on {s.listen}, "
                  f"{s.backend}/{s.trigger} (Ctrl-C stops)", file=out, flush=True)
        while not done.is_set() and engine.running:
            wait = 1.0 if deadline is None else min(1.0, deadline - time.monotonic())
            if wait <= 0 or done.wait(wait):
                break
            print(status_line(engine.snapshot(), as_json), file=out, flush=True)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if engine.error:
        print(f"muxtop: {engine.error}", file=sys.stderr)
        return 1
    return 0


def status_line(s: Snapshot, as_json: bool) -> str:
    r = s.rates
    if as_json:
        return json.dumps({
            "time": round(s.wall_time, 3), "listen": s.listen, "backend": s.backend,
            "trigger": s.trigger,
            "connections": s.open_connections, "registered": s.registered,
            "waits_per_s": round(r.waits, 1), "events_per_s": round(r.events, 1),
            "ready_per_wait": round(r.ready_per_wait, 2),
            "wait_p50_us": round(r.wait_p50 * 1e6, 1), "wait_p99_us": round(r.wait_p99 * 1e6, 1),
            "bytes_in": s.totals.bytes_in, "bytes_out": s.totals.bytes_out,
            "bytes_in_per_s": round(r.bytes_in), "bytes_out_per_s": round(r.bytes_out),
            "accepted": s.totals.accepted, "closed": s.totals.closed,
            "accept_errors": s.totals.accept_errors, "rejected": s.totals.rejected,
            "lab": sorted(s.lab), "diagnoses": [d.as_json() for d in s.diagnoses],
        })
    return (f"{s.backend}/{s.trigger}  conns {s.open_connections}  "
            f"waits/s {r.waits:,.0f}  events/s {r.events:,.0f}  "
            f"in {_rate(r.bytes_in)}  out {_rate(r.bytes_out)}"
            + (f"  findings {len(s.diagnoses)}" if s.diagnoses else ""))


def _rate(bytes_per_s: float) -> str:
    for unit in ("B/s", "KiB/s", "MiB/s"):
        if bytes_per_s < 1024:
            return f"{bytes_per_s:.0f} {unit}"
        bytes_per_s /= 1024
    return f"{bytes_per_s:.1f} GiB/s"
