"""`muxtop bench ui`: what the dashboard costs.

1. Frame time with 100 and with 10,000 connections, side by side, in interleaved rounds (the
   ratio is taken round by round, so drift on the machine cancels). The app runs headless
   (`App.run_test`) over a synthetic snapshot source whose every connection changes each
   tick. One frame = the tick's ingest (the app taking the new Snapshot: sort, filter, cursor,
   widget state) + the screen refresh it causes (layout if needed, the compositor asking
   widgets for their visible lines, and encoding the update into the escape sequences a
   terminal would get: the headless driver skips that last step, so the bench does it). Each
   part is timed with perf_counter around the real Textual methods (`Screen._refresh_layout`,
   `Screen._compositor_refresh`, `App._display`); Textual's message passing between them is
   the same at any connection count and is left out. The app runs under the dashboard's own
   garbage-collector settings (muxtop.ui.pacing: thresholds, start-up frozen once the first
   frame is up) and no collection is forced between frames, so a frame pays the collections
   it causes as it would in `muxtop` (the collector's count is shifted at random before each
   frame: see _frames); `--default-gc` measures under CPython's defaults instead, with a full
   collection between frames (what this bench did before).
2. Echo round trips/s of `muxtop --headless` and of `muxtop` with the dashboard open (under a
   pseudo-terminal of the same size), same client, interleaved runs. The dashboard shares the
   engine's GIL; the ratio says what it takes from the server.
3. Key to screen (`--keys N`, muxtop.bench.keys): a press of ? and of esc until the screen
   shows the help opened or closed, p50/p99, idle and under the echo client's load.

`--switch S` runs the dashboards of parts 2 and 3 with that GIL switch interval instead of
muxtop's (muxtop.ui.pacing), to measure what it does. `--json` prints every figure.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import fcntl
import gc
import importlib.util
import json
import os
import pty
import random
import signal
import socket
import statistics
import struct
import subprocess
import sys
import termios
import threading
import time
from time import perf_counter

from muxtop.arguments import (
    Parser,
    non_negative_float,
    non_negative_int,
    positive_float,
    positive_int,
    refresh_interval,
)
from muxtop.bench import synthetic
from muxtop.extras import install_hint
from muxtop.ui.pacing import GIL_SWITCH_INTERVAL, SWITCH_ENV
from muxtop.ui.textual_compat import after_display, wrap_screen_refresh

WARMUP = 10  # frames not timed: caches fill, the first layout happens
# The yardstick for a frame, measured in the same run: a Textual DataTable of the rows and
# columns the dashboard's table shows, every cell updated every tick (the 5 ms a frame takes
# on one machine is 12 ms on another; the ratio travels).
BASELINE = 0


def parser() -> argparse.ArgumentParser:
    p = Parser(prog="muxtop bench ui", description=__doc__.split("\n")[0])
    p.add_argument("--conns", default="100,10000", metavar="N,M",
                   help="the two connection counts to compare (default 100,10000)")
    p.add_argument("--ticks", type=positive_int, default=100,
                   help="frames timed per size, over all rounds (default 100)")
    p.add_argument("--frame-rounds", type=positive_int, default=5, metavar="R",
                   help="rounds of frames, the sizes taking turns (default 5)")
    p.add_argument("--size", default="160x48", help="terminal size WxH (default 160x48)")
    p.add_argument("--echo-seconds", type=non_negative_float, default=4.0, metavar="S",
                   help="seconds per echo run (default 4; 0 skips the echo part)")
    p.add_argument("--echo-conns", type=positive_int, default=100, metavar="N",
                   help="echo client connections (default 100)")
    p.add_argument("--rounds", type=positive_int, default=3,
                   help="echo runs of each kind, interleaved (default 3)")
    p.add_argument("--client", choices=("auto", "loadgen", "python"), default="auto",
                   help="echo client: loadgen (muxtop's C client, built on "
                        "first use), python, or auto")
    p.add_argument("--keys", type=non_negative_int, default=40, metavar="N",
                   help="presses of ? and of esc timed, idle and under load (default 40; "
                        "0 skips the keys part)")
    p.add_argument("--keys-conns", type=non_negative_int, default=100, metavar="N",
                   help="echo connections loading the engine while keys are timed "
                        "(default 100; 0: idle only)")
    p.add_argument("--driver", choices=("terminal", "headless"), default="terminal",
                   help="where the round trips and keys are measured: terminal (default: the "
                        "dashboard in its own process on a pseudo-terminal, pyte reading the "
                        "screen, beside a bare Textual app) or headless (Textual's headless "
                        "driver, in this process)")
    p.add_argument("--key-rounds", type=positive_int, default=2, metavar="R",
                   help="terminal: rounds the dashboard and the bare app take turns in, the "
                        "presses shared out (default 2)")
    p.add_argument("--refresh", type=refresh_interval, default=None, metavar="S",
                   help="terminal: the dashboard's --refresh (default its own)")
    p.add_argument("--switch", type=positive_float, default=None, metavar="S",
                   help="GIL switch interval for the dashboards of the echo and keys parts "
                        "(default muxtop's own, muxtop.ui.pacing)")
    p.add_argument("--default-gc", action="store_true",
                   help="time frames under CPython's collector defaults, collecting between "
                        "frames, instead of the dashboard's pacing")
    p.add_argument("--json", action="store_true", help="print one JSON document instead")
    return p


def main(argv: list[str]) -> int:
    args = parser().parse_args(argv)
    sizes, (width, height) = _sizes(args)
    report: dict = {"size": f"{width}x{height}", "ticks": args.ticks,
                    "switch_interval": args.switch or GIL_SWITCH_INTERVAL,
                    "frame_gc": "default" if args.default_gc else "paced"}
    frames, ratios = measure_rounds(sizes, args.ticks, args.frame_rounds, (width, height),
                                    paced=not args.default_gc)
    report["frames"] = {str(n): frames[n] for n in sizes}
    report["baseline"] = frames[BASELINE]
    report["frame_ratio"] = {"median": statistics.median(ratios), "low": min(ratios),
                             "high": max(ratios), "rounds": len(ratios)}
    if not args.json:
        print_frames(sizes, frames, report["frame_ratio"], args, width, height)
    report["load_average_before"] = _load_average()
    if args.driver == "terminal":
        return _terminal_parts(args, report, width, height)
    _headless_parts(args, report, width, height)
    if args.json:
        print(json.dumps(report, indent=2))
    return 0


def _sizes(args: argparse.Namespace) -> tuple[list[int], tuple[int, int]]:
    """The two connection counts and the terminal's (width, height); the parser's error
    (exit 2) for what does not make them, or for keys timed in a terminal without pyte."""
    try:
        sizes = [int(part) for part in args.conns.split(",")]
        width, height = (int(part) for part in args.size.lower().split("x"))
    except ValueError:
        parser().error("--conns takes N,M and --size WxH")
    if len(sizes) != 2 or min(sizes) < 1:
        parser().error("--conns takes two counts, e.g. 100,10000")
    if args.driver == "terminal" and args.keys and importlib.util.find_spec("pyte") is None:
        parser().error("the terminal's keys need pyte, the terminal emulator: "
                       f"{install_hint('bench')} (or --driver headless, or --keys 0)")
    return sizes, (width, height)


def _terminal_parts(args: argparse.Namespace, report: dict, width: int, height: int) -> int:
    """Round trips and keys with the dashboard in its own process on a pseudo-terminal."""
    from muxtop.bench import real_terminal
    from muxtop.bench.loadgen import ClientError
    from muxtop.bench.terminal import TerminalError

    try:
        report.update(real_terminal.measure(args, (width, height)))
    except (TerminalError, ClientError, OSError) as exc:
        print(f"muxtop bench ui: {exc}", file=sys.stderr)
        return 1
    report["load_average_after"] = _load_average()
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        real_terminal.print_report(report, width, height)
        print(f"load average before {report['load_average_before']}, "
              f"after {report['load_average_after']}")
    return 0


def _headless_parts(args: argparse.Namespace, report: dict, width: int, height: int) -> None:
    """Round trips and keys with Textual's headless driver, in this process."""
    if args.echo_seconds > 0:
        try:
            echo = measure_echo(args, width, height)
        except Exception as exc:  # noqa: BLE001 - a failed echo part must not hide the frames
            echo = {"error": str(exc)}
        report["echo"] = echo
        if not args.json:
            print_echo(echo, args)
    if args.keys:
        from muxtop.bench import keys

        report["keys"] = keys.measure(args.keys, (width, height), args.keys_conns, args.client,
                                      args.switch)
        if not args.json:
            print()
            keys.print_keys(report["keys"], width, height)


