"""Recordings: what goes in reads back equal, seq by seq and field by field; gaps are counted;
a failed write leaves whole frames; bad files are one clear line, and what reads, reads."""

from __future__ import annotations

import dataclasses
import json
import struct

import pytest
from recordings import recorded_waits, wait, write

from muxtop.bench import synthetic
from muxtop.plain import to_plain, wait_to_plain
from muxtop.record import format as fmt
from muxtop.record.encoder import RecordingEncoder
from muxtop.record.reader import Recording, RecordingError
from muxtop.record.waits import WaitColumns, decode
from muxtop.record.writer import RecordingWriter, RecordWriteError

pytestmark = pytest.mark.timeout(30)


def test_wait_columns_read_back_equal_with_none_and_wide_values():
    columns = WaitColumns()
    records = (wait(1), wait(2, timeout=None, cpu=2.5e-6), wait(3, ready=()),
               wait(4, ready=(5, 0x80000001, 2**40, 1)))  # past 32 bits: widened
    columns.add(records[:2])
    columns.add(records[2:])
    payload, first, last, end = columns.take()
    assert (first, last) == (1, 4) and end == records[-1].start + records[-1].duration
    assert decode(payload, 1) == records
    assert len(columns) == 0


def test_every_wait_and_snapshot_reads_back_equal(tmp_path):
    path = tmp_path / "r.muxrec"
    given = write(path)
    with Recording.open(str(path)) as rec:
        assert rec.problems == [] and rec.end["reason"] == "stopped"
        assert [wait_to_plain(w) for w in recorded_waits(rec)] == \
            [wait_to_plain(w) for w in given]
        assert len(rec.snapshots) == 6
        shot = synthetic.snapshot(10, 3, wait_count=0)
        back = rec.snapshot(3)
        assert to_plain(back) == to_plain(shot)  # the ring is kept in the WAITS frames
        # A Snapshot's frame names its whole ring, older than the recording or not.
        assert rec.snapshots[3].a == 1 and rec.snapshots[3].b == 200 == given[150].seq
        assert rec.header["source"] == "engine" and rec.header["command"] == ["test"]
        kinds = [e["type"] for _, e in rec.events()]
        assert "connections" in kinds and "finding" in kinds
        assert "connections" not in [e["type"] for _, e in rec.events(but=("connections",))]


def test_a_seq_jump_is_a_counted_gap(tmp_path):
    path = tmp_path / "gap.muxrec"
    given = write(path, skip=range(120, 170))
    with Recording.open(str(path)) as rec:
        seqs = [w.seq for w in recorded_waits(rec)]
        assert seqs == [w.seq for w in given] and 120 not in seqs
        assert len(rec.gaps) == 1 and (rec.gaps[0].a, rec.gaps[0].b) == (119, 170)
        assert rec.end["gaps"] == 1 and rec.end["lost"] == 50
        events = [e for _, e in rec.events() if e["type"] == "gap"]
        assert events == [{"type": "gap", "after": 119, "before": 170, "lost": 50}]


def test_snapshot_views_encode_as_the_plain_form(tmp_path):
    # Views kept from the Snapshot before are reused as encoded text, not encoded again:
    # both must read back as the plain form says.
    path = tmp_path / "same.muxrec"
    encoder = RecordingEncoder(str(path), "engine", [])
    first = synthetic.snapshot(30, 1, wait_count=0)
    again = dataclasses.replace(first, taken_at=first.taken_at + 0.25)  # same ConnViews
    encoder.add_snapshot(first)
    encoder.add_snapshot(again)
    encoder.end(encoder.end_record("stopped"))
    with Recording.open(str(path)) as rec:
        assert to_plain(rec.snapshot(1)) == to_plain(again)


def test_a_failed_write_cuts_the_file_back_to_whole_frames(tmp_path):
    path = tmp_path / "cut.muxrec"
    writer = RecordingWriter(str(path))
    writer.add(fmt.HEADER_FRAME, b'{"source": "engine"}', 1.0)
    writer.flush()
    kept = writer.size
    writer.add(fmt.EVENT, b"x" * 1000, 2.0)
    full = open("/dev/full", "wb")  # every write there fails with ENOSPC
    saved = writer.fd
    writer.fd = full.fileno()
    with pytest.raises(RecordWriteError, match="No space left"):
        writer.flush()
    writer.fd = saved
    full.close()
    writer.close()
    assert path.stat().st_size == kept


def test_an_existing_file_is_never_overwritten(tmp_path):
    path = tmp_path / "taken.muxrec"
    path.write_bytes(b"precious")
    with pytest.raises(RecordWriteError, match="exists"):
        RecordingEncoder(str(path), "engine", [])
    assert path.read_bytes() == b"precious"


# ---- bad files ----------------------------------------------------------------------------

@pytest.fixture
def good(tmp_path):
    path = tmp_path / "good.muxrec"
    write(path, ticks=12)
    return path


