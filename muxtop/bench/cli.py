"""`muxtop bench MODE`: argument parsing, and the tables and charts each mode prints."""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import signal
import sys
from pathlib import Path
from typing import TextIO

from muxtop.arguments import (
    Parser,
    file_name,
    int_list,
    name_list,
    positive_float,
    positive_int,
)
from muxtop.backends import NAMES
from muxtop.bench import machine
from muxtop.bench.quiet import add_busy_arguments, tell_busy
from muxtop.extras import install_hint
from muxtop.printable import printable
from muxtop.userfiles import UserFileError, create


def parser() -> argparse.ArgumentParser:
    p = Parser(prog="muxtop bench", description="Measurements that print figures.")
    sub = p.add_subparsers(dest="mode",
                           metavar="{wait,echo,proxy,diagnose,ui,memory,flood,replay,attach,"
                                   "agent}")

    w = sub.add_parser("wait", help="cost of one wait call against the number of idle fds",
                       description="Time wait(0) on select, poll and epoll with N idle fds and one "
                       "ready fd registered: select and poll grow with N, epoll stays flat.")
    w.add_argument("--fds", type=int_list, default=[10, 100, 1000, 10000], metavar="N,N,...",
                   help="idle fd counts (default 10,100,1000,10000)")
    w.add_argument("--backends", type=name_list, default=list(NAMES), metavar="B,B,...",
                   help=f"backends to measure (default {','.join(NAMES)})")
    w.add_argument("--json", action="store_true", help="print one JSON document instead")
    w.add_argument("--svg", metavar="FILE", type=file_name,
                   help="also save the chart as SVG (a new file unless --force)")
    w.add_argument("--force", action="store_true", help="let --svg replace an existing file")

    e = sub.add_parser("echo", help="echo round trips/s: muxtop vs selectors, asyncio, uvloop",
                       description="Drive muxtop --headless on every backend and trigger mode, and "
                       "baseline echo servers, with the same client; runs interleaved.")
    e.add_argument("--conns", type=int_list, default=[100, 1000], metavar="N,N,...",
                   help="concurrent connections (default 100,1000)")
    # More, shorter runs: the ratios to selectors are paired run by run, and on a shared
    # machine five pairs say more than three longer ones.
    e.add_argument("--runs", type=positive_int, default=5,
                   help="rounds over every server (default 5)")
    e.add_argument("--duration", type=positive_float, default=2.0, metavar="S",
                   help="measured seconds per run (default 2)")
    e.add_argument("--warmup", type=positive_float, default=None, metavar="S",
                   help="unmeasured seconds before each run (default 1, or a third of "
                   "--duration if that is shorter)")
    e.add_argument("--size", type=positive_int, default=64, help="message bytes (default 64)")
    e.add_argument("--servers", type=name_list, default=None, metavar="NAME,...",
                   help="servers to run (default all; see --list)")
    e.add_argument("--client", choices=("auto", "loadgen", "python"), default="auto",
                   help="load client: loadgen, muxtop's C client (built with the system "
                   "compiler on first use); python; or auto (loadgen if it builds)")
    add_busy_arguments(e, "server")
    e.add_argument("--list", action="store_true", help="list the servers and exit")
    e.add_argument("--json", action="store_true", help="print one JSON document instead")

    d = sub.add_parser("diagnose", help="what the detectors cost at many idle connections",
                       description="Hold N idle connections on an engine with detectors off, "
                       "then on, in turns, and print the engine's CPU and the cost of one "
                       "Snapshot and of one detector run.")
    d.add_argument("--conns", type=positive_int, default=10000,
                   help="idle connections (default 10000)")
    d.add_argument("--seconds", type=positive_float, default=5.0, metavar="S",
                   help="measured seconds per turn (default 5)")
    d.add_argument("--rounds", type=positive_int, default=2, help="rounds (default 2)")
    d.add_argument("--json", action="store_true", help="print one JSON document instead")

    sub.add_parser("proxy", help="round trips through muxtop's proxy vs a selectors proxy "
                   "vs direct (its own --help)", add_help=False)
    sub.add_parser("ui", help="the dashboard's frame cost, its cost to the server, key to "
                   "screen (its own --help)", add_help=False)
    sub.add_parser("memory", help="RSS per idle connection: muxtop vs selectors, asyncio, "
                   "uvloop (its own --help)", add_help=False)
    sub.add_parser("attach", help="what attaching costs: one refresh at thousands of sockets, "
                   "the target's throughput under each tracer (its own --help)", add_help=False)
    sub.add_parser("agent", help="what watching several processes costs (attach --name), "
                   "beside one attach PID (its own --help)", add_help=False)
    sub.add_parser("flood", help="open vs closed loop latency through a server stall (its own "
                   "--help)", add_help=False)
    sub.add_parser("replay", help="opening a long recording, jumping and stepping in it (its "
                   "own --help)", add_help=False)
    return p


