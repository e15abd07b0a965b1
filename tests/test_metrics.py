"""--metrics: /metrics for Prometheus from published Snapshots. In this process over a real
engine (the figures follow its Snapshots, OpenMetrics is negotiated, no fd or peer in a
label), as `muxtop` and `muxtop attach` processes, through promtool's linter, and scraped by a
real Prometheus server (Debian's `prometheus`) whose answers agree with --headless --json."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

prometheus_client = pytest.importorskip("prometheus_client")
from prometheus_client.parser import text_string_to_metric_families  # noqa: E402

from muxtop import contrib  # noqa: E402
from muxtop.engine import Engine, EngineConfig  # noqa: E402
from muxtop.metrics.server import MetricsError, MetricsServer  # noqa: E402

pytestmark = pytest.mark.timeout(120)

OPENMETRICS = "application/openmetrics-text; version=1.0.0"
PROMTOOL = shutil.which("promtool")
PROMETHEUS = shutil.which("prometheus")
NO_PROMETHEUS = ("Debian's prometheus package (prometheus, promtool) is not installed: "
                 "apt-get install prometheus")


def wait_for(condition, timeout: float = 10.0, every: float = 0.05, what=None):
    """`condition()` once it is true; `what()` says what was seen instead when it is not."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout} s" + (f": {what()}" if what else ""))
        time.sleep(every)


def scrape(url: str, accept: str | None = None) -> tuple[str, str]:
    """(content type, body) of one GET."""
    request = urllib.request.Request(url, headers={"Accept": accept} if accept else {})
    with urllib.request.urlopen(request, timeout=10) as answer:
        return answer.headers["Content-Type"], answer.read().decode()


def samples(text: str) -> dict[tuple[str, tuple], float]:
    """{(sample name, sorted label pairs): value} of the classic text format."""
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def value(found: dict, name: str, **labels) -> float:
    return found[name, tuple(sorted(labels.items()))]


def echo(address, payload: bytes) -> None:
    with socket.create_connection(address, timeout=10) as client:
        client.sendall(payload)
        got = b""
        while len(got) < len(payload):
            chunk = client.recv(65536)
            assert chunk
            got += chunk


@pytest.fixture
def served():
    """An engine on 127.0.0.1:0 and its /metrics on 127.0.0.1:0; both stopped at teardown."""
    started: list = []

    def start(**settings):
        engine = Engine(EngineConfig(port=0, publish_interval=0.05, **settings)).start()
        started.append(engine)
        metrics = MetricsServer(("127.0.0.1", 0), engine.snapshot).start()
        started.append(metrics)
        return engine, metrics

    yield start
    for thing in reversed(started):
        thing.stop()


def test_the_metrics_follow_the_published_snapshot(served):
    engine, metrics = served()
    for _ in range(5):
        echo(engine.address, os.urandom(10_000))
    wait_for(lambda: engine.snapshot().totals.closed == 5)  # every echo over and counted
    found = samples(scrape(metrics.url)[1])
    snapshot = engine.snapshot()  # taken after the scrape: as new as the one it read, or newer
    assert value(found, "muxtop_received_bytes_total") == snapshot.totals.bytes_in == 50_000
    assert value(found, "muxtop_sent_bytes_total") == 50_000
    assert value(found, "muxtop_connections_accepted_total") == 5
    waits = value(found, "muxtop_wait_calls_total", backend="epoll", syscall="epoll_wait")
    assert 0 < waits <= snapshot.totals.waits
    # The histograms count the wait records the scrapes saw: all of them here (a small ring
    # is not overrun between two scrapes of an idle engine).
    assert value(found, "muxtop_wait_records_missed_total") == 0
    count = value(found, "muxtop_wait_duration_seconds_count")
    assert count == value(found, "muxtop_wait_duration_seconds_bucket", le="+Inf") > 0
    assert value(found, "muxtop_wait_ready_fds_count") == count
    assert value(found, "muxtop_findings", kind="stuck-read") == 0
    assert value(found, "muxtop_up") == 1
    # Counters only grow, scrape after scrape.
    echo(engine.address, b"x" * 1000)
    wait_for(lambda: engine.snapshot().totals.bytes_in >= 51_000)
    again = samples(scrape(metrics.url)[1])
    for key, before in found.items():
        if key[0].endswith(("_total", "_count", "_bucket")):
            assert again[key] >= before, key
    assert value(again, "muxtop_received_bytes_total") == 51_000


