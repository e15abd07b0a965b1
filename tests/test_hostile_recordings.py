"""Recordings made by hand, with valid CRCs, that hold what no muxtop writes: escape sequences in
text, JSON nested 100,000 deep, NaN and inf, a number where text belongs, a zlib bomb, a FIFO
for a file. Each is a corrupt frame (replay reads up to it, says so, exits 1 headless) or text
drawn escaped; never a traceback, a hang or a gigabyte."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import io
import json
import os
import re
import struct
import tempfile
import tracemalloc
import zlib

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from recordings import wait
from ui_helpers import detail_body, until

from muxtop.bench import synthetic
from muxtop.cli import replay as replay_cli
from muxtop.plain import to_plain
from muxtop.record import format as fmt
from muxtop.record import schema
from muxtop.record.encoder import recording_header
from muxtop.record.format import RecordingError
from muxtop.record.reader import FrameError, Recording
from muxtop.record.waits import WaitColumns
from muxtop.record.writer import RecordingWriter
from muxtop.snapshot import Diagnosis, Notice

pytestmark = pytest.mark.timeout(30)
SIZE = (160, 48)
TITLE = "\x1b]0;pwned\x07"  # sets the terminal's title when written raw
NAN, INF = float("nan"), float("inf")
DEEP = "@deep@"  # a value written as JSON nested 100,000 deep (json.dumps would not write it)


def dumps(value: object) -> bytes:
    return json.dumps(value).replace(f'"{DEEP}"', deep(100_000)).encode()


def deep(n: int) -> str:
    return "[" * n + "]" * n


# ---- recordings by hand ---------------------------------------------------------------------

def plain_snapshot(tick: int = 0, **fields) -> dict:
    """A Snapshot's plain form as the encoder writes it (no wait ring), `fields` replaced."""
    shot = synthetic.snapshot(6, tick, wait_count=0)
    return {**to_plain(shot), **fields}


def snapshot_payload(doc: dict) -> bytes:
    """A SNAPSHOT frame's payload (pictures.py): the rest, then the connections."""
    rest = {**doc, "connections": []}
    first = zlib.compress(dumps(rest))
    views = zlib.compress(dumps(doc.get("connections", [])))
    return struct.pack("<I", len(first)) + first + views


def waits_payload(records) -> bytes:
    columns = WaitColumns()
    columns.add(tuple(records))
    return columns.take()[0]


def craft(path, snapshots=None, *, header=None, events=(), end=None, runs=(),
          raw=()) -> str:
    """A recording of the given plain forms, each frame with valid CRCs: `snapshots` (plain
    dicts, or (payload, t) pairs), `events` ((t, dict) pairs), `runs` (lists of WaitRecords),
    `raw` ((kind, payload, t, a, b, codec) frames as they are) after the rest."""
    writer = RecordingWriter(str(path))
    head = recording_header("engine", ["test"]) if header is None else header
    writer.add(fmt.HEADER_FRAME, dumps(head), 1000.0)
    for records in runs:
        writer.add(fmt.WAITS, waits_payload(records), records[-1].start, records[0].seq,
                   records[-1].seq, fmt.ZLIB)
    for doc in (plain_snapshot(),) if snapshots is None else snapshots:
        payload, t = (snapshot_payload(doc), 1060.0) if isinstance(doc, dict) else doc
        writer.add(fmt.SNAPSHOT, payload, t, -1, -1, fmt.ZLIB)
    for t, event in events:
        kind = event.get("type") if isinstance(event, dict) else None
        code = fmt.EVENT_TYPES.index(kind) if kind in fmt.EVENT_TYPES else -1
        writer.add(fmt.EVENT, dumps(event), t, code)
    for frame in raw:
        writer.add(*frame)
    end = {"reason": "stopped", "snapshots": 1} if end is None else end
    writer.add(fmt.END, dumps(end), 1061.0)
    writer.flush()
    writer.close()
    return str(path)