def main(argv: list[str]) -> int:
    if argv and argv[0] == "ui":
        # Lazy: only this mode may pull in textual.
        return importlib.import_module("muxtop.bench.ui").main(argv[1:])
    if argv and argv[0] == "proxy":
        return importlib.import_module("muxtop.bench.proxy").main(argv[1:])
    if argv and argv[0] == "memory":
        return importlib.import_module("muxtop.bench.memory").main(argv[1:])
    if argv and argv[0] == "attach":
        return importlib.import_module("muxtop.bench.attach").main(argv[1:])
    if argv and argv[0] == "agent":
        return importlib.import_module("muxtop.bench.agent").main(argv[1:])
    if argv and argv[0] == "flood":
        return importlib.import_module("muxtop.bench.flood").main(argv[1:])
    if argv and argv[0] == "replay":
        return importlib.import_module("muxtop.bench.replay").main(argv[1:])
    p = parser()
    args = p.parse_args(argv)
    if args.mode == "wait":
        return wait_main(args)
    if args.mode == "echo":
        return echo_main(args)
    if args.mode == "diagnose":
        from muxtop.bench import detectors

        return detectors.main(args.conns, args.seconds, args.rounds, args.json)
    p.print_help(sys.stderr)
    return 2


# ---------------------------------------------------------------------------------- wait


def wait_main(args: argparse.Namespace) -> int:
    unknown = [b for b in args.backends if b not in NAMES]
    if unknown:
        print(f"muxtop bench: no backend {printable(', '.join(unknown))} (choose from "
              f"{', '.join(NAMES)})", file=sys.stderr)
        return 2
    svg_file = None
    if args.svg is not None:
        try:  # made before measuring: a name that cannot be used is said at once
            Path(args.svg).parent.mkdir(parents=True, exist_ok=True)
            svg_file = create(args.svg, force=args.force)
        except UserFileError as exc:
            print(f"muxtop bench: --svg: {exc}", file=sys.stderr)
            return 1
        except (OSError, ValueError) as exc:  # its folder cannot be made (ValueError: a NUL)
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            print(f"muxtop bench: --svg: cannot write {args.svg!r}: cannot make its folder: "
                  f"{reason}", file=sys.stderr)
            return 1
    with svg_file or contextlib.nullcontext():
        return _wait(args, svg_file)


def _wait(args: argparse.Namespace, svg_file: TextIO | None) -> int:
    from muxtop.bench import chart, wait

    info = machine.describe()

    def progress(count: int) -> None:
        if not args.json and sys.stderr.isatty():
            print(f"  {count:,} fds done", end="\r", file=sys.stderr, flush=True)

    points, notes = wait.run(args.fds, tuple(args.backends), progress=progress)
    if all(p.skipped for p in points):  # a table of dashes is no result: say why, fail
        print(f"muxtop bench wait: nothing measured: {'; '.join(notes)}", file=sys.stderr)
        return 1
    series = {b: [(p.fds, p.median_us) for p in points if p.backend == b and not p.skipped]
              for b in args.backends}
    if svg_file is not None:
        svg = chart.svg_chart(series, title="Cost of one wait(0) call vs registered idle fds",
                              x_label="idle fds registered (+1 ready)",
                              y_label="µs per call (median)",
                              notes=[f"{machine.header(info)}; level trigger"] + notes)
        try:
            svg_file.write(svg)
            svg_file.flush()
        except OSError as exc:  # a full disk
            print(f"muxtop bench: --svg: cannot write {args.svg!r}: {exc.strerror or exc}",
                  file=sys.stderr)
            return 1
    if args.json:
        print(json.dumps({"bench": "wait", "machine": info, "unit": "µs per wait(0) call",
                          "points": wait.as_json(points), "notes": notes,
                          "svg": args.svg}, indent=1))
        return 0
    print(wait_table(points, args.fds, args.backends, info, notes))
    print()
    print(chart.terminal_chart(series, x_label="idle fds", y_label="µs per wait(0) call"))
    if svg_file is not None:
        print(f"\nchart saved to {printable(args.svg)}")
    return 0