def test_openmetrics_is_negotiated_as_prometheus_asks(served):
    _, metrics = served()
    kind, body = scrape(metrics.url, OPENMETRICS)
    assert kind.startswith("application/openmetrics-text") and body.endswith("# EOF\n")
    assert "# TYPE muxtop_wait_calls counter" in body
    assert "# TYPE muxtop_wait_duration_seconds histogram" in body
    kind, body = scrape(metrics.url)
    assert kind.startswith("text/plain") and "muxtop_wait_calls_total{" in body


def test_labels_are_of_low_cardinality_only(served):
    engine, metrics = served(trigger="edge", lab=frozenset({"naive-edge"}), stuck_after=0.2,
                             read_size=1024)
    clients = [socket.create_connection(engine.address, timeout=10) for _ in range(3)]
    try:
        for client in clients:
            client.sendall(os.urandom(100_000))  # one read per edge: a stuck read each
        wait_for(lambda: len(engine.snapshot().diagnoses) >= 3)
        found = samples(scrape(metrics.url)[1])
    finally:
        for client in clients:
            client.close()
    labels = {name for _, pairs in found for name, _ in pairs}
    assert labels <= {"backend", "syscall", "trigger", "protocol", "source", "kind", "state",
                      "reason", "limit", "direction", "le"}, labels
    assert value(found, "muxtop_findings", kind="stuck-read") == 3
    assert value(found, "muxtop_findings_raised_total", kind="stuck-read") == 3
    assert value(found, "muxtop_kernel_queue_bytes", direction="rx") > 0
    # A finding that stands is raised once, however many scrapes see it.
    assert value(samples(scrape(metrics.url)[1]), "muxtop_findings_raised_total",
                 kind="stuck-read") == 3


class FakeFlood:
    """What the collector reads of a FloodProcess: pid, running, progress, summary."""

    def __init__(self, pid: int, **progress) -> None:
        self.pid, self.running, self.summary = pid, True, None
        self.progress = {"type": "progress", **progress}


def test_the_dashboards_floods_are_counted_across_floods(served):
    engine, metrics = served()
    first = FakeFlood(101, connected=10, active=10, messages_echoed=500, failed={"EOF": 2})
    floods = [first]
    metrics.floods = lambda: floods
    found = samples(scrape(metrics.url)[1])
    assert value(found, "muxtop_flood_running") == 1
    assert value(found, "muxtop_flood_connections") == 10
    assert value(found, "muxtop_flood_round_trips_total") == 500
    assert value(found, "muxtop_flood_failures_total") == 2
    first.running, first.summary = False, {**first.progress, "messages_echoed": 600}
    floods.append(FakeFlood(102, connected=5, active=5, messages_echoed=50))
    found = samples(scrape(metrics.url)[1])
    assert value(found, "muxtop_flood_running") == 1
    assert value(found, "muxtop_flood_round_trips_total") == 650
    floods.remove(first)  # the panel forgets a finished flood: the counter does not
    assert value(samples(scrape(metrics.url)[1]), "muxtop_flood_round_trips_total") == 650


def test_a_port_in_use_is_one_error(served):
    _, metrics = served()
    with pytest.raises(MetricsError, match="Address already in use"):
        MetricsServer(("127.0.0.1", metrics.port), lambda: None).start()


# ---- as processes ----------------------------------------------------------------------

