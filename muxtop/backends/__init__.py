"""Multiplexer backends: select, poll, epoll and io_uring behind one interface (see
base.Backend)."""

from __future__ import annotations

from muxtop.backends.base import (
    COMPLETION,
    EDGE,
    LEVEL,
    ONESHOT,
    TRIGGERS,
    Backend,
    BackendError,
)
from muxtop.backends.epoll import EpollBackend
from muxtop.backends.poll import PollBackend
from muxtop.backends.selectb import FD_SETSIZE, SelectBackend
from muxtop.backends.uring import UringBackend

BACKENDS: dict[str, type[Backend]] = {
    "select": SelectBackend,
    "poll": PollBackend,
    "epoll": EpollBackend,
    "uring": UringBackend,
}
NAMES = tuple(BACKENDS)


def make_backend(name: str, trigger: str = LEVEL) -> Backend:
    """A fresh, empty backend; BackendError names what is wrong with the request."""
    try:
        cls = BACKENDS[name]
    except KeyError:
        raise BackendError(f"no backend {name!r} (choose from {', '.join(NAMES)})") from None
    return cls(trigger)


__all__ = [
    "BACKENDS",
    "COMPLETION",
    "EDGE",
    "FD_SETSIZE",
    "LEVEL",
    "NAMES",
    "ONESHOT",
    "TRIGGERS",
    "Backend",
    "BackendError",
    "make_backend",
]