def wait_table(points, fd_counts, backends, info, notes) -> str:
    cell = {(p.backend, p.fds): p for p in points}
    col = 22
    lines = [("muxtop bench wait: µs per wait(0) call with N idle fds + 1 ready fd registered "
              "(level trigger)"),
             f"machine: {machine.header(info)}", "",
             f"{'idle fds':>9}" + "".join(f"{b:>{col}}" for b in backends)]
    for count in fd_counts:
        row = f"{count:>9,}"
        for b in backends:
            p = cell[b, count]
            text = "—" if p.skipped else f"{p.median_us:,.2f} ({p.min_us:,.2f})"
            row += f"{text:>{col}}"
        lines.append(row)
    lines.append("median µs per call over timed batches (fastest batch in brackets); "
                 "— = not measured")
    lines += [f"note: {n}" for n in notes]
    return "\n".join(lines)


# ---------------------------------------------------------------------------------- echo


def echo_main(args: argparse.Namespace) -> int:
    from muxtop.bench import echo
    from muxtop.bench.loadgen import ClientError, find_client

    if args.list:
        for spec in echo.server_specs().values():
            extra = "" if spec.name != "uvloop" or echo.uvloop_available() else " (not installed)"
            print(f"{spec.name:<28} {spec.about}{extra}")
        return 0
    try:
        servers = echo.choose_servers(args.servers)
        client = find_client(args.client)
    except (echo.BenchError, ClientError) as exc:
        print(f"muxtop bench: {exc}", file=sys.stderr)
        return 2
    warmup = args.warmup if args.warmup is not None else min(1.0, args.duration / 3)
    info = machine.describe()
    load_before = echo.load_average()
    header = [
        (f"muxtop bench echo: {args.size}-byte ping-pong, one message in flight per connection; "
         f"{args.runs} run(s) × {args.duration:g} s (+{warmup:.2g} s warm-up), "
         "servers interleaved"),
        f"machine: {machine.header(info)}; load average before {load_before}",
        f"client: {client.note}",
    ]
    if not args.servers and not echo.uvloop_available():
        header.append("uvloop is not installed, so not measured: "
                      + install_hint("bench"))
    if not args.json:
        print("\n".join(header), flush=True)

    def progress(run_index, runs, name, conns, result) -> None:
        if result.get("failed"):
            text = f"FAILED: {result['failed']}"
        else:
            text = (f"{result['rtt_per_s']:>9,.0f} rt/s  p50 {result['p50_us']:,.0f} µs  "
                    f"p99 {result['p99_us']:,.0f} µs  server CPU {result['server_cpu_pct']:.0f}%"
                    f"  others {result.get('other_cpu_pct') or 0:.0f}%")
        print(f"  run {run_index + 1}/{runs}  {conns:>5,} conns  {name:<28} {text}",
              file=sys.stderr, flush=True)

    # SIGTERM unwinds like Ctrl-C, so the finally blocks kill every server and client.
    previous = signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        cells = echo.run(servers, client, args.conns, args.runs, args.duration, warmup,
                         args.size, progress=progress, busy_retries=max(0, args.busy_retries),
                         busy_pct=args.busy_pct, on_busy=tell_busy(28))
    except KeyboardInterrupt:
        print("muxtop bench: interrupted; every server was stopped", file=sys.stderr)
        return 130
    finally:
        signal.signal(signal.SIGTERM, previous)
    rows = echo.summary(cells)
    if args.json:
        print(json.dumps({
            "bench": "echo", "machine": info, "load_average_before": load_before,
            "load_average_after": echo.load_average(), "client": client.kind,
            "client_note": client.note, "size": args.size, "runs": args.runs,
            "duration": args.duration, "warmup": warmup, "conns": args.conns,
            "servers": [s.name for s in servers], "baseline": echo.BASELINE,
            "not_installed": [] if echo.uvloop_available() else ["uvloop"],
            "busy_retries": args.busy_retries, "busy_pct": args.busy_pct, "results": rows,
            "raw": [{"server": c.server, "conns": c.conns, "runs": c.runs} for c in cells]},
           indent=1))
    else:
        print(echo_tables(rows, args.conns, args.runs, args.busy_pct))
        print(f"load average after: {echo.load_average()}")
    return 1 if any(r["good_runs"] == 0 for r in rows) else 0


def _fmt(value, spec: str = ",.0f") -> str:
    return "—" if value is None else format(value, spec)