class Muxtop:
    """`python -m muxtop ARGS` with its stderr read for the "metrics on URL" line."""

    def __init__(self, *args: str, stdout=subprocess.DEVNULL) -> None:
        self.err = tempfile.TemporaryFile(mode="w+")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen([sys.executable, "-m", "muxtop", *args], text=True,
                                     stdin=subprocess.DEVNULL, stdout=stdout, stderr=self.err)

    def stderr(self) -> str:
        self.err.seek(0)
        return self.err.read()

    def metrics_url(self) -> str:
        def told():
            assert self.proc.poll() is None, self.stderr()
            return next((line.split("metrics on ", 1)[1] for line in self.stderr().splitlines()
                         if "metrics on " in line), None)
        return wait_for(told, timeout=30)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        self.err.close()


@pytest.fixture
def processes():
    started: list[Muxtop] = []

    def start(*args: str, **kwargs) -> Muxtop:
        started.append(Muxtop(*args, **kwargs))
        return started[-1]

    yield start
    for process in reversed(started):
        process.stop()


def test_the_headless_server_says_where_its_metrics_are(processes):
    server = processes("--headless", "--port", "0", "--metrics", "127.0.0.1:0")
    url = server.metrics_url()
    assert url.startswith("http://127.0.0.1:") and url.endswith("/metrics")
    found = samples(scrape(url)[1])
    assert value(found, "muxtop_up") == 1


def test_the_cli_refuses_a_remote_or_busy_metrics_address(processes):
    command = [sys.executable, "-m", "muxtop", "--headless", "--port", "0", "--duration", "0"]
    remote = subprocess.run([*command, "--metrics", "0.0.0.0:0"], capture_output=True,
                            text=True, timeout=30)
    assert remote.returncode == 1 and "--allow-remote" in remote.stderr
    assert len(remote.stderr.splitlines()) == 1
    server = processes("--headless", "--port", "0", "--metrics", "127.0.0.1:0")
    port = server.metrics_url().rsplit(":", 1)[1].split("/")[0]
    busy = subprocess.run([*command, "--metrics", f"127.0.0.1:{port}"], capture_output=True,
                          text=True, timeout=30)
    assert busy.returncode == 1 and busy.stderr.splitlines() == [
        f"muxtop: cannot serve metrics on 127.0.0.1:{port}: Address already in use"]


def test_attach_labels_every_series_with_the_pid_and_name(processes):
    server = processes("--headless", "--port", "0")
    wait_for(lambda: _listening_port(server.proc.pid, but=0), timeout=30)  # it serves
    attach = processes("attach", str(server.proc.pid), "--text", "--interval", "0.2",
                       "--metrics", "127.0.0.1:0")
    url = attach.metrics_url()
    found = wait_for(lambda: samples(scrape(url)[1]), timeout=20)
    pids = {dict(pairs).get("pid") for _, pairs in found}
    names = {dict(pairs).get("process") for _, pairs in found}
    assert pids == {str(server.proc.pid)} and len(names) == 1 and None not in names, found
    assert value(found, "muxtop_up", pid=str(server.proc.pid), process=names.pop()) == 1


# ---- promtool --------------------------------------------------------------------------

@pytest.mark.skipif(PROMTOOL is None, reason=NO_PROMETHEUS)
def test_every_metric_passes_promtool_check_metrics(processes, tmp_path):
    # Every family there is: traffic, a standing finding (the bug lab), a recording, and an
    # attached process's series.
    server = processes("--headless", "--port", "0", "--trigger", "edge", "--lab", "naive-edge",
                       "--stuck-after", "0.2", "--record", str(tmp_path / "run.muxrec"),
                       "--metrics", "127.0.0.1:0", stdout=subprocess.PIPE)
    url = server.metrics_url()
    port = wait_for(lambda: _listening_port(server.proc.pid,
                                            but=urllib.parse.urlsplit(url).port))
    with stopped(server.proc, port, 100_000):  # arrives whole: one edge, one 64 KiB read
        client = socket.create_connection(("127.0.0.1", port), timeout=10)
        client.sendall(os.urandom(100_000))
    try:
        wait_for(lambda: value(samples(scrape(url)[1]), "muxtop_findings",
                               kind="stuck-read") >= 1, timeout=20)
        texts = {"serve": scrape(url)[1]}
        attach = processes("attach", str(server.proc.pid), "--text", "--interval", "0.2",
                           "--metrics", "127.0.0.1:0")
        attach_url = attach.metrics_url()
        texts["attach"] = wait_for(lambda: "muxtop_up{" in (t := scrape(attach_url)[1]) and t,
                                   timeout=20)
    finally:
        client.close()
    names = set()
    for where, text in texts.items():
        names |= {f.name for f in text_string_to_metric_families(text)}
        lint = subprocess.run([PROMTOOL, "check", "metrics"], input=text, capture_output=True,
                              text=True, timeout=30)
        assert lint.returncode == 0 and not lint.stdout.strip() and \
            not lint.stderr.strip(), (where, lint.stdout, lint.stderr)
    assert {"muxtop_wait_calls", "muxtop_wait_duration_seconds", "muxtop_wait_ready_fds",
            "muxtop_findings", "muxtop_findings_raised", "muxtop_tcp_connections",
            "muxtop_recording_bytes", "muxtop_kernel_queue_bytes"} <= names, names


