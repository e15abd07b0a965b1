"""`muxtop bench proxy`: echo round trips through muxtop's proxy (`--upstream`), through a
minimal selectors proxy written for the bench, and straight to the upstream, with the same C
client and the same C echo server behind (muxtop/bench/echo_server.c, so the figures are the
proxy's, not a Python upstream's).

Every route is started fresh for each measurement, upstream included, and the routes are
interleaved and rotated run by run, as `bench echo` does; each figure's ratio to the selectors
proxy is taken run by run (pairs measured back to back) and the median reported.
"""

from __future__ import annotations

import argparse
import json
import signal
import socket
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from importlib import resources

from muxtop import children
from muxtop.arguments import Parser, int_list, name_list, positive_float, positive_int
from muxtop.bench import machine
from muxtop.bench.compiler import BuildError, build
from muxtop.bench.echo import (
    START_TIMEOUT,
    BenchError,
    Cell,
    CpuSample,
    ServerProcess,
    ServerSpec,
    free_port,
    judge_run,
    load_average,
    rotated,
)
from muxtop.bench.loadgen import ClientError, find_client, run_client
from muxtop.bench.quiet import add_busy_arguments, quietly, tell_busy
from muxtop.proxy.toxics import toxic_argument

BASELINE = "selectors-proxy"
DIRECT = "direct"
UPSTREAM_SOURCE = "echo_server.c"
FIGURES = ("rtt_per_s", "p50_us", "p99_us", "cpu_us_per_rt")


@dataclass(frozen=True)
class Route:
    name: str
    module_args: tuple[str, ...] | None  # after ``python -m``; None: the client goes direct
    about: str


def routes(toxics: tuple[str, ...] = ()) -> dict[str, Route]:
    """Every route; `toxics`: --toxic values for muxtop's routes (and a route without them,
    `muxtop-epoll-level-bare`, to measure what they add)."""
    up = "127.0.0.1:{upstream}"
    found = [
        Route(DIRECT, None, "the client straight to the C echo server: no proxy at all"),
        Route(BASELINE, ("muxtop.bench.servers.selectors_proxy", "--port", "{port}",
                         "--upstream", up),
              "a minimal selectors.DefaultSelector proxy (the baseline)"),
    ]
    extra = tuple(arg for toxic in toxics for arg in ("--toxic", toxic))
    for backend, trigger in (("epoll", "level"), ("epoll", "edge")):
        found.append(Route(
            f"muxtop-{backend}-{trigger}",
            ("muxtop", "--headless", "--port", "{port}", "--upstream", up,
             "--backend", backend, "--trigger", trigger, *extra),
            f"muxtop --headless --upstream, {backend}/{trigger}, telemetry on"
            + (f", toxics {' '.join(toxics)}" if toxics else "")))
    if toxics:
        found.append(Route("muxtop-epoll-level-bare",
                           ("muxtop", "--headless", "--port", "{port}", "--upstream", up),
                           "muxtop --headless --upstream, no toxic"))
    return {r.name: r for r in found}


