"""Replay: positions step one wait call at a time, each picture is what the dashboard showed
right after that wait call, playing follows the clock at its speed, and a recording of another
process steps Snapshot by Snapshot."""

from __future__ import annotations

import dataclasses

import pytest
from recordings import Clock, wait, write

from muxtop.bench import synthetic
from muxtop.plain import to_plain
from muxtop.record.encoder import RecordingEncoder
from muxtop.record.reader import Recording
from muxtop.replay.player import SPEEDS
from muxtop.replay.source import READ_ONLY, ReplaySource
from muxtop.snapshot import KIND_CONN

pytestmark = pytest.mark.timeout(30)




def test_steps_visit_every_wait_call_once_each_way(recording):
    player = ReplaySource(recording).player
    assert player.unit == "wait call" and player.position.seq == 40  # the first Snapshot's
    forward = [player.position.seq]
    while player.step(1):
        forward.append(player.position.seq)
    assert forward == list(range(40, 321)) and player.at_end
    back = [player.position.seq]
    while player.step(-1):
        back.append(player.position.seq)
    assert back == forward[::-1]
    assert not player.step(-1) and player.position == player.timeline.first()


def test_each_picture_is_right_after_its_wait_call(recording):
    source = ReplaySource(recording)
    player = source.player
    timeline = player.timeline
    player.step(15)  # between the first and the second Snapshot
    picture = source.latest()
    base = recording.snapshot(0)
    # The ring as recorded: from the wait the first Snapshot was taken after.
    assert picture.waits[-1].seq == 55 and [w.seq for w in picture.waits] == list(range(40, 56))
    assert not player.on_snapshot
    assert picture.taken_at == picture.waits[-1].start + picture.waits[-1].duration
    assert picture.totals.waits == base.totals.waits + 15
    assert picture.totals.events == base.totals.events + sum(w.count for w in picture.waits[1:])
    named = dict(picture.waits[-1].pairs())  # fds 7 and 8 in every made-up wait
    for view in picture.connections:
        if view.kind == KIND_CONN and view.closed_at is None and view.fd in named:
            assert (view.last_events, view.last_ready) == (named[view.fd], picture.taken_at)
    assert source.latest() is picture  # the same position: the same object, no redraw
    player.step(25)  # onto the second Snapshot: the picture is the one recorded
    assert player.on_snapshot and player.position.index == 1
    recorded = dataclasses.replace(recording.snapshot(1), waits=timeline.waits_between(1, 80))
    assert to_plain(source.latest()) == to_plain(recorded)


def test_jumps_land_on_the_last_position_before_the_time(recording):
    player = ReplaySource(recording, at=0.8).player
    p = player.position
    assert p.t <= 0.8 < player.timeline.step(p, 1).t
    player.seek(99.0)
    assert player.position == player.timeline.last()
    player.to_start()
    assert player.position.t == 0.0 and player.jumps == 2


def test_playing_follows_the_clock_at_its_speed_and_stops_at_the_end(recording):
    clock = Clock()
    player = ReplaySource(recording, clock=clock).player
    player.toggle()
    clock.now += 0.5
    assert abs(player.current().t - 0.5) < 0.01
    player.change_speed(+1)  # ×2
    clock.now += 0.25
    assert abs(player.current().t - 1.0) < 0.01
    for _ in range(20):
        player.change_speed(-1)
    assert player.speed == SPEEDS[0] == 1 / 16
    clock.now += 1000
    assert player.current() == player.timeline.last() and not player.playing
    player.toggle()  # at the end: again from the start
    assert player.playing and player.position.t == 0.0


def test_a_step_over_a_gap_says_what_was_not_recorded(tmp_path):
    path = tmp_path / "gap.muxrec"
    write(path, ticks=4, per_tick=40, skip=range(50, 60))
    with Recording.open(str(path)) as rec:
        player = ReplaySource(rec).player
        player.step(9)
        assert player.position.seq == 49
        player.step(1)
        assert player.position.seq == 60
        assert "10 wait calls here were not recorded" in player.notices[-1].text
        assert any(e.kind == "gap" for e in player.events)


def test_a_recording_of_another_process_steps_by_snapshot(tmp_path):
    path = tmp_path / "attach.muxrec"
    encoder = RecordingEncoder(str(path), "attach", [])
    for tick in range(3):
        shot = synthetic.snapshot(5, tick, wait_count=0)
        encoder.add_snapshot(dataclasses.replace(shot, source="attach"))
    encoder.end(encoder.end_record("stopped"))
    with Recording.open(str(path)) as rec:
        source = ReplaySource(rec)
        player = source.player
        assert source.kind == "attach" and player.unit == "snapshot"
        assert [player.step(1), player.step(1), player.step(1)] == [True, True, False]
        assert player.position.index == 2 and source.latest().taken_at == rec.snapshots[2].t
        assert source.read_only == READ_ONLY and not source.submit(object()).result().ok


def test_a_truncated_recording_replays_with_a_notice(tmp_path):
    path = tmp_path / "whole.muxrec"
    write(path, ticks=8)
    cut = tmp_path / "cut.muxrec"
    data = path.read_bytes()
    cut.write_bytes(data[:len(data) // 2])
    with Recording.open(str(cut)) as rec:
        player = ReplaySource(rec).player
        assert "is truncated" in player.notices[0].text
        player.to_end()
        assert player.picture().waits[-1].seq == rec.runs[-1].b


def test_json_at_past_the_end_says_so_and_exits_2(tmp_path, capsys):
    from muxtop.cli import replay as replay_cli
    path = tmp_path / "short.muxrec"
    write(path)
    with Recording.open(str(path)) as rec:
        end = rec.snapshots[-1].t - rec.t0
    assert replay_cli.main([str(path), "--json", "--at", "100"]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err == f"muxtop replay: --at 100 s is past the recording's end ({end:.1f} s)\n"
    assert replay_cli.main([str(path), "--json", "--at", f"{end:.3f}"]) == 0  # the last one
    assert len(capsys.readouterr().out.splitlines()) == 1


def test_the_summary_counts_an_older_files_backlog_the_replay_cannot_reach(tmp_path, capsys):
    # Before 2026-12-07 a recording began with the ring's backlog: wait calls before its first
    # Snapshot, which no position of the replay reaches. The summary says how many.
    from muxtop.cli import replay as replay_cli
    path = tmp_path / "older.muxrec"
    encoder = RecordingEncoder(str(path), "engine", ["test"])
    encoder.started = True  # as an older muxtop: its first Snapshot's whole ring recorded
    shot = synthetic.snapshot(4, 1, wait_count=0)
    ring = tuple(wait(seq, start=shot.taken_at - 1 + seq / 100, duration=0.001)
                 for seq in range(1, 31))
    encoder.add_snapshot(dataclasses.replace(shot, waits=ring))
    encoder.end(encoder.end_record("stopped"))
    assert replay_cli.main([str(path), "--summary"]) == 0
    assert "wait calls   30 (seq 1–30), none missing; 29 of them from before its start (an " \
        "older muxtop's backlog of the ring), which the replay cannot reach" in \
        capsys.readouterr().out
