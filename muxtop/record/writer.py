"""Appending frames to a recording file, so that whatever happens the file reads.

Frames are gathered in memory and written out by `flush()` (the recorder flushes at least
once a second) in one `write` loop. If a write fails (disk full, file too large, the disk
gone), the file is cut back to the end of the last whole frame, so it still reads to there;
then the error goes up, with what was kept.
"""

from __future__ import annotations

import errno
import os

from muxtop.record import format as fmt
from muxtop.userfiles import exists_problem, name_problem


class RecordWriteError(Exception):
    """Writing the recording failed; the message says why, the file keeps what it holds."""


def open_error(path: str, exc: OSError) -> str:
    reason = exc.strerror or str(exc)
    if exc.errno == errno.EEXIST:  # what is there: a directory, a device, or a file to keep
        reason = exists_problem(path)
        if reason.startswith("the file exists"):
            reason = "the file exists (muxtop never overwrites one: pick another name)"
    return f"cannot record to {path}: {reason}"


class RecordingWriter:
    """A new recording file at `path` (never an existing one), with its preamble written."""

    def __init__(self, path: str) -> None:
        self.path = path
        if name_problem(path):
            raise RecordWriteError(f"cannot record to {path!r}: {name_problem(path)}")
        try:
            self.fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            raise RecordWriteError(open_error(path, exc)) from None
        self.size = 0  # bytes in the file, all of them whole frames
        self._pending: list[bytes] = [fmt.preamble()]
        self._pending_bytes = fmt.PREAMBLE.size

    @property
    def pending(self) -> int:
        """Bytes added but not yet written."""
        return self._pending_bytes

    def add(self, kind: int, payload: bytes, t: float, a: int = -1, b: int = -1,
            codec: int = fmt.RAW) -> None:
        frame = fmt.frame_bytes(kind, payload, t, a, b, codec)
        self._pending.append(frame)
        self._pending_bytes += len(frame)

    def flush(self) -> None:
        """Write what was added. On failure the file is cut back to its whole frames and
        RecordWriteError says why; the frames not written are dropped."""
        if not self._pending:
            return
        data = memoryview(b"".join(self._pending))
        self._pending, self._pending_bytes = [], 0
        written = 0
        try:
            while written < len(data):
                written += os.write(self.fd, data[written:])
        except OSError as exc:
            self._cut_back()
            raise RecordWriteError(f"writing {self.path} failed: {exc.strerror or exc}; it "
                                   f"keeps the {self.size:,} bytes written before") from None
        self.size += written

    def _cut_back(self) -> None:
        try:
            os.ftruncate(self.fd, self.size)
            os.lseek(self.fd, self.size, os.SEEK_SET)
        except OSError:
            pass  # not a file we can cut (a device): what it holds stays as it is

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