def replay(capsys, *args: str) -> tuple[int, str, str]:
    code = replay_cli.main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def one_corrupt_frame_line(code: int, err: str) -> None:
    assert code == 1
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("muxtop replay: "), err
    assert "Traceback" not in err


# ---- text is drawn escaped ------------------------------------------------------------------

async def test_a_lab_name_in_a_recording_cannot_retitle_the_terminal(tmp_path):
    from muxtop.replay.source import ReplaySource
    from muxtop.ui.app import MuxtopApp

    path = craft(tmp_path / "lab.muxrec", [plain_snapshot(lab=[TITLE, "naive-edge"])])
    with Recording.open(path) as rec:
        app = MuxtopApp(ReplaySource(rec), interval=None)
        async with app.run_test(size=SIZE) as pilot:
            await pilot.pause()
            shown = app.dashboard.header.render().plain
            assert "LAB ?]0;pwned? naive-edge" in shown
            assert "\x1b" not in shown and "\x07" not in shown


def titled(value: object) -> object:
    """`value` with TITLE after every string in it."""
    if isinstance(value, str):
        return value + TITLE
    if isinstance(value, list):
        return [titled(v) for v in value]
    if isinstance(value, dict):
        return {k: titled(v) for k, v in value.items()}
    return value


def raw_escapes(app) -> list[str]:
    """Where the screen holds an ESC, with the text before it (to say what drew it)."""
    svg = app.export_screenshot()
    texts = re.sub(r"<[^>]*>", "", svg)
    return [texts[max(0, i - 60):i + 10] for i in range(len(texts)) if texts[i] == "\x1b"]


# What another process's Snapshot holds besides (attach, attach --trace), in plain form.
ATTACHED = {
    "target": [4242, "redis-server *:6379", 2.0, ""],
    "epoll": [[5, [[7, 0x80000001, 7, ""], [9, 1, 9, "fd closed, file still open elsewhere"]]]],
    "sockets": [[7, 123, "tcp", "127.0.0.1:6379", "10.0.0.1:4000", "ESTABLISHED", None, None,
                 "", ""]],
    "trace": ["strace", "tracing", "strace slows it", 1000.0, 3, 1, True, 0],
    "fd_io": [[7, 1, 10, 1050.0, 10, 100, None, 1, 10, 1050.0, None]],
}


@pytest.mark.parametrize("source", ["engine", "attach", "traced"])
async def test_no_text_of_a_recording_reaches_the_terminal_raw(tmp_path, source):
    """Every string a Snapshot holds, with an escape sequence in it: the dashboard, the
    detail view of each kind of row, the timeline's events, for each kind of source."""
    from muxtop.replay.source import ReplaySource
    from muxtop.ui.app import MuxtopApp
    from muxtop.ui.screens.detail import describe

    doc = plain_snapshot(source=source, **(ATTACHED if source != "engine" else {}))
    kinds = [row[2] for row in doc["connections"]]  # what a row is decides what is drawn
    doc = {**titled(doc), "v": 1, "source": source, "lab": [TITLE]}
    for row, kind in zip(doc["connections"], kinds):
        row[2] = kind
    events = [(1060.0, {**titled(e), "type": e["type"]}) for e in EVENTS]
    header = {**recording_header(source, ["test"]), "host": TITLE}
    path = craft(tmp_path / "titled.muxrec", [plain_snapshot(source=source), doc],
                 events=events, header=header)
    with Recording.open(path) as rec:
        app = MuxtopApp(ReplaySource(rec), interval=None)
        async with app.run_test(size=SIZE) as pilot:
            await pilot.press("G")
            await until(lambda: app.source.player.at_end, pilot, what="the end")
            assert not rec.problems
            assert not raw_escapes(app)
            await pilot.press("down", "down", "enter")  # a connection's detail view
            await until(lambda: detail_body(app), pilot, what="the detail view")
            assert not raw_escapes(app)
            for view in app.latest.connections:  # what it draws for each kind of row
                assert "\x1b" not in describe(app.view, view, app.latest, 100).plain, view