# ---- frames ---------------------------------------------------------------------------------

def measure_rounds(sizes: list[int], ticks: int, rounds: int, size: tuple[int, int],
                   paced: bool = True) -> tuple[dict[int, dict], list[float]]:
    """Frames of both sizes, and of the DataTable baseline, in `rounds` turns (order
    alternating), `ticks` in all per size: a summary per size (and "baseline"), each round's
    ratio of the second size's mean frame to the first's, and (in the summaries) each
    size's frame over the baseline's, round by round."""
    per_round = max(1, ticks // rounds)
    timed: dict = {n: {"ingest": [], "render": [], "rows": []} for n in [*sizes, BASELINE]}
    ratios = []
    to_baseline: dict[int, list[float]] = {n: [] for n in sizes}
    shape = None  # (rows, columns) the dashboard's table shows: the baseline draws as many
    for turn in range(rounds):
        means = {}
        order = [*sizes, BASELINE] if turn % 2 == 0 else [BASELINE, *sizes[::-1]]
        if shape is None:  # the baseline needs the dashboard's shape first
            order = [*sizes, BASELINE]
        for n in order:
            if n == BASELINE:
                ingests, renders = asyncio.run(measure_baseline(*shape, per_round, size, paced))
                rows = shape[0]
            else:
                ingests, renders, rows, shape = asyncio.run(
                    measure_frames(n, per_round, size, paced))
            timed[n]["ingest"] += ingests
            timed[n]["render"] += renders
            timed[n]["rows"].append(rows)
            means[n] = statistics.fmean(a + b for a, b in zip(ingests, renders))
        ratios.append(means[sizes[1]] / means[sizes[0]])
        for n in sizes:
            to_baseline[n].append(means[n] / means[BASELINE])
    summaries = {n: _summary(n, t["ingest"], t["render"], t["rows"][-1])
                 for n, t in timed.items()}
    for n in sizes:
        summaries[n]["vs_baseline"] = {"median": statistics.median(to_baseline[n]),
                                       "low": min(to_baseline[n]), "high": max(to_baseline[n])}
    summaries[BASELINE]["columns"] = shape[1]
    return summaries, ratios


def _summary(n: int, ingests: list[float], renders: list[float], rows: int) -> dict:
    frames = [a + b for a, b in zip(ingests, renders)]
    return {"connections": n, "rows": rows, "frames": len(frames),
            "frame_mean_ms": statistics.fmean(frames), "frame_p99_ms": _p99(frames),
            "ingest_mean_ms": statistics.fmean(ingests),
            "render_mean_ms": statistics.fmean(renders)}


async def measure_frames(n: int, ticks: int, size: tuple[int, int], paced: bool = True):
    """Ingest and render times (ms) of `ticks` frames of the dashboard over `n` connections
    that all change every tick, and the rows it shows. `paced`: under the dashboard's
    collector settings (muxtop.ui.pacing), else CPython's with a collection between frames."""
    from muxtop.ui import pacing

    if not paced:
        return await _frames(n, ticks, size, False)
    with pacing.dashboard_pacing(switch_interval=None):  # no other thread here
        return await _frames(n, ticks, size, True)


async def _frames(n: int, ticks: int, size: tuple[int, int], paced: bool):
    from muxtop.source import FixedSource
    from muxtop.ui.app import MuxtopApp

    source = FixedSource(synthetic.snapshot(n, 0, wait_count=4096))
    app = MuxtopApp(source, interval=None, freeze_at_start=paced)
    rng = random.Random(n)  # the same shifts on every run
    spent = {"render": 0.0}
    ingests: list[float] = []
    renders: list[float] = []
    async with app.run_test(size=size) as pilot:
        screen = app.dashboard
        _time_render(app, screen, spent)
        for tick in range(1, ticks + WARMUP + 1):
            # A fresh Snapshot each tick, as the engine publishes. Building it and freeing
            # the previous one (10,000 ConnViews take ~5 ms to free, wherever the last
            # reference drops) happen outside the timing: they are the engine's
            # allocations, not the dashboard's work.
            previous = source.snapshots[0]
            source.snapshots[0] = synthetic.snapshot(n, tick, wait_count=4096)
            # In muxtop the engine thread allocates between the UI's allocations at random;
            # here the snapshot is built at one fixed point of each tick, so the young
            # collections would fall at the same point of every frame (all inside or all
            # outside it). A random number of live empty lists, dropped after the frame,
            # moves the collector's count so a frame pays the collections it causes in
            # proportion to what it allocates (each collection in a frame then also walks
            # them: ~25 µs).
            shift = [[] for _ in range(rng.randrange(gc.get_threshold()[0]))] if paced else []
            spent["render"] = 0.0
            started = perf_counter()
            app.tick()
            ingested = perf_counter()
            await pilot.pause()  # messages flow, then the screen refreshes
            del previous, shift
            if not paced:
                gc.collect()
            if tick > WARMUP:  # caches, first layout
                ingests.append((ingested - started) * 1e3)
                renders.append(spent["render"] * 1e3)
        rows = len(screen.table.rows)
        shape = (max(1, screen.table.size.height - 1), len(screen.table.shown_ids()))
    return ingests, renders, rows, shape


async def measure_baseline(rows: int, columns: int, ticks: int, size: tuple[int, int],
                           paced: bool = True):
    """Ingest (the cells updated) and render times (ms) of `ticks` frames of a bare app with
    one DataTable of `rows` x `columns`, every cell a new number each tick, timed as the
    dashboard's frames are."""
    from textual.app import App, ComposeResult
    from textual.widgets import DataTable

    from muxtop.ui import pacing

    class Baseline(App[None]):
        def compose(self) -> ComposeResult:
            yield DataTable(id="baseline")

    app = Baseline()
    spent = {"render": 0.0}
    ingests: list[float] = []
    renders: list[float] = []
    context = pacing.dashboard_pacing(switch_interval=None) if paced else contextlib.nullcontext()
    with context:
        async with app.run_test(size=size) as pilot:
            table = app.query_one(DataTable)
            keys = [table.add_column(f"col {c}", width=8) for c in range(columns)]
            row_keys = [table.add_row(*(f"{r * c}" for c in range(columns))) for r in range(rows)]
            await pilot.pause()
            if paced:
                pacing.freeze()  # as the dashboard does once its first frame is up
            _time_render(app, app.screen, spent)
            rng = random.Random(rows)
            for tick in range(1, ticks + WARMUP + 1):
                # The same shift of the collector's count as the dashboard's frames get.
                shift = [[] for _ in range(rng.randrange(gc.get_threshold()[0]))] if paced \
                    else []
                spent["render"] = 0.0
                started = perf_counter()
                with app.batch_update():
                    for r, row in enumerate(row_keys):
                        for c, column in enumerate(keys):
                            table.update_cell(row, column, f"{tick * 7919 + r * c:,}")
                ingested = perf_counter()
                await pilot.pause()
                del shift
                if not paced:
                    gc.collect()
                if tick > WARMUP:
                    ingests.append((ingested - started) * 1e3)
                    renders.append(spent["render"] * 1e3)
    return ingests, renders


def _time_render(app, screen, spent: dict) -> None:
    """Wrap the screen's refresh path to add its time to spent["render"] (outermost call
    only: a layout refresh calls the compositor refresh inside it)."""
    depth = [0]

    def timed(method):
        def wrapper(*args, **kwargs):
            depth[0] += 1
            started = perf_counter()
            try:
                return method(*args, **kwargs)
            finally:
                depth[0] -= 1
                if depth[0] == 0:
                    spent["render"] += perf_counter() - started
        return wrapper

    wrap_screen_refresh(screen, timed)
    console = app.console

    def encode(target_screen, renderable) -> None:
        if renderable is not None and hasattr(renderable, "render_segments"):
            renderable.render_segments(console)  # what a real terminal driver would write

    after_display(app, encode)


def _load_average() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def _p99(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]


def print_frames(sizes, frames, by_round: dict, args, width, height) -> None:
    gc_note = ("CPython's defaults, collected between frames" if args.default_gc
               else "the dashboard's pacing")
    a, b = (frames[n] for n in sizes)
    print(f"muxtop bench ui: dashboard frame cost at {width}x{height}, {a['frames']} frames "
          f"each in {by_round['rounds']} interleaved rounds,\nevery connection changing every tick "
          f"(synthetic snapshots, headless app, collector: {gc_note})\n")
    print(f"{'':24}{sizes[0]:>12,} conns{sizes[1]:>12,} conns{'ratio':>10}")
    for key, label in (("frame_mean_ms", "frame mean"), ("frame_p99_ms", "frame p99"),
                       ("ingest_mean_ms", "  ingest (per Snapshot)"),
                       ("render_mean_ms", "  render (per frame)")):
        ratio = b[key] / a[key] if a[key] else float("nan")
        print(f"{label:<24}{a[key]:>15.3f} ms{b[key]:>15.3f} ms{ratio:>9.2f}×")
    base = frames[BASELINE]
    print(f"{'baseline frame mean':<24}{base['frame_mean_ms']:>15.3f} ms   (a Textual DataTable "
          f"of the same {base['rows']} rows x {base['columns']} columns on screen,\n"
          f"{'':24}every cell updated every tick, in the same rounds)")
    for n, frame in ((n, frames[n]) for n in sizes):
        vs = frame["vs_baseline"]
        print(f"  {n:,} conns frame / baseline frame, round by round: median {vs['median']:.2f}× "
              f"(rounds {vs['low']:.2f}–{vs['high']:.2f}×)")
    verdict = "ok" if by_round["median"] <= 1.2 else "over"
    print(f"\nframe mean ratio round by round: median {by_round['median']:.2f}× "
          f"(rounds {by_round['low']:.2f}–{by_round['high']:.2f}×)")
    print(f"target: {sizes[1]:,}-connection frame ≤ 1.2× the {sizes[0]:,} one: {verdict}")
    print("ingest = taking a new Snapshot (sort, filter, cursor; 4 a second at most);\n"
          "render = layout + visible lines + terminal encoding.\n")


# ---- echo -----------------------------------------------------------------------------------

def measure_echo(args, width: int, height: int) -> dict:
    from muxtop.bench.loadgen import find_client, run_client

    client = find_client(args.client)
    runs: dict[str, list[float]] = {"headless": [], "dashboard": []}
    cpu: dict[str, list[float]] = {"headless": [], "dashboard": []}
    for _ in range(args.rounds):
        for mode in ("headless", "dashboard"):
            port = _free_port()
            run_for = 1.0 + args.echo_seconds
            server = _Server(port, mode == "dashboard", run_for + 6, width, height,
                             args.switch)
            try:
                server.wait_listening()
                command = client.command(port, args.echo_conns, args.echo_seconds, 1.0,
                                         server_pid=server.proc.pid)
                result = run_client(command, timeout=run_for + 60)
            finally:
                server.stop()
            runs[mode].append(float(result.get("rtt_per_s", 0.0)))
            if result.get("server_cpu_pct", -1) >= 0:
                cpu[mode].append(float(result["server_cpu_pct"]))
    # Medians: on a small shared machine one disturbed run would move a mean a lot.
    headless = statistics.median(runs["headless"])
    dashboard = statistics.median(runs["dashboard"])
    return {"client": client.note, "conns": args.echo_conns, "seconds": args.echo_seconds,
            "headless_rt_per_s": runs["headless"], "dashboard_rt_per_s": runs["dashboard"],
            "headless_median": headless, "dashboard_median": dashboard,
            "ratio": dashboard / headless if headless else float("nan"),
            "server_cpu_pct": {k: statistics.fmean(v) for k, v in cpu.items() if v}}


def print_echo(echo: dict, args) -> None:
    if "error" in echo:
        print(f"echo part failed: {echo['error']}")
        return
    print(f"echo round trips/s, {echo['conns']} connections, {echo['seconds']:g} s a run, "
          f"{args.rounds} interleaved runs each\nclient: {echo['client']}\n")
    for mode in ("headless", "dashboard"):
        each = "  ".join(f"{v:,.0f}" for v in echo[f"{mode}_rt_per_s"])
        cpu = echo["server_cpu_pct"].get(mode)
        cpu_text = f"   server CPU {cpu:.0f}%" if cpu is not None else ""
        print(f"  {mode:<10}{echo[f'{mode}_median']:>12,.0f}   (runs: {each}){cpu_text}")
    verdict = "ok" if echo["ratio"] >= 0.97 else "under"
    print(f"\ndashboard / headless (medians): {echo['ratio']:.2f}   (target ≥ 0.97: {verdict})")
    print("The dashboard shares the engine's GIL and this machine's cores; on a busy machine the\n"
          "runs spread widely: compare the runs, not only the ratio.")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class _Server:
    """`python -m muxtop --port P [--headless] --duration S`; the dashboard one under a
    pseudo-terminal of the given size whose output is read and dropped."""

    def __init__(self, port: int, dashboard: bool, duration: float, width: int,
                 height: int, switch: float | None = None) -> None:
        self.port = port
        argv = [sys.executable, "-m", "muxtop", "--port", str(port), "--duration", f"{duration:g}"]
        self._main = -1
        if dashboard:
            self._main, child = pty.openpty()
            fcntl.ioctl(child, termios.TIOCSWINSZ, struct.pack("HHHH", height, width, 0, 0))
            env = dict(os.environ, TERM="xterm-256color")
            if switch is not None:
                env[SWITCH_ENV] = repr(switch)
            self.proc = subprocess.Popen(argv, stdin=child, stdout=child, stderr=child,
                                         env=env, start_new_session=True, close_fds=True)
            os.close(child)
            self._reader = threading.Thread(target=self._drain, daemon=True)
            self._reader.start()
        else:
            self.proc = subprocess.Popen(argv + ["--headless"], stdout=subprocess.DEVNULL,
                                         stderr=subprocess.DEVNULL, start_new_session=True)

    def _drain(self) -> None:
        while True:
            try:
                if not os.read(self._main, 65536):
                    return
            except OSError:
                return

    def wait_listening(self, timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"muxtop exited {self.proc.returncode} before listening")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                time.sleep(0.5)  # let the dashboard draw its first frames
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"muxtop did not listen on port {self.port} in {timeout:.0f} s")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)  # both modes quit cleanly on SIGTERM
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self._main >= 0:
            os.close(self._main)
            self._main = -1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
