"""The engine as its observers see it: a read-only interface (like selectors' get_map()).

Telemetry and the detectors read the engine through this and nothing else; engine/loop.py
implements it over its own tables, so the loop owns every fd and the observers change none.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from muxtop.backends import Backend
    from muxtop.engine.completion import Completions
    from muxtop.engine.config import EngineConfig
    from muxtop.engine.connection import Connection
    from muxtop.engine.counts import LoopCounts
    from muxtop.engine.proxying import ProxyFacts
    from muxtop.snapshot import StepInfo


class EngineState(Protocol):
    conns: Mapping[int, Connection]  # open connections by fd, live; in fd order at publish
    pending: Mapping[int, None]  # fds with a pending edge: read on without waiting

    @property
    def config(self) -> EngineConfig: ...

    @property
    def backend(self) -> Backend | None:
        """The backend in use; None before start."""

    @property
    def edge(self) -> bool: ...

    @property
    def completion(self) -> Completions | None:
        """uring/completion's operations in flight; None on every other backend."""

    @property
    def running(self) -> bool: ...

    @property
    def error(self) -> str | None:
        """Why the loop died, if it did."""

    @property
    def address(self) -> tuple[str, int]: ...

    @property
    def lab(self) -> frozenset[str]: ...

    @property
    def proxy(self) -> ProxyFacts | None:
        """Proxy mode (--upstream): its upstream and failures; None otherwise."""

    @property
    def registered(self) -> int:
        """Fds registered in the backend now."""

    @property
    def counts(self) -> LoopCounts:
        """The loop's running figures (waits, accepts, closes...): its own, read-only here."""

    @property
    def listener(self) -> socket.socket | None: ...

    @property
    def listen_fd(self) -> int: ...

    @property
    def listen_interest(self) -> int: ...

    @property
    def accept_paused(self) -> bool:
        """Accept backs off after running out of fds."""

    @property
    def out_of_fds(self) -> bool:
        """The last accept() failed for lack of fds (EMFILE, ENFILE): until one succeeds,
        or finds the backlog empty."""

    @property
    def accept_held(self) -> bool:
        """select: accept is paused with a client held on an fd past FD_SETSIZE."""

    @property
    def control_fd(self) -> int: ...

    @property
    def routes(self) -> tuple:
        """Proxy: the listeners of the registry's proxies other than the engine's own, as
        (fd, socket, muxtop.proxy.registry.Proxy)."""

    @property
    def queued_commands(self) -> int: ...

    @property
    def step(self) -> StepInfo | None:
        """Step mode: what the last stepped wait call did; None while running free."""

    def registrations(self) -> Iterator[tuple[int, int]]:
        """(fd, interest) of every fd the engine has registered in its backend."""