@pytest.mark.parametrize("fds", [5, None, "ab", [1.5]])
async def test_a_finding_naming_fds_that_are_not_fds_is_a_corrupt_frame(tmp_path, capsys, fds):
    """A process-wide finding's "fds" evidence is iterated for the fds it names (the row
    flags, the detail view): free-form evidence but for that."""
    from muxtop.replay.source import ReplaySource
    from muxtop.ui.app import MuxtopApp

    finding = ["busy-loop", None, "spins", [["fds", fds]], 1050.0]
    path = craft(tmp_path / "fds.muxrec", [plain_snapshot(), plain_snapshot(1, diagnoses=[
        finding])], events=[(1060.0, {"type": "finding", "finding": finding})])
    with Recording.open(path) as rec:
        app = MuxtopApp(ReplaySource(rec), interval=None)
        async with app.run_test(size=SIZE) as pilot:
            await pilot.press("G")  # the frames are read on the way: the problems are found
            await until(lambda: app.source.player.at_end, pilot, what="the end")
            await pilot.press("down", "down", "enter")  # drawn: the row flags, the detail view
            await until(lambda: detail_body(app), pilot, what="the detail view")
            assert sum("Diagnosis.evidence.fds" in p for p in rec.problems) == 2, rec.problems
    for mode in (["--summary"], ["--json"]):
        code, out, err = replay(capsys, path, *mode)
        one_corrupt_frame_line(code, err)


# ---- what a frame may hold ------------------------------------------------------------------

def test_json_nested_100000_deep_in_the_header_is_one_line(tmp_path, capsys):
    path = tmp_path / "deep-header.muxrec"
    craft(path, header={**recording_header("engine", ["test"]), "command": DEEP})
    with pytest.raises(RecordingError, match="header frame does not read"):
        Recording.open(str(path))
    code, out, err = replay(capsys, str(path), "--summary")
    one_corrupt_frame_line(code, err)
    assert "header frame does not read" in err and out == ""


@pytest.mark.parametrize("frame", ["end", "event", "snapshot", "connections"])
def test_json_nested_100000_deep_in_a_frame_is_a_corrupt_frame(tmp_path, capsys, frame):
    hostile = DEEP
    path = tmp_path / f"deep-{frame}.muxrec"
    if frame == "end":
        craft(path, end={"reason": "stopped", "deep": hostile})
    elif frame == "event":
        craft(path, events=[(1060.0, {"type": "notice", "text": "x", "more": hostile})])
    elif frame == "snapshot":
        craft(path, [plain_snapshot(), plain_snapshot(1, lab=hostile)])
    else:
        craft(path, [plain_snapshot(), {**plain_snapshot(1), "connections": hostile}])
    with Recording.open(str(path)) as rec:
        for i in range(len(rec.snapshots)):
            try:
                rec.snapshot(i)
            except FrameError:
                pass
        rec.events()
        assert any("does not decode" in p for p in rec.problems), rec.problems
    # The headless modes never read the rows; --json reads only the Snapshots.
    modes = {"end": ["--summary"], "event": ["--summary"], "connections": []}
    for mode in modes.get(frame, ["--summary", "--json"]):
        code, out, err = replay(capsys, str(path), mode)
        one_corrupt_frame_line(code, err)


def test_the_depth_check_needs_no_recursion():
    schema.check_any(json.loads(deep(schema.MAX_DEPTH)))
    with pytest.raises(schema.SchemaError, match="nested over"):
        schema.check_any(json.loads(deep(schema.MAX_DEPTH + 1)))
    with pytest.raises(schema.SchemaError, match="nested too deep"):
        schema.load_json(deep(100_000).encode())


