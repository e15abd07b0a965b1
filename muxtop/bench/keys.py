"""`muxtop bench ui --keys N`: key to screen, the time from a key press to the screen showing
what it did, with the real engine and the real dashboard in one process, as `muxtop` runs them.

The app (`MuxtopApp` over an `EngineSource`, polling it at 4 Hz, with the GIL switch interval
and collector settings of `muxtop.ui.pacing`) runs under `App.run_test` at the bench's size.
The bench presses `?` (the help opens) and `escape` (it closes) in turns, a pause after each.
One figure is the time from posting the key event to the app (what Textual's terminal driver
does when a key arrives) to the end of the first screen update that shows the result: the app's
`_display` of the help screen once the help is the active screen, or of the dashboard once it is
again. The update is encoded into the escape sequences a terminal would get (the headless
driver skips that; the bench does it) before the clock stops. So a figure holds Textual's key
dispatch, the binding's action, composing or resuming the screen, layout, the compositor and
the encoding, and every wait for the GIL (the engine thread, the collector) on the way. The
first press composes the help screen: it is reported apart (`first_open_ms`).

It runs idle, then with the C echo client (`--keys-conns` connections) loading the same engine.
"""

from __future__ import annotations

import asyncio
import math
import statistics
import subprocess
import sys
from collections.abc import Callable
from time import perf_counter

PAUSE_BETWEEN = 0.05  # seconds between two presses
SETTLE = 0.5  # seconds after start before the first press: the first Snapshots and frames
LOAD_SETTLE = 1.0  # seconds of load before the first press
TARGET_IDLE_MS, TARGET_LOADED_MS = 50.0, 100.0  # issue 16's p99 targets


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def summary(values: list[float]) -> dict:
    return {"presses": len(values), "p50_ms": percentile(values, 0.5),
            "p99_ms": percentile(values, 0.99), "max_ms": max(values),
            "mean_ms": statistics.fmean(values)}


async def press_cycle(presses: int, size: tuple[int, int],
                      load: Callable[[int], subprocess.Popen] | None = None,
                      switch_interval: float | None = None) -> dict:
    """`presses` rounds of `?` then `escape` (after one unmeasured round) on a fresh engine
    and dashboard: {"open": [ms...], "close": [ms...], "first_open_ms": ms}. `load(port)`
    starts a load against the engine (a process, ended here) before the presses."""
    from textual import events

    from muxtop.engine.source import EngineSource
    from muxtop.ui import pacing
    from muxtop.ui.app import MuxtopApp
    from muxtop.ui.screens.help import HelpScreen
    from muxtop.ui.textual_compat import after_display

    engine = _engine()
    app = MuxtopApp(EngineSource(engine), freeze_at_start=True)
    watching: dict = {}  # what the next update must show, and the Event to set

    def encode_and_time(screen, renderable) -> None:
        if renderable is not None and hasattr(renderable, "render_segments"):
            renderable.render_segments(app.console)  # what a real terminal driver would write
        shows = watching.get("shows")
        if shows is not None and screen is app.screen and shows(screen):
            watching["at"] = perf_counter()
            del watching["shows"]
            watching["done"].set()

    after_display(app, encode_and_time)
    cases = (("question_mark", "?", "open", lambda s: isinstance(s, HelpScreen)),
             ("escape", None, "close", lambda s: s is app.dashboard))
    times: dict = {"open": [], "close": []}
    switch = pacing.GIL_SWITCH_INTERVAL if switch_interval is None else switch_interval
    loader = None
    try:
        with pacing.dashboard_pacing(switch):
            async with app.run_test(size=size):
                await asyncio.sleep(SETTLE)
                if load is not None:
                    loader = load(engine.address[1])
                    await asyncio.sleep(LOAD_SETTLE)
                for turn in range(presses + 1):
                    for key, character, name, shows in cases:
                        watching.update(shows=shows, done=asyncio.Event())
                        started = perf_counter()
                        app.post_message(events.Key(key, character))
                        await asyncio.wait_for(watching["done"].wait(), 30)
                        took = (watching["at"] - started) * 1e3
                        if turn:
                            times[name].append(took)
                        elif name == "open":
                            times["first_open_ms"] = took
                        await asyncio.sleep(PAUSE_BETWEEN)
                if loader is not None and loader.poll() is not None:
                    raise RuntimeError(f"the load client exited {loader.returncode} early")
    finally:
        if loader is not None:
            _end(loader)
        engine.stop()
    return times


