"""`muxtop bench echo`: muxtop's server on every backend and trigger mode against baseline echo
servers (selectors, asyncio, uvloop), all driven by the same client at the same concurrency.

Every server runs in its own process, started fresh for each measurement and killed after it.
Runs are interleaved — run 1 measures every server once, run 2 again in a rotated order — so
drift on the machine (other load, thermal, frequency) hits every server alike; the figure per
server is the median over runs.
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib.util
import os
import resource
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from typing import Self

from muxtop import children
from muxtop.bench.loadgen import Client, ClientError, run_client
from muxtop.bench.pyclient import process_cpu
from muxtop.bench.quiet import quietly
from muxtop.bench.replay import recording_figures
from muxtop.extras import install_hint
from muxtop.record.format import RecordingError

BASELINE = "selectors"
MUXTOP_MODES = (("select", "level"), ("poll", "level"), ("epoll", "level"), ("epoll", "edge"),
                ("epoll", "oneshot"), ("uring", "level"), ("uring", "edge"),
                ("uring", "completion"))
START_TIMEOUT = 15.0  # seconds for a server to accept its first connection
RECORDED_MODE = ("epoll", "level")  # the mode also measured while it records, and scraped
SCRAPE_EVERY = 1.0  # seconds between the bench's scrapes of a --metrics variant's /metrics
OPENMETRICS = "application/openmetrics-text; version=1.0.0"  # what Prometheus asks for


class BenchError(Exception):
    """The bench cannot run as asked; the message says why."""


@dataclass(frozen=True)
class ServerSpec:
    name: str
    module_args: tuple[str, ...]  # after ``python -m``; "{port}" and "{record}" are filled in
    about: str
    pair: str | None = None  # a variant of this server, measured against it run by run

    @property
    def records(self) -> bool:
        return "{record}" in self.module_args

    @property
    def scraped(self) -> bool:
        return any("{metrics}" in arg for arg in self.module_args)  # in HOST:{metrics}

    def command(self, port: int, record: str = "", metrics: int = 0) -> list[str]:
        return [sys.executable, "-m", *(a.replace("{port}", str(port)).replace("{record}", record)
                                        .replace("{metrics}", str(metrics))
                                        for a in self.module_args)]


def uvloop_available() -> bool:
    return importlib.util.find_spec("uvloop") is not None


def uring_unavailable() -> str | None:
    from muxtop.kernel.uring import unavailable
    return unavailable()


def metrics_available() -> bool:
    return importlib.util.find_spec("prometheus_client") is not None


def server_specs() -> dict[str, ServerSpec]:
    """Every server the bench knows, baselines first, in the default order."""
    specs = [
        ServerSpec("selectors", ("muxtop.bench.servers.selectors_echo", "--port", "{port}"),
                   "plain selectors.DefaultSelector loop (the baseline)"),
        ServerSpec("asyncio", ("muxtop.bench.servers.asyncio_echo", "--port", "{port}"),
                   "asyncio Protocol on asyncio's loop"),
        ServerSpec("uvloop", ("muxtop.bench.servers.asyncio_echo", "--port", "{port}",
                              "--loop", "uvloop"), "the same Protocol on uvloop"),
    ]
    for backend, trigger in MUXTOP_MODES:
        args = ("muxtop", "--headless", "--port", "{port}", "--backend", backend,
                "--trigger", trigger)
        specs.append(ServerSpec(f"muxtop-{backend}-{trigger}", args,
                                f"muxtop --headless, {backend}/{trigger}, telemetry on"))
        if (backend, trigger) == RECORDED_MODE:
            specs.append(ServerSpec(
                f"muxtop-{backend}-{trigger}-recorded", (*args, "--record", "{record}"),
                "the same, recording every wait call and Snapshot (--record)",
                pair=f"muxtop-{backend}-{trigger}"))
            specs.append(ServerSpec(
                f"muxtop-{backend}-{trigger}-scraped",
                (*args, "--metrics", "127.0.0.1:{metrics}"),
                f"the same, its /metrics scraped every {SCRAPE_EVERY:g} s (--metrics)",
                pair=f"muxtop-{backend}-{trigger}"))
    return {s.name: s for s in specs}


def choose_servers(names: list[str] | None) -> list[ServerSpec]:
    """The servers to run: ``names`` (checked) or every one available (uvloop if installed)."""
    specs = server_specs()
    if not names:
        return [s for n, s in specs.items() if (n != "uvloop" or uvloop_available())
                and (not s.scraped or metrics_available())
                and (not n.startswith("muxtop-uring") or uring_unavailable() is None)]
    unknown = [n for n in names if n not in specs]
    if unknown:
        raise BenchError(f"no server {', '.join(unknown)} (choose from {', '.join(specs)})")
    if "uvloop" in names and not uvloop_available():
        raise BenchError(f"uvloop is not installed: {install_hint('bench')}")
    if any(n.startswith("muxtop-uring") for n in names) and uring_unavailable() is not None:
        raise BenchError(f"uring is unavailable: {uring_unavailable()}")
    if any(specs[n].scraped for n in names) and not metrics_available():
        raise BenchError("prometheus_client is not installed: "
                         + install_hint("metrics"))
    chosen = dict.fromkeys(names)
    for name in list(chosen):  # a variant is measured against its server: run that too
        pair = specs[name].pair
        if pair is not None and pair not in chosen:
            chosen = {pair: None, **chosen}
    return [specs[n] for n in chosen]


def rotated(items: list, run_index: int) -> list:
    """``items`` starting at position ``run_index`` (mod len), wrapping round."""
    k = run_index % len(items) if items else 0
    return items[k:] + items[:k]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _die_with_parent() -> None:
    """In the child before exec: get SIGTERM if the bench dies, even by SIGKILL (Linux only)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