def test_a_truncated_file_reads_up_to_its_last_whole_frame(good, tmp_path):
    data = good.read_bytes()
    cut = tmp_path / "cut.muxrec"
    cut.write_bytes(data[:len(data) * 2 // 3])
    with Recording.open(str(cut)) as rec:
        assert len(rec.problems) == 1 and "is truncated" in rec.problems[0]
        assert rec.end is None and 3 < len(rec.snapshots) < 12
        seqs = [w.seq for w in recorded_waits(rec)]
        assert seqs == list(range(50, seqs[-1] + 1))  # no hole before the cut


def test_corrupted_bytes_are_skipped_to_the_next_frame(good, tmp_path):
    data = bytearray(good.read_bytes())
    with Recording.open(str(good)) as rec:
        victim = rec.snapshots[5]
    data[victim.offset - 20:victim.offset + 10] = b"\x00" * 30  # its header and payload
    bad = tmp_path / "bad.muxrec"
    bad.write_bytes(bytes(data))
    with Recording.open(str(bad)) as rec:
        assert any("corrupted and were skipped" in p for p in rec.problems)
        assert len(rec.snapshots) == 11 and rec.end is not None  # the rest still reads


def test_a_payload_that_fails_its_checksum_is_noted_when_read(good, tmp_path):
    data = bytearray(good.read_bytes())
    with Recording.open(str(good)) as rec:
        victim = rec.snapshots[4]
    data[victim.offset + 5] ^= 0xFF
    bad = tmp_path / "flip.muxrec"
    bad.write_bytes(bytes(data))
    with Recording.open(str(bad)) as rec:
        assert rec.problems == []  # headers alone do not show it
        rec.verify()
        assert len(rec.problems) == 1 and "does not match its checksum" in rec.problems[0]


def test_the_replay_dashboard_tells_a_bad_checksum_as_it_opens_and_exits_1(
        good, tmp_path, monkeypatch, capsys):
    """Was: no word until playback passed the frame, and exit 0 on q."""
    from muxtop.cli import replay as replay_cli
    from muxtop.ui import app

    data = bytearray(good.read_bytes())
    with Recording.open(str(good)) as rec:
        victim = rec.snapshots[-2]
    data[victim.offset + 5] ^= 0xFF
    bad = tmp_path / "flip.muxrec"
    bad.write_bytes(bytes(data))
    told = []

    def run_source(source, interval):  # the dashboard, as it opens: what it would notify
        told.extend(n.text for n in source.player.notices)
        return 0

    monkeypatch.setattr(app, "run_source", run_source)
    monkeypatch.setattr(replay_cli.sys.stdout, "isatty", lambda: True)
    assert replay_cli.main([str(bad)]) == 1
    assert any("does not match its checksum" in t for t in told), told
    assert "does not match its checksum" in capsys.readouterr().err


def test_many_bad_frames_are_told_as_a_few_and_a_count(good, tmp_path, monkeypatch):
    """Every checksum is read as the dashboard opens: each bad frame a toast was a burst."""
    from muxtop.replay.player import PROBLEMS_TOLD
    from muxtop.replay.source import ReplaySource

    data = bytearray(good.read_bytes())
    with Recording.open(str(good)) as rec:
        victims = rec.snapshots[2:10]
    for victim in victims:
        data[victim.offset + 5] ^= 0xFF
    bad = tmp_path / "flips.muxrec"
    bad.write_bytes(bytes(data))
    with Recording.open(str(bad)) as rec:
        rec.verify()
        told = [n.text for n in ReplaySource(rec).player.notices]
    broken = [t for t in told if "does not match its checksum" in t]
    assert len(broken) == PROBLEMS_TOLD, told
    assert f"and {len(victims) - PROBLEMS_TOLD:,} more problems" in told[-1], told


@pytest.mark.parametrize(("content", "message"), [
    (b"", "is empty: not a muxtop recording"),
    (b"hello, world\n" * 4, "is not a muxtop recording"),
    (struct.pack("<16sHH", fmt.MAGIC, 7, 0), "recording format 7, newer than this muxtop"),
    (fmt.preamble() + b"\xffMXF\x48", "is truncated: its header frame does not read"),
    (fmt.preamble() + fmt.frame_bytes(fmt.HEADER_FRAME, json.dumps(
        {"source": "engine", "plain": 99}).encode(), 1.0), "plain form 99, newer"),
    (fmt.preamble() + fmt.frame_bytes(fmt.HEADER_FRAME, b"{}", 1.0), "holds no Snapshot"),
], ids=["empty", "text", "newer-format", "cut-header", "newer-plain", "no-snapshot"])
def test_files_that_do_not_read_are_one_clear_line(tmp_path, content, message):
    path = tmp_path / "x.muxrec"
    path.write_bytes(content)
    with pytest.raises(RecordingError, match=message):
        Recording.open(str(path))


def test_a_missing_file_or_a_folder_is_one_clear_line(tmp_path):
    with pytest.raises(RecordingError, match="No such file"):
        Recording.open(str(tmp_path / "nothing.muxrec"))
    with pytest.raises(RecordingError, match="is not a file"):
        Recording.open(str(tmp_path))


def test_a_recordings_size_is_in_the_units_of_every_other_byte_count():
    # The REC badge said "REC 109.4 kB" beside "rss 50.0MiB": powers of ten among powers of two.
    from muxtop.record.recorder import file_size
    from muxtop.units import size

    assert file_size(109_400) == size(109_400) == "107KiB"
    assert file_size(912) == "912B" and file_size(12_900_000) == "12.3MiB"
