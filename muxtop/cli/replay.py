"""`muxtop replay FILE`: the dashboard over a recording (read-only, with a timeline), or
headless: `--summary` (text, or one JSON document with `--json`), `--json` (one line per
recorded Snapshot, the keys of `muxtop --headless --json` plus `t`)."""

from __future__ import annotations

import argparse
import json
import sys
from bisect import bisect_left

from muxtop.arguments import Parser, non_negative_float
from muxtop.cli.pipe import reader_left
from muxtop.cli.serve import status_line
from muxtop.printable import printable
from muxtop.record import summary
from muxtop.record.format import RecordingError
from muxtop.record.reader import FrameError, Recording

REPLAY_POLL = 0.1  # seconds between the dashboard's looks at the position while it plays

EPILOG = """\
keys: space play/pause, . and , one wait call forward/back (one Snapshot in a recording of
another process), ] and [ faster/slower (×1/16 … ×64), g/G the start/end, enter details,
click the timeline to jump there; the keys that steer a server are off (read-only).
--json prints one line per recorded Snapshot: {t, time, listen, backend, trigger, connections,
registered, waits_per_s, events_per_s, ready_per_wait, wait_p50_us, wait_p99_us, bytes_in,
bytes_out, bytes_in_per_s, bytes_out_per_s, accepted, closed, accept_errors, rejected, lab,
diagnoses}; t is seconds since the first Snapshot.
Exit status: 0 ok; 1 the file cannot be read, or is not whole (truncated, corrupted, no end
record: what reads is printed first); 2 usage error (with --json: --at past the end)."""


def build_parser() -> argparse.ArgumentParser:
    p = Parser(
        prog="muxtop replay", epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Replay a recording made with --record (or the R key): the same dashboard,\n"
                    "read-only, with a timeline; or a summary, or its Snapshots as JSON lines.")
    p.add_argument("file", metavar="FILE", help="the recording")
    p.add_argument("--at", type=non_negative_float, default=0.0, metavar="SECONDS",
                   help="start that many seconds into the recording (default 0)")
    p.add_argument("--summary", action="store_true",
                   help="print what the recording holds and exit")
    p.add_argument("--json", action="store_true",
                   help="JSON: one line per recorded Snapshot, or with --summary one document")
    return p


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    try:
        recording = Recording.open(args.file)
    except RecordingError as exc:
        return _fail(str(exc))
    try:
        with recording:
            if args.summary:
                return print_summary(recording, args.json)
            if args.json:
                return json_lines(recording, args.at)
            if not sys.stdout.isatty():
                print("muxtop replay: not a terminal: the summary instead of the dashboard "
                      "(--json prints the Snapshots)", file=sys.stderr)
                return print_summary(recording, False)
            return dashboard(recording, args.at)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return reader_left()


def print_summary(recording: Recording, as_json: bool) -> int:
    doc = summary.summarize(recording)
    if as_json:
        print(json.dumps(doc, indent=1))
    else:
        sys.stdout.write(summary.text(doc))
    return _problems(recording)


def json_lines(recording: Recording, at: float) -> int:
    """One status line per recorded Snapshot from `at` seconds on; 2 if `at` is past the
    last one (nothing to print is not a success: the user asked for a moment that is not
    there)."""
    recording.verify()
    times = [f.t - recording.t0 for f in recording.snapshots]
    end = times[-1] if times else 0.0
    if at > end:
        print(f"muxtop replay: --at {at:g} s is past the recording's end ({end:.1f} s)",
              file=sys.stderr)
        return 2
    for i in range(bisect_left(times, at), len(times)):
        try:
            snapshot = recording.snapshot(i, connections=False)
        except FrameError:
            continue  # noted in problems
        line = json.loads(status_line(snapshot, True))
        print(json.dumps({"t": round(times[i], 3), **line}))
    return _problems(recording)


def dashboard(recording: Recording, at: float) -> int:
    """The dashboard over the recording; imported here, so the headless modes never load
    Textual. What the file lacks is told in notifications on screen as it opens (every
    checksum is read first, not when playback reaches a frame), and again when it closes."""
    from muxtop.replay.source import ReplaySource
    from muxtop.ui.app import run_source

    recording.verify()
    code = run_source(ReplaySource(recording, at=at), interval=REPLAY_POLL)
    return code or _problems(recording)


def _problems(recording: Recording) -> int:
    """Say what could not be read, after what could; 1 if anything."""
    sys.stdout.flush()
    problems = recording.problems
    if not problems:
        return 0
    print(f"muxtop replay: {printable(problems[0])}"
          + (f" (and {len(problems) - 1} more problems)" if len(problems) > 1 else ""),
          file=sys.stderr)
    return 1


def _fail(message: str) -> int:
    # The message may hold the file's name, or text from the file: escaped.
    print(f"muxtop replay: {printable(message)}", file=sys.stderr)
    return 1
