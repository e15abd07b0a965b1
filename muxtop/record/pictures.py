"""Snapshots in a recording. A SNAPSHOT frame holds one Snapshot's plain form (muxtop.plain)
without its wait ring — the WAITS frames hold every wait record once — as two zlib streams:

    u32 length of the first stream
    the plain form without connections and waits (JSON): what the header, the trends,
        `replay --json` and the summary read, without touching the connections
    the connections (a JSON array of plain ConnViews)

A ConnView's plain form is the JSON array of its fields, which is what `json` makes of the
NamedTuple itself; the engine keeps a connection's ConnView object while nothing in it changes,
so the encoder keeps each object's JSON text and encodes only new objects: at thousands of
idle connections a Snapshot costs the recorder almost nothing.
"""

from __future__ import annotations

import dataclasses
import json
import struct
import zlib

from muxtop import plain
from muxtop.plain import to_plain
from muxtop.record import schema
from muxtop.snapshot import ConnView, Snapshot

_ENCODE = json.JSONEncoder(separators=(",", ":"), check_circular=False).encode
_FIRST = struct.Struct("<I")


class PictureEncoder:
    """Encodes the Snapshots of one recording, in order (it remembers the last one's views)."""

    def __init__(self) -> None:
        self._views: dict[int, tuple[ConnView, str]] = {}

    def encode(self, s: Snapshot) -> bytes:
        known = self._views
        kept: dict[int, tuple[ConnView, str]] = {}
        parts = []
        for view in s.connections:
            hit = known.get(id(view))
            if hit is None or hit[0] is not view:  # the id of a view since freed: not it
                hit = (view, _ENCODE(view))
            kept[id(view)] = hit
            parts.append(hit[1])
        self._views = kept
        rest = to_plain(dataclasses.replace(s, connections=(), waits=()))
        first = zlib.compress(_ENCODE(rest).encode(), 1)
        views = zlib.compress(("[" + ",".join(parts) + "]").encode(), 1)
        return _FIRST.pack(len(first)) + first + views


def _streams(payload: bytes) -> tuple[bytes, bytes]:
    (size,) = _FIRST.unpack_from(payload)
    start = _FIRST.size
    return payload[start:start + size], payload[start + size:]


def decode(payload: bytes, *, connections: bool = True) -> Snapshot:
    """The Snapshot of a SNAPSHOT payload, with no wait ring (the reader adds it); without
    `connections` only the rest, for what needs no rows. ValueError if it does not decode,
    or is not a Snapshot's plain form (schema.SchemaError: the file may come from anywhere)."""
    first, views = _streams(payload)
    doc = schema.load_json(schema.inflate(first))
    if connections and isinstance(doc, dict):
        doc["connections"] = schema.load_json(schema.inflate(views))
    plain.check_version(doc)
    schema.check_snapshot(doc)
    return plain.from_plain(doc)
