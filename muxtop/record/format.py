"""The container of a recording: a preamble, then checksummed frames, appended as they come.

    preamble  "muxtop recording" (16 bytes), format version (u16), 0 (u16)
    frame     header (44 bytes, little-endian) + payload
      sync    b"\\xffMXF": where a frame starts (a reader skips corrupted bytes to the next one)
      kind    one byte (HEADER, SNAPSHOT, WAITS, EVENT, GAP, END)
      codec   RAW or ZLIB (how the payload is stored)
      -       two zero bytes
      length  payload bytes (u32)
      pcrc    CRC-32 of the payload
      t       f64: the frame's moment, in the monotonic clock of the recorded process
      a, b    i64 keys: for WAITS the first and last seq, for a SNAPSHOT the seq range of
              its wait ring (-1, -1 when empty), for a GAP the seqs either side, for an
              EVENT its type (EVENT_TYPES index, -1 for another) in a
      hcrc    CRC-32 of the header's bytes 4..40: a header is checked before its length is
              trusted

Nothing is ever rewritten, so a killed writer leaves every frame it finished intact, and a
reader learns everything it needs to seek (kind, moment, seq range, offset) from the headers
alone. Payloads are checked when they are read.
"""

from __future__ import annotations

import struct
import zlib
from typing import NamedTuple

MAGIC = b"muxtop recording"
FORMAT_VERSION = 1
PREAMBLE = struct.Struct("<16sHH")
SYNC = b"\xffMXF"
HEADER = struct.Struct("<4sBBxxIIdqqI")

# Frame kinds: one byte each, readable in a hex dump.
HEADER_FRAME, SNAPSHOT, WAITS, EVENT, GAP, END = (ord(c) for c in "HSWEGX")
KINDS = frozenset((HEADER_FRAME, SNAPSHOT, WAITS, EVENT, GAP, END))
KIND_NAMES = {HEADER_FRAME: "header", SNAPSHOT: "snapshot", WAITS: "waits", EVENT: "event",
              GAP: "gap", END: "end"}
RAW, ZLIB = 0, 1
# An EVENT frame's type, by index in its header: a reader picks the events it wants (the
# timeline skips the new connections a flood brings by the thousand) without reading them.
EVENT_TYPES = ("notice", "finding", "finding-end", "switch", "lab", "connections", "stopped",
               "command")
MAX_PAYLOAD = 1 << 30  # a length past this is a corrupted header, not a frame


class RecordingError(Exception):
    """The file cannot be read as a recording; the message is one plain line."""


class Frame(NamedTuple):
    """Where one frame is and what its header says (its payload stays in the file)."""

    kind: int
    codec: int
    t: float
    a: int
    b: int
    offset: int  # of the payload
    length: int
    pcrc: int


def preamble() -> bytes:
    return PREAMBLE.pack(MAGIC, FORMAT_VERSION, 0)


def frame_bytes(kind: int, payload: bytes, t: float, a: int = -1, b: int = -1,
                codec: int = RAW) -> bytes:
    """One whole frame: its header, then `payload`."""
    head = HEADER.pack(SYNC, kind, codec, len(payload), zlib.crc32(payload), t, a, b, 0)
    return head[:40] + struct.pack("<I", zlib.crc32(head[4:40])) + payload


def parse_header(head: bytes, offset: int) -> Frame | None:
    """The Frame a 44-byte header describes (its payload at `offset`), or None if the bytes
    are not an intact header."""
    if len(head) < HEADER.size or head[:4] != SYNC:
        return None
    sync, kind, codec, length, pcrc, t, a, b, hcrc = HEADER.unpack(head[:HEADER.size])
    if hcrc != zlib.crc32(head[4:40]) or kind not in KINDS or length > MAX_PAYLOAD:
        return None
    return Frame(kind, codec, t, a, b, offset, length, pcrc)


def check_preamble(data: bytes, name: str) -> None:
    """RecordingError unless `data` starts like a recording this muxtop reads."""
    if len(data) < PREAMBLE.size or not data.startswith(MAGIC):
        raise RecordingError(f"{name} is not a muxtop recording")
    _, version, _ = PREAMBLE.unpack_from(data)
    if version > FORMAT_VERSION:
        raise RecordingError(f"{name} is recording format {version}, newer than this muxtop "
                             f"reads ({FORMAT_VERSION}): upgrade muxtop")
    if version < 1:
        raise RecordingError(f"{name} is not a muxtop recording (format {version})")
