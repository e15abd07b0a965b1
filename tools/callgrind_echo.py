#!/usr/bin/env python3
"""User-space instructions per echo round trip of the muxtop engine, counted by callgrind.

Runs a muxtop engine (epoll/level, echo, publishing off) in a child Python under
``valgrind --tool=callgrind``, drives it with the C load client `muxtop bench echo` uses
(muxtop's own, or the one $MUXTOP_LOADGEN_C names) at each connection count for a short and a
long time, and divides the difference of the two runs' total Ir by the difference of their round
trips: startup, accepting the connections and teardown are in both runs and cancel. Callgrind
counts instructions in user space only; kernel time (recv/send/epoll_wait) is not in the figure.

    python tools/callgrind_echo.py                       # 100 and 1,000 connections, a table
    python tools/callgrind_echo.py --repeat 2            # twice, with the spread between them
    python tools/callgrind_echo.py --conns 100 --json    # one JSON line

Developer tooling, not part of the package: stdlib and muxtop only. The engine's counters are
read from its final Snapshot after ``engine.stop()`` and checked against the load generator's.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

# Publishing "off": one Snapshot at start and one at stop, none in between. Not 1e9: the
# engine waits up to the next publish and epoll.poll() refuses a timeout over INT_MAX ms
# (~24.8 days) with OverflowError, which kills the loop at its first wait.
PUBLISH_OFF = 1e6
# Closed connections stay in the final Snapshot however long teardown took under valgrind,
# so their counters can be summed and checked against Totals.
LINGER_ALL = 1e6
DRAIN_TIMEOUT = 120.0  # seconds the child waits, after stdin EOF, for the peers' FINs


# ---- the child: an engine under valgrind --------------------------------------------------

class _Stop(Exception):
    pass


def _raise_stop(signum, frame):
    raise _Stop


def serve(args: argparse.Namespace) -> int:
    """Serve echo until SIGTERM/SIGINT or stdin EOF; then print the engine's totals."""
    from muxtop.engine import Engine, EngineConfig
    from muxtop.snapshot import KIND_CONN

    config = EngineConfig(host="127.0.0.1", port=0, backend="epoll", trigger="level",
                          protocol="echo", publish_interval=PUBLISH_OFF, diagnose=False,
                          closed_linger=LINGER_ALL)
    engine = Engine(config).start()
    if args.gc_freeze:
        # Everything made by startup (imports included) goes to the permanent generation.
        # The few collections during the load (gen0, now and then a gen1, at 100
        # connections) then walk only what the engine made since, not whatever of the
        # imported modules startup happened to leave in the young generations: without it
        # one gen1 collection more or less moved the figure by ~0.4%.
        gc.freeze()
    signal.signal(signal.SIGTERM, _raise_stop)
    signal.signal(signal.SIGINT, _raise_stop)
    print(json.dumps({"port": engine.address[1], "pid": os.getpid()}), flush=True)
    open_at_stop = None
    try:
        while sys.stdin.buffer.read(65536):
            pass
        # EOF: the load generator has exited, but under valgrind the engine may still be
        # working through its FINs. Stopping now would close the rest in _close_all, a cheaper
        # path than "peer closed", and the mix would differ from run to run (millions of Ir
        # at 1,000 connections). Wait until every connection has closed the ordinary way.
        open_at_stop = _wait_all_closed(engine, DRAIN_TIMEOUT)
    except _Stop:
        pass
    engine.stop()
    snap = engine.snapshot()
    views = [v for v in snap.connections if v.kind == KIND_CONN]
    result = {
        "error": engine.error,
        "open_at_stop": open_at_stop,
        "stopped": not engine.running,
        "bytes_in": snap.totals.bytes_in,
        "bytes_out": snap.totals.bytes_out,
        "accepted": snap.totals.accepted,
        "closed": snap.totals.closed,
        "conn_views": len(views),
        "views_bytes_in": sum(v.bytes_in for v in views),
        "msgs_in": sum(v.msgs_in for v in views),
        "msgs_out": sum(v.msgs_out for v in views),
        "waits": snap.waits[-1].seq if snap.waits else 0,
        "ring_size": config.ring_size,
        "close_notes": dict(Counter(v.note for v in views)),
        "gc_collections": [g["collections"] for g in gc.get_stats()],
    }
    print(json.dumps(result), flush=True)
    return 0 if engine.error is None else 1


