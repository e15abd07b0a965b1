"""`muxtop bench ui` in a real terminal (the default): the dashboard runs as `muxtop` runs, its
own process on a pseudo-terminal with Textual's Linux driver (its writer and input threads),
and a terminal emulator reads the screen (muxtop.bench.terminal).

- Round trips: `muxtop --headless` and `muxtop` with the dashboard on the terminal, the C echo
  client against each, in pairs run back to back (the order alternating); the ratio
  dashboard/headless per pair, median and range. For the dashboard runs also the CPU of each
  of its threads and the bytes per second it wrote to the terminal.
- Key to screen: `?` opens the help and `?` closes it, the time from writing the key to the pty
  to the read that brought the screen showing the help opened or closed; idle and under the
  echo client's load; for the dashboard and for a bare Textual app with one screen and a help
  screen (muxtop.bench.bare_app: the floor), in turns. Under load the bare app runs beside a
  `muxtop --headless` that the client loads, so the machine is as busy; the dashboard's own
  engine serves the client.
"""

from __future__ import annotations

import socket
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass

from muxtop.bench import bare_app
from muxtop.bench.terminal import Terminal, TerminalError, thread_cpu
from muxtop.ui.pacing import SWITCH_ENV

PAUSE_BETWEEN = 0.05  # seconds between two presses
KEY_TIMEOUT = 30.0  # seconds for one key's screen: a failure, not a figure, past that
READY_TIMEOUT = 30.0  # seconds for a program's first screen
LOAD_SETTLE = 1.0  # seconds of load before the first press
SETTLE = 0.5  # seconds after the first screen: the first Snapshots and frames
HELP_TITLE = "muxtop help"  # the dashboard's help panel's title
TARGET_RATIO = 0.95  # dashboard / headless round trips
TARGET_FLOOR = 2.0  # key to screen p99 under load, against the bare app's


@dataclass(frozen=True)
class Program:
    """What runs on the terminal, and how its screen says it is up, helped and back."""

    name: str
    help_title: str
    ready: str  # text on its first screen

    def argv(self, port: int, refresh: float | None) -> list[str]:
        if self.name == "bare":
            return [sys.executable, "-m", "muxtop.bench.bare_app"]
        extra = ["--refresh", f"{refresh:g}"] if refresh is not None else []
        return [sys.executable, "-m", "muxtop", "--port", str(port), *extra]


DASHBOARD = Program("dashboard", HELP_TITLE, "q quit")
BARE = Program("bare", bare_app.HELP_TITLE, bare_app.READY)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_listening(port: int, timeout: float = READY_TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise TerminalError(f"nothing listened on port {port} in {timeout:.0f} s")


def wait_named(pid: int, timeout: float = READY_TIMEOUT) -> None:
    """Wait until the dashboard has named its threads, which it does once its first frame is
    up (muxtop.ui.thread_names); after `timeout`, go on (the figures then lack the names)."""
    deadline = time.monotonic() + timeout
    while "textual-output" not in thread_cpu(pid) and time.monotonic() < deadline:
        time.sleep(0.05)


def headless_server(port: int) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "muxtop", "--headless", "--port", str(port)],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)


def end(proc: subprocess.Popen | None) -> None:
    if proc is not None and proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def environment(switch: float | None) -> dict[str, str] | None:
    import os

    return None if switch is None else dict(os.environ, **{SWITCH_ENV: repr(switch)})


# ---- round trips ----------------------------------------------------------------------------