NON_FINITE = [
    ("started inf", {"header": {"started": INF}}),
    ("started nan", {"header": {"started": NAN}}),
    ("started 1e300", {"header": {"started": 1e300}}),
    ("totals nan", {"snapshot": {"totals": [NAN] + [0] * 7}}),
    ("rates inf", {"snapshot": {"rates": [INF] + [0.0] * 7}}),
    ("taken_at nan", {"snapshot": {"taken_at": NAN}}),
    ("wall_time 1e300", {"snapshot": {"wall_time": 1e300}}),
    ("process cpu inf", {"snapshot": {"process": [1, "x", INF, 0, 0, 0, 0]}}),
    ("a finding since -inf", {"snapshot": {"diagnoses": [["x", 7, "y", [], -INF]]}}),
    ("an evidence nan", {"snapshot": {"diagnoses": [["x", 7, "y", [["k", NAN]], 1.0]]}}),
    ("an int past i64", {"snapshot": {"registered": 1 << 70}}),
]


@pytest.mark.parametrize("case", [c for _, c in NON_FINITE], ids=[n for n, _ in NON_FINITE])
def test_non_finite_numbers_are_a_corrupt_frame(tmp_path, capsys, case):
    header = {**recording_header("engine", ["test"]), **case.get("header", {})}
    good = plain_snapshot()
    bad = plain_snapshot(1, **case.get("snapshot", {}))
    path = craft(tmp_path / "nan.muxrec", [good, bad] if "snapshot" in case else [good],
                 header=header)
    for mode in (["--summary"], ["--json"], ["--summary", "--json"]):
        code, out, err = replay(capsys, path, *mode)
        one_corrupt_frame_line(code, err)
        if "header" in case:
            assert "header frame does not read (RecordingHeader.started: expected float" in err
        else:
            assert "does not decode" in err


@pytest.mark.parametrize("column", ["opened_at", "last_io_at", "last_ready", "closed_at"])
def test_a_non_finite_connection_column_is_a_corrupt_frame(tmp_path, column):
    doc = plain_snapshot()
    index = ("cid fd kind peer state interest last_events last_ready out_buffer rx_queue "
             "tx_queue bytes_in bytes_out msgs_in msgs_out opened_at last_io_at closed_at"
             ).split().index(column)
    doc["connections"][3][index] = INF
    path = craft(tmp_path / "conn.muxrec", [plain_snapshot(), doc])
    with Recording.open(path) as rec:
        rec.snapshot(0)
        with pytest.raises(FrameError):
            rec.snapshot(1)
        assert any(f"ConnView.{column}" in p for p in rec.problems), rec.problems


@pytest.mark.parametrize("field", ["start", "duration", "timeout", "cpu"])
def test_a_non_finite_wait_record_is_a_corrupt_frame(tmp_path, field):
    records = [wait(seq) for seq in range(1, 5)]
    records[2] = records[2]._replace(**{field: INF})
    path = craft(tmp_path / "waits.muxrec", runs=[records])
    with Recording.open(path) as rec:
        with pytest.raises(FrameError):
            rec.run(0)
        assert any(f"wait record's {field} is not a time" in p for p in rec.problems)


def test_a_nan_timeout_is_none_as_written(tmp_path):
    records = [wait(seq, timeout=None if seq == 2 else 0.25) for seq in range(1, 4)]
    path = craft(tmp_path / "none.muxrec", runs=[records])
    with Recording.open(path) as rec:
        assert rec.run(0) == tuple(records)


def test_a_non_finite_frame_moment_is_a_corrupt_frame(tmp_path, capsys):
    path = craft(tmp_path / "t.muxrec", raw=[
        (fmt.SNAPSHOT, snapshot_payload(plain_snapshot(1)), NAN, -1, -1, fmt.ZLIB),
        (fmt.EVENT, json.dumps({"type": "notice", "text": "x"}).encode(), INF, 0)])
    with Recording.open(path) as rec:
        assert len(rec.snapshots) == 1 and rec.event_frames == []
        assert sum("has no moment a clock gives" in p for p in rec.problems) == 2
    code, out, err = replay(capsys, path, "--json")
    one_corrupt_frame_line(code, err)
    assert len(out.splitlines()) == 1