class ServerProcess:
    """One server in its own process on a free port; ``with`` kills it on the way out."""

    def __init__(self, spec: ServerSpec) -> None:
        self.spec = spec
        self.port = free_port()
        # Closed in stop(): it must outlive this call, so no with-block.
        self._stderr = tempfile.TemporaryFile(mode="w+")  # noqa: SIM115
        self._folder = tempfile.mkdtemp(prefix="muxtop-bench-") if spec.records else None
        self.record_path = os.path.join(self._folder, "run.muxrec") if self._folder else ""
        self.metrics_port = free_port() if spec.scraped else 0
        self.scrapes = 0  # of /metrics, while the client ran
        self._scraping = threading.Event()
        self._scraper: threading.Thread | None = None
        # stdout to /dev/null: muxtop --headless prints a status line a second, and an unread
        # pipe would fill and block the server mid-run.
        self.proc = subprocess.Popen(
            spec.command(self.port, self.record_path, self.metrics_port), stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=self._stderr,
            # No other thread runs here (a scraper is joined in stop()), so preexec_fn is safe.
            preexec_fn=_die_with_parent if sys.platform == "linux" else None)  # noqa: PLW1509
        self.pid = self.proc.pid

    def stderr_tail(self, lines: int = 3) -> str:
        self._stderr.seek(0)
        return " | ".join(self._stderr.read().strip().splitlines()[-lines:])

    def wait_accepting(self, timeout: float = START_TIMEOUT) -> float:
        """Block until the port takes a connection; the seconds that took."""
        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout:
            if self.proc.poll() is not None:
                raise BenchError(f"{self.spec.name} exited with status {self.proc.returncode} "
                                 f"before accepting: {self.stderr_tail() or 'no message'}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return time.monotonic() - t0
            except OSError:
                time.sleep(0.02)
        raise BenchError(f"{self.spec.name} did not accept on port {self.port} in {timeout:.0f} s")

    def start_scraping(self) -> None:
        """Scrape /metrics every SCRAPE_EVERY s on a thread, as Prometheus would, until stop."""
        if self.metrics_port:
            self._scraper = threading.Thread(target=self._scrape, daemon=True,
                                             name="bench-scrape")
            self._scraper.start()

    def _scrape(self) -> None:
        request = urllib.request.Request(f"http://127.0.0.1:{self.metrics_port}/metrics",
                                         headers={"Accept": OPENMETRICS})
        while not self._scraping.wait(SCRAPE_EVERY):
            with contextlib.suppress(OSError):
                with urllib.request.urlopen(request, timeout=5) as answer:
                    answer.read()
                self.scrapes += 1

    def stop(self) -> None:
        self._scraping.set()
        if self._scraper is not None:  # gone before the next server forks (preexec_fn)
            self._scraper.join(10)
        children.end(self.proc)
        self._stderr.close()

    def recording(self) -> dict:
        """What the server's recording holds against its size (once it has stopped); the
        file is deleted."""
        if not self.record_path:
            return {}
        try:
            return recording_figures(self.record_path)
        except (OSError, RecordingError) as exc:
            return {"failed": f"its recording does not read: {exc}"}
        finally:
            with contextlib.suppress(OSError):
                os.unlink(self.record_path)
            with contextlib.suppress(OSError):
                os.rmdir(self._folder)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


@dataclass
class Cell:
    """Every run of one server at one concurrency, and the medians over the runs that count."""

    server: str
    conns: int
    runs: list[dict] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)

    def good_runs(self) -> list[dict]:
        return [r for r in self.runs if not r.get("failed")]

    def median(self, key: str) -> float | None:
        values = [r[key] for r in self.good_runs() if r.get(key) is not None]
        return statistics.median(values) if values else None

    def ratios(self, ref: Cell, key: str) -> list[float]:
        """``key`` over ``ref``'s, run by run: each pair measured back to back, so drift on
        the machine slower than one round cancels out of it."""
        theirs = {r["run"]: r.get(key) for r in ref.good_runs()}
        return [r[key] / theirs[r["run"]] for r in self.good_runs()
                if r.get(key) is not None and theirs.get(r["run"])]

    def spread_pct(self) -> float | None:
        """(max - min) / median of round trips/s over the good runs, in percent."""
        values = [r["rtt_per_s"] for r in self.good_runs()]
        if len(values) < 2 or not statistics.median(values):
            return None
        return 100 * (max(values) - min(values)) / statistics.median(values)


