"""`muxtop bench agent`: what watching several processes costs (`attach --name`, several PIDs),
next to one `attach PID` measured in the same run.

N small epoll echo servers run in child processes, all of one name, each holding `--conns`
idle connections. Each round reads, in turn: one Attacher (the baseline: what `attach PID`
does every `--interval`), Targets of 1, 4, ... of the servers (what the agent does), and the
search for processes of the name through /proc/*/comm. Rounds interleave the kinds, each
starting with another, so a machine that gets busier slows them all alike. CPU time of this
thread is timed, not wall time.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import time

from muxtop import children
from muxtop.arguments import Parser, positive_int
from muxtop.attach.reader import Attacher
from muxtop.attach.targets import COMM_BYTES, Targets, processes_named
from muxtop.bench import machine
from muxtop.limits import raise_fd_limit

READS_EVERY = 0.05  # seconds between rounds: the servers stay idle meanwhile
INTERVAL = 0.5  # attach's default --interval: the share of a core the figures come to
# A server that names itself (comm) as a worker would, holds what connects, prints its port.
SERVER = """
import ctypes, selectors, socket, sys
ctypes.CDLL(None).prctl(15, sys.argv[1].encode(), 0, 0, 0)
listener = socket.create_server(("127.0.0.1", 0), backlog=1024)
listener.setblocking(False)
watch = selectors.EpollSelector()
watch.register(listener, selectors.EVENT_READ)
print(listener.getsockname()[1], flush=True)
while True:
    for key, _ in watch.select():
        if key.fileobj is listener:
            conn, _ = listener.accept()
            watch.register(conn, selectors.EVENT_READ)
        elif data := key.fileobj.recv(65536):
            key.fileobj.sendall(data)
        else:
            watch.unregister(key.fileobj)
            key.fileobj.close()
"""


def counts(text: str) -> list[int]:
    """argparse type: ``1,4,16`` -> [1, 4, 16], each a positive whole number."""
    values = list(dict.fromkeys(positive_int(part) for part in text.split(",") if part.strip()))
    if not values:
        raise argparse.ArgumentTypeError(f"{text!r}: give whole numbers ≥ 1, e.g. 1,4,16")
    return values


def parser() -> argparse.ArgumentParser:
    p = Parser(prog="muxtop bench agent", description=__doc__.split("\n\n")[0])
    p.add_argument("--targets", type=counts, default=[1, 4, 16], metavar="N,N,...",
                   help="how many processes the agent watches (default 1,4,16)")
    p.add_argument("--conns", type=positive_int, default=50,
                   help="idle connections each server holds (default 50)")
    p.add_argument("--rounds", type=positive_int, default=20,
                   help="reads timed of each kind (default 20)")
    p.add_argument("--json", action="store_true", help="print one JSON document instead")
    return p


def main(argv: list[str]) -> int:
    args = parser().parse_args(argv)
    servers = max(args.targets)
    raise_fd_limit(servers * (args.conns + 8) + 256)
    name = f"mxbench{os.getpid()}"[:COMM_BYTES]
    procs: list[subprocess.Popen] = []
    clients: list[socket.socket] = []
    try:
        for _ in range(servers):
            proc = subprocess.Popen([sys.executable, "-c", SERVER, name], text=True,
                                    stdin=subprocess.DEVNULL, stdout=subprocess.PIPE)
            procs.append(proc)
            port = int(proc.stdout.readline())
            clients += [socket.create_connection(("127.0.0.1", port), timeout=10)
                        for _ in range(args.conns)]
        result = measure([p.pid for p in procs], name, args.targets, args.rounds)
    except (OSError, ValueError) as exc:
        print(f"muxtop bench agent: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    finally:
        for client in clients:
            client.close()
        for proc in procs:
            children.end(proc)
            proc.stdout.close()
    result.update(machine=machine.describe(), servers=servers, conns=args.conns,
                  rounds=args.rounds)
    print(json.dumps(result, indent=2) if args.json else table(result))
    return 0


def measure(pids: list[int], name: str, counts: list[int], rounds: int) -> dict:
    """Median, lowest and highest CPU ms of each kind of read, over `rounds` interleaved."""
    load_before = os.getloadavg()
    one = Attacher(pids[0])
    watched = {n: Targets(tuple(pids[:n]), make=Attacher) for n in counts}
    kinds = {"attach PID": one.read, **{f"targets {n}": w.read for n, w in watched.items()},
             "search": lambda: processes_named(name)}
    for read in kinds.values():
        read()  # the first read learns what later ones reuse: not their cost
    times: dict[str, list[float]] = {kind: [] for kind in kinds}
    order = list(kinds.items())
    for round_ in range(rounds):
        # Each round starts with another kind: the first read after the pause meets cold
        # caches, and no kind should always be the one that pays for it.
        shift = round_ % len(order)
        for kind, read in order[shift:] + order[:shift]:
            started = time.thread_time()
            read()
            times[kind].append((time.thread_time() - started) * 1e3)
        time.sleep(READS_EVERY)
    for w in watched.values():
        w.close()
    one.close()
    processes = sum(1 for entry in os.listdir("/proc") if entry.isdigit())
    return {"load_before": load_before, "load_after": os.getloadavg(), "processes": processes,
            "ms": {kind: {"median": statistics.median(t), "min": min(t), "max": max(t)}
                   for kind, t in times.items()},
            "targets": {f"targets {n}": n for n in counts}}


def table(result: dict) -> str:
    before, after = result["load_before"][0], result["load_after"][0]
    lines = [f"muxtop bench agent — {machine.header(result['machine'])}",
             f"load average {before:.2f} → {after:.2f}; {result['servers']} idle epoll servers "
             f"of one name, {result['conns']} connections each; {result['rounds']} rounds, "
             "CPU ms per read",
             "",
             f"{'read':<38} {'median':>8} {'range':>15} {'per process':>12} "
             f"{'at 0.5 s':>9}"]
    base = result["ms"]["attach PID"]["median"]
    for kind, ms in result["ms"].items():
        n = 1 if kind == "attach PID" else result["targets"].get(kind)
        label = {"attach PID": "attach PID (baseline)",
                 "search": f"search /proc/*/comm ({result['processes']} processes)"}.get(kind,
                                                                                       kind)
        per = f"{ms['median'] / n:.2f} ms" if n else ""
        lines.append(f"{label:<38} {ms['median']:>8.2f} "
                     f"{ms['min']:>7.2f}–{ms['max']:<7.2f} {per:>12} "
                     f"{ms['median'] / (INTERVAL * 1e3):>9.2%}")
    largest = max(result["targets"].items(), key=lambda item: item[1])
    ratio = result["ms"][largest[0]]["median"] / largest[1] / base if base else float("nan")
    lines += ["", f"per process at {largest[1]} processes: {ratio:.2f}× one attach PID's read"]
    return "\n".join(lines)
