"""A file the user names on the command line: read one with a size cap, or create one.

The name may be anything: a FIFO (opening it blocks until a writer comes, and no signal
handler runs meanwhile), /dev/zero (a read that never ends), a directory, or a file someone
wants to keep. So both ways open with O_NONBLOCK, which never waits, and use only what
fstat calls a regular file; and a file is created new, never replacing one unless the user
said --force.
"""

from __future__ import annotations

import errno
import os
import stat
from typing import TextIO

_KINDS = ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO"),
          (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
          (stat.S_ISSOCK, "a socket"))


class UserFileError(Exception):
    """A file that cannot be used; the message (one printable line) names it and says why."""


def _not_regular(mode: int) -> str | None:
    """Why a file of this mode is refused; None for a regular file."""
    if stat.S_ISREG(mode):
        return None
    kind = next((name for test, name in _KINDS if test(mode)), "not a file")
    return f"it is {kind}, not a regular file"


def name_problem(path: str | os.PathLike) -> str | None:
    """Why a name given for a file cannot be one, before any look at the disk: an empty
    name (a shell's unset variable) would be taken as "no name given" by `or` defaults."""
    if not os.fspath(path):
        return "the name is empty"
    return None


def exists_problem(path: str | os.PathLike) -> str:
    """Why a new file cannot be made at `path`, which exists: what it is, if not a regular
    file (a directory, /dev/full), else that muxtop does not replace files."""
    try:
        problem = _not_regular(os.stat(path).st_mode)
    except OSError:
        problem = None
    return problem or "the file exists (muxtop never replaces one unless told --force)"


def _error(doing: str, path: str | os.PathLike, reason: str) -> UserFileError:
    return UserFileError(f"cannot {doing} {os.fspath(path)!r}: {reason}")  # repr: escaped


def _os_reason(exc: OSError) -> str:
    if exc.errno == errno.ENXIO:  # a FIFO with no reader, or a unix socket's name
        return "it is a FIFO or a socket, not a regular file"
    return exc.strerror or str(exc)


def read_bytes(path: str | os.PathLike, limit: int) -> bytes:
    """The whole of a regular file of at most `limit` bytes; UserFileError otherwise."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except (OSError, ValueError) as exc:  # ValueError: a NUL in the name
        raise _error("read", path, _os_reason(exc) if isinstance(exc, OSError)
                     else "the name holds a NUL") from None
    try:
        problem = _not_regular(os.fstat(fd).st_mode)
        if problem:
            raise _error("read", path, problem)
        with os.fdopen(fd, "rb", closefd=False) as file:
            data = file.read(limit + 1)  # one more than allowed: tells "too big"
    except OSError as exc:
        raise _error("read", path, _os_reason(exc)) from None
    finally:
        os.close(fd)
    if len(data) > limit:
        raise _error("read", path, f"it is over {limit:,} bytes")
    return data


def read_text(path: str | os.PathLike, limit: int) -> str:
    """read_bytes, as UTF-8."""
    try:
        return read_bytes(path, limit).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _error("read", path, f"not UTF-8 ({exc.reason} at byte {exc.start})") from None


def create(path: str | os.PathLike, *, force: bool = False) -> TextIO:
    """A new regular file at `path`, open to write UTF-8 text. An existing file is refused
    unless `force` (then it is emptied, if it is a regular file); UserFileError says why."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_NONBLOCK | os.O_CLOEXEC
    if name_problem(path):
        raise _error("write", path, name_problem(path))
    try:
        fd = os.open(path, flags if force else flags | os.O_EXCL, 0o666)
    except FileExistsError:
        raise _error("write", path, exists_problem(path)) from None
    except (OSError, ValueError) as exc:
        raise _error("write", path, _os_reason(exc) if isinstance(exc, OSError)
                     else "the name holds a NUL") from None
    try:
        problem = _not_regular(os.fstat(fd).st_mode)
        if problem is None:
            os.ftruncate(fd, 0)  # --force: the old contents go only once it is known a file
    except OSError as exc:
        problem = _os_reason(exc)
    if problem:
        os.close(fd)
        raise _error("write", path, problem)
    return os.fdopen(fd, "w", encoding="utf-8")