def _wait_all_closed(engine, timeout: float) -> int:
    """Sleep until the engine has closed every connection it accepted; return how many are
    still open (0 unless it timed out). Reads two counters the engine thread keeps: a
    check every 50 ms costs a few thousand instructions in all."""
    counts = engine.counts
    deadline = time.monotonic() + timeout
    while counts.closed < counts.accepted and time.monotonic() < deadline:
        time.sleep(0.05)
    return counts.accepted - counts.closed


# ---- the parent: runs, counts, table ----------------------------------------------------

class MeasureError(Exception):
    pass


def find_loadgen(given: str | None) -> Path:
    """A load client binary: the one given, one built from the given .c, else the bench's C
    client (built into the user's cache like `muxtop bench echo` builds it)."""
    # Imported here, not at the top: the child under valgrind never needs them.
    from muxtop.bench.compiler import BuildError, build
    from muxtop.bench.loadgen import ClientError, find_client

    try:
        if not given:
            return Path(find_client("loadgen").argv[0])
        path = Path(given)
        if not path.exists():
            raise MeasureError(f"no load client at {path} (give --loadgen BINARY_OR_SOURCE.c)")
        return build(path) if path.suffix == ".c" else path
    except (BuildError, ClientError) as exc:
        raise MeasureError(str(exc)) from None


def callgrind_totals(path: Path) -> int:
    """Total Ir from a callgrind out file's `summary:` (or `totals:`) line."""
    events, values = None, None
    with open(path) as f:
        for line in f:
            if line.startswith("events:"):
                events = line.split()[1:]
            elif line.startswith(("summary:", "totals:")):
                values = [int(x) for x in line.split()[1:]]
    if events is None or values is None:
        raise MeasureError(f"{path}: no events/summary line (did callgrind finish?)")
    return values[events.index("Ir")]


def one_run(args, loadgen: Path, workdir: Path, conns: int, secs: float, tag: str) -> dict:
    """One child under callgrind, loaded for `secs` at `conns` connections."""
    rundir = workdir / tag
    rundir.mkdir()
    outfile = rundir / "callgrind.out.%p"
    env = dict(os.environ, PYTHONHASHSEED="0")
    env.pop("PYTHONMALLOC", None)  # pymalloc as in production
    cmd = [args.valgrind, "--tool=callgrind", f"--callgrind-out-file={outfile}",
           sys.executable, str(Path(__file__).resolve()), "--serve"]
    if not args.gc_freeze:
        cmd.append("--no-gc-freeze")
    log = open(rundir / "valgrind.log", "wb")
    child = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log,
                             env=env, cwd=REPO)
    try:
        line = child.stdout.readline()  # blocks until the engine listens (or the child dies)
        if not line:
            raise MeasureError(f"child died before listening; see {rundir / 'valgrind.log'}:\n"
                               + _tail(rundir / "valgrind.log"))
        hello = json.loads(line)
        lg = subprocess.run(
            [str(loadgen), "-p", str(hello["port"]), "-c", str(conns), "-d", f"{secs:g}",
             "-w", "0", "-s", str(args.size), "-P", str(hello["pid"])],
            capture_output=True, text=True, timeout=secs + 300)
        if lg.returncode != 0 or not lg.stdout.strip():
            raise MeasureError(f"loadgen failed ({lg.returncode}): {lg.stdout} {lg.stderr}")
        client = json.loads(lg.stdout.strip().splitlines()[-1])
        # stdin EOF: the child waits for every connection to close, stops, reports.
        out, _ = child.communicate(timeout=DRAIN_TIMEOUT + 300)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        log.close()
    lines = out.decode().strip().splitlines()
    if child.returncode != 0 or not lines:
        raise MeasureError(f"child exit {child.returncode}:\n" + _tail(rundir / "valgrind.log"))
    server = json.loads(lines[-1])
    files = list(rundir.glob("callgrind.out.*"))
    if len(files) != 1:
        raise MeasureError(f"expected one callgrind out file in {rundir}, found {files}")
    ir = callgrind_totals(files[0])
    check(server, client, conns, args.size)
    return {"conns": conns, "secs": secs, "ir": ir, "rt": server["bytes_in"] // args.size,
            "server": server, "client": client, "outfile": str(files[0])}


