"""strace as a tracer: the command line, what keeps it from running, and a parser of its
output that turns each line into a TracedWait or TracedIo as it streams.

strace stops the target at every traced call (ptrace), so a busy server runs several times
slower while it is attached: the header says so. It needs the target's user or root, and no
other tracer on the process. The flags make its lines regular enough to parse: `-f` every
thread, `-ttt` the entry time in seconds, `-T` the time inside the call, `-v` whole arrays (it
cuts them at 32 entries otherwise), `-s 0` no buffer contents (nothing of the app's data is
read, and no string can hold the text that ends a call), `-X raw` flags as numbers, `-qq` no
attach or exit chatter. Names prefixed `?` are skipped on machines that lack them
(epoll_wait and select do not exist on arm64).
"""

from __future__ import annotations

import os
import re
import shutil
import time
from collections.abc import Callable

from muxtop.snapshot import READY_KEPT
from muxtop.trace.calls import (
    CTL,
    EPOLL_WAITS,
    POLLIN,
    POLLOUT,
    POLLPRI,
    READS,
    WAITS,
    WRITES,
    TracedCtl,
    TracedIo,
    TracedWait,
)
from muxtop.trace.permissions import ptrace_problem

NAME = "strace"
SLOWDOWN = "strace stops the target at every traced call: expect it to run several times slower"

# [pid N] or "N " (the thread), the entry time, the rest.
_LINE = re.compile(r"^(?:\[pid\s+(\d+)\]\s+|(\d+)\s+)?(\d+\.\d+)\s+(.*)$")
_DONE = re.compile(r"^(\w+)\((.*)\)\s+=\s+(-?\d+|\?)(?:\s+(E[A-Z0-9]+)\s+\([^)]*\))?"
                   r"(?:\s+\((.*)\))?\s+<(\d+\.\d+)>$")
_UNFINISHED = " <unfinished ...>"
_RESUMED = re.compile(r"^<\.\.\. (\w+) resumed>(.*)$")
_EXITED = re.compile(r"^\+\+\+ (?:exited with|killed by) ")

_EPOLL_DATA = re.compile(r"data=\{u32=\d+, u64=(\d+)\}")
_EPOLL_EVENT = re.compile(r"\{events=(0x[0-9a-f]+|\d+), data=\{u32=\d+, u64=(\d+)\}\}")
_POLL_FD = re.compile(r"\{fd=(-?\d+), (?:r?events)=(0x[0-9a-f]+|\d+)\}")
_SELECT_SET = re.compile(r"(in|out|except) \[([\d ]*)\]")
_TIMESPEC = re.compile(r"\{tv_sec=(-?\d+), tv_(n|u)sec=(\d+)\}")
_IOV_LEN = re.compile(r"iov_len=(\d+)")
_SELECT_BITS = {"in": POLLIN, "out": POLLOUT, "except": POLLPRI}


def command(pid: int, io: bool) -> list[str]:
    calls = WAITS + (CTL,) + (READS + WRITES if io else ())
    return ["strace", "-f", "-qq", "-ttt", "-T", "-v", "-s", "0", "-X", "raw",
            "-e", "signal=none", "-e", "trace=" + ",".join("?" + name for name in calls),
            "-p", str(pid)]


def problem(pid: int) -> str | None:
    """Why strace cannot trace `pid` here, in one line with what would fix it; None if it
    can (as far as can be told before trying)."""
    if shutil.which(NAME) is None:
        return "strace is not installed (Debian and Ubuntu: apt-get install strace)"
    return ptrace_problem(pid)


def _timeout(text: str) -> float | None:
    """A timeout argument: milliseconds (negative: none), a timespec/timeval, or NULL."""
    if text == "NULL":
        return None
    m = _TIMESPEC.match(text)
    if m:
        fraction = int(m.group(3)) / (1e9 if m.group(2) == "n" else 1e6)
        return int(m.group(1)) + fraction
    ms = int(text)
    return None if ms < 0 else ms / 1000


def _args(text: str) -> list[str]:
    """The top-level arguments of a call (commas inside [] and {} do not split)."""
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        if ch in "[{":
            depth += 1
        elif ch in "]}":
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append(text[start:i].strip())
            start = i + 1
    parts.append(text[start:].strip())
    return parts