class Upstream:
    """The C echo server on a free port, in its own process."""

    def __init__(self, binary: str) -> None:
        self.port = free_port()
        self.proc = subprocess.Popen([binary, "-p", str(self.port)], stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        self.pid = self.proc.pid
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise BenchError(f"the echo server exited with {self.proc.returncode}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.02)
        self.stop()
        raise BenchError("the echo server did not accept in time")

    def stop(self) -> None:
        children.end(self.proc)
        if self.proc.stderr is not None:
            self.proc.stderr.close()


def measure(route: Route, binary: str, client, conns: int, duration: float, warmup: float,
            size: int) -> dict:
    upstream = Upstream(binary)
    try:
        if route.module_args is None:
            return _drive(client, upstream.port, upstream.pid, conns, duration, warmup, size)
        args = tuple(a.replace("{upstream}", str(upstream.port)) for a in route.module_args)
        with ServerProcess(ServerSpec(route.name, args, route.about)) as proxy:
            proxy.wait_accepting()
            result = _drive(client, proxy.port, proxy.pid, conns, duration, warmup, size)
            if proxy.proc.poll() is not None:
                result["failed"] = (f"the proxy exited with status {proxy.proc.returncode}: "
                                    f"{proxy.stderr_tail()}")
            return result
    finally:
        upstream.stop()


def _drive(client, port: int, pid: int, conns: int, duration: float, warmup: float,
           size: int) -> dict:
    command = client.command(port, conns, duration, warmup, size, pid)
    before = CpuSample.take(pid)
    result = run_client(command, timeout=warmup + duration + 60)
    result.update(CpuSample.take(pid).others_since(before))
    return judge_run(result)


def run(chosen: list[Route], binary: str, client, conns_list: list[int], runs: int,
        duration: float, warmup: float, size: int, progress=None, busy_retries: int = 0,
        busy_pct: float = 25.0, on_busy=None) -> list[Cell]:
    """Every route at every concurrency, ``runs`` times, interleaved and rotated; a run
    measured again while other processes were busy (bench echo's `quietly`)."""
    cells = {(r.name, c): Cell(r.name, c) for c in conns_list for r in chosen}
    for run_index in range(runs):
        for conns in conns_list:
            for route in rotated(chosen, run_index):
                def once(route=route, conns=conns) -> dict:
                    try:
                        return measure(route, binary, client, conns, duration, warmup, size)
                    except (BenchError, ClientError, OSError) as exc:
                        return {"failed": str(exc)}

                def busy(others: float, name=route.name, conns=conns, run_index=run_index):
                    if on_busy:
                        on_busy(run_index, runs, name, conns, others)

                result = quietly(once, busy_retries, busy_pct, busy)
                result["run"] = run_index + 1
                cell = cells[route.name, conns]
                cell.runs.append(result)
                if result.get("failed"):
                    cell.failures.append(f"run {run_index + 1}: {result['failed']}")
                if progress:
                    progress(run_index, runs, route.name, conns, result)
    return list(cells.values())


def summary(cells: list[Cell]) -> list[dict]:
    base = {c.conns: c for c in cells if c.server == BASELINE}
    rows = []
    for cell in cells:
        row = {"route": cell.server, "conns": cell.conns, "good_runs": len(cell.good_runs()),
               "runs": len(cell.runs), "failures": cell.failures}
        for key in (*FIGURES, "server_cpu_pct", "other_cpu_pct"):
            value = cell.median(key)
            row[key] = None if value is None else round(value, 2)
        ref = base.get(cell.conns)
        row["vs_selectors_proxy"] = {}
        for key in FIGURES:
            ratios = cell.ratios(ref, key) if ref else []
            row["vs_selectors_proxy"][key] = round(statistics.median(ratios), 3) \
                if ratios else None
            if key == "rtt_per_s":
                row["rtt_ratio_range"] = ((round(min(ratios), 3), round(max(ratios), 3))
                                          if ratios else None)
        rows.append(row)
    return rows


def _fmt(value, spec: str = ",.0f") -> str:
    return "—" if value is None else format(value, spec)


def table(rows: list[dict], conns_list: list[int], runs: int) -> str:
    out = []
    head = (f"{'route':<22}{'rt/s':>10}{'×sel':>6}{'runs ×sel':>12}{'p50 µs':>9}{'×sel':>6}"
            f"{'p99 µs':>9}{'×sel':>6}{'CPU µs/rt':>11}{'others':>8}")
    for conns in conns_list:
        out += ["", f"{conns:,} connections (median of {runs} run(s))", head]
        for r in (r for r in rows if r["conns"] == conns):
            v = r["vs_selectors_proxy"]
            span = r["rtt_ratio_range"]
            others = "—" if r["other_cpu_pct"] is None else f"{r['other_cpu_pct']:.0f}%"
            out.append(
                f"{r['route']:<22}{_fmt(r['rtt_per_s']):>10}{_fmt(v['rtt_per_s'], '.2f'):>6}"
                f"{'—' if span is None else f'{span[0]:.2f}–{span[1]:.2f}':>12}"
                f"{_fmt(r['p50_us']):>9}{_fmt(v['p50_us'], '.2f'):>6}"
                f"{_fmt(r['p99_us']):>9}{_fmt(v['p99_us'], '.2f'):>6}"
                f"{_fmt(r['cpu_us_per_rt'], ',.1f'):>11}{others:>8}")
    out += ["",
            "×sel: ratio to the selectors proxy measured in the same run, median over runs;",
            "runs ×sel: the lowest and highest of those ratios; CPU µs/rt: the proxy's CPU per",
            "round trip (direct: the echo server's); others: CPU of other processes meanwhile"]
    failures = [f"  {r['route']} at {r['conns']:,} conns, {f}"
                for r in rows for f in r["failures"]]
    if failures:
        out += ["", "failed runs (not counted):", *failures]
    return "\n".join(out)


def toxic_text(text: str) -> str:
    """argparse type: a --toxic value muxtop would take, kept as text for its command line."""
    toxic_argument(text)  # ArgumentTypeError with one plain line if not
    return text


def parser() -> argparse.ArgumentParser:
    p = Parser(prog="muxtop bench proxy",
               description="Echo round trips through muxtop's proxy (--upstream), a minimal "
               "selectors proxy, and straight to the upstream (a C echo server); the same C "
               "client; routes interleaved.")
    p.add_argument("--conns", type=int_list, default=[100, 1000], metavar="N,N,...",
                   help="concurrent connections (default 100,1000)")
    p.add_argument("--runs", type=positive_int, default=5, help="rounds over every route "
                   "(default 5)")
    p.add_argument("--duration", type=positive_float, default=2.0, metavar="S",
                   help="measured seconds per run (default 2)")
    p.add_argument("--warmup", type=positive_float, default=None, metavar="S",
                   help="unmeasured seconds before each run (default 1, or a third of "
                   "--duration if that is shorter)")
    p.add_argument("--size", type=positive_int, default=64, help="message bytes (default 64)")
    p.add_argument("--routes", type=name_list, default=None, metavar="NAME,...",
                   help=f"routes to run (default all: {', '.join(routes())})")
    p.add_argument("--toxic", action="append", default=[], type=toxic_text,
                   metavar="STREAM:TYPE[:K=V,...]",
                   help="a toxic on muxtop's routes (repeatable), e.g. "
                   "downstream:latency:latency=100; adds the route muxtop-epoll-level-bare "
                   "without it, to compare")
    add_busy_arguments(p, "route")
    p.add_argument("--json", action="store_true", help="print one JSON document instead")
    return p


def main(argv: list[str]) -> int:
    args = parser().parse_args(argv)
    known = routes(tuple(args.toxic))
    names = args.routes or list(known)
    unknown = [n for n in names if n not in known]
    if unknown:
        print(f"muxtop bench: no route {', '.join(unknown)} (choose from {', '.join(known)})",
              file=sys.stderr)
        return 2
    try:
        client = find_client("loadgen")
        with resources.as_file(resources.files("muxtop.bench") / UPSTREAM_SOURCE) as source:
            binary = str(build(source))
    except (ClientError, BuildError) as exc:
        print(f"muxtop bench: {exc}", file=sys.stderr)
        return 2
    chosen = [known[n] for n in names]
    warmup = args.warmup if args.warmup is not None else min(1.0, args.duration / 3)
    info = machine.describe()
    load_before = load_average()
    if not args.json:
        print(f"muxtop bench proxy: {args.size}-byte ping-pong through each route to a C echo "
              f"server; {args.runs} run(s) × {args.duration:g} s (+{warmup:.2g} s warm-up), "
              f"routes interleaved\nmachine: {machine.header(info)}; load average before "
              f"{load_before}\nclient: {client.note}", flush=True)

    def progress(run_index, runs, name, conns, result) -> None:
        text = f"FAILED: {result['failed']}" if result.get("failed") else (
            f"{result['rtt_per_s']:>9,.0f} rt/s  p50 {result['p50_us']:,.0f} µs  "
            f"p99 {result['p99_us']:,.0f} µs  others {result.get('other_cpu_pct') or 0:.0f}%")
        print(f"  run {run_index + 1}/{runs}  {conns:>5,} conns  {name:<22} {text}",
              file=sys.stderr, flush=True)

    previous = signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        cells = run(chosen, binary, client, args.conns, args.runs, args.duration, warmup,
                    args.size, progress, args.busy_retries, args.busy_pct, tell_busy(22))
    except KeyboardInterrupt:
        print("muxtop bench: interrupted; every server was stopped", file=sys.stderr)
        return 130
    finally:
        signal.signal(signal.SIGTERM, previous)
    rows = summary(cells)
    if args.json:
        print(json.dumps({
            "bench": "proxy", "machine": info, "load_average_before": load_before,
            "load_average_after": load_average(), "client_note": client.note,
            "size": args.size, "runs": args.runs, "duration": args.duration, "warmup": warmup,
            "busy_retries": args.busy_retries, "busy_pct": args.busy_pct,
            "conns": args.conns, "routes": names, "baseline": BASELINE, "results": rows,
            "raw": [{"route": c.server, "conns": c.conns, "runs": c.runs} for c in cells]},
            indent=1))
    else:
        print(table(rows, args.conns, args.runs))
        print(f"load average after: {load_average()}")
    return 1 if any(r["good_runs"] == 0 for r in rows) else 0