def check(server: dict, client: dict, conns: int, size: int) -> None:
    """The engine's count is right: it agrees with itself and with the load generator."""
    problems = []
    if server["open_at_stop"] is None:
        problems.append("the child was stopped by a signal, not by stdin EOF")
    elif server["open_at_stop"]:
        problems.append(f"{server['open_at_stop']} connections still open when the engine "
                        "was stopped (their teardown would differ from run to run)")
    if server["error"] or not server["stopped"]:
        problems.append(f"engine error {server['error']!r}, stopped={server['stopped']}")
    if server["bytes_in"] != server["bytes_out"]:
        problems.append(f"bytes_in {server['bytes_in']} != bytes_out {server['bytes_out']}")
    if server["views_bytes_in"] != server["bytes_in"]:
        problems.append("connections' bytes_in do not add up to Totals.bytes_in")
    if server["bytes_in"] != server["msgs_in"] * size or server["msgs_in"] != server["msgs_out"]:
        problems.append(f"reads are not one message each: msgs_in {server['msgs_in']}, "
                        f"bytes_in {server['bytes_in']}")
    if server["accepted"] != conns or server["closed"] != conns:
        problems.append(f"accepted {server['accepted']}, closed {server['closed']}, want {conns}")
    if client["mismatches"] or client["errors"]:
        problems.append(f"loadgen mismatches {client['mismatches']}, errors {client['errors']}")
    # The server echoes the priming message of every connection (not counted by loadgen),
    # every counted one, and at most one per connection still in flight when loadgen stops.
    extra = server["bytes_in"] // size - client["completed"]
    if not conns <= extra <= 2 * conns:
        problems.append(f"server echoed {server['bytes_in'] // size}, loadgen completed "
                        f"{client['completed']}: {extra} extra, want {conns}..{2 * conns}")
    if problems:
        raise MeasureError("count check failed: " + "; ".join(problems))


def _tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def measure(args, loadgen: Path, workdir: Path, rep: int) -> list[dict]:
    rows = []
    for conns in args.conns:
        short = one_run(args, loadgen, workdir, conns, args.short, f"r{rep}-c{conns}-short")
        long = one_run(args, loadgen, workdir, conns, args.long, f"r{rep}-c{conns}-long")
        drt = long["rt"] - short["rt"]
        if drt <= 0:
            raise MeasureError(f"{conns} conns: the long run did not do more round trips "
                               f"({short['rt']} vs {long['rt']}); lengthen --long")
        rows.append({
            "repeat": rep, "conns": conns,
            "rt_short": short["rt"], "rt_long": long["rt"],
            "ir_short": short["ir"], "ir_long": long["ir"],
            "ir_per_rt": (long["ir"] - short["ir"]) / drt,
            # Fds ready per wait, in the extra part of the long run: the per-wait cost is
            # spread over this many round trips.
            "events_per_wait": round(drt / max(1, long["server"]["waits"]
                                               - short["server"]["waits"]), 1),
            # Collections during the extra part of the long run (0: none in steady state).
            "gc_delta": sum(long["server"]["gc_collections"])
            - sum(short["server"]["gc_collections"]),
            # Peers that reset rather than closed: ~8k Ir more each than a FIN, and the mix
            # depends on timing; the only noise left in the difference.
            "resets": [r["server"]["close_notes"].get("reset by peer", 0) for r in (short, long)],
            "loadgen_completed": [short["client"]["completed"], long["client"]["completed"]],
            "server": [short["server"], long["server"]],
        })
        ring = short["server"]["ring_size"]
        if short["server"]["waits"] < ring <= long["server"]["waits"]:
            print(f"warning: {conns} conns: the wait-record ring ({ring}) filled during the "
                  "long run only; appends free old records from then on, so the difference "
                  "mixes two regimes (shorten --long or raise --conns)", file=sys.stderr)
        if not args.json:
            print(f"  repeat {rep}, {conns} conns: {rows[-1]['ir_per_rt']:,.1f} Ir/rt",
                  file=sys.stderr, flush=True)
    return rows