WRONG_TYPES = [
    ("end reason an int", {"end": {"reason": 7}}),
    ("end published a string", {"end": {"reason": "stopped", "published": "many"}}),
    ("new connections an int", {"events": [{"type": "connections", "new": 5}]}),
    ("a connection's peer an int", {"events": [{"type": "connections",
                                                "new": [[1, 7, 80, 1000.0]]}]}),
    ("a notice's text a list", {"events": [{"type": "notice", "level": "info",
                                            "text": ["x"]}]}),
    ("a finding as a dict", {"events": [{"type": "finding", "finding": {"kind": "x"}}]}),
    ("a gap's lost a string", {"raw": [(fmt.GAP, b'{"lost": "x"}', 1060.0, 1, 5)]}),
    ("a command's ok a string", {"events": [{"type": "command", "ok": "yes"}]}),
    ("an event that is a list", {"events": [[1, 2]]}),
    ("refused an int", {"snapshot": {"refused": 3}}),
    ("lab a string", {"snapshot": {"lab": "naive-edge"}}),
    ("totals too short", {"snapshot": {"totals": [1, 2]}}),
    ("notices not rows", {"snapshot": {"notices": [5]}}),
    ("running a string", {"snapshot": {"running": "no"}}),
    ("a step's fds a dict", {"snapshot": {"step": [1, 2, 3, {}]}}),
    ("rings a dict", {"snapshot": {"rings": {"fd": 3}}}),
    ("a ring's head a string", {"snapshot": {"rings": [[3, "", 8, 16, "x", 0, 0, 0, 0, 0, 0,
                                                        0, 0, 0]]}}),
    ("a ring's tail past an i64", {"snapshot": {"rings": [[3, "", 8, 16, 0, 1 << 70, 0, 0, 0,
                                                           0, 0, 0, 0, 0]]}}),
    ("a ring's mode an int", {"snapshot": {"rings": [[3, 7, 8, 16, 0, 0, 0, 0, 0, 0, 0, 0, 0,
                                                      0]]}}),
]


@pytest.mark.parametrize("case", [c for _, c in WRONG_TYPES], ids=[n for n, _ in WRONG_TYPES])
def test_a_wrong_type_is_a_corrupt_frame(tmp_path, capsys, case):
    snapshots = [plain_snapshot(), plain_snapshot(1, **case.get("snapshot", {}))]
    path = craft(tmp_path / "types.muxrec", snapshots, end=case.get("end"),
                 events=[(1060.0, e) for e in case.get("events", ())],
                 raw=[(*f, fmt.RAW) for f in case.get("raw", ())])
    for mode in (["--summary"], ["--summary", "--json"], ["--json"]):
        code, out, err = replay(capsys, path, *mode)
        if mode == ["--json"] and "snapshot" not in case:
            continue  # the JSON lines read Snapshots only
        one_corrupt_frame_line(code, err)


def test_what_muxtop_writes_passes_the_schema(tmp_path, capsys):
    shot = synthetic.snapshot(30, 2, notices=(Notice(1, 1050.0, "info", "hello"),),
                              lab=frozenset({"naive-edge"}), refused="no",
                              diagnoses=(Diagnosis("busy-loop", None, "spins",
                                                   (("fds", (7, 8)), ("rate", 2.5)), 1.0),))
    doc = to_plain(dataclasses.replace(shot, waits=()))
    schema.check_snapshot(doc)
    path = craft(tmp_path / "ok.muxrec", [doc], runs=[[wait(s) for s in range(1, 9)]])
    code, out, err = replay(capsys, path, "--summary")
    assert code == 0 and err == ""


# ---- how much a frame may inflate to --------------------------------------------------------

