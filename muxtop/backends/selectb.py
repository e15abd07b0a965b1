"""select(2): three fd_sets rebuilt and scanned by the kernel on every call, fds < FD_SETSIZE."""

from __future__ import annotations

import select

from muxtop.backends.base import Backend
from muxtop.events import READ, WRITE

FD_SETSIZE = 1024


class SelectBackend(Backend):
    name = "select"
    scans_every_fd = True
    fd_limit = FD_SETSIZE

    def __init__(self, trigger: str = "level") -> None:
        super().__init__(trigger)
        self._readers: set[int] = set()
        self._writers: set[int] = set()

    def register(self, fd: int, interest: int) -> None:
        self.check_fd(fd)
        self.modify(fd, interest)

    def modify(self, fd: int, interest: int) -> None:
        (self._readers.add if interest & READ else self._readers.discard)(fd)
        (self._writers.add if interest & WRITE else self._writers.discard)(fd)

    def unregister(self, fd: int) -> None:
        self._readers.discard(fd)
        self._writers.discard(fd)

    def wait(self, timeout: float | None) -> list[tuple[int, int]]:
        # select reports an error or hang-up as "readable": the following recv tells which.
        readable, writable, _ = select.select(self._readers, self._writers, (), timeout)
        if not writable:
            return [(fd, READ) for fd in readable]
        events = dict.fromkeys(readable, READ)
        for fd in writable:
            events[fd] = events.get(fd, 0) | WRITE
        return list(events.items())