def summarize(rows: list[dict]) -> dict:
    """Per connection count: the mean of the repeats and their spread (max-min over mean)."""
    out = {}
    for conns in dict.fromkeys(r["conns"] for r in rows):
        vals = [r["ir_per_rt"] for r in rows if r["conns"] == conns]
        mean = statistics.fmean(vals)
        out[str(conns)] = {"ir_per_rt": round(mean, 1), "runs": [round(v, 1) for v in vals],
                           "spread_pct": round(100 * (max(vals) - min(vals)) / mean, 3)}
    return out


def print_table(rows: list[dict], summary: dict) -> None:
    print(f"{'rep':>3} {'conns':>6} {'rt short':>9} {'rt long':>9} {'Ir short':>15} "
          f"{'Ir long':>15} {'Ir/rt':>9} {'ev/wait':>7} {'gcΔ':>4} {'resets':>9}")
    for r in rows:
        resets = "/".join(map(str, r["resets"]))
        print(f"{r['repeat']:>3} {r['conns']:>6} {r['rt_short']:>9,} {r['rt_long']:>9,} "
              f"{r['ir_short']:>15,} {r['ir_long']:>15,} {r['ir_per_rt']:>9,.1f} "
              f"{r['events_per_wait']:>7} {r['gc_delta']:>4} {resets:>9}")
    if len(rows) > len(summary):
        print()
        for conns, s in summary.items():
            print(f"{conns:>6} conns: {s['ir_per_rt']:,.1f} Ir per round trip "
                  f"(runs {', '.join(f'{v:,.1f}' for v in s['runs'])}; "
                  f"spread {s['spread_pct']:.2f}%)")


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="callgrind user-space instructions per echo round trip of the muxtop "
        "engine (epoll/level, publishing off), from the difference of a short and a long run")
    p.add_argument("--conns", default="100,1000", metavar="N,N,...",
                   help="connection counts (default 100,1000)")
    p.add_argument("--short", type=float, default=2.0, metavar="S",
                   help="loadgen seconds of the short run (default 2)")
    p.add_argument("--long", type=float, default=6.0, metavar="S",
                   help="loadgen seconds of the long run (default 6)")
    p.add_argument("--size", type=int, default=64, help="message bytes (default 64)")
    p.add_argument("--repeat", type=int, default=1,
                   help="independent measurements, to see the spread (default 1)")
    p.add_argument("--loadgen", metavar="PATH",
                   help="load client binary, or C source to build (default: the client "
                   "`muxtop bench echo` uses: $MUXTOP_LOADGEN_C, else muxtop's own)")
    p.add_argument("--valgrind", default="valgrind", help="valgrind executable")
    p.add_argument("--no-gc-freeze", dest="gc_freeze", action="store_false",
                   help="do not gc.freeze() the child's heap after startup (noisier)")
    p.add_argument("--keep", metavar="DIR",
                   help="keep the callgrind out files and valgrind logs in DIR")
    p.add_argument("--json", action="store_true", help="print one JSON line instead")
    p.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)  # the child
    args = p.parse_args(argv)
    args.conns = [int(x) for x in args.conns.split(",") if x.strip()]
    if args.long <= args.short:
        p.error("--long must be longer than --short")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if args.serve:
        return serve(args)
    if shutil.which(args.valgrind) is None:
        print(f"{args.valgrind} not found", file=sys.stderr)
        return 2
    # Compile muxtop's .pyc files now, outside the measurement: otherwise the first child
    # pays for compiling them and the short-minus-long difference is off by that much.
    import muxtop.engine  # noqa: F401
    import muxtop.snapshot  # noqa: F401

    workdir = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="callgrind-echo-"))
    workdir.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    try:
        loadgen = find_loadgen(args.loadgen)
        rows = []
        for rep in range(1, args.repeat + 1):
            rows += measure(args, loadgen, workdir, rep)
    except (MeasureError, subprocess.SubprocessError, OSError) as exc:
        print(f"callgrind_echo: {exc}", file=sys.stderr)
        return 1
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    summary = summarize(rows)
    if args.json:
        print(json.dumps({"short_s": args.short, "long_s": args.long, "size": args.size,
                          "gc_freeze": args.gc_freeze, "python": sys.version.split()[0],
                          "summary": summary, "rows": rows,
                          "elapsed_s": round(time.monotonic() - started, 1)}))
    else:
        print_table(rows, summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
