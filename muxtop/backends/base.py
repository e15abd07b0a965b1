"""The interface every multiplexer backend implements (after Redis's ae_*.c and selectors).

A backend only maps fds to interest masks and waits; the engine owns the table of fds and
rebuilds a fresh backend from it for a live switch, so a backend is disposable.
"""

from __future__ import annotations

LEVEL, EDGE, ONESHOT = "level", "edge", "oneshot"
# Not a trigger of readiness: the kernel does the reads and writes and says how many bytes
# (io_uring's recv and send). The engine takes a second read/write path for it.
COMPLETION = "completion"
TRIGGERS = (LEVEL, EDGE, ONESHOT, COMPLETION)


class BackendError(Exception):
    """A backend cannot do what was asked; the message says why in plain words."""


class Backend:
    name: str = "?"
    triggers: tuple[str, ...] = (LEVEL,)
    fd_limit: int | None = None  # highest fd + 1 it can watch (select: FD_SETSIZE)
    # Each wait call looks at every registered fd (select, poll); epoll and io_uring are told
    # by the kernel which are ready, and look at those alone.
    scans_every_fd = False

    @classmethod
    def unavailable(cls) -> str | None:
        """Why this backend cannot run in this process (io_uring disabled...); None: it can."""
        return None

    def __init__(self, trigger: str = LEVEL) -> None:
        if trigger not in self.triggers:
            raise BackendError(
                f"{self.name} has no {trigger} trigger mode "
                f"(it supports: {', '.join(self.triggers)})")
        self.trigger = trigger

    def check_fd(self, fd: int) -> None:
        if self.fd_limit is not None and fd >= self.fd_limit:
            raise BackendError(
                f"{self.name} cannot watch fd {fd}: its fd_set holds only fds "
                f"0..{self.fd_limit - 1}"
                " (FD_SETSIZE)")

    def register(self, fd: int, interest: int) -> None:
        raise NotImplementedError

    def modify(self, fd: int, interest: int) -> None:
        raise NotImplementedError

    def unregister(self, fd: int) -> None:
        raise NotImplementedError

    def wait(self, timeout: float | None) -> list[tuple[int, int]]:
        """Block up to ``timeout`` seconds (None: forever); return ready ``(fd, events)``."""
        raise NotImplementedError

    def fileno(self) -> int | None:
        """The kernel object behind the backend (epoll's fd), if there is one."""
        return None

    def ring_figures(self):
        """An io_uring backend's RingFigures (kernel/uring.py); None for the others."""
        return None

    def close(self) -> None:
        pass

    def __enter__(self) -> Backend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