@contextlib.contextmanager
def stopped(proc: subprocess.Popen, port: int, queued: int):
    """The process stopped (SIGSTOP) inside the block, as the edge-trap lesson stops the
    engine: the `queued` bytes sent to its `port` meanwhile arrive as one edge. It goes on
    only once every one of its threads has stopped (a thread running on the other core goes
    on until it enters the kernel) and, after the block, once the kernel holds all the bytes
    in the receive queues; continued however the block ends."""
    proc.send_signal(signal.SIGSTOP)
    try:
        tasks = f"/proc/{proc.pid}/task"
        wait_for(lambda: all(Path(tasks, tid, "stat").read_text().rsplit(")", 1)[1].split()[0]
                             in "tT" for tid in os.listdir(tasks)))
        yield
        wait_for(lambda: received(port) >= queued)
    finally:
        proc.send_signal(signal.SIGCONT)


def received(port: int) -> int:
    """Bytes waiting in the receive queues of the established sockets on local `port`."""
    total = 0
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local, state, queues = fields[1], fields[3], fields[4]
        if state == "01" and int(local.rsplit(":", 1)[1], 16) == port:
            total += int(queues.split(":")[1], 16)
    return total


def _listening_port(pid: int, but: int) -> int | None:
    """The port `pid` listens on other than `but` (its metrics port listens too)."""
    import psutil

    for conn in psutil.Process(pid).net_connections(kind="tcp"):
        if conn.status == psutil.CONN_LISTEN and conn.laddr.port != but:
            return conn.laddr.port
    return None


@pytest.mark.skipif(PROMTOOL is None, reason=NO_PROMETHEUS)
def test_the_shipped_rules_and_config_pass_promtool():
    files = {name: contrib.path(name) for name in contrib.FILES}
    assert all(path.is_file() for path in files.values()), files
    rules = subprocess.run([PROMTOOL, "check", "rules", str(files["alerts.yml"]),
                            str(files["recording.yml"])], capture_output=True, text=True,
                           timeout=30)
    assert rules.returncode == 0, rules.stdout + rules.stderr
    alerts = (Path(files["alerts.yml"]).read_text())
    for kind in ("stuck-read", "close-wait", "fd-pressure", "busy-loop"):
        assert f'kind="{kind}"' in alerts
    config = subprocess.run([PROMTOOL, "check", "config", str(files["prometheus.yml"])],
                            capture_output=True, text=True, timeout=30)
    assert config.returncode == 0, config.stdout + config.stderr


# ---- a real Prometheus -----------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def query(api: str, expr: str, at: float) -> list[dict]:
    url = f"{api}/api/v1/query?" + urllib.parse.urlencode({"query": expr, "time": f"{at:.3f}"})
    with urllib.request.urlopen(url, timeout=10) as answer:
        doc = json.load(answer)
    assert doc["status"] == "success", doc
    return doc["data"]["result"]