def bomb(inflated: int) -> bytes:
    """One valid zlib stream of `inflated` zero bytes (a multiple of 1 MiB), ~1,000 times
    smaller, made in a moment: after a full flush deflate starts afresh, so one compressed
    MiB of zeros can be repeated; the trailer is the Adler-32 of the whole."""
    stream = zlib.compressobj(9)
    block = bytes(1 << 20)
    first = stream.compress(block) + stream.flush(zlib.Z_FULL_FLUSH)
    again = stream.compress(block) + stream.flush(zlib.Z_FULL_FLUSH)
    end = stream.flush()[:-4]
    check = 1
    for _ in range(inflated >> 20):
        check = zlib.adler32(block, check)
    return first + again * ((inflated >> 20) - 1) + end + struct.pack(">I", check)


@pytest.fixture(scope="module")
def gigabyte_bomb() -> bytes:
    return bomb(1 << 30)


@pytest.mark.parametrize("where", ["rest", "connections", "waits"])
def test_a_zlib_bomb_stops_at_the_inflated_size_cap(tmp_path, gigabyte_bomb, where):
    good = zlib.compress(json.dumps({**plain_snapshot(), "connections": []}).encode())
    if where == "rest":
        payload = struct.pack("<I", len(gigabyte_bomb)) + gigabyte_bomb + zlib.compress(b"[]")
    else:
        payload = struct.pack("<I", len(good)) + good + gigabyte_bomb
    runs = ()
    if where == "waits":
        payload = snapshot_payload(plain_snapshot())
    path = craft(tmp_path / "bomb.muxrec", [(payload, 1060.0)], runs=runs,
                 raw=[(fmt.WAITS, gigabyte_bomb, 1060.0, 1, 4, fmt.ZLIB)]
                 if where == "waits" else ())
    with Recording.open(path) as rec:
        tracemalloc.start()
        try:
            with pytest.raises(FrameError):
                rec.run(0) if where == "waits" else rec.snapshot(0)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert peak < 2 * schema.MAX_INFLATED
        assert any("inflates past 64 MiB" in p for p in rec.problems), rec.problems


