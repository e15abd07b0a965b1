"""Wait records in a recording: a run of consecutive seqs stored as columns.

A WAITS frame holds n records, seq a..b with no seq missing, as zlib-compressed columns
(little-endian): start, timeout (NaN for None: block until ready), duration, cpu (NaN for
None: not measured) (f64 each);
registered, count, the length of each ready list (i32, or i64 if a value needs it); then
every ready list, flat: fd, events, fd, events... Columns compress far better than
records (the same fds and events recur wait after wait), and building them is a few C-level
passes over the records, not Python work per field: the recorder shares the engine's GIL.
The floats are the records' own, so a record reads back equal to the one written.
"""

from __future__ import annotations

import math
import struct
import sys
import zlib
from array import array
from itertools import chain
from operator import itemgetter

from muxtop.record import schema
from muxtop.snapshot import WaitRecord, wait_record

_LAYOUT = struct.Struct("<IBI")  # records, typecode of the int columns, flat ready length
_BIG = sys.byteorder == "big"
_START, _TIMEOUT, _DURATION, _REGISTERED, _READY, _COUNT, _CPU = (
    itemgetter(WaitRecord._fields.index(name))
    for name in ("start", "timeout", "duration", "registered", "ready", "count", "cpu"))
NAN = math.nan


def _floats(values: list) -> list:
    """`values` with None as NaN (a C-level scan when there is none, as for most timeouts)."""
    return [NAN if v is None else v for v in values] if None in values else values


def _nan_to_none(value: float) -> float | None:
    return None if value != value else value


class WaitColumns:
    """Columns being filled with consecutive wait records; `take()` empties them into one
    frame's payload. Adding a batch costs a few C-level passes over it, so the recorder can
    add what each poll brings and never hold the GIL long."""

    def __init__(self) -> None:
        self.first = self.last = -1
        self._clear()

    def _clear(self) -> None:
        self.floats = (array("d"), array("d"), array("d"), array("d"))
        self.ints = (array("i"), array("i"), array("i"))
        self.ready = array("i")
        self.last_end = 0.0

    def __len__(self) -> int:
        return len(self.ints[0])

    def add(self, records) -> None:
        """Append records whose seqs follow on from the last added (the caller starts a new
        run at a gap)."""
        if not records:
            return
        if not len(self):
            self.first = records[0].seq
        self.last = records[-1].seq
        self.last_end = records[-1].start + records[-1].duration
        # fromlist(list(map(...))): C loops; extend(map(...)) goes value by value.
        for column, field in zip(self.floats, (_START, _TIMEOUT, _DURATION, _CPU)):
            column.fromlist(_floats(list(map(field, records))))
        values = [list(map(_REGISTERED, records)), list(map(_COUNT, records)),
                  list(map(len, map(_READY, records))),
                  list(chain.from_iterable(map(_READY, records)))]
        columns = (*self.ints, self.ready)
        sizes = [len(column) for column in columns]
        try:
            for column, more in zip(columns, values):
                column.fromlist(more)
        except OverflowError:  # a value past 32 bits (an fd? a mask?): widen every column
            for column, size in zip(columns, sizes):
                del column[size:]  # fromlist adds all of a list or none of it
            self.ints = tuple(array("q", column) for column in self.ints)
            self.ready = array("q", self.ready)
            for column, more in zip((*self.ints, self.ready), values):
                column.fromlist(more)

    def take(self) -> tuple[bytes, int, int, float]:
        """(payload, first seq, last seq, end time of the last) of the records added since
        the last take, and empty the columns."""
        typecode = self.ints[0].typecode
        parts = [_LAYOUT.pack(len(self), ord(typecode), len(self.ready))]
        for column in (*self.floats, *self.ints, self.ready):
            if _BIG:
                column.byteswap()
            parts.append(column.tobytes())
        payload = zlib.compress(b"".join(parts), 1)
        taken = (payload, self.first, self.last, self.last_end)
        self.first = self.last = -1
        self._clear()
        return taken


def _check_times(starts: array, durations: array, timeouts: array, cpus: array) -> None:
    """Every time finite and of a size a clock gives (a NaN timeout or cpu is None, as
    written); else ValueError. A crafted NaN or inf would reach every figure drawn from it."""
    most = schema.MAX_FLOAT
    for name, column, none_ok in (("start", starts, False), ("duration", durations, False),
                                  ("timeout", timeouts, True), ("cpu", cpus, True)):
        if not all(-most <= v <= most or none_ok and v != v for v in column):
            raise ValueError(f"a wait record's {name} is not a time")


def decode(payload: bytes, first: int) -> tuple[WaitRecord, ...]:
    """The records of one WAITS payload whose first seq is `first`; ValueError if the
    payload is not what its header promised, or holds a time no wait call has."""
    raw = schema.inflate(payload)
    n, typecode, flat_len = _LAYOUT.unpack_from(raw)
    code = chr(typecode)
    if code not in ("i", "q"):
        raise ValueError(f"unknown column type {code!r}")
    columns = []
    offset = _LAYOUT.size
    for kind, count in (("d", n), ("d", n), ("d", n), ("d", n), (code, n), (code, n),
                        (code, n), (code, flat_len)):
        column = array(kind)
        size = column.itemsize * count
        column.frombytes(raw[offset:offset + size])
        if len(column) != count:
            raise ValueError("waits payload is shorter than its columns")
        if _BIG:
            column.byteswap()
        columns.append(column)
        offset += size
    starts, timeouts, durations, cpus, registered, counts, lengths, flat = columns
    _check_times(starts, durations, timeouts, cpus)
    if sum(lengths) != flat_len:
        raise ValueError("ready lists do not add up")
    flat = flat.tolist()
    records = []
    at = 0
    for i, (start, timeout, duration, cpu, reg, length, count) in enumerate(
            zip(starts, timeouts, durations, cpus, registered, lengths, counts)):
        ready = tuple(flat[at:at + length])
        at += length
        records.append(wait_record((first + i, start, _nan_to_none(timeout), duration, reg,
                                    ready, count, _nan_to_none(cpu))))
    return tuple(records)
