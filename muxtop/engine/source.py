"""The embedded engine as a Source: its published Snapshot, and its command queue."""

from __future__ import annotations

from concurrent.futures import Future

from muxtop.engine.loop import Engine


class EngineSource:
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


def flood_host(host: str) -> str:
    """Where a flood should aim to reach a server listening on `host` (a wildcard address
    is reached over loopback)."""
    if host in ("", "0.0.0.0"):
        return "127.0.0.1"
    if host == "::":
        return "::1"
    return host