@pytest.mark.parametrize("body", [b"[],", b'"ab",', b"0,"])
def test_json_that_would_parse_into_gigabytes_is_refused_before_parsing(body):
    """64 MiB of `[],` is 22 million lists, 1.4 GB."""
    data = b"[" + body * ((schema.MAX_INFLATED - 2) // len(body) - 1) + b"0]"
    tracemalloc.start()
    try:
        with pytest.raises(schema.SchemaError, match="holds over 2,000,000 values"):
            schema.load_json(data)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < schema.MAX_INFLATED  # `data` itself is not counted: made before


# ---- what is not a file ---------------------------------------------------------------------

@pytest.mark.timeout(10)
def test_a_fifo_is_refused_at_once(tmp_path, capsys):
    fifo = tmp_path / "pipe.muxrec"
    os.mkfifo(fifo)
    code, out, err = replay(capsys, str(fifo), "--summary")
    assert code == 1 and out == ""
    assert err == f"muxtop replay: {fifo} is not a file\n"


# ---- any JSON value in any field ------------------------------------------------------------

JSON_SCALARS = (st.none() | st.booleans() | st.integers() | st.sampled_from([1 << 64, 10 ** 300])
                | st.floats() | st.sampled_from([1e300, -1e300, 2.0 ** 60])
                | st.text(max_size=8) | st.just(TITLE))
JSON_VALUES = st.recursive(
    JSON_SCALARS, lambda inner: st.lists(inner, max_size=3)
    | st.dictionaries(st.text(max_size=4), inner, max_size=3), max_leaves=6) | st.just(DEEP)
EVENTS = [
    {"type": "notice", "seq": 1, "level": "warning", "text": "hello"},
    {"type": "finding", "finding": ["busy-loop", None, "spins", [["fds", [7, 8]]], 1050.0]},
    {"type": "finding-end", "kind": "busy-loop", "fd": None},
    {"type": "switch", "from": "epoll/level", "to": "poll/level"},
    {"type": "lab", "on": ["naive-edge"]},
    {"type": "connections", "new": [[1, 7, "10.0.0.1:4000", 1001.0]]},
    {"type": "stopped", "error": "boom"},
    {"type": "command", "command": "Switch", "args": {"backend": "poll"}, "ok": False,
     "message": "no", "sent": 1050.0},
]


def base_frames() -> dict:
    """One of each frame's plain form, as muxtop writes them; the property test breaks one."""
    shot = synthetic.snapshot(3, 1, wait_count=0, lab=frozenset({"naive-edge"}), refused="no",
                              notices=(Notice(1, 1050.0, "info", "hi"),))
    return {"header": recording_header("engine", ["test"]), "snapshot": to_plain(shot),
            "events": [dict(e) for e in EVENTS], "end": {"reason": "stopped", "snapshots": 2,
                                                         "published": 2}}


@st.composite
def broken(draw) -> dict:
    """The frames with one value somewhere in them replaced by any JSON value."""
    frames = base_frames()
    node: object = frames
    while True:
        keys = list(node) if isinstance(node, dict) else list(range(len(node)))
        key = draw(st.sampled_from(keys))
        child = node[key]
        if node is frames or (child and isinstance(child, dict | list) and draw(st.booleans())):
            node = child
            continue
        node[key] = draw(JSON_VALUES)
        return frames


def run_headless(path: str) -> None:
    """Each headless mode: exit 0, or 1 with one line; never a traceback."""
    for mode in (["--summary"], ["--json"], ["--summary", "--json"]):
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = replay_cli.main([path, *mode])
        lines = err.getvalue().splitlines()
        assert code in (0, 1), (mode, code, err.getvalue())
        assert len(lines) == (code == 1), (mode, code, err.getvalue())
        assert all(line.startswith("muxtop replay: ") for line in lines)
        assert "\x1b" not in out.getvalue() + err.getvalue()


async def run_dashboard(path: str) -> None:
    """The replay dashboard over it: each position drawn, the detail view opened; what did not
    read is told in a notification; nothing drawn holds an escape character."""
    from muxtop.replay.source import ReplaySource
    from muxtop.ui.app import MuxtopApp

    try:
        rec = Recording.open(path)
    except RecordingError:
        return  # the CLI says so in one line (run_headless)
    with rec:
        app = MuxtopApp(ReplaySource(rec), interval=None)
        async with app.run_test(size=SIZE) as pilot:
            await pilot.press("G", "comma", "g", "full_stop")
            await pilot.pause()
            assert "\x1b" not in app.export_screenshot()
            await pilot.press("enter")  # the detail view of the first row
            await pilot.pause()
            app.tick()  # problems found drawing the last picture are told at the next tick
            player = app.source.player
            assert [n.text for n in player.notices] == rec.problems[-len(player.notices):]
            if player.notices:  # each became a notification (which expire: not looked at)
                assert app._told[id(player)] == player.notices[-1].seq


def read_everything(path: str) -> None:
    """What a recording can make the reader hold: every frame decoded."""
    try:
        rec = Recording.open(path)
    except RecordingError:
        return
    with rec:
        for read, count in ((rec.snapshot, len(rec.snapshots)), (rec.run, len(rec.runs))):
            for i in range(count):
                with contextlib.suppress(FrameError):
                    read(i)
        rec.events()


@pytest.mark.timeout(120)
@settings(max_examples=16, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(frames=broken(), start=st.floats(), took=st.floats())
def test_any_json_in_any_field_is_read_or_told_never_a_traceback(frames, start, took):
    with tempfile.TemporaryDirectory() as directory:
        records = [wait(seq) for seq in range(1, 4)]
        records[1] = records[1]._replace(start=start, duration=took)
        path = craft(os.path.join(directory, "any.muxrec"),
                     [base_frames()["snapshot"], frames["snapshot"]], header=frames["header"],
                     events=[(1060.0, e) for e in frames["events"]], end=frames["end"],
                     runs=[records])
        tracemalloc.start()
        try:
            run_headless(path)
            read_everything(path)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert peak < 2 * schema.MAX_INFLATED
        asyncio.run(run_dashboard(path))  # not traced: tracing makes Textual 10× slower
