"""`muxtop bench wait|echo` in tiny configurations: the output has the right shape and every
figure is positive and finite. No test here asserts a speed (benchmarks print figures)."""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import signal
import subprocess
import sys
import time
import types
import xml.etree.ElementTree as ET

import psutil
import pytest
from echo_client import wait_for

from muxtop.bench import chart, cli, echo, wait
from muxtop.bench.servers import selectors_echo  # noqa: F401  (importable as a module)

pytestmark = pytest.mark.timeout(90)


def bench(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "muxtop", "bench", *args], capture_output=True,
                          text=True, timeout=timeout, check=False)


def positive(value) -> bool:
    return isinstance(value, int | float) and math.isfinite(value) and value > 0


# ------------------------------------------------------------------------------------- wait


def test_wait_json_has_every_backend_at_every_count():
    proc = bench("wait", "--fds", "10,20", "--json")
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["bench"] == "wait" and doc["machine"]["cores"] >= 1
    points = {(p["backend"], p["fds"]): p for p in doc["points"]}
    assert set(points) == {(b, n) for b in ("select", "poll", "epoll", "uring")
                           for n in (10, 20)}
    for p in points.values():
        assert p["skipped"] is None
        assert positive(p["median_us"]) and positive(p["min_us"]) and p["calls"] > 0
        assert p["min_us"] <= p["median_us"]


def test_wait_text_table_chart_and_svg(tmp_path):
    svg = tmp_path / "sub" / "wait.svg"
    proc = bench("wait", "--fds", "10,30", "--backends", "poll,epoll", "--svg", str(svg))
    assert proc.returncode == 0, proc.stderr
    assert "idle fds" in proc.stdout and "machine:" in proc.stdout
    assert "p poll" in proc.stdout and "e epoll" in proc.stdout  # the chart's legend
    root = ET.parse(svg).getroot()
    assert root.tag.endswith("svg")
    assert len(root.findall("{http://www.w3.org/2000/svg}polyline")) == 2


def test_wait_svg_never_replaces_a_file_and_refuses_special_ones(tmp_path, capsys):
    kept = tmp_path / "recording.muxrec"
    kept.write_text("precious")
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    # Was: replaced silently, a hang (the FIFO), or a traceback (the others).
    for target in (kept, fifo, tmp_path, "/dev/full", tmp_path / ("n" * 300), "a\x00/b"):
        assert cli.main(["wait", "--fds", "10", "--svg", str(target)]) == 1, target
        err = capsys.readouterr().err
        assert err.startswith("muxtop bench: --svg: cannot write") and err.count("\n") == 1, err
    with pytest.raises(SystemExit) as usage:  # an empty name is no name: refused by the option
        cli.main(["wait", "--fds", "10", "--svg", ""])
    assert usage.value.code == 2
    assert "argument --svg: the name is empty" in capsys.readouterr().err
    assert kept.read_text() == "precious"
    assert cli.main(["wait", "--fds", "10", "--backends", "epoll", "--svg", str(kept),
                     "--force"]) == 0
    assert ET.parse(kept).getroot().tag.endswith("svg")


def test_wait_escapes_an_unknown_backends_name(capsys):
    assert cli.main(["wait", "--backends", "\x1b]0;pwned\x07"]) == 2
    err = capsys.readouterr().err
    assert "\x1b" not in err and "\\x1b]0;pwned\\x07" in err, err


def test_wait_select_reports_its_fd_limit_instead_of_failing():
    proc = bench("wait", "--fds", "1100", "--backends", "select,epoll", "--json")
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    select, epoll = doc["points"]
    assert select["backend"] == "select" and "1023" in select["skipped"]
    assert select["median_us"] is None
    assert epoll["skipped"] is None and positive(epoll["median_us"])
    assert any("FD_SETSIZE" in note for note in doc["notes"])