def round_trip_pairs(client, pairs: int, conns: int, seconds: float, size: tuple[int, int],
                     refresh: float | None, switch: float | None) -> dict:
    """`pairs` of (headless, dashboard) echo runs, the order alternating; the dashboard's
    per-thread CPU and output bytes/s over its measured window."""
    from muxtop.bench.loadgen import run_client

    runs: dict[str, list[float]] = {"headless": [], "dashboard": []}
    # Server CPU µs per round trip: what the dashboard adds to each, and a figure that a busy
    # machine (which starves both kinds of run) moves far less than round trips/s.
    cost: dict[str, list[float]] = {"headless": [], "dashboard": []}
    threads: list[dict[str, float]] = []
    out_rates: list[float] = []
    for pair in range(pairs):
        for mode in ("headless", "dashboard") if pair % 2 == 0 else ("dashboard", "headless"):
            port = free_port()
            term = proc = None
            try:
                if mode == "headless":
                    proc = headless_server(port)
                    pid = proc.pid
                else:
                    term = Terminal(DASHBOARD.argv(port, refresh), *size, emulate=False,
                                    env=environment(switch))
                    pid = term.pid
                wait_listening(port)
                if term is not None:
                    wait_named(pid)  # the engine listens before the dashboard is up
                time.sleep(SETTLE)  # the dashboard's first frames
                command = client.command(port, conns, seconds, 1.0, server_pid=pid)
                cpu_before, bytes_before = thread_cpu(pid), term.bytes_out if term else 0
                started = time.monotonic()
                result = run_client(command, timeout=seconds + 60)
                spent = time.monotonic() - started
                if term is not None:
                    cpu_after = thread_cpu(pid)
                    threads.append({name: 100 * (cpu_after[name] - cpu_before.get(name, 0.0))
                                    / spent for name in cpu_after})
                    out_rates.append((term.bytes_out - bytes_before) / spent)
            finally:
                if term is not None:
                    term.stop()
                end(proc)
            runs[mode].append(float(result.get("rtt_per_s", 0.0)))
            if runs[mode][-1] > 0 and result.get("server_cpu_pct", -1) >= 0:
                cost[mode].append(result["server_cpu_pct"] * 1e4 / runs[mode][-1])
    ratios = [d / h for h, d in zip(runs["headless"], runs["dashboard"]) if h]
    names = sorted({name for t in threads for name in t})
    return {"client": client.note, "conns": conns, "seconds": seconds, "pairs": pairs,
            "headless_rt_per_s": runs["headless"], "dashboard_rt_per_s": runs["dashboard"],
            "ratio": spread(ratios),
            "cpu_us_per_rt": {mode: spread(values) for mode, values in cost.items()},
            "cpu_per_rt_ratio": spread([d / h for h, d in zip(cost["headless"],
                                                              cost["dashboard"])]),
            # The whole run with its 1 s warm-up: a little more than the client measured.
            "dashboard_thread_cpu_pct": {n: statistics.median(t.get(n, 0.0) for t in threads)
                                         for n in names},
            "dashboard_out_bytes_per_s": statistics.median(out_rates) if out_rates else 0.0}


def spread(values: list[float]) -> dict:
    if not values:
        return {"median": float("nan"), "low": float("nan"), "high": float("nan"), "n": 0}
    return {"median": statistics.median(values), "low": min(values), "high": max(values),
            "n": len(values)}


# ---- key to screen --------------------------------------------------------------------------

def press_cycle(term: Terminal, program: Program, presses: int) -> dict[str, list[float]]:
    """`presses` rounds of ? (help opens) and ? (it closes), after one unmeasured round (the
    first opening composes the help screen); milliseconds each."""
    times: dict[str, list[float]] = {"open": [], "close": []}
    title = program.help_title
    cases = (("open", lambda text: title in text), ("close", lambda text: title not in text))
    for turn in range(presses + 1):
        for name, shows in cases:
            wait = term.expect(shows)
            pressed = term.press(b"?")
            seen = wait(KEY_TIMEOUT)
            if turn:
                times[name].append((seen - pressed) * 1e3)
            time.sleep(PAUSE_BETWEEN)
    return times


