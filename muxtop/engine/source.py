"""The embedded engine as a Source: its published Snapshot, and its command queue."""

from __future__ import annotations

from concurrent.futures import Future

from muxtop.engine.loop import Engine
from muxtop.snapshot import WaitRecord
from muxtop.source import Source


class EngineSource(Source):
    kind = "engine"
    shares_gil = True  # the engine thread and the dashboard take turns at one GIL
    announces_refusals = True

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def latest(self):
        return self.engine.snapshot()

    @property
    def read_only(self) -> str | None:
        return None if self.engine.running else "the engine has stopped"

    @property
    def flood_target(self) -> tuple[str, int] | None:
        if not self.engine.running:
            return None
        host, port = self.engine.address[:2]
        return flood_host(host), port

    def submit(self, command: object) -> Future:
        return self.engine.submit(command)

    @property
    def proxies(self):
        """The engine's registry of proxies (--toxic, --api), or None."""
        return self.engine.config.registry

    def recent_waits(self) -> tuple[WaitRecord, ...]:
        """The wait ring as it is now, between two Snapshots: a recorder that reads it often
        misses no wait call even when more happen between two Snapshots than the ring holds."""
        ring = self.engine.telemetry.ring
        for _ in range(3):
            try:
                return tuple(ring)
            except RuntimeError:  # the engine appended while it was copied: again
                continue
        return self.engine.snapshot().waits

    @property
    def published(self) -> int:
        """Snapshots the engine has published so far (a recorder counts what it missed)."""
        return self.engine.telemetry.publishes


def flood_host(host: str) -> str:
    """Where a flood should aim to reach a server listening on `host` (a wildcard address
    is reached over loopback)."""
    if host in ("", "0.0.0.0"):
        return "127.0.0.1"
    if host == "::":
        return "::1"
    return host
