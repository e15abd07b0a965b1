"""`muxtop attach --name NAME` and `attach PID PID ...`: the processes watched, as they come and
go. One `Targets` holds an Attacher per process; each `read()` looks for new processes of the
name, reads every target once, drops those that exited and says who came and went.

A process's name is the one `ps -o comm=` shows (and `pgrep -x` matches), as psutil reads it:
the kernel's comm, whole past its 15 bytes where argv[0] carries on. It is the target's own
text: whoever prints it escapes it (muxtop.printable, ui/format.py `plain`).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import NamedTuple

import psutil

from muxtop.attach.reader import Attacher, AttachError
from muxtop.snapshot import Snapshot

COMM_BYTES = 15  # the kernel keeps this much of a name in /proc/PID/comm (TASK_COMM_LEN - 1)


class Change(NamedTuple):
    """A target came, went, or could not be watched: one line of the agent's log."""

    kind: str  # CAME, WENT, REFUSED
    pid: int
    name: str  # the target's own text: escape it to print it
    reason: str = ""  # REFUSED: why, one line


CAME, WENT, REFUSED = "came", "went", "refused"


class Target(NamedTuple):
    """One watched process in a read: `key` tells apart two processes that had the same pid."""

    key: int
    pid: int
    name: str
    snapshot: Snapshot


class Targets:
    """The processes named `name` (None: none by name) and the `pids` given, each read by its
    own Attacher. `make` builds an Attacher (raises AttachError); the constructor attaches to
    the pids given, raising AttachError for the first that cannot be read."""

    def __init__(self, pids: tuple[int, ...] = (), name: str | None = None, *,
                 make: Callable[[int], Attacher] = Attacher) -> None:
        self.name = name
        self._make = make
        self._attachers: dict[int, tuple[int, Attacher]] = {}  # pid -> (key, Attacher)
        self._keys = 0
        # Processes of the name not watched (unreadable, or a longer name with the same 15
        # bytes), until their pid is gone: asked once, not at every read.
        self._passed: set[int] = set()
        self.refused = 0  # processes of the name that cannot be read now
        self.changes: list[Change] = []  # not yet taken by `take_changes`
        for pid in dict.fromkeys(pids):
            self._add(self._make(pid))  # a pid given must be readable: AttachError
        self.fixed = bool(pids) and name is None  # only pids: none can come later
        self.read_seconds = 0.0  # CPU time of the last read, every target and the search
        self.last: tuple[Target, ...] | None = None  # the last read (for /metrics' thread)

    def __len__(self) -> int:
        return len(self._attachers)

    def read(self) -> tuple[Target, ...]:
        """Look for new processes of the name, read every target, drop those that exited
        (their last picture is in this read, running False)."""
        started = time.thread_time()
        if self.name is not None:
            self._search()
        read = []
        for pid, (key, attacher) in list(self._attachers.items()):
            snapshot = attacher.read()
            read.append(Target(key, pid, attacher.name, snapshot))
            if attacher.exited:
                del self._attachers[pid]
                attacher.close()
                self.changes.append(Change(WENT, pid, attacher.name))
        self.read_seconds = time.thread_time() - started
        self.last = tuple(read)
        return self.last

    def pairs(self) -> list[tuple[int, Snapshot]] | None:
        """(key, Snapshot) of the last read, for /metrics (None before the first read)."""
        last = self.last
        return None if last is None else [(t.key, t.snapshot) for t in last]

    def take_changes(self) -> list[Change]:
        changes, self.changes = self.changes, []
        return changes

    def close(self) -> None:
        for _, attacher in self._attachers.values():
            attacher.close()
        self._attachers.clear()

    # -- the search ---------------------------------------------------------------------------

    def _search(self) -> None:
        found = set(processes_named(self.name))
        found.discard(os.getpid())  # muxtop itself, were it run under the name it looks for
        self._passed &= found  # a pid that is gone may come back as another process
        for pid in sorted(found - self._passed - self._attachers.keys()):
            try:
                attacher = self._make(pid)
            except AttachError as exc:
                self._passed.add(pid)
                if _alive(pid):  # not one that exited as we came: say why it is not watched
                    self.changes.append(Change(REFUSED, pid, self.name, str(exc)))
                continue
            if attacher.name != self.name:  # the same first 15 bytes, another name
                attacher.close()
                self._passed.add(pid)
                continue
            self._add(attacher)
        self.refused = sum(1 for pid in self._passed if _named(pid, self.name))

    def _add(self, attacher: Attacher) -> None:
        self._keys += 1
        self._attachers[attacher.pid] = (self._keys, attacher)
        self.changes.append(Change(CAME, attacher.pid, attacher.name))


def processes_named(name: str, proc: str = "/proc") -> list[int]:
    """The pids whose comm is `name`'s first 15 bytes (a longer name is checked by whoever
    attaches: psutil reads it whole). One small read per process, no psutil object each."""
    want = os.fsencode(name)[:COMM_BYTES] + b"\n"
    found = []
    with os.scandir(proc) as entries:
        for entry in entries:
            if not entry.name.isdigit():
                continue
            try:
                with open(f"{proc}/{entry.name}/comm", "rb") as comm:
                    if comm.read(64) == want:
                        found.append(int(entry.name))
            except OSError:
                continue  # gone since the listing, or not ours to read
    return found


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _named(pid: int, name: str) -> bool:
    """A refused process still there under the name (it may have exec'd or exited)."""
    try:
        process = psutil.Process(pid)
        return process.name() == name and process.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False