FIGURES = ("rtt_per_s", "p50_us", "p99_us", "cpu_us_per_rt")


def judge_run(result: dict) -> dict:
    """Add the derived figure (server CPU µs per round trip) and mark runs that must not count:
    mismatched bytes, connection errors, nothing completed."""
    rtt = result.get("rtt_per_s") or 0
    cpu_pct = result.get("server_cpu_pct", -1)
    # server_cpu_pct is 100 per busy core over the measured window: µs of CPU per second / 1e4.
    result["cpu_us_per_rt"] = round(cpu_pct * 1e4 / rtt, 2) if rtt > 0 and cpu_pct >= 0 else None
    why = []
    if result.get("mismatches"):
        why.append(f"{result['mismatches']} mismatched echoes")
    if result.get("errors"):
        why.append(f"{result['errors']} connection errors")
    if not result.get("completed"):
        why.append("no round trip completed")
    if why:
        result["failed"] = ", ".join(why)
    return result


@dataclass(frozen=True)
class CpuSample:
    """Machine-wide busy and steal CPU seconds, the server's and the reaped children's
    (the client's) at one moment: the difference of two is what *other* processes used."""

    wall: float
    busy: float
    steal: float
    server: float
    children: float

    @classmethod
    def take(cls, server_pid: int) -> CpuSample:
        busy = steal = 0.0
        with contextlib.suppress(OSError, ValueError, IndexError):
            with open("/proc/stat", encoding="ascii") as f:
                ticks = [int(v) for v in f.readline().split()[1:9]]
            tck = os.sysconf("SC_CLK_TCK")
            # user nice system idle iowait irq softirq steal. irq and softirq are left out:
            # with IRQ time accounting (as here) they are charged to no process, and most of
            # it is loopback TCP of this very run, not a competitor.
            busy = (ticks[0] + ticks[1] + ticks[2]) / tck
            steal = ticks[7] / tck
        ru = resource.getrusage(resource.RUSAGE_CHILDREN)
        return cls(time.monotonic(), busy, steal, max(0.0, process_cpu(server_pid)),
                   ru.ru_utime + ru.ru_stime)

    def others_since(self, before: CpuSample) -> dict:
        """CPU% (100 = one core) used by everything but the server and the client between
        ``before`` and this sample, and the hypervisor's steal%: load that competes with the
        run and makes its figures noisy. The client is the only child reaped in between."""
        wall = self.wall - before.wall
        if wall <= 0 or not self.busy:
            return {"other_cpu_pct": None, "steal_pct": None}
        others = ((self.busy - before.busy) - (self.server - before.server)
                  - (self.children - before.children))
        return {"other_cpu_pct": round(max(0.0, 100 * others / wall), 1),
                "steal_pct": round(100 * (self.steal - before.steal) / wall, 1)}


def measure(spec: ServerSpec, client: Client, conns: int, duration: float,
            warmup: float, size: int) -> dict:
    """Start ``spec``, drive it with ``client`` once, stop it; the client's judged result."""
    with ServerProcess(spec) as server:
        started_s = server.wait_accepting()
        command = client.command(server.port, conns, duration, warmup, size, server.pid)
        before = CpuSample.take(server.pid)
        server.start_scraping()
        result = run_client(command, timeout=warmup + duration + 60)
        if server.metrics_port:
            result["scrapes"] = server.scrapes
        result.update(CpuSample.take(server.pid).others_since(before))
        if server.proc.poll() is not None:
            result["failed"] = (f"server exited with status {server.proc.returncode}: "
                                f"{server.stderr_tail()}")
        result["server_start_s"] = round(started_s, 3)
    result.update(server.recording())
    return judge_run(result)


