"""The bytes of message ``seq`` of client ``client``: a pure function of the pair, so an echo that
comes back stale, reordered or from another connection is caught, not only a wrong length.
"""

from __future__ import annotations

import hashlib
import struct

_HEADER = struct.Struct("!IQ")  # client id, sequence number: makes every message unique
_ROTATIONS = 256


class Payloads:
    """Builds messages of one size. Cheap per call: a 12-byte header plus a slice of a shared
    pseudo-random body, rotated by (client, seq) so that the body differs message to message too.
    Messages shorter than the header are a short hash of it instead."""

    __slots__ = ("_body", "size")

    def __init__(self, size: int) -> None:
        if size < 1:
            raise ValueError("message size must be at least 1 byte")
        self.size = size
        body_len = max(0, size - _HEADER.size) + _ROTATIONS
        # One body for all clients (a per-client body would cost clients × size of memory).
        chunks = []
        counter = 0
        while sum(map(len, chunks)) < body_len:
            chunks.append(hashlib.blake2b(counter.to_bytes(8, "big"), digest_size=64).digest())
            counter += 1
        self._body = b"".join(chunks)[:body_len]

    def message(self, client: int, seq: int) -> bytes:
        header = _HEADER.pack(client & 0xFFFFFFFF, seq)
        size = self.size
        if size <= _HEADER.size:
            return hashlib.blake2b(header, digest_size=size).digest()
        start = (client * 61 + seq * 17) & (_ROTATIONS - 1)
        return header + self._body[start:start + size - _HEADER.size]