class StraceParser:
    """Feed it lines; it returns the calls each completes (a call split by another thread's
    line, "<unfinished ...>" then "<... resumed>", completes on its second line).

    `belongs(tid)` says whether a thread is the target's: `-f` also follows children the
    target forks, whose calls are not its own. `clock_offset` turns strace's wall-clock
    seconds into time.monotonic()."""

    def __init__(self, pid: int, belongs: Callable[[int], bool] | None = None,
                 clock_offset: float | None = None) -> None:
        self.pid = pid
        self.belongs = belongs or (lambda tid: True)
        self.offset = (time.monotonic() - time.time()) if clock_offset is None else clock_offset
        self.unread = 0  # lines that were neither a call nor strace's own chatter
        self.messages: list[str] = []  # strace's own lines ("strace: ..."), the last few
        self.exited = False  # the target's main thread exited
        self._partial: dict[int, tuple[float, str]] = {}  # tid -> (entry time, text so far)
        # The parser of a completed call, by its name; every other traced call reads or writes.
        self._parsers: dict[str, Callable[..., TracedWait | TracedIo | TracedCtl | None]] = {
            CTL: self._ctl, **dict.fromkeys(WAITS, self._wait)}

    def feed(self, line: str) -> TracedWait | TracedIo | TracedCtl | None:
        line = line.rstrip("\n")
        if line.startswith("strace: "):
            self.messages = (self.messages + [line[8:]])[-5:]
            return None
        m = _LINE.match(line)
        if m is None:
            if line.strip():
                self.unread += 1
            return None
        tid = int(m.group(1) or m.group(2) or self.pid)
        at, body = float(m.group(3)) + self.offset, m.group(4)
        if body.endswith(_UNFINISHED):
            self._partial[tid] = (at, body[:-len(_UNFINISHED)])
            return None
        resumed = _RESUMED.match(body)
        if resumed is not None:
            started = self._partial.pop(tid, None)
            if started is None or not started[1].startswith(resumed.group(1) + "("):
                return None  # its start came before strace attached
            at, body = started[0], started[1] + resumed.group(2)
        if _EXITED.match(body):
            self.exited = self.exited or tid == self.pid
            return None
        if body.startswith("---") or body.endswith("<detached ...>"):
            return None
        done = _DONE.match(body)
        if done is None:
            self.unread += 1
            return None
        if not self.belongs(tid):
            return None
        name, args, ret, error, extra, duration = done.groups()
        try:
            return self._parsers.get(name, self._io)(tid, at, name, args, ret, error or "",
                                                     extra or "", float(duration))
        except (ValueError, IndexError):
            self.unread += 1
            return None

    def _wait(self, tid, at, name, args, ret, error, extra, duration) -> TracedWait:
        count = -1 if ret == "?" else int(ret)
        parts = _args(args)
        ready: list[int] = []
        epfd, registered = -1, -1
        if name in EPOLL_WAITS:  # (epfd, events, maxevents, timeout, ...)
            epfd, timeout = int(parts[0]), _timeout(parts[3])
            for events, data in _EPOLL_EVENT.findall(parts[1])[:READY_KEPT]:
                ready += (int(data), int(events, 0))
        elif name.endswith("poll"):  # (fds, nfds, timeout, ...); the ready list after "="
            registered, timeout = int(parts[1]), _timeout(parts[2])
            for fd, revents in _POLL_FD.findall(extra)[:READY_KEPT]:
                ready += (int(fd), int(revents, 0))
        else:  # select, pselect6: (nfds, in, out, except, timeout, ...)
            timeout = _timeout(parts[4])
            registered = len({fd for part in parts[1:4] if part.startswith("[")
                              for fd in part[1:-1].split()})
            events: dict[int, int] = {}
            for which, fds in _SELECT_SET.findall(extra):
                for fd in fds.split():
                    events[int(fd)] = events.get(int(fd), 0) | _SELECT_BITS[which]
            for fd in sorted(events)[:READY_KEPT]:
                ready += (fd, events[fd])
        return TracedWait(tid, name, at, duration, timeout, epfd, registered, tuple(ready),
                          count, error)

    def _ctl(self, tid, at, name, args, ret, error, extra, duration) -> TracedCtl | None:
        if ret != "0":
            return None  # refused (EEXIST, ENOENT...): nothing changed
        parts = _args(args)  # (epfd, op, fd, event)
        event = _EPOLL_DATA.search(parts[3])
        return TracedCtl(tid, at + duration, int(parts[0]), int(parts[1], 0), int(parts[2]),
                         int(event.group(1)) if event else 0)

    def _io(self, tid, at, name, args, ret, error, extra, duration) -> TracedIo:
        parts = _args(args)
        if name in ("read", "write", "recvfrom", "sendto"):  # (fd, buffer, size, ...)
            asked = int(parts[2])
        elif name == "sendfile":  # (out_fd, in_fd, offset, count): the socket is out_fd
            asked = int(parts[3])
        else:  # readv, writev, recvmsg, sendmsg: the sizes of every buffer
            sizes = _IOV_LEN.findall(args)
            asked = sum(map(int, sizes)) if sizes else -1
        result = -1 if ret == "?" else int(ret)
        return TracedIo(tid, name, at + duration, int(parts[0]), asked, result, error)


def thread_of(pid: int) -> Callable[[int], bool]:
    """`belongs` for StraceParser: is the thread one of `pid`'s (remembered per tid)?"""
    known: dict[int, bool] = {pid: True}

    def belongs(tid: int) -> bool:
        found = known.get(tid)
        if found is None:
            found = known[tid] = os.path.exists(f"/proc/{pid}/task/{tid}")
        return found

    return belongs