def measure_quietly(spec: ServerSpec, client: Client, conns: int, duration: float,
                    warmup: float, size: int, busy_retries: int, busy_pct: float,
                    on_busy=None) -> dict:
    """`measure`, retried while the machine is busy (`quietly`)."""
    def once() -> dict:
        try:
            return measure(spec, client, conns, duration, warmup, size)
        except (BenchError, ClientError, OSError) as exc:
            return {"failed": str(exc)}

    return quietly(once, busy_retries, busy_pct, on_busy)


def run(servers: list[ServerSpec], client: Client, conns_list: list[int], runs: int,
        duration: float, warmup: float, size: int = 64, progress=None,
        busy_retries: int = 0, busy_pct: float = 25.0, on_busy=None) -> list[Cell]:
    """Every server at every concurrency, ``runs`` times, interleaved and rotated."""
    cells = {(s.name, c): Cell(s.name, c) for c in conns_list for s in servers}
    for run_index in range(runs):
        for conns in conns_list:
            for spec in rotated(servers, run_index):
                cell = cells[spec.name, conns]

                def busy(others: float, name=spec.name, conns=conns, run_index=run_index):
                    if on_busy:
                        on_busy(run_index, runs, name, conns, others)

                result = measure_quietly(spec, client, conns, duration, warmup, size,
                                         busy_retries, busy_pct, busy)
                result["run"] = run_index + 1
                cell.runs.append(result)
                if result.get("failed"):
                    cell.failures.append(f"run {run_index + 1}: {result['failed']}")
                if progress:
                    progress(run_index, runs, spec.name, conns, result)
    return list(cells.values())


def summary(cells: list[Cell]) -> list[dict]:
    """Per cell: medians, spread, and each figure's ratio to the selectors baseline at the same
    concurrency: the median of the runs' ratios (None without a baseline figure), and for rt/s
    the lowest and highest of them."""
    base = {c.conns: c for c in cells if c.server == BASELINE}
    specs = server_specs()
    by_name = {(c.server, c.conns): c for c in cells}
    rows = []
    for cell in cells:
        row = {"server": cell.server, "conns": cell.conns,
               "good_runs": len(cell.good_runs()), "runs": len(cell.runs)}
        for key in FIGURES + ("server_cpu_pct", "client_cpu_pct", "other_cpu_pct",
                              "steal_pct"):
            value = cell.median(key)
            row[key] = None if value is None else round(value, 2)
        row["rtt_spread_pct"] = None if cell.spread_pct() is None else round(cell.spread_pct(), 1)
        ref = base.get(cell.conns)
        row["vs_selectors"] = {}
        for key in FIGURES:
            ratios = cell.ratios(ref, key) if ref else []
            row["vs_selectors"][key] = round(statistics.median(ratios), 3) if ratios else None
            if key == "rtt_per_s":
                row["rtt_ratio_range"] = ((round(min(ratios), 3), round(max(ratios), 3))
                                          if ratios else None)
        row["failures"] = cell.failures
        row["busy_discarded"] = sum(len(r.get("busy_discarded", ())) for r in cell.runs)
        pair = specs[cell.server].pair if cell.server in specs else None
        if pair is not None and (pair, cell.conns) in by_name:
            row["vs_pair"] = paired(cell, by_name[pair, cell.conns])
        rows.append(row)
    return rows


def paired(cell: Cell, ref: Cell) -> dict:
    """A variant against its server, run by run (rt/s and CPU per round trip), and what its
    recordings held."""
    doc: dict = {"server": ref.server}
    for key in ("rtt_per_s", "cpu_us_per_rt"):
        ratios = cell.ratios(ref, key)
        doc[key] = round(statistics.median(ratios), 3) if ratios else None
        doc[f"{key}_range"] = (round(min(ratios), 3), round(max(ratios), 3)) if ratios else None
    for key in ("bytes_per_wait", "bytes_per_conn_s"):
        value = cell.median(key)
        doc[key] = None if value is None else round(value, 1)
    doc["gaps"] = sum(r.get("record_gaps") or 0 for r in cell.good_runs())
    return doc


def load_average() -> str:
    with contextlib.suppress(OSError):
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    return "?"