class JsonLines:
    """The --headless --json lines a server prints, read on a thread as they come."""

    def __init__(self, stream) -> None:
        import threading

        self.lines: list[dict] = []
        self._thread = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self._thread.start()

    def _read(self, stream) -> None:
        for line in stream:
            try:
                self.lines.append(json.loads(line))
            except ValueError:
                continue

    def between(self, start: float, end: float) -> list[dict]:
        return [line for line in self.lines if start < line["time"] <= end]


@pytest.mark.skipif(PROMETHEUS is None, reason=NO_PROMETHEUS)
@pytest.mark.timeout(180)
def test_a_real_prometheus_agrees_with_headless_json(processes):
    server = processes("--headless", "--json", "--port", "0", "--trigger", "edge",
                       "--lab", "naive-edge", "--stuck-after", "0.5",
                       "--metrics", "127.0.0.1:0", stdout=subprocess.PIPE)
    metrics = urllib.parse.urlsplit(server.metrics_url())
    lines = JsonLines(server.proc.stdout)
    listen = wait_for(lambda: lines.lines and lines.lines[0]["listen"], timeout=20)
    floods = []
    with prometheus_scraping(metrics.netloc) as api:
        try:
            # Two clients whose 100 KB messages arrive whole while the server is stopped: the
            # bug lab reads 64 KiB per edge, and no other edge comes (a stuck read each). Then
            # a steady echo flood, for the rate.
            def flood(*args: str) -> None:
                floods.append(subprocess.Popen(
                    [sys.executable, "-m", "muxtop", "flood", listen, *args, "--duration", "60",
                     "--json"], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                    stderr=subprocess.DEVNULL, text=True))

            port = int(listen.rsplit(":", 1)[1])
            with stopped(server.proc, port, 2 * 100_000):  # the kernel takes both meanwhile
                # --timeout 0: they wait for their echo as long as the test runs
                flood("--clients", "2", "--messages", "1", "--size", "100000", "--timeout", "0")
                assert '"type":"start"' in floods[-1].stdout.readline()
            flood("--clients", "20", "--messages", "0", "--rate", "50")
            stuck = 'muxtop_findings{kind="stuck-read"}'
            wait_for(lambda: _sample(query(api, stuck, time.time())) == 2, timeout=60, every=0.5)
            # Prometheus's raw samples of the counter, each with its scrape's time, against the
            # --json lines' count of wait calls around that time: the same counter, whatever the
            # flood's rate does on a loaded machine (a rate over one window against a mean over
            # another drifted apart there).
            series = 'muxtop_wait_calls_total{backend="epoll"}'
            samples = wait_for(lambda: _raw_samples(api, series, time.time()), timeout=60,
                               every=0.5)
            wait_for(lambda: lines.lines[-1]["time"] > samples[-1][0] + 1, timeout=20)
            for at, value in samples:
                before = [line["waits"] for line in lines.lines if line["time"] <= at - 1]
                after = [line["waits"] for line in lines.lines if line["time"] >= at + 1]
                assert before and after, (at, lines.lines[0]["time"])
                assert before[-1] <= value <= after[0], (at, value, before[-1], after[0])
            (rate,) = query(api, f"rate({series}[5s])", samples[-1][0])
            print(f"\n{len(samples)} samples of {series} each between the --json counts a second"
                  f" before and after; rate over 5 s {float(rate['value'][1]):,.1f}/s")
            assert float(rate["value"][1]) > 0
            now = lines.lines[-1]
            findings = sum(d["kind"] == "stuck-read" for d in now["diagnoses"])
            assert findings == 2 == _sample(query(api, stuck, now["time"]))
            raised = _sample(query(api, 'muxtop_findings_raised_total{kind="stuck-read"}',
                                   time.time()))
            assert raised >= 2
        finally:
            for flood in floods:
                flood.terminate()
            for flood in floods:
                try:
                    flood.wait(15)
                except subprocess.TimeoutExpired:
                    flood.kill()
                    flood.wait(5)
                flood.stdout.close()


