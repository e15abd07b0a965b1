"""poll(2): one pollfd array the kernel scans on every call; no fd-number limit."""

from __future__ import annotations

import select

from muxtop.backends.base import Backend


class PollBackend(Backend):
    name = "poll"
    scans_every_fd = True

    def __init__(self, trigger: str = "level") -> None:
        super().__init__(trigger)
        self._poll = select.poll()
        self._fds: set[int] = set()

    def register(self, fd: int, interest: int) -> None:
        self._poll.register(fd, interest)  # muxtop's flags are poll's bits
        self._fds.add(fd)

    def modify(self, fd: int, interest: int) -> None:
        self._poll.modify(fd, interest)

    def unregister(self, fd: int) -> None:
        if fd in self._fds:
            self._fds.discard(fd)
            self._poll.unregister(fd)

    def wait(self, timeout: float | None) -> list[tuple[int, int]]:
        # poll takes milliseconds; round up so a short timer does not become a busy 0 ms wait.
        ms = -1 if timeout is None else max(0, int(timeout * 1000 + 0.999))
        return self._poll.poll(ms)