def keys_run(program: Program, presses: int, size: tuple[int, int], client, conns: int,
             refresh: float | None, switch: float | None) -> dict[str, list[float]]:
    """One program on a fresh terminal, its presses timed; under the client's load at `conns`
    connections if `conns` (its own engine's for the dashboard, a headless muxtop's beside
    the bare app)."""
    port = free_port()
    server = loader = None
    term = Terminal(program.argv(port, refresh), *size, env=environment(switch))
    try:
        term.wait_for(lambda text: program.ready in text, READY_TIMEOUT)
        time.sleep(SETTLE)
        if conns:
            if program is BARE:
                server = headless_server(port)
            wait_listening(port)
            # Long enough for every press even on a slow machine; ended when they are done.
            seconds = LOAD_SETTLE + presses * 2 * (PAUSE_BETWEEN + 1.0) + 30
            loader = subprocess.Popen(client.command(port, conns, seconds, 0.5),
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(LOAD_SETTLE)
        times = press_cycle(term, program, presses)
        if loader is not None and loader.poll() is not None:
            raise TerminalError(f"the load client exited {loader.returncode} early")
        return times
    finally:
        end(loader)
        term.stop()
        end(server)


def key_figures(presses: int, rounds: int, size: tuple[int, int], client, conns: int,
                refresh: float | None, switch: float | None) -> dict:
    """Key to screen of the dashboard and of the bare app, idle and (if `conns`) loaded, the
    programs taking turns over `rounds` rounds: p50/p99 per program, case and key."""
    cases = ["idle"] + (["loaded"] if conns else [])
    times = {(p.name, c, k): [] for p in (DASHBOARD, BARE) for c in cases
             for k in ("open", "close")}
    per_round = max(1, presses // rounds)
    for turn in range(rounds):
        for case in cases:
            order = (DASHBOARD, BARE) if turn % 2 == 0 else (BARE, DASHBOARD)
            for program in order:
                got = keys_run(program, per_round, size, client,
                               conns if case == "loaded" else 0, refresh, switch)
                for key, values in got.items():
                    times[program.name, case, key] += values
    report: dict = {"presses": per_round * rounds, "rounds": rounds, "pause_s": PAUSE_BETWEEN,
                    "conns": conns}
    for (name, case, key), values in times.items():
        report.setdefault(name, {}).setdefault(case, {})[key] = summary(values)
    return report


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def summary(values: list[float]) -> dict:
    return {"presses": len(values), "p50_ms": percentile(values, 0.5),
            "p99_ms": percentile(values, 0.99), "max_ms": max(values)}


def floor_ratio(keys: dict, case: str) -> float:
    """The dashboard's worst key p99 over the bare app's, in `case`."""
    def worst(name: str) -> float:
        return max(keys[name][case][k]["p99_ms"] for k in ("open", "close"))
    return worst("dashboard") / worst("bare")


# ---- the report -----------------------------------------------------------------------------

def measure(args, size: tuple[int, int]) -> dict:
    from muxtop.bench.loadgen import find_client

    client = find_client(args.client)
    report: dict = {"driver": "terminal", "emulator": "pyte", "refresh": args.refresh,
                    "switch_interval": args.switch}
    if args.echo_seconds > 0:
        report["echo"] = round_trip_pairs(client, args.rounds, args.echo_conns,
                                          args.echo_seconds, size, args.refresh, args.switch)
    if args.keys:
        report["keys"] = key_figures(args.keys, args.key_rounds, size, client, args.keys_conns,
                                     args.refresh, args.switch)
        report["keys"]["client"] = client.note
    return report


def print_report(report: dict, width: int, height: int) -> None:
    echo = report.get("echo")
    if echo:
        ratio = echo["ratio"]
        print(f"echo round trips/s in a real terminal ({width}x{height} pty, pyte), "
              f"{echo['conns']} connections, {echo['seconds']:g} s a run, {echo['pairs']} "
              f"pairs (headless, dashboard) back to back\nclient: {echo['client']}\n")
        for mode in ("headless", "dashboard"):
            runs = echo[f"{mode}_rt_per_s"]
            each = "  ".join(f"{v:,.0f}" for v in runs)
            print(f"  {mode:<10}{statistics.median(runs):>12,.0f}   (runs: {each})")
        verdict = "ok" if ratio["median"] >= TARGET_RATIO else "under"
        print(f"\ndashboard / headless, pair by pair: median {ratio['median']:.2f} "
              f"(pairs {ratio['low']:.2f}–{ratio['high']:.2f})   "
              f"(target ≥ {TARGET_RATIO}: {verdict})")
        per_rt, cost = echo["cpu_us_per_rt"], echo["cpu_per_rt_ratio"]
        print("server CPU per round trip: " + "  ".join(
            f"{mode} {per_rt[mode]['median']:.2f} µs" for mode in ("headless", "dashboard"))
            + f"; dashboard / headless, pair by pair: median {cost['median']:.2f} "
            f"({cost['low']:.2f}–{cost['high']:.2f})")
        cpu = "  ".join(f"{name} {pct:.0f}%"
                        for name, pct in sorted(echo["dashboard_thread_cpu_pct"].items(),
                                                key=lambda item: -item[1]))
        print(f"dashboard threads, CPU (100% = a core): {cpu}")
        print(f"dashboard output to the terminal: {echo['dashboard_out_bytes_per_s'] / 1e3:,.1f}"
              " kB/s\n")
    keys = report.get("keys")
    if keys:
        print_keys(keys, width, height)


def print_keys(keys: dict, width: int, height: int) -> None:
    cases = [c for c in ("idle", "loaded") if c in keys["dashboard"]]
    heads = {"idle": "idle", "loaded": f"{keys['conns']} echo connections"}
    print(f"key to screen in a real terminal at {width}x{height}: key written to the pty → the "
          f"read that brought the screen\nshowing it, {keys['presses']} presses of each, "
          f"{keys['pause_s'] * 1e3:.0f} ms apart, {keys['rounds']} rounds (dashboard and bare "
          "app in turns)\n")
    print(f"{'':32}" + "".join(f"{heads[c]:>24}" for c in cases))
    print(f"{'':32}" + "".join(f"{'p50':>10}{'p99':>8}{'max':>6}" for c in cases))
    for program, label in (("dashboard", "dashboard"), ("bare", "bare Textual app")):
        for key, what in (("open", "? opens help"), ("close", "? closes it")):
            cells = "".join(f"{keys[program][c][key]['p50_ms']:>8.1f}ms"
                            f"{keys[program][c][key]['p99_ms']:>6.0f}ms"
                            f"{keys[program][c][key]['max_ms']:>4.0f}ms" for c in cases)
            print(f"  {label + ', ' + what:<30}{cells}")
    for case in cases:
        ratio = floor_ratio(keys, case)
        verdict = "ok" if ratio <= TARGET_FLOOR else "over"
        print(f"{heads[case]}: dashboard p99 / bare app p99 (worst key) {ratio:.2f}×"
              + (f"   (target ≤ {TARGET_FLOOR:g}×: {verdict})" if case == "loaded" else ""))
    if "client" in keys:
        print(f"load: {keys['client']}")
