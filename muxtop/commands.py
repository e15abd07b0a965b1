"""Commands a Source takes: the engine's, sent with `Engine.submit`, and the ones a recorder
or a viewer sends any source (Watch). Each is answered through the Future `submit` returns:
Outcome(ok, message). A refused command changes nothing."""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple


class Outcome(NamedTuple):
    ok: bool
    message: str  # plain words for a person


@dataclass(frozen=True)
class Switch:
    """Move every fd to a fresh backend and/or trigger mode between two wait calls."""

    backend: str | None = None  # None: keep the current one
    trigger: str | None = None


@dataclass(frozen=True)
class CloseConnection:
    fd: int


@dataclass(frozen=True)
class PauseReading:
    """Stop (paused=True) or resume reading one connection, as a person asked."""

    fd: int
    paused: bool


@dataclass(frozen=True)
class SetLab:
    """Turn one bug-lab switch on or off."""

    name: str
    on: bool


@dataclass(frozen=True)
class Watch:
    """Fds a viewer shows now: the engine probes their kernel queues first."""

    fds: tuple[int, ...]


@dataclass(frozen=True)
class Step:
    """Step mode. Running free: stop before the next wait call (answered at once). Stopped
    there: make exactly one wait call and serve what it reports (answered when done)."""


@dataclass(frozen=True)
class Continue:
    """Leave step mode: run at full speed again."""


@dataclass(frozen=True)
class ProxiesChanged:
    """The proxies' registry changed (toxiproxy's API, muxtop/proxy/registry.py): adopt new
    listeners, close the retired ones with their connections."""


@dataclass(frozen=True)
class Stop:
    pass