def _engine():
    from muxtop.engine.config import EngineConfig
    from muxtop.engine.loop import Engine

    return Engine(EngineConfig(host="127.0.0.1", port=0)).start()


def _end(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def measure(presses: int, size: tuple[int, int], conns: int, client_choice: str = "auto",
            switch_interval: float | None = None) -> dict:
    """Key-to-screen figures idle and, if `conns`, under the echo client's load."""
    report: dict = {"presses": presses, "pause_s": PAUSE_BETWEEN}
    cases = {"idle": None}
    if conns:
        from muxtop.bench.loadgen import find_client

        client = find_client(client_choice)
        report.update(client=client.note, conns=conns)
        # Long enough for every press even on a slow machine; ended when they are done.
        seconds = LOAD_SETTLE + presses * 2 * (PAUSE_BETWEEN + 0.5) + 30

        def load(port: int) -> subprocess.Popen:
            return subprocess.Popen(client.command(port, conns, seconds, 0.5),
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        cases["loaded"] = load
    for case, load in cases.items():
        times = asyncio.run(press_cycle(presses, size, load, switch_interval))
        report[case] = {"open": summary(times["open"]), "close": summary(times["close"]),
                        "first_open_ms": times["first_open_ms"]}
    return report


def figures(report: dict) -> list[float]:
    """Every latency figure in a keys report (for checks: each positive and finite)."""
    out = []
    for case in ("idle", "loaded"):
        if case in report:
            for name in ("open", "close"):
                out += [v for k, v in report[case][name].items() if k.endswith("_ms")]
            out.append(report[case]["first_open_ms"])
    return out


def print_keys(report: dict, width: int, height: int) -> None:
    print(f"key to screen at {width}x{height}: press → the first screen update showing the "
          f"result,\n{report['presses']} presses of each key, {report['pause_s'] * 1e3:.0f} ms "
          "apart (real engine and dashboard, one process)\n")
    cases = [c for c in ("idle", "loaded") if c in report]
    heads = {"idle": "idle", "loaded": f"{report.get('conns', 0)} echo connections"}
    print(f"{'':24}" + "".join(f"{heads[c]:>26}" for c in cases))
    print(f"{'':24}" + "".join(f"{'p50':>10}{'p99':>8}{'max':>8}" for c in cases))
    for name, what in (("open", "? (help opens)"), ("close", "esc (help closes)")):
        cells = "".join(f"{report[c][name]['p50_ms']:>8.1f}ms{report[c][name]['p99_ms']:>6.1f}ms"
                        f"{report[c][name]['max_ms']:>6.1f}ms" for c in cases)
        print(f"  {what:<22}{cells}")
    firsts = "".join(f"{report[c]['first_open_ms']:>8.1f}ms{'':16}" for c in cases)
    print(f"  {'first ? (composes)':<22}{firsts}")
    for case, target in (("idle", TARGET_IDLE_MS), ("loaded", TARGET_LOADED_MS)):
        if case in report:
            worst = max(report[case][n]["p99_ms"] for n in ("open", "close"))
            verdict = "ok" if worst <= target else "over"
            print(f"target, {heads[case]}: p99 ≤ {target:.0f} ms: {verdict} ({worst:.1f} ms)")
    if "client" in report:
        print(f"\nload: {report['client']}")
    if not all(math.isfinite(v) for v in figures(report)):
        print("some figures are not finite: the run failed", file=sys.stderr)