def test_wait_with_no_count_that_fits_the_fd_limit_says_so_and_fails():
    # Under a hard limit of 256 fds, 1,000 cannot be measured: it said "measuring up to 186
    # idle fds", printed a row of dashes and exited 0.
    def low_limit() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (256, 256))

    proc = subprocess.run([sys.executable, "-m", "muxtop", "bench", "wait", "--fds", "1000",
                           "--backends", "poll,epoll"], capture_output=True, text=True,
                          timeout=60, check=False, preexec_fn=low_limit)
    assert proc.returncode == 1 and proc.stdout == ""
    line, = proc.stderr.splitlines()
    assert line.startswith("muxtop bench wait: nothing measured: open-file limit is 256")
    assert "counts above" in line and "are not measured" in line
    some = subprocess.run([sys.executable, "-m", "muxtop", "bench", "wait", "--fds", "10,1000",
                           "--backends", "epoll", "--json"], capture_output=True, text=True,
                          timeout=60, check=False, preexec_fn=low_limit)
    assert some.returncode == 0, some.stderr  # what fits is measured, the rest is told
    doc = json.loads(some.stdout)
    assert [p["skipped"] is None for p in doc["points"]] == [True, False]


def test_wait_measures_in_process_with_few_fds():
    pool = wait.IdleFds(5)
    try:
        points = wait.measure_count(("poll", "epoll"), pool.fds, pool.ready,
                                    batch_seconds=0.0005, repeats=3)
    finally:
        pool.close()
    assert [p.backend for p in points] == ["poll", "epoll"]
    assert all(p.fds == 5 and positive(p.median_us) for p in points)


# ------------------------------------------------------------------------------------- echo


def check_echo_doc(doc: dict, servers: list[str], conns: int) -> None:
    assert doc["bench"] == "echo" and doc["servers"] == servers
    assert doc["client"] in ("loadgen", "python")
    rows = {r["server"]: r for r in doc["results"]}
    assert set(rows) == set(servers)
    for row in rows.values():
        assert row["conns"] == conns and row["good_runs"] == row["runs"] == 1, row["failures"]
        for key in ("rtt_per_s", "p50_us", "p99_us", "cpu_us_per_rt", "server_cpu_pct"):
            assert positive(row[key]), (key, row)
        assert row["other_cpu_pct"] is None or 0 <= row["other_cpu_pct"] < math.inf
        if "selectors" in rows:
            assert all(positive(v) for v in row["vs_selectors"].values())
            low, high = row["rtt_ratio_range"]
            assert positive(low) and low <= row["vs_selectors"]["rtt_per_s"] <= high
    if "selectors" in rows:
        assert rows["selectors"]["vs_selectors"]["rtt_per_s"] == 1.0
        assert rows["selectors"]["rtt_ratio_range"] == [1.0, 1.0]


def test_echo_ratios_pair_runs_and_skip_failed_ones():
    ref = echo.Cell("selectors", 100, [{"run": 1, "rtt_per_s": 100.0},
                                       {"run": 2, "rtt_per_s": 200.0},
                                       {"run": 3, "rtt_per_s": 100.0, "failed": "reset"}])
    cell = echo.Cell("muxtop", 100, [{"run": 1, "rtt_per_s": 110.0},
                                     {"run": 2, "rtt_per_s": 180.0},
                                     {"run": 3, "rtt_per_s": 500.0}])
    assert cell.ratios(ref, "rtt_per_s") == [1.1, 0.9]  # run 3 has no baseline to pair with
    (row,) = [r for r in echo.summary([ref, cell]) if r["server"] == "muxtop"]
    assert row["vs_selectors"]["rtt_per_s"] == 1.0 and row["rtt_ratio_range"] == (0.9, 1.1)


def test_echo_muxtop_against_selectors_json():
    servers = ["selectors", "muxtop-epoll-level"]
    proc = bench("echo", "--conns", "10", "--duration", "0.5", "--runs", "1",
                 "--servers", ",".join(servers), "--busy-retries", "0", "--json")
    assert proc.returncode == 0, proc.stderr
    check_echo_doc(json.loads(proc.stdout), servers, 10)


