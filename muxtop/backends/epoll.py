"""epoll(7): an interest list kept in the kernel; a wait copies out only the ready fds.

epoll_wait copies the ready events into the caller's buffer (no shared mmap ring), so its
cost follows the number of ready fds, not registered ones. Edge-triggered (EPOLLET) fds are
reported once per new arrival: the reader must drain to EAGAIN or the rest sits unseen.
EPOLLONESHOT disarms an fd after one report until EPOLL_CTL_MOD re-arms it.
"""

from __future__ import annotations

import select

from muxtop.backends.base import EDGE, LEVEL, ONESHOT, Backend
from muxtop.kernel.epoll import EPOLLRDHUP, MODE_BITS


class EpollBackend(Backend):
    name = "epoll"
    triggers = (LEVEL, EDGE, ONESHOT)

    def __init__(self, trigger: str = LEVEL) -> None:
        super().__init__(trigger)
        self._epoll = select.epoll()  # size hint ignored by the kernel since 2.6.8
        # Edge also asks for RDHUP: a FIN that arrives with the last data raises no edge of
        # its own, and the reader stops at a short read (Engine._read_edge).
        self._mode = MODE_BITS[trigger] | (EPOLLRDHUP if trigger == EDGE else 0)
        self._count = 0

    def register(self, fd: int, interest: int) -> None:
        self._epoll.register(fd, interest | self._mode)  # muxtop's flags are epoll's bits
        self._count += 1

    def modify(self, fd: int, interest: int) -> None:
        # For oneshot this is also the re-arm.
        self._epoll.modify(fd, interest | self._mode)

    def unregister(self, fd: int) -> None:
        try:
            self._epoll.unregister(fd)
        except FileNotFoundError:
            return  # was not registered
        except OSError:
            pass  # closed already: closing removed it from the interest list (like selectors)
        self._count -= 1

    def wait(self, timeout: float | None) -> list[tuple[int, int]]:
        # maxevents defaults to FD_SETSIZE-1; ask for every registered fd so one wait shows all.
        return self._epoll.poll(-1 if timeout is None else timeout, self._count or 1)

    def fileno(self) -> int:
        return self._epoll.fileno()

    def close(self) -> None:
        self._epoll.close()
