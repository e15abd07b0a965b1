"""What a lesson's text can quote, measured just now: `{name}` in say, ask and explain.

Each measure reads the latest Snapshot, or the Tally the lesson keeps of the steps it made
and the answer given; the result is text, formatted as the dashboard formats it."""

from __future__ import annotations

import string
from collections.abc import Callable
from dataclasses import dataclass

from muxtop.snapshot import FLAG_BACKPRESSURE, KIND_CONN, Snapshot
from muxtop.units import count, duration, size


@dataclass
class Tally:
    """What happened in the lesson step so far, beyond the Snapshot."""

    stepped: int = 0  # wait calls muxtop stepped
    stepped_reads: int = 0  # of those, the ones that read from a connection
    stepped_read: int = 0  # bytes they read
    answer: str = ""  # the learner's choice
    right: str = ""  # the right one


def _conns(s: Snapshot):
    return [v for v in s.connections if v.kind == KIND_CONN and v.closed_at is None]


MEASURES: dict[str, tuple[str, Callable[[Snapshot, Tally], str]]] = {
    "backend": ("the backend now", lambda s, t: s.backend),
    "trigger": ("the trigger mode now", lambda s, t: s.trigger),
    "cpu_per_call": ("CPU time of one wait call (the live probe)",
                     lambda s, t: duration(s.rates.wait_cpu)),
    "scanned_per_wait": ("fds the kernel looked at per wait call",
                         lambda s, t: count(s.rates.scanned_per_wait)),
    "registered": ("fds registered in the backend", lambda s, t: count(s.registered)),
    "waits_per_s": ("wait calls a second", lambda s, t: count(s.rates.waits)),
    "throughput": ("bytes received a second", lambda s, t: f"{size(s.rates.bytes_in)}/s"),
    "ready_per_wait": ("ready fds per wait call", lambda s, t: f"{s.rates.ready_per_wait:.1f}"),
    "connections": ("open connections", lambda s, t: count(s.open_connections)),
    "highest_fd": ("the highest fd of a connection ('?' while there is none)",
                   lambda s, t: str(max((v.fd for v in _conns(s)), default="?"))),
    "refused": ("the last refused switch, in words", lambda s, t: s.refused or "nothing"),
    "findings": ("the diagnoses now, by kind",
                 lambda s, t: ", ".join(sorted({d.kind for d in s.diagnoses})) or "none"),
    "cpu": ("muxtop's CPU use",
            lambda s, t: "?" if s.process is None else f"{s.process.cpu_percent:.0f}%"),
    "accept_errors": ("accept() calls that failed (EMFILE and the like)",
                      lambda s, t: count(s.totals.accept_errors)),
    "backpressured": ("connections not read: their out-buffer passed the high-water mark",
                      lambda s, t: count(sum(FLAG_BACKPRESSURE in v.flags for v in _conns(s)))),
    "out_buffer": ("the largest out-buffer now",
                   lambda s, t: size(max((v.out_buffer for v in _conns(s)), default=0))),
    "stepped": ("wait calls this lesson step made", lambda s, t: count(t.stepped)),
    "stepped_reads": ("of those, the ones that read from a connection",
                      lambda s, t: count(t.stepped_reads)),
    "stepped_read": ("bytes those reads got", lambda s, t: size(t.stepped_read)),
    "answer": ("the choice the learner made", lambda s, t: t.answer),
    "right": ("the right choice", lambda s, t: t.right),
}


def measure(text: str, snapshot: Snapshot, tally: Tally, kept: dict[str, str]) -> str:
    """`text` with each {name} replaced by a value kept earlier, or by a measure ('?' for a
    name that is neither). Names only: a format spec or a !conversion is not applied (the
    lesson check refuses them; str.format would pad to any width it is told)."""
    try:
        parts = list(string.Formatter().parse(text))
    except ValueError:  # a stray brace (refused by the check too): the text as it is
        return text
    out = []
    for literal, name, _, _ in parts:
        out.append(literal)
        if name is None:
            continue
        if name in kept:
            out.append(kept[name])
        elif name in MEASURES:
            out.append(MEASURES[name][1](snapshot, tally))
        else:
            out.append("?")
    return "".join(out)
