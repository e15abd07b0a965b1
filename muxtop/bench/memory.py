"""`muxtop bench memory`: what an idle connection costs a server in memory, muxtop against the
baseline servers (selectors, asyncio, uvloop), all in one run.

Each server starts in its own process (as `muxtop bench echo` starts them) and is left to
settle; its resident set (RSS, psutil) is read, the bench opens N connections to it and sends
nothing, waits until the server holds all N (its open fds), then long enough for muxtop's kernel
probes to have reached every connection (128 sockets a Snapshot, 4 Snapshots a second: each
probed connection keeps what TCP_INFO said), and reads the RSS again: the difference over N is
the figure, in the steady state. Every server waits as long. Each RSS figure is the median of
SAMPLES readings a quarter of a second apart: a server's periodic work (muxtop's Snapshots and
detectors) makes its RSS move by a page or so. Kernel socket buffers are not in
any process's RSS, so what is left is each server's own: its objects per connection, and the
allocator's pages they take. Runs are interleaved (each round measures every server once, in a
rotated order) and the figure per server is the median over rounds.

A mode of its own rather than `bench echo --idle`: it holds connections instead of driving
them, reads memory instead of round trips, and its table has one column, not echo's six.
"""

from __future__ import annotations

import argparse
import json
import socket
import statistics
import sys
import time

import psutil

from muxtop.arguments import Parser, non_negative_float, positive_int
from muxtop.bench.echo import BenchError, ServerProcess, rotated, server_specs, uvloop_available
from muxtop.extras import install_hint
from muxtop.limits import raise_fd_limit

SERVERS = ("muxtop-epoll-level", "selectors", "asyncio", "uvloop")
SETTLE = 1.0  # seconds after start before the first RSS reading
PROBED_PER_S = 4 * 128  # connections muxtop probes a second (EngineConfig's defaults)
HOLD_TIMEOUT = 60.0  # seconds for a server to accept every connection
SAMPLES = 9  # RSS readings per figure, 0.25 s apart


def parser() -> argparse.ArgumentParser:
    p = Parser(prog="muxtop bench memory",
                                description=" ".join(__doc__.split("\n\n")[0].split()))
    p.add_argument("--conns", type=positive_int, default=10000, metavar="N",
                   help="idle connections held against each server (default 10000)")
    p.add_argument("--rounds", type=positive_int, default=3,
                   help="rounds over every server, interleaved (default 3)")
    p.add_argument("--servers", default=",".join(SERVERS), metavar="NAME,...",
                   help=f"servers to measure (default {','.join(SERVERS)}; uvloop only if "
                        "installed)")
    p.add_argument("--settle", type=non_negative_float, default=None, metavar="S",
                   help="seconds between the last connection and the RSS reading (default: "
                        "N/512 + 2, until muxtop has probed every connection once)")
    p.add_argument("--samples", type=positive_int, default=SAMPLES, metavar="N",
                   help=f"RSS readings per figure, 0.25 s apart, their median taken (default "
                        f"{SAMPLES})")
    p.add_argument("--json", action="store_true", help="print one JSON document instead")
    return p


def main(argv: list[str]) -> int:
    args = parser().parse_args(argv)
    specs = server_specs()
    names = [n.strip() for n in args.servers.split(",") if n.strip()]
    unknown = [n for n in names if n not in specs]
    if unknown:
        parser().error(f"no server {', '.join(unknown)} (choose from {', '.join(specs)})")
    missing = []
    if "uvloop" in names and not uvloop_available():
        names.remove("uvloop")
        missing.append(f"uvloop is not installed ({install_hint('bench')}): not measured")
    soft, _ = raise_fd_limit(args.conns + 256)
    if soft < args.conns + 64:
        print(f"muxtop bench memory: the open-file limit is {soft}; {args.conns:,} connections "
              "need more (ulimit -n)", file=sys.stderr)
        return 2
    try:
        settle = args.settle if args.settle is not None else args.conns / PROBED_PER_S + 2.0
        report = measure([specs[n] for n in names], args.conns, args.rounds, settle,
                         samples=args.samples)
    except BenchError as exc:
        print(f"muxtop bench memory: {exc}", file=sys.stderr)
        return 1
    report["missing"] = missing
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print_report(report)
    return 0


def measure(specs: list, conns: int, rounds: int, settle: float = SETTLE,
            samples: int = SAMPLES) -> dict:
    """Bytes of RSS per idle connection, per server: every round's and the median."""
    runs: dict[str, list[float]] = {s.name: [] for s in specs}
    for turn in range(rounds):
        for spec in rotated(specs, turn):
            runs[spec.name].append(rss_per_conn(spec, conns, settle, samples))
    servers = {name: {"bytes_per_conn": statistics.median(values), "runs": values}
               for name, values in runs.items()}
    return {"conns": conns, "rounds": rounds, "settle_s": settle, "servers": servers}


def rss_per_conn(spec, conns: int, settle: float = SETTLE, samples: int = SAMPLES) -> float:
    """One server, fresh: (RSS holding `conns` idle connections - RSS before) / conns."""
    with ServerProcess(spec) as server:
        server.wait_accepting()
        process = psutil.Process(server.pid)
        time.sleep(SETTLE)
        fds_before = process.num_fds()
        before = _rss(process, samples)
        held: list[socket.socket] = []
        try:
            for _ in range(conns):
                held.append(socket.create_connection(("127.0.0.1", server.port), timeout=10))
            deadline = time.monotonic() + HOLD_TIMEOUT
            while process.num_fds() < fds_before + conns:
                if time.monotonic() > deadline:
                    raise BenchError(f"{spec.name} accepted {process.num_fds() - fds_before:,} "
                                     f"of {conns:,} connections in {HOLD_TIMEOUT:.0f} s")
                time.sleep(0.05)
            time.sleep(settle)  # muxtop: every connection probed once, its view rebuilt
            after = _rss(process, samples)
        finally:
            for sock in held:
                sock.close()
    return (after - before) / conns


def _rss(process: psutil.Process, samples: int) -> float:
    readings = []
    for i in range(samples):
        if i:
            time.sleep(0.25)
        readings.append(process.memory_info().rss)
    return statistics.median(readings)


def print_report(report: dict) -> None:
    conns = report["conns"]
    print(f"muxtop bench memory: RSS per idle connection, {conns:,} connections held "
          f"{report['settle_s']:.1f} s, {report['rounds']} interleaved rounds (median)\n")
    for name, figures in report["servers"].items():
        each = "  ".join(f"{v:,.0f}" for v in figures["runs"])
        print(f"  {name:<22}{figures['bytes_per_conn']:>9,.0f} B   (rounds: {each})")
    for line in report["missing"]:
        print(f"\n{line}")
    servers = report["servers"]
    if "muxtop-epoll-level" in servers and "uvloop" in servers:
        ours, theirs = (servers[n]["bytes_per_conn"] for n in ("muxtop-epoll-level", "uvloop"))
        verdict = "ok" if ours <= theirs else "over"
        print(f"\nmuxtop / uvloop: {ours / theirs:.2f}× (target ≤ 1: {verdict})")