def test_echo_uring_readiness_and_completion_beside_epoll_json():
    servers = ["selectors", "muxtop-epoll-level", "muxtop-uring-level",
               "muxtop-uring-completion"]
    proc = bench("echo", "--conns", "10", "--duration", "0.5", "--runs", "1",
                 "--servers", ",".join(servers), "--busy-retries", "0", "--json")
    assert proc.returncode == 0, proc.stderr
    check_echo_doc(json.loads(proc.stdout), servers, 10)


def test_echo_python_client_and_asyncio_text_table():
    proc = bench("echo", "--conns", "5", "--duration", "0.3", "--runs", "1", "--client",
                 "python", "--servers", "selectors,asyncio", "--busy-retries", "0")
    assert proc.returncode == 0, proc.stderr
    assert "client: Python client" in proc.stdout  # says it fell back, and why
    assert "5 connections" in proc.stdout
    lines = {line.split()[0]: line for line in proc.stdout.splitlines() if line.strip()}
    assert "selectors" in lines and "asyncio" in lines
    assert "1.00" in lines["selectors"]


def test_echo_interrupt_stops_the_server():
    proc = subprocess.Popen(
        [sys.executable, "-m", "muxtop", "bench", "echo", "--conns", "5", "--duration", "20",
         "--runs", "1", "--servers", "selectors"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONFAULTHANDLER": "1"}, start_new_session=True)
    try:
        bench_proc = psutil.Process(proc.pid)
        deadline = time.monotonic() + 20
        servers = []
        while time.monotonic() < deadline and not servers:
            servers = [c for c in bench_proc.children()
                       if "muxtop.bench.servers" in " ".join(c.cmdline())]
            time.sleep(0.05)
        assert servers, "the bench never started its server"
        # Mid-run, not mid-start: the server listens (the bench then starts its client).
        wait_for(lambda: any(c.status == psutil.CONN_LISTEN
                             for c in servers[0].net_connections("tcp")), timeout=20)
        os.killpg(proc.pid, signal.SIGINT)  # as Ctrl-C: to the bench, its server and client
        try:
            _, err = proc.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            with open(f"/proc/{proc.pid}/status") as status:
                masks = [line for line in status if line.startswith(("Sig", "ShdPnd"))]
            proc.send_signal(signal.SIGABRT)  # faulthandler: where every thread is
            raise AssertionError(f"the bench went on: {masks} "
                                 f"{proc.communicate(timeout=10)}") from None
        assert proc.returncode == 130, err
        assert "interrupted" in err
        _, alive = psutil.wait_procs(servers, timeout=5)
        assert not alive
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_echo_measures_again_while_the_machine_is_busy(monkeypatch):
    seen = iter([{"other_cpu_pct": 80.0, "n": 1}, {"other_cpu_pct": 40.0, "n": 2},
                 {"other_cpu_pct": 60.0, "n": 3}, {"other_cpu_pct": 1.0, "n": 4}])
    monkeypatch.setattr(echo, "measure", lambda *a: next(seen))
    busy = []
    kept = echo.measure_quietly(None, None, 1, 1, 1, 64, busy_retries=2, busy_pct=25,
                                on_busy=busy.append)
    assert kept["n"] == 2 and kept["busy_discarded"] == [80.0, 60.0]  # least disturbed of 3
    assert busy == [80.0, 40.0]
    kept = echo.measure_quietly(None, None, 1, 1, 1, 64, busy_retries=2, busy_pct=25)
    assert kept["n"] == 4 and kept["busy_discarded"] == []


def test_echo_rejects_unknown_servers(capsys):
    assert cli.main(["echo", "--servers", "selectors,nginx"]) == 2
    assert "no server nginx" in capsys.readouterr().err


def test_echo_helpers():
    assert echo.rotated([1, 2, 3], 0) == [1, 2, 3]
    assert echo.rotated([1, 2, 3], 4) == [2, 3, 1]
    run = echo.judge_run({"rtt_per_s": 50_000, "server_cpu_pct": 50.0, "completed": 100,
                          "mismatches": 0, "errors": 0})
    assert run["cpu_us_per_rt"] == 10.0 and "failed" not in run
    bad = echo.judge_run({"rtt_per_s": 1, "server_cpu_pct": 1, "completed": 1, "mismatches": 2})
    assert "mismatched" in bad["failed"]


# ------------------------------------------------------------------------ cli, chart, imports


def test_ui_mode_is_dispatched_lazily(monkeypatch):
    seen = []
    fake = types.ModuleType("muxtop.bench.ui")
    fake.main = lambda argv: seen.append(argv) or 7
    monkeypatch.setitem(sys.modules, "muxtop.bench.ui", fake)
    assert cli.main(["ui", "--rows", "10"]) == 7
    assert seen == [["--rows", "10"]]


def test_bench_never_imports_textual():
    code = ("import sys, muxtop.bench.cli, muxtop.bench.wait, muxtop.bench.echo, "
            "muxtop.bench.chart, muxtop.bench.loadgen, muxtop.bench.pyclient, "
            "muxtop.bench.servers.selectors_echo, muxtop.bench.servers.asyncio_echo; "
            "bad = [m for m in sys.modules if m.split('.')[0] == 'textual']; "
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=30)


def test_int_list_parses_and_rejects():
    assert cli.int_list("10,100,10") == [10, 100]
    for bad in ("", "ten", "0,5", "-3"):
        with pytest.raises(argparse.ArgumentTypeError):
            cli.int_list(bad)


def test_charts_draw_log_log_series():
    series = {"poll": [(10, 1.0), (100, 8.0), (1000, 70.0)], "epoll": [(10, 0.7), (1000, 0.7)],
              "empty": [(10, 0.0)]}
    text = chart.terminal_chart(series, x_label="fds", y_label="µs")
    assert "p poll" in text and "e epoll" in text and "empty" not in text
    assert "1,000" in text and "┤" in text
    root = ET.fromstring(chart.svg_chart(series, title="t <&>", x_label="fds", y_label="µs"))
    assert len(root.findall("{http://www.w3.org/2000/svg}circle")) == 5
    assert chart.decade_range([0.7, 70.0]) == (0.1, 100)


# --------------------------------------------------------------------------------- diagnose


def test_diagnose_json_compares_detectors_off_and_on():
    proc = bench("diagnose", "--conns", "50", "--seconds", "0.6", "--rounds", "1", "--json")
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert [s["diagnose"] for s in doc["samples"]] == [False, True]
    assert all(s["conns"] == 50 and positive(s["publish_ms"]) and s["publishes"] > 0
               for s in doc["samples"])
    on = doc["summary"]["with"]
    assert positive(on["detector_ms"]) and positive(on["detector_runs_per_s"])
    assert doc["summary"]["without"]["detector_ms"] is None


# --------------------------------------------------------------------------------------- ui


def test_ui_frames_and_echo_in_a_tiny_configuration():
    proc = bench("ui", "--conns", "10,50", "--ticks", "4", "--frame-rounds", "2",
                 "--echo-seconds", "1", "--echo-conns", "5", "--rounds", "1", "--keys", "0",
                 "--driver", "headless", "--json", timeout=90)
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert set(doc["frames"]) == {"10", "50"}
    for size in doc["frames"].values():
        assert all(positive(size[k]) for k in ("frame_mean_ms", "frame_p99_ms", "ingest_mean_ms",
                                                "render_mean_ms"))
        assert size["frames"] == 4  # 2 rounds of 2
    ratio = doc["frame_ratio"]
    assert ratio["rounds"] == 2 and positive(ratio["low"])
    assert ratio["low"] <= ratio["median"] <= ratio["high"]
    baseline = doc["baseline"]  # the DataTable yardstick, in the same rounds
    assert baseline["frames"] == 4 and baseline["rows"] >= 1 and baseline["columns"] >= 1
    assert positive(baseline["frame_mean_ms"])
    for size in doc["frames"].values():
        vs = size["vs_baseline"]
        assert positive(vs["low"]) and vs["low"] <= vs["median"] <= vs["high"]
    echo = doc["echo"]
    assert positive(echo["headless_median"]) and positive(echo["dashboard_median"])
    assert positive(echo["ratio"])
    text = bench("ui", "--conns", "10,50", "--ticks", "2", "--frame-rounds", "2",
                 "--echo-seconds", "0", "--keys", "0", timeout=60)
    assert text.returncode == 0, text.stderr
    assert "frame mean ratio round by round: median" in text.stdout and "target:" in text.stdout
    assert "frame / baseline frame, round by round" in text.stdout


def test_ui_keys_idle_and_loaded_print_positive_figures():
    # Few presses, few connections: that the figures are there and make sense, not how fast.
    proc = bench("ui", "--conns", "10,20", "--ticks", "2", "--frame-rounds", "1",
                 "--echo-seconds", "0", "--keys", "3", "--keys-conns", "5", "--json",
                 "--driver", "headless", timeout=90)
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert positive(doc["switch_interval"])
    keys = doc["keys"]
    assert keys["presses"] == 3 and keys["conns"] == 5
    for case in ("idle", "loaded"):
        for name in ("open", "close"):
            figures = keys[case][name]
            assert figures["presses"] == 3
            assert all(positive(figures[k]) for k in ("p50_ms", "p99_ms", "max_ms", "mean_ms"))
            assert figures["p50_ms"] <= figures["p99_ms"] <= figures["max_ms"]
        assert positive(keys[case]["first_open_ms"])
    text = bench("ui", "--conns", "10,20", "--ticks", "2", "--frame-rounds", "1",
                 "--echo-seconds", "0", "--keys", "2", "--keys-conns", "0", "--switch", "0.005",
                 "--driver", "headless", timeout=60)
    assert text.returncode == 0, text.stderr
    assert "key to screen at 160x48" in text.stdout and "? (help opens)" in text.stdout
    assert "echo connections" not in text.stdout  # --keys-conns 0: idle only


def test_ui_in_a_real_terminal_prints_every_figure():
    # The default driver: the dashboard and the bare app on a pseudo-terminal, pyte reading
    # the screen. A pair of short echo runs and two presses: the shape, not the speed.
    proc = bench("ui", "--conns", "10,20", "--ticks", "2", "--frame-rounds", "1",
                 "--echo-seconds", "0.5", "--echo-conns", "5", "--rounds", "2", "--keys", "2",
                 "--key-rounds", "1", "--keys-conns", "5", "--json", timeout=110)
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["driver"] == "terminal" and doc["load_average_before"]
    echo = doc["echo"]
    assert len(echo["headless_rt_per_s"]) == len(echo["dashboard_rt_per_s"]) == 2
    assert all(positive(v) for v in echo["headless_rt_per_s"] + echo["dashboard_rt_per_s"])
    ratio = echo["ratio"]
    assert ratio["n"] == 2 and ratio["low"] <= ratio["median"] <= ratio["high"]
    # The dashboard names its threads, so their CPU is told apart.
    assert "muxtop-engine" in echo["dashboard_thread_cpu_pct"]
    assert positive(echo["dashboard_out_bytes_per_s"])  # it drew on the terminal
    keys = doc["keys"]
    assert keys["presses"] == 2 and keys["conns"] == 5
    for program in ("dashboard", "bare"):
        for case in ("idle", "loaded"):
            for key in ("open", "close"):
                figures = keys[program][case][key]
                assert figures["presses"] == 2
                assert positive(figures["p50_ms"])
                assert figures["p50_ms"] <= figures["p99_ms"] <= figures["max_ms"]


def test_ui_terminal_text_names_the_floor():
    proc = bench("ui", "--conns", "10,20", "--ticks", "2", "--frame-rounds", "1",
                 "--echo-seconds", "0", "--keys", "1", "--key-rounds", "1", "--keys-conns", "0",
                 timeout=90)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "key to screen in a real terminal at 160x48" in out
    assert "bare Textual app, ? opens help" in out and "dashboard, ? closes it" in out
    assert "idle: dashboard p99 / bare app p99" in out and "echo connections" not in out


# ----------------------------------------------------------------------------------- memory


def test_memory_per_idle_connection_of_muxtop_and_a_baseline():
    proc = bench("memory", "--conns", "1000", "--rounds", "1", "--settle", "1", "--samples", "2",
                 "--servers", "muxtop-epoll-level,asyncio", "--json", timeout=90)
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["conns"] == 1000 and set(doc["servers"]) == {"muxtop-epoll-level", "asyncio"}
    for figures in doc["servers"].values():
        assert positive(figures["bytes_per_conn"]) and len(figures["runs"]) == 1


def test_memory_text_says_when_uvloop_is_missing(monkeypatch, capsys):
    from muxtop.bench import memory

    monkeypatch.setattr(memory, "uvloop_available", lambda: False)
    monkeypatch.setattr(memory, "measure", lambda specs, conns, rounds, settle, samples: {
        "conns": conns, "rounds": rounds, "settle_s": settle,
        "servers": {s.name: {"bytes_per_conn": 1.0, "runs": [1.0]} for s in specs}})
    assert memory.main(["--conns", "10", "--rounds", "1"]) == 0
    out = capsys.readouterr().out
    assert "uvloop is not installed" in out and "\n  uvloop" not in out  # said, not measured
    assert "\n  muxtop-epoll-level" in out and "\n  selectors" in out


# ------------------------------------------------------------------------------------ agent

def test_agent_reads_several_processes_beside_one_attach():
    proc = bench("agent", "--targets", "1,3", "--conns", "2", "--rounds", "2", "--json")
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["servers"] == 3 and set(doc["ms"]) == {"attach PID", "targets 1", "targets 3",
                                                      "search"}
    assert all(positive(ms["median"]) and ms["min"] <= ms["median"] <= ms["max"]
               for ms in doc["ms"].values())
    # The table; and its servers end with it: none of its name is left.
    text = subprocess.Popen([sys.executable, "-m", "muxtop", "bench", "agent", "--targets", "2",
                             "--conns", "1", "--rounds", "1"], stdout=subprocess.PIPE, text=True)
    out = text.communicate(timeout=60)[0]
    assert text.returncode == 0 and "targets 2" in out and "attach PID (baseline)" in out
    from muxtop.attach.targets import COMM_BYTES, processes_named

    assert processes_named(f"mxbench{text.pid}"[:COMM_BYTES]) == []


def test_proxy_measures_a_route_again_while_the_machine_is_busy(monkeypatch):
    """bench proxy takes bench echo's retries (muxtop/bench/quiet.py): a run during which
    other processes used more than --busy-pct CPU is measured again, the quietest kept."""
    from muxtop.bench import proxy

    seen = iter([{"other_cpu_pct": 90.0, "rtt_per_s": 1.0}, {"other_cpu_pct": 5.0,
                                                             "rtt_per_s": 2.0}])
    monkeypatch.setattr(proxy, "measure", lambda *a: next(seen))
    busy = []
    route = proxy.routes()["selectors-proxy"]
    (cell,) = proxy.run([route], "", None, [10], 1, 1.0, 0.1, 64, busy_retries=2,
                        busy_pct=25, on_busy=lambda *a: busy.append(a))
    (kept,) = cell.runs
    assert kept["rtt_per_s"] == 2.0 and kept["busy_discarded"] == [90.0]
    assert busy == [(0, 1, "selectors-proxy", 10, 90.0)]
    assert "--busy-retries" in proxy.parser().format_help()
