"""`muxtop bench diagnose`: what the detectors cost at many idle connections, next to what the
engine costs without them. Engines with detectors on and off take turns, each holding the
same idle herd (a `muxtop flood --pattern idle` child), so drift hits both alike."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from dataclasses import asdict, dataclass

from muxtop.engine import Engine, EngineConfig
from muxtop.limits import raise_fd_limit


class BenchError(Exception):
    pass


@dataclass
class Sample:
    diagnose: bool
    conns: int
    seconds: float
    engine_cpu_pct: float  # CPU of this process (the engine thread; the main thread sleeps)
    publish_ms: float  # mean time to build one Snapshot, detectors included when on
    publishes: int
    detector_ms: float | None  # mean time of one detector run
    detector_runs: int


def measure(conns: int, seconds: float, diagnose: bool) -> Sample:
    engine = Engine(EngineConfig(port=0, diagnose=diagnose, backlog=4096)).start()
    host, port = engine.address
    herd = subprocess.Popen(
        [sys.executable, "-m", "muxtop", "flood", f"{host}:{port}", "--pattern", "idle",
         "--clients", str(conns), "--timeout", "60"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 90
        while engine.snapshot().open_connections < conns:
            if herd.poll() is not None:
                raise BenchError(f"the idle herd exited: {herd.stderr.read().strip()[-300:]}")
            if time.monotonic() > deadline:
                raise BenchError(f"only {engine.snapshot().open_connections} of {conns} "
                                 "connections opened in 90 s")
            time.sleep(0.2)
        time.sleep(1.0)  # let accept bursts and the first probes settle
        telemetry = engine.telemetry
        detector = telemetry.detector
        p0, ps0 = telemetry.publishes, telemetry.publish_seconds
        d0, ds0 = detector.runs, detector.seconds
        cpu0, wall0 = time.process_time(), time.perf_counter()
        time.sleep(seconds)
        cpu1, wall1 = time.process_time(), time.perf_counter()
        publishes = telemetry.publishes - p0
        runs = detector.runs - d0
        return Sample(
            diagnose=diagnose, conns=engine.snapshot().open_connections,
            seconds=round(wall1 - wall0, 2),
            engine_cpu_pct=100 * (cpu1 - cpu0) / (wall1 - wall0),
            publish_ms=1000 * (telemetry.publish_seconds - ps0) / max(publishes, 1),
            publishes=publishes,
            detector_ms=1000 * (detector.seconds - ds0) / runs if runs else None,
            detector_runs=runs)
    finally:
        herd.terminate()
        try:
            herd.wait(30)
        except subprocess.TimeoutExpired:
            herd.kill()
            herd.wait()
        herd.stderr.close()
        engine.stop()


def run(conns: int, seconds: float, rounds: int, progress=None) -> list[Sample]:
    need = conns + 200
    soft, hard = raise_fd_limit(need)
    if soft < need:
        raise BenchError(f"{conns} connections need {need} fds; the hard limit is {hard}")
    samples = []
    for index in range(rounds):
        order = (False, True) if index % 2 == 0 else (True, False)
        for diagnose in order:
            sample = measure(conns, seconds, diagnose)
            samples.append(sample)
            if progress:
                progress(index, sample)
    return samples


def summary(samples: list[Sample]) -> dict:
    def mean(values):
        values = [v for v in values if v is not None]
        return sum(values) / len(values) if values else None

    result = {}
    for diagnose in (False, True):
        group = [s for s in samples if s.diagnose == diagnose]
        result["with" if diagnose else "without"] = {
            "engine_cpu_pct": mean(s.engine_cpu_pct for s in group),
            "publish_ms": mean(s.publish_ms for s in group),
            "detector_ms": mean(s.detector_ms for s in group),
            "detector_runs_per_s": mean(s.detector_runs / s.seconds for s in group),
        }
    return result


def table(samples: list[Sample], conns: int, seconds: float) -> str:
    s = summary(samples)
    off, on = s["without"], s["with"]
    lines = [
        f"muxtop bench diagnose: {conns:,} idle connections, {len(samples) // 2} round(s) × "
        f"{seconds:g} s, detectors off and on in turn",
        "",
        f"{'':<22}{'engine CPU':>12}{'publish ms':>12}{'detector ms':>13}{'runs/s':>8}",
        f"{'without detectors':<22}{off['engine_cpu_pct']:>11.2f}%{off['publish_ms']:>12.2f}"
        f"{'—':>13}{'—':>8}",
        f"{'with detectors':<22}{on['engine_cpu_pct']:>11.2f}%{on['publish_ms']:>12.2f}"
        f"{on['detector_ms'] or 0:>13.2f}{on['detector_runs_per_s'] or 0:>8.1f}",
        "",
        "engine CPU: the engine thread's share of one core (the idle herd runs in a child);",
        "publish ms: building one Snapshot (4 a second), detectors included when on;",
        "detector ms: one run of every detector (at most 2 a second).",
    ]
    return "\n".join(lines)


def main(conns: int, seconds: float, rounds: int, as_json: bool) -> int:
    def progress(index, sample):
        if not as_json:
            print(f"  round {index + 1}: detectors {'on ' if sample.diagnose else 'off'}  "
                  f"CPU {sample.engine_cpu_pct:.2f}%  publish {sample.publish_ms:.2f} ms",
                  file=sys.stderr, flush=True)

    try:
        samples = run(conns, seconds, rounds, progress)
    except BenchError as exc:
        print(f"muxtop bench: {exc}", file=sys.stderr)
        return 1
    if as_json:
        print(json.dumps({"bench": "diagnose", "conns": conns, "seconds": seconds,
                          "samples": [asdict(s) for s in samples],
                          "summary": summary(samples)}, indent=1))
    else:
        print(table(samples, conns, seconds))
    return 0