@contextlib.contextmanager
def prometheus_scraping(target: str):
    """A real Prometheus (Debian's; 1 s scrapes, its own temporary storage, loopback)
    scraping `target` (HOST:PORT); yields its API's URL once it is ready."""
    folder = tempfile.mkdtemp(prefix="muxtop-prometheus-")
    web = f"127.0.0.1:{free_port()}"
    Path(folder, "prometheus.yml").write_text(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
        "scrape_configs:\n  - job_name: muxtop\n    static_configs:\n"
        f"      - targets: ['{target}']\n")
    prometheus = subprocess.Popen(
        [PROMETHEUS, f"--config.file={folder}/prometheus.yml",
         f"--storage.tsdb.path={folder}/data", f"--web.listen-address={web}",
         "--web.enable-lifecycle"],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        api = f"http://{web}"
        wait_for(lambda: _ready(api, prometheus), timeout=60, every=0.2)
        yield api
    finally:
        prometheus.terminate()
        try:
            prometheus.wait(15)
        except subprocess.TimeoutExpired:
            prometheus.kill()
            prometheus.wait(5)
        prometheus.stderr.close()
        shutil.rmtree(folder, ignore_errors=True)


def _ready(api: str, prometheus: subprocess.Popen) -> bool:
    assert prometheus.poll() is None, prometheus.stderr.read()[-2000:]
    try:
        with urllib.request.urlopen(f"{api}/-/ready", timeout=2) as answer:
            return answer.status == 200
    except OSError:
        return False


def _raw_samples(api: str, series: str, at: float) -> list[tuple[float, float]]:
    """The (scrape time, value) samples of `series` in the 8 s before `at`, if there are
    six or more (a series that keeps growing), else []."""
    result = query(api, f"{series}[8s]", at)
    samples = [(float(t), float(v)) for t, v in result[0]["values"]] if result else []
    return samples if len(samples) >= 6 and samples[-1][1] > samples[0][1] else []


def _sample(result: list[dict]) -> float | None:
    return float(result[0]["value"][1]) if result else None


def test_the_bench_scrapes_its_scraped_variant():
    from muxtop.bench.echo import ServerProcess, server_specs

    spec = server_specs()["muxtop-epoll-level-scraped"]
    assert spec.scraped and spec.pair == "muxtop-epoll-level"
    with ServerProcess(spec) as server:
        assert server.metrics_port and f"127.0.0.1:{server.metrics_port}" in spec.command(
            server.port, "", server.metrics_port)
        server.wait_accepting()
        server.start_scraping()
        wait_for(lambda: server.scrapes >= 2, timeout=20)


def test_web_refuses_metrics_that_every_tab_would_bind():
    from muxtop.cli.web import muxtop_command

    with pytest.raises(ValueError, match="every browser tab"):
        muxtop_command(["--metrics", "127.0.0.1:9464"])


def test_attach_leaves_out_what_it_cannot_know():
    # An attached process's /metrics said protocol="?" and muxtop_received_bytes_total and
    # muxtop_connections_accepted_total 0 however much it served: attach sees its fds, not
    # its reads or accepts. Those are left out; muxtop's own engine keeps every one.
    import dataclasses

    from muxtop.bench import synthetic
    from muxtop.metrics.collector import SnapshotCollector

    engine = synthetic.snapshot(10, 3)
    attached = dataclasses.replace(engine, source="attach", protocol="?",
                                   totals=engine.totals._replace(waits=0, events=0))

    def shown(snapshot):
        families = {f.name: f for f in SnapshotCollector(lambda: snapshot).collect()}
        return families, families["muxtop_server"].samples[0].labels

    families, labels = shown(attached)
    assert "protocol" not in labels and labels["source"] == "attach"
    for gone in ("muxtop_received_bytes", "muxtop_sent_bytes", "muxtop_connections_accepted",
                 "muxtop_connections_refused", "muxtop_connections_closed", "muxtop_events",
                 "muxtop_wait_probes"):
        assert gone not in families, gone
    families, labels = shown(engine)
    assert labels["protocol"] == engine.protocol
    assert {"muxtop_received_bytes", "muxtop_connections_accepted"} <= set(families)
