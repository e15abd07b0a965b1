"""`muxtop bench attach`: what attaching costs, each figure next to a baseline from the same run.

1. One refresh of a process holding N idle connections (a selectors echo server and an idle
   herd of `muxtop flood` clients): a steady refresh (sock_diag filtered to the target's
   ports, what did not change reused), next to a refresh through /proc/net/tcp (how attach
   read before, and still reads a process in another network namespace) and to the first
   read of a new Attacher (nothing learnt yet). Then the dashboard over each kind of read:
   the CPU of this whole process (reader thread and UI) and how often it refreshed.
2. The target's throughput with and without each tracer attached: the selectors echo server
   under the load client, one run per tracer in interleaved rounds, each tracer following
   waits, epoll_ctl, reads and writes as `--trace` does (and, as `--trace --no-io` does,
   waits and epoll_ctl alone), drained as the dashboard does.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import threading
import time

import psutil

from muxtop import children
from muxtop.arguments import Parser, positive_float, positive_int
from muxtop.attach.reader import Attacher, AttachError
from muxtop.attach.sockets import SocketCensus
from muxtop.attach.source import READ_SHARE
from muxtop.bench import machine
from muxtop.bench.echo import ServerProcess, ServerSpec, rotated, server_specs
from muxtop.bench.loadgen import ClientError, find_client, run_client
from muxtop.limits import raise_fd_limit
from muxtop.trace import bpftrace, strace
from muxtop.trace.choose import open_tracer
from muxtop.trace.session import Trace
from muxtop.trace.tracer import TraceUnavailable
from muxtop.traced import with_trace

READS_EVERY = 0.1  # seconds between timed reads (the target stays idle meanwhile)
CATCH_UP = 10.0  # seconds a tracer's reader may take to finish its lines after a run
UNTRACED = "untraced"


class BenchError(Exception):
    pass


# The options, as data: (flag, argparse settings).
OPTIONS: tuple[tuple[str, dict], ...] = (
    ("--conns", {"type": positive_int, "default": 5000,
                 "help": "idle connections the attached server holds (default 5000)"}),
    ("--reads", {"type": positive_int, "default": 20,
                 "help": "refreshes timed of each kind (default 20)"}),
    ("--dashboard-seconds", {"type": float, "default": 8.0, "metavar": "S",
                             "help": "seconds of dashboard per kind of read (default 8; 0 "
                                     "skips it)"}),
    ("--tracers", {"default": "bpftrace,strace", "metavar": "T,T",
                   "help": "tracers to measure the target under (default bpftrace,strace; "
                           "'' skips part 2)"}),
    ("--io", {"choices": ("both", "on", "off"), "default": "both",
              "help": "trace reads and writes too (on), not (off, as --no-io), or measure "
                      "each way (default both)"}),
    ("--target", {"choices": ("selectors", "threaded"), "default": "selectors",
                   "help": "the traced server of part 2: one selectors loop (default), or "
                           "four threads with a loop each (a multi-threaded target, as "
                           "memcached -t 4 is)"}),
    ("--load-conns", {"type": positive_int, "default": 100, "metavar": "N",
                      "help": "load client connections (default 100)"}),
    ("--seconds", {"type": positive_float, "default": 3.0, "metavar": "S",
                   "help": "measured seconds per throughput run (default 3)"}),
    ("--rounds", {"type": positive_int, "default": 3,
                  "help": "throughput rounds, the tracers taking turns (default 3)"}),
    ("--client", {"choices": ("auto", "loadgen", "python"), "default": "auto",
                  "help": "load client: loadgen.c built with gcc, the Python one, or auto"}),
    ("--json", {"action": "store_true", "help": "print one JSON document instead"}),
)


def parser() -> argparse.ArgumentParser:
    p = Parser(prog="muxtop bench attach", description=__doc__.split("\n")[0])
    for flag, settings in OPTIONS:
        p.add_argument(flag, **settings)
    return p


# ---- part 1: the refresh ----------------------------------------------------------------

def hold_idle(port: int, conns: int) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "muxtop", "flood", f"127.0.0.1:{port}", "--pattern", "idle",
         "--clients", str(conns), "--timeout", "600"],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def wait_for_connections(pid: int, herd: subprocess.Popen, conns: int) -> None:
    deadline = time.monotonic() + 120
    while len(os.listdir(f"/proc/{pid}/fd")) < conns:
        if herd.poll() is not None:
            raise BenchError(f"the idle herd exited: {herd.stderr.read().strip()[-300:]}")
        if time.monotonic() > deadline:
            raise BenchError(f"the server holds fewer than {conns} connections after 120 s")
        time.sleep(0.2)
    time.sleep(1.0)  # the last handshakes settle


def _proc_net(attacher: Attacher) -> Attacher:
    """The Attacher reading the socket tables from /proc/PID/net, as in another namespace."""
    attacher.census = SocketCensus(attacher.pid, same_netns=False)
    return attacher


def time_reads(make, reads: int, fresh: bool) -> dict:
    """Wall and CPU milliseconds of `reads` reads: of one Attacher after two warm-up reads,
    or (`fresh`) each the first read of a new one."""
    attacher = make()
    if not fresh:
        attacher.read()
        attacher.read()
    walls, cpus = [], []
    for _ in range(reads):
        if fresh:
            attacher = make()
        wall, cpu = time.perf_counter(), time.thread_time()
        attacher.read()
        walls.append((time.perf_counter() - wall) * 1e3)
        cpus.append((time.thread_time() - cpu) * 1e3)
        time.sleep(READS_EVERY)
    return {"wall_ms": statistics.median(walls), "wall_min_ms": min(walls),
            "cpu_ms": statistics.median(cpus), "reads": reads}


def dashboard_cpu(make, seconds: float) -> dict:
    """The dashboard over an AttachSource for `seconds`: this process's CPU share (the
    reader thread and the UI), and the refreshes it made."""
    from muxtop.attach.source import AttachSource
    from muxtop.ui.app import MuxtopApp

    async def run() -> dict:
        source = AttachSource(make()).start()
        app = MuxtopApp(source)
        try:
            async with app.run_test(size=(160, 48)) as pilot:
                await pilot.pause(1.0)
                reads, cpu, wall = source.reads, time.process_time(), time.perf_counter()
                await pilot.pause(seconds)
                cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
                refreshes = source.reads - reads
        finally:
            source.stop()
        return {"cpu_pct": 100 * cpu / wall, "refreshes": refreshes,
                "period_s": wall / refreshes if refreshes else None}

    return asyncio.run(run())


def refresh_part(args) -> dict:
    raise_fd_limit(2 * args.conns + 1024)  # the server and the herd inherit it
    spec = server_specs()["selectors"]
    with ServerProcess(spec) as server:
        server.wait_accepting()
        herd = hold_idle(server.port, args.conns)
        try:
            wait_for_connections(server.pid, herd, args.conns)
            pid = server.pid
            report = {"conns": args.conns}
            for name, make, fresh in (
                    ("steady", lambda: Attacher(pid), False),
                    ("proc_net", lambda: _proc_net(Attacher(pid)), False),
                    ("first", lambda: Attacher(pid), True)):
                report[name] = time_reads(make, args.reads if not fresh else
                                          max(3, args.reads // 4), fresh)
                if not args.json:
                    print(f"  {name}: {report[name]['wall_ms']:.1f} ms", file=sys.stderr,
                          flush=True)
            if args.dashboard_seconds > 0:
                report["dashboard"] = dashboard_cpu(lambda: Attacher(pid),
                                                    args.dashboard_seconds)
                report["dashboard_proc_net"] = dashboard_cpu(
                    lambda: _proc_net(Attacher(pid)), args.dashboard_seconds)
            return report
        finally:
            children.end(herd)
            herd.stderr.close()


# ---- part 2: the target's throughput under a tracer ----------------------------------------

class Attached:
    """A tracer on the server, drained by an Attacher every half second on a thread (as the
    dashboard's source does); `stop()` ends both."""

    def __init__(self, pid: int, tool: str, io: bool) -> None:
        self.trace = Trace(open_tracer(pid, tool, io=io))
        self.attacher = with_trace(Attacher(pid), self.trace)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        self.cpu_start = time.process_time()
        self._tool = _cpu_clock(self.trace.tracer.child_pid)

    def _run(self) -> None:
        while not self._stop.wait(0.5):
            self.attacher.read()

    def stop(self) -> dict:
        self._stop.set()
        self._thread.join(5)
        # The tool reports what it lost when it gets to it, and a reader behind is still
        # reading: wait until its lines stop coming (bounded) before counting.
        tracer, seen = self.trace.tracer, -1
        deadline = time.monotonic() + CATCH_UP
        while tracer.lines_seen != seen and time.monotonic() < deadline:
            seen = tracer.lines_seen
            time.sleep(0.3)
        snapshot = self.attacher.read()
        tool_cpu = self._tool()
        self.attacher.close()
        trace = snapshot.trace
        seen = self.trace.tracer.lines_seen
        return {"waits_traced": trace.waits, "waits_counted": trace.counted or None,
                "io_traced": trace.io_calls, "lost": trace.lost,
                # of the lines the tool printed, the share the kernel dropped
                "lost_pct": 100 * trace.lost / (trace.lost + seen) if trace.lost + seen else 0.0,
                "muxtop_cpu_s": time.process_time() - self.cpu_start, "tracer_cpu_s": tool_cpu}


def _cpu_clock(pid: int | None):
    """A function returning the CPU seconds process `pid` used since this call."""
    try:
        proc = psutil.Process(pid)
        start = sum(proc.cpu_times()[:2])
    except (psutil.Error, TypeError):
        return lambda: None

    def used() -> float | None:
        try:
            return sum(proc.cpu_times()[:2]) - start
        except psutil.Error:
            return None

    return used


def tracer_problem(tool: str, pid: int) -> str | None:
    return bpftrace.problem() if tool == bpftrace.NAME else strace.problem(pid)


NO_IO = " --no-io"


THREADED = ServerSpec("threaded", ("muxtop.bench.servers.threaded_echo", "--port", "{port}"),
                      "threaded_echo.c: 4 threads, an epoll set and SO_REUSEPORT listener "
                      "each")


def throughput_part(args, tools: list[str]) -> dict:
    client = find_client(args.client)
    spec = THREADED if args.target == "threaded" else server_specs()["selectors"]
    modes = [UNTRACED]
    for tool in tools:
        modes += ([tool] if args.io != "off" else []) + ([tool + NO_IO] if args.io != "on"
                                                         else [])
    runs: dict[str, list[dict]] = {mode: [] for mode in modes}
    skipped: dict[str, str] = {}
    warmup = min(1.0, args.seconds / 3)
    for round_index in range(args.rounds):
        for mode in rotated([m for m in modes if m not in skipped], round_index):
            with ServerProcess(spec) as server:
                server.wait_accepting()
                attached = None
                if mode != UNTRACED:
                    tool = mode.removesuffix(NO_IO)
                    problem = tracer_problem(tool, server.pid)
                    if problem:
                        skipped[mode] = problem
                        continue
                    try:
                        attached = Attached(server.pid, tool, io=not mode.endswith(NO_IO))
                    except (TraceUnavailable, AttachError) as exc:
                        skipped[mode] = str(exc)
                        continue
                try:
                    result = run_client(client.command(
                        server.port, args.load_conns, args.seconds, warmup, 64, server.pid),
                        timeout=args.seconds + warmup + 60)
                finally:
                    traced = attached.stop() if attached is not None else {}
                result.update(traced)
                runs[mode].append(result)
                if not args.json:
                    print(f"  round {round_index + 1}/{args.rounds}  {mode:<18} "
                          f"{result.get('rtt_per_s', 0):>9,.0f} rt/s", file=sys.stderr,
                          flush=True)
    summary = {}
    base = [r["rtt_per_s"] for r in runs[UNTRACED] if r.get("rtt_per_s")]
    for mode in modes:
        rates = [r["rtt_per_s"] for r in runs[mode] if r.get("rtt_per_s")]
        if not rates:
            continue
        # Rounds pair up: the ratio is taken round by round, so drift cancels.
        ratios = [rate / ref for rate, ref in zip(rates, base) if ref]
        summary[mode] = {
            "rtt_per_s": statistics.median(rates), "runs": len(rates),
            "vs_untraced": statistics.median(ratios) if ratios else None,
            "range": [min(ratios), max(ratios)] if ratios else None,
            "server_cpu_pct": _median(runs[mode], "server_cpu_pct"),
            "waits_traced": _median(runs[mode], "waits_traced"),
            "waits_counted": _median(runs[mode], "waits_counted"),
            "lost": _median(runs[mode], "lost"),
            "lost_pct": _median(runs[mode], "lost_pct"),
            "muxtop_cpu_pct": _share(runs[mode], "muxtop_cpu_s", args.seconds + warmup),
            "tracer_cpu_pct": _share(runs[mode], "tracer_cpu_s", args.seconds + warmup)}
    return {"client": client.kind, "client_note": client.note, "target": spec.name,
            "load_conns": args.load_conns,
            "seconds": args.seconds, "rounds": args.rounds, "results": summary,
            "skipped": skipped}


def _share(runs: list[dict], key: str, seconds: float) -> float | None:
    values = [100 * r[key] / seconds for r in runs if r.get(key) is not None]
    return statistics.median(values) if values else None


def _median(runs: list[dict], key: str):
    values = [r[key] for r in runs if r.get(key) is not None]
    return statistics.median(values) if values else None


# ---- the report --------------------------------------------------------------------------

def refresh_lines(r: dict) -> list[str]:
    steady, proc, first = r["steady"], r["proc_net"], r["first"]
    lines = [f"1. one refresh of a process holding {r['conns']:,} idle connections "
             f"(median of {steady['reads']} reads; thread CPU in brackets)",
             f"   {'steady refresh (sock_diag, filtered, unchanged reused)':<58}"
             f"{steady['wall_ms']:>8.1f} ms ({steady['cpu_ms']:.1f} CPU)   ×1.00",
             f"   {'through /proc/net/tcp (before; still so in another netns)':<58}"
             f"{proc['wall_ms']:>8.1f} ms ({proc['cpu_ms']:.1f} CPU)   "
             f"×{proc['wall_ms'] / steady['wall_ms']:.2f}",
             f"   {'first read of a new Attacher (nothing learnt yet)':<58}"
             f"{first['wall_ms']:>8.1f} ms ({first['cpu_ms']:.1f} CPU)   "
             f"×{first['wall_ms'] / steady['wall_ms']:.2f}"]
    for key, what in (("dashboard", "sock_diag"), ("dashboard_proc_net", "/proc/net/tcp")):
        d = r.get(key)
        if d:
            period = f"a refresh every {d['period_s']:.2f} s" if d["period_s"] else "no refresh"
            lines.append(f"   dashboard over it, reads {what:<14}{d['cpu_pct']:>6.1f}% of a core"
                         f" ({period}; reads may take at most {READ_SHARE:.0%})")
    return lines


def throughput_lines(t: dict) -> list[str]:
    lines = [f"2. the target's throughput with a tracer attached: {t.get('target', 'selectors')} "
             "echo server, "
             f"{t['load_conns']} connections × 64 B ping-pong, {t['seconds']:g} s runs, "
             f"{t['rounds']} round(s) interleaved", f"   client: {t['client_note']}",
             f"   {'':<18}{'rt/s':>10}{'×untraced':>11}{'range':>13}{'server CPU':>12}"
             f"{'waits traced':>14}{'counted':>10}{'lost':>8}{'lost %':>8}{'muxtop CPU':>12}"
             f"{'tracer CPU':>12}"]
    for mode, s in t["results"].items():
        ratio = "—" if s["vs_untraced"] is None else f"{s['vs_untraced']:.2f}"
        span = "—" if not s["range"] else f"{s['range'][0]:.2f}–{s['range'][1]:.2f}"
        cpu = "—" if s["server_cpu_pct"] is None else f"{s['server_cpu_pct']:.0f}%"
        waits = "—" if s["waits_traced"] is None else f"{s['waits_traced']:,.0f}"
        lost = "—" if s["lost"] is None else f"{s['lost']:,.0f}"
        counted = "—" if s.get("waits_counted") is None else f"{s['waits_counted']:,.0f}"
        share = "—" if s.get("lost_pct") is None else f"{s['lost_pct']:.2f}"
        own = "—" if s["muxtop_cpu_pct"] is None else f"{s['muxtop_cpu_pct']:.0f}%"
        tool = "—" if s["tracer_cpu_pct"] is None else f"{s['tracer_cpu_pct']:.0f}%"
        lines.append(f"   {mode:<18}{s['rtt_per_s']:>10,.0f}{ratio:>11}{span:>13}{cpu:>12}"
                     f"{waits:>14}{counted:>10}{lost:>8}{share:>8}{own:>12}{tool:>12}")
    lines += [f"   {mode}: not measured: {why}" for mode, why in t["skipped"].items()]
    lines += ["   waits traced: itemized (bpftrace rations them); counted: every wait, "
              "counted in the kernel; lost %: of the lines the tracer printed",
              "   ×untraced: median of the round-by-round ratios; muxtop CPU: this process "
              "(parsing the trace, reading /proc) during a run; tracer CPU: bpftrace's or "
              "strace's own; 100% = one core", "   (on a machine with few cores the client, "
              "the server and the tracer's reader share them: the ratio is partly theirs)"]
    return lines


def main(argv: list[str]) -> int:
    args = parser().parse_args(argv)
    tools = [t.strip() for t in args.tracers.split(",") if t.strip()]
    unknown = [t for t in tools if t not in (bpftrace.NAME, strace.NAME)]
    if unknown:
        parser().error(f"no tracer {', '.join(unknown)} (choose from bpftrace, strace)")
    info = machine.describe()
    report: dict = {"bench": "attach", "machine": info}
    if not args.json:
        print(f"muxtop bench attach\nmachine: {machine.header(info)}\n", flush=True)
    try:
        report["refresh"] = refresh_part(args)
        if not args.json:
            print("\n".join(refresh_lines(report["refresh"])) + "\n", flush=True)
        if tools:
            report["throughput"] = throughput_part(args, tools)
            if not args.json:
                print("\n".join(throughput_lines(report["throughput"])), flush=True)
    except (BenchError, ClientError, AttachError, OSError) as exc:
        print(f"muxtop bench attach: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("muxtop bench attach: interrupted; every process it started was stopped",
              file=sys.stderr)
        return 130
    if args.json:
        print(json.dumps(report, indent=1))
    return 0