def recorded_table(rows: list[dict]) -> list[str]:
    """Each recorded variant against its own server, run by run, and what it wrote."""
    paired = [r for r in rows if r.get("vs_pair")]
    if not paired:
        return []
    out = ["", "recording and scraping: each variant (--record; --metrics, scraped every second) "
           "÷ its server without it, run by run (the median of the runs' ratios, lowest–highest)",
           f"{'server':<28}{'conns':>7}{'rt/s ×':>8}{'runs':>12}{'CPU/rt ×':>10}"
           f"{'B/wait':>8}{'B/conn·s':>10}{'MB/min':>8}{'gaps':>6}"]
    for r in paired:
        v = r["vs_pair"]
        span = v["rtt_per_s_range"]
        per_minute = (None if v["bytes_per_conn_s"] is None
                      else v["bytes_per_conn_s"] * r["conns"] * 60 / 1e6)
        out.append(
            f"{r['server']:<28}{r['conns']:>7,}{_fmt(v['rtt_per_s'], '.3f'):>8}"
            f"{'—' if span is None else f'{span[0]:.2f}–{span[1]:.2f}':>12}"
            f"{_fmt(v['cpu_us_per_rt'], '.3f'):>10}{_fmt(v['bytes_per_wait'], ',.1f'):>8}"
            f"{_fmt(v['bytes_per_conn_s'], ',.0f'):>10}{_fmt(per_minute, ',.1f'):>8}"
            f"{v['gaps']:>6}")
    out += ["B/wait and B/conn·s: the recording's bytes per wait call recorded and per "
            "second of one open connection; MB/min: a minute of this load at these connections;",
            "gaps: seq jumps (wait calls the recorder missed), over all runs"]
    return out


def echo_tables(rows: list[dict], conns_list: list[int], runs: int,
                busy_pct: float = 25.0) -> str:
    out = []
    head = (f"{'server':<28}{'rt/s':>10}{'×sel':>6}{'runs ×sel':>12}{'spread':>8}"
            f"{'p50 µs':>9}{'×sel':>6}"
            f"{'p99 µs':>9}{'×sel':>6}{'CPU µs/rt':>11}{'×sel':>6}{'srv CPU':>9}"
            f"{'others':>8}")
    for conns in conns_list:
        out += ["", f"{conns:,} connections (median of {runs} run(s))", head]
        for r in (r for r in rows if r["conns"] == conns):
            v = r["vs_selectors"]
            spread = "" if r["rtt_spread_pct"] is None else f"±{r['rtt_spread_pct'] / 2:.0f}%"
            low_high = r["rtt_ratio_range"]
            span = "—" if low_high is None else f"{low_high[0]:.2f}–{low_high[1]:.2f}"
            cpu_pct = "—" if r["server_cpu_pct"] is None else f"{r['server_cpu_pct']:.0f}%"
            others = "—" if r["other_cpu_pct"] is None else f"{r['other_cpu_pct']:.0f}%"
            out.append(
                f"{r['server']:<28}{_fmt(r['rtt_per_s']):>10}{_fmt(v['rtt_per_s'], '.2f'):>6}"
                f"{span:>12}{spread:>8}{_fmt(r['p50_us']):>9}{_fmt(v['p50_us'], '.2f'):>6}"
                f"{_fmt(r['p99_us']):>9}{_fmt(v['p99_us'], '.2f'):>6}"
                f"{_fmt(r['cpu_us_per_rt'], ',.1f'):>11}{_fmt(v['cpu_us_per_rt'], '.2f'):>6}"
                f"{cpu_pct:>9}{others:>8}")
    out += ["",
            "rt/s: round trips per second; spread: half the max-min range over runs;",
            "p50/p99: round-trip latency; CPU µs/rt: server CPU time per round trip;",
            "srv CPU: server CPU (100% = one core);",
            "×sel: ratio to selectors measured in the same run, median over runs (pairs cancel",
            "  drift slower than a run); runs ×sel: the lowest and highest of those ratios;",
            "others: user+system CPU of other processes during the run (not client or server):",
            "  when it is high the server was starved and its rt/s and latency are not its own",
            "(for rt/s higher is better, for every other figure lower is better)"]
    out += recorded_table(rows)
    busy = [r["other_cpu_pct"] for r in rows if r["other_cpu_pct"] is not None]
    if busy and max(busy) > busy_pct:
        out += ["", (f"warning: other processes used up to {max(busy):.0f}% CPU (median over a "
                f"server's runs) while servers were measured: the machine was busy, so rt/s and "
                "latency are noisy; CPU µs/rt suffers least")]
    redone = sum(r["busy_discarded"] for r in rows)
    if redone:
        out += [(f"{redone} measurement(s) were discarded and repeated because other processes "
                f"used more than {busy_pct:g}% CPU during them")]
    failures = [f"  {r['server']} at {r['conns']:,} conns, {f}"
                for r in rows for f in r["failures"]]
    if failures:
        out += ["", "failed runs (not counted):"] + failures
    return "\n".join(out)
