"""Recording real runs: a verified echo flood recorded and replayed headless against what the
live run said; the command line's --record (headless, attach); a recorder killed with SIGKILL;
a disk that fills up; commands and switches with their outcomes."""

from __future__ import annotations

import dataclasses
import json
import re
import resource
import signal
import socket
import subprocess
import sys
import time

import pytest
from echo_client import wait_for

from muxtop.cli import replay as replay_cli
from muxtop.commands import Switch
from muxtop.engine.source import EngineSource
from muxtop.flood.process import FloodProcess, FloodSettings
from muxtop.plain import to_plain
from muxtop.record.control import Recordable, RecorderControl
from muxtop.record.reader import Recording
from muxtop.record.recorder import Recorder
from muxtop.replay.source import ReplaySource

pytestmark = pytest.mark.timeout(60)


def seqs_of(rec: Recording) -> list[int]:
    return [w.seq for i in range(len(rec.runs)) for w in rec.run(i)]


def test_a_recorded_flood_replays_with_what_the_live_run_said(make_engine, tmp_path, capsys):
    engine = make_engine()
    path = tmp_path / "flood.muxrec"
    recorder = Recorder(EngineSource(engine), str(path), ["test"]).start()
    host, port = engine.address
    with FloodProcess(FloodSettings(host, port, clients=30, messages=60, size=200)) as flood:
        assert flood.wait(30) == 0, list(flood.errors)
    assert flood.summary["mismatches"] == 0 and flood.summary["completed"] == 30
    engine.stop()
    status = recorder.stop()
    live = engine.snapshot()  # the last Snapshot of the live run
    assert status.error is None and status.gaps == 0

    assert replay_cli.main([str(path), "--summary", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    last = live.waits[-1].seq
    with Recording.open(str(path)) as rec:
        # The recording begins at its first Snapshot's wait (seq 1 if it had none yet).
        first = max(rec.snapshots[0].b, 1)
    assert first <= 3  # the recorder started with the engine
    assert (doc["first_seq"], doc["last_seq"], doc["wait_calls"], doc["gaps"]) == \
        (first, last, last - first + 1, 0)
    assert doc["connections"] == live.totals.accepted == 30
    assert doc["totals"] == live.totals._asdict()  # bytes in and out, waits, events...
    assert doc["totals"]["bytes_in"] == 30 * 60 * 200
    assert doc["complete"] and doc["problems"] == []
    assert doc["published"] >= doc["snapshots"] >= 2  # every Snapshot, or the summary says
    with Recording.open(str(path)) as rec:
        assert seqs_of(rec) == list(range(first, last + 1))  # each seq once, none missing
        final = ReplaySource(rec).player
        final.to_end()
        recorded = dataclasses.replace(live, waits=tuple(w for w in live.waits
                                                         if w.seq >= first))
        assert to_plain(final.picture()) == to_plain(recorded)  # ring and all


def test_a_recording_begun_late_holds_what_came_after_and_replay_reaches_every_wait(
        make_engine, tmp_path, capsys):
    # Was: R on a server that had run a while saved the ring's backlog too (4,121 wait calls
    # for 3 s), and the replay's timeline began at its first Snapshot, after ~4,095 of them.
    engine = make_engine(publish_interval=0.05)
    with socket.create_connection(engine.address, timeout=10) as client:
        for _ in range(300):  # each echo is a wait call or more: a ring of history
            client.sendall(b"x")
            assert client.recv(1) == b"x"
        wait_for(lambda: len(engine.snapshot().waits) >= 300, timeout=10)
        path = tmp_path / "late.muxrec"
        recorder = Recorder(EngineSource(engine), str(path), ["test"]).start()
        wait_for(lambda: recorder.status().snapshots >= 1, timeout=10)
        for _ in range(20):
            client.sendall(b"y")
            assert client.recv(1) == b"y"
        wait_for(lambda: recorder.status().snapshots >= 3, timeout=10)
    status = recorder.stop()
    assert status.error is None and status.gaps == 0
    with Recording.open(str(path)) as rec:
        seqs = seqs_of(rec)
        assert seqs and seqs[0] == rec.snapshots[0].b  # the wait the first picture is after
        assert seqs == list(range(seqs[0], seqs[-1] + 1)) and status.waits == len(seqs) < 300
        player = ReplaySource(rec).player
        player.to_start()
        reached = {player.position.seq}
        while player.step(1):
            reached.add(player.position.seq)
        assert sorted(reached) == seqs  # every wait call the file holds, from g on
    assert replay_cli.main([str(path), "--summary"]) == 0
    summary = capsys.readouterr().out
    assert f"{len(seqs):,} (seq {seqs[0]:,}–{seqs[-1]:,}), none missing; from the recording's " \
        "start on" in summary


def test_headless_record_and_replay_json_lines(tmp_path):
    path = tmp_path / "headless.muxrec"
    run = subprocess.run([sys.executable, "-m", "muxtop", "--headless", "--port", "0",
                          "--record", str(path), "--duration", "1.5"],
                         capture_output=True, text=True, timeout=30)
    assert run.returncode == 0, run.stderr
    lines = run.stderr.splitlines()
    assert lines[0] == f"muxtop: recording to {path}: every wait call from now on"
    assert lines[-1].startswith("muxtop: recorded 1.") and str(path) in lines[-1]
    replay = subprocess.run([sys.executable, "-m", "muxtop", "replay", str(path), "--json"],
                            capture_output=True, text=True, timeout=30)
    assert replay.returncode == 0, replay.stderr
    rows = [json.loads(line) for line in replay.stdout.splitlines()]
    assert len(rows) >= 5 and rows[0]["t"] == 0.0
    at = subprocess.run([sys.executable, "-m", "muxtop", "replay", str(path), "--json", "--at",
                         "1.0"], capture_output=True, text=True, timeout=30)
    tail = [json.loads(line) for line in at.stdout.splitlines()]
    assert tail and tail[0]["t"] >= 1.0 and tail == [r for r in rows if r["t"] >= 1.0]
    piped = subprocess.run([sys.executable, "-m", "muxtop", "replay", str(path)],
                           capture_output=True, text=True, timeout=30)  # not a terminal
    assert piped.returncode == 0 and piped.stdout.startswith("muxtop recording")
    assert "not a terminal" in piped.stderr
    headless = subprocess.run([sys.executable, "-m", "muxtop", "--headless", "--json", "--port",
                               "0", "--duration", "1.2"], capture_output=True, text=True,
                              timeout=30)
    assert set(rows[-1]) == {"t", *json.loads(headless.stdout.splitlines()[0])}


@pytest.mark.parametrize(("where", "message"), [
    ("missing/dir/x.muxrec", "No such file or directory"),
    ("taken.muxrec", "the file exists"),
    # A directory and a device were both "the file exists": say what is there.
    ("", "it is a directory, not a regular file"),
    ("/dev/full", "it is a character device, not a regular file"),
])
def test_record_to_a_path_that_cannot_be_one_clear_line(tmp_path, where, message):
    (tmp_path / "taken.muxrec").write_bytes(b"keep me")
    run = subprocess.run([sys.executable, "-m", "muxtop", "--headless", "--port", "0",
                          "--record", str(tmp_path / where), "--duration", "5"],
                         capture_output=True, text=True, timeout=30)
    assert run.returncode == 1
    assert run.stderr.count("\n") == 1 and message in run.stderr, run.stderr
    assert "exists" not in run.stderr or where == "taken.muxrec"
    assert (tmp_path / "taken.muxrec").read_bytes() == b"keep me"


@pytest.mark.parametrize("command", [["--headless", "--port", "0"], ["attach", "1", "--once"]])
def test_record_to_an_empty_name_is_refused(tmp_path, command):
    # It recorded to ./muxtop-engine-….muxrec, as if no name had been given.
    run = subprocess.run([sys.executable, "-m", "muxtop", *command, "--record", "",
                          "--duration", "1"] if command[0] != "attach" else
                         [sys.executable, "-m", "muxtop", *command, "--record", ""],
                         capture_output=True, text=True, timeout=30, cwd=tmp_path)
    assert run.returncode == 2
    assert "--record: the name is empty: name a file" in run.stderr, run.stderr
    assert list(tmp_path.iterdir()) == []


def _serve(path, *, preexec=None, duration: str | None = None) -> tuple[subprocess.Popen, int]:
    args = [sys.executable, "-m", "muxtop", "--headless", "--port", "0", "--record", str(path)]
    proc = subprocess.Popen(args + (["--duration", duration] if duration else []),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=preexec)
    banner = proc.stdout.readline()  # "muxtop 0.1.0: echo server on 127.0.0.1:PORT, ..."
    port = int(banner.split(" on ")[1].split(",")[0].rsplit(":", 1)[1])
    return proc, port


def _echo(port: int) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(b"still serving")
        return sock.recv(64)


def test_a_recording_killed_with_sigkill_replays_up_to_its_last_second(tmp_path, capsys):
    path = tmp_path / "killed.muxrec"
    proc, port = _serve(path)
    try:
        with FloodProcess(FloodSettings("127.0.0.1", port, clients=10, messages=100_000,
                                        size=64, rate=200.0)) as flood:
            # Killed once a flush after 200 echoes is on disk (well over 100 wait calls).
            wait_for(lambda: (flood.progress or {}).get("messages_echoed", 0) >= 200, timeout=30)
            echoed = path.stat().st_size
            wait_for(lambda: path.stat().st_size > echoed, timeout=10)
            proc.send_signal(signal.SIGKILL)
            killed_at = time.time()
            proc.wait(10)
    finally:
        proc.kill()
        proc.wait()
        proc.stdout.close()
        proc.stderr.close()
    with Recording.open(str(path)) as rec:
        assert rec.end is None and len(rec.problems) == 1, rec.problems
        assert "no end record" in rec.problems[0] or "truncated" in rec.problems[0]
        last_moment = rec.header["started"] + (rec.t0 + rec.duration - rec.header["monotonic"])
        assert killed_at - last_moment <= 1.0, killed_at - last_moment
        seqs = seqs_of(rec)
        assert seqs == list(range(seqs[0], seqs[-1] + 1)) and len(seqs) > 100
        player = ReplaySource(rec).player
        player.to_end()
        assert player.picture().waits[-1].seq == seqs[-1]  # the replay goes to the end
    assert replay_cli.main([str(path), "--summary"]) == 1  # not whole: said after the summary
    out, err = capsys.readouterr()
    assert "wait calls" in out and err.count("\n") == 1 and "killed" in err


def test_a_full_disk_stops_the_recording_not_the_server(tmp_path):
    path = tmp_path / "full.muxrec"
    limit = 12_000  # bytes a file may grow to: writes past it fail (EFBIG) as on a full disk

    def small_files():
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    proc, port = _serve(path, preexec=small_files, duration="60")  # a bound: SIGTERM ends it
    try:
        told = proc.stderr.readline()
        assert told.startswith("muxtop: recording to"), told
        told = proc.stderr.readline()  # blocks until the disk "fills"
        assert told.startswith("muxtop: recording stopped: writing") and "too large" in told
        assert _echo(port) == b"still serving"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(15) == 0
    finally:
        proc.kill()
        proc.wait()
        proc.stdout.close()
        proc.stderr.close()
    assert path.stat().st_size <= limit
    with Recording.open(str(path)) as rec:  # the file so far reads
        assert len(rec.snapshots) >= 2
        assert rec.end is None or "too large" in rec.end["reason"]


def test_commands_and_switches_are_recorded_with_their_outcomes(make_engine, tmp_path):
    engine = make_engine(publish_interval=0.05)
    inner = EngineSource(engine)
    control = RecorderControl(inner, ["test"])
    source = Recordable(inner, control)
    control.start(str(tmp_path / "switch.muxrec"))
    assert source.submit(Switch(backend="poll")).result(5).ok
    assert not source.submit(Switch(backend="select", trigger="edge")).result(5).ok
    # The switch's notice is in the published Snapshot: stop() records the last one.
    wait_for(lambda: engine.snapshot().backend == "poll")
    status = control.stop()
    assert status.error is None
    with Recording.open(status.path) as rec:
        events = [e for _, e in rec.events()]
    commands = [e for e in events if e["type"] == "command"]
    assert [(c["command"], c["args"], c["ok"]) for c in commands] == [
        ("Switch", {"backend": "poll", "trigger": None}, True),
        ("Switch", {"backend": "select", "trigger": "edge"}, False)]
    assert "switched epoll/level → poll/level" in commands[0]["message"]
    assert {"type": "switch", "from": "epoll/level", "to": "poll/level"} in events
    notices = [e["text"] for e in events if e["type"] == "notice"]
    assert any("switched" in text for text in notices)


def test_attach_record_in_text_mode(tmp_path, capsys):
    from muxtop.cli import attach

    path = tmp_path / "attach.muxrec"
    target = subprocess.Popen([sys.executable, "-c", "import socket, time; s = socket.socket();"
                               " s.bind(('127.0.0.1', 0)); s.listen(); time.sleep(1.5)"])
    try:
        code = attach.main([str(target.pid), "--text", "--interval", "0.2", "--record",
                            str(path)])
    finally:
        target.kill()
        target.wait(5)
    assert code == 1  # the text loop ends when the process exits
    err = capsys.readouterr().err
    assert f"recording to {path}" in err and "recorded " in err
    with Recording.open(str(path)) as rec:
        assert rec.kind == "attach" and rec.runs == [] and len(rec.snapshots) >= 3
        player = ReplaySource(rec).player
        assert player.unit == "snapshot" and player.step(1) and player.position.index == 1


def test_the_headers_waits_are_json_waits_at_the_same_snapshot():
    # The replay header said "waits 1,006" where --json said "waits": 540 at the same
    # Snapshot: the header counted the CPU probes, --json (muxtop_wait_calls_total) does not.
    from muxtop.bench import synthetic
    from muxtop.cli.serve import status_line
    from muxtop.ui.views import engine as engine_view
    from muxtop.ui.views.base import Header

    shot = synthetic.snapshot(10, 3)
    shot = dataclasses.replace(shot, totals=shot.totals._replace(waits=1006, probes=466))
    header = Header(lambda style: None, 400)
    engine_view.header(header, shot)
    shown = re.search(r"\bwaits ([\d,]+)", header.finish().plain).group(1)
    assert int(shown.replace(",", "")) == json.loads(status_line(shot, True))["waits"] == 540
