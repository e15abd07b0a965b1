"""Is the flood fast enough to measure a server? ``python tools/flood_vs_loadgen.py`` starts the
bench's selectors echo server in a child process, then drives it in turns with the C load
client `muxtop bench echo` uses (muxtop's own, or $MUXTOP_LOADGEN_C's) and with
``muxtop flood`` (100 clients, 64-byte messages, one in flight, rate 0), and prints the round
trips/s each drove and the CPU each used. Developer tooling: it prints figures, asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time

import psutil

from muxtop.bench.echo import free_port
from muxtop.bench.loadgen import ClientError, find_client


def run_loadgen(loadgen: str, port: int, server_pid: int, clients: int, seconds: float) -> dict:
    out = subprocess.run([loadgen, "-p", str(port), "-c", str(clients), "-d", str(seconds),
                          "-P", str(server_pid)], capture_output=True, text=True, check=False)
    record = json.loads(out.stdout)
    return {"rtt_per_s": record["rtt_per_s"], "p50_ms": record["p50_us"] / 1000,
            "p99_ms": record["p99_us"] / 1000, "client_cpu_pct": record["client_cpu_pct"],
            "server_cpu_pct": record["server_cpu_pct"]}


def run_flood(port: int, server_pid: int, clients: int, seconds: float, workers: int) -> dict:
    """The steady-state rate from the flood's own progress lines, skipping the first second
    (connects and warm-up, as loadgen's -w 1 does)."""
    command = [sys.executable, "-m", "muxtop", "flood", f"127.0.0.1:{port}", "--clients",
               str(clients), "--messages", "0", "--duration", str(seconds + 1.5), "--json",
               "--workers", str(workers)]
    server = psutil.Process(server_pid)
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    flood = psutil.Process(proc.pid)
    marks = []   # (elapsed, echoed, flood cpu, server cpu) at each progress line
    for line in proc.stdout:
        record = json.loads(line)
        if record["type"] != "progress":
            continue
        try:
            procs = [flood, *flood.children(recursive=True)]
            flood_cpu = sum(sum(p.cpu_times()[:2]) for p in procs)
        except psutil.Error:
            continue
        marks.append((record["elapsed_s"], record["messages_echoed"], flood_cpu,
                      sum(server.cpu_times()[:2])))
    summary = record
    proc.wait()
    (t0, n0, f0, s0), (t1, n1, f1, s1) = marks[0], marks[-1]
    wall = t1 - t0
    return {"rtt_per_s": round((n1 - n0) / wall), "p50_ms": summary["rtt_ms"]["p50"],
            "p99_ms": summary["rtt_ms"]["p99"],
            "client_cpu_pct": round(100 * (f1 - f0) / wall, 1),
            "server_cpu_pct": round(100 * (s1 - s0) / wall, 1),
            "mismatches": summary["mismatches"], "failed": summary["failed"]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python tools/flood_vs_loadgen.py")
    parser.add_argument("--clients", type=int, default=100)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--workers", type=int, nargs="*", default=[1, 2],
                        help="flood --workers values to try (default: 1 2)")
    args = parser.parse_args(argv)
    try:
        loadgen = find_client("loadgen").argv[0]
    except ClientError as exc:
        parser.error(f"needs the C load generator to compare against: {exc}")
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "muxtop.bench.servers.selectors_echo",
                               "--port", str(port)])
    server_pid = server.pid
    time.sleep(0.5)  # let it listen
    try:
        results: dict[str, list[dict]] = {"loadgen": []}
        results.update({f"flood -w{w}": [] for w in args.workers})
        for round_no in range(1, args.rounds + 1):
            # Alternate within each round, so drift in the machine hits both alike.
            results["loadgen"].append(
                run_loadgen(loadgen, port, server_pid, args.clients, args.seconds))
            for w in args.workers:
                results[f"flood -w{w}"].append(
                    run_flood(port, server_pid, args.clients, args.seconds, w))
            print(f"round {round_no}: " + ", ".join(
                f"{name} {runs[-1]['rtt_per_s']:,.0f}/s" for name, runs in results.items()),
                file=sys.stderr)
            time.sleep(0.5)
    finally:
        server.terminate()
        server.wait(10)
    print(f"{args.clients} clients, 64-byte messages, one in flight, against the selectors "
          f"echo server; median of {args.rounds} rounds of {args.seconds:g} s")
    print(f"{'driver':<12} {'round trips/s':>14} {'p50 ms':>8} {'p99 ms':>8} "
          f"{'client CPU%':>12} {'server CPU%':>12}")
    for name, runs in results.items():
        def med(key: str, runs: list[dict] = runs) -> float:
            return statistics.median(r[key] for r in runs)
        print(f"{name:<12} {med('rtt_per_s'):>14,.0f} {med('p50_ms'):>8.3f} "
              f"{med('p99_ms'):>8.3f} {med('client_cpu_pct'):>12.0f} "
              f"{med('server_cpu_pct'):>12.0f}")
    print(json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
