"""Helpers for pilot tests of the dashboard."""

from __future__ import annotations

import time
from collections.abc import Callable

from muxtop.source import Source


async def until(predicate, pilot, timeout: float = 10.0, what: str | Callable[[], str] = ""):
    """Let the app run until predicate() is truthy (bounded); return its value. `what` says
    what was awaited; a callable is asked only on failure (to describe what the app saw)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not in time: {what() if callable(what) else what}")
        await pilot.pause(0.05)


def detail_body(app) -> str:
    """The detail view's text once it is drawn (a key's way there is several messages
    long: wait for this, not for one pause); "" before."""
    from muxtop.ui.screens.detail import DetailScreen

    screen = app.screen
    if not isinstance(screen, DetailScreen):
        return ""
    bodies = screen.query("#detail-body")
    return str(bodies.first().render()) if bodies else ""


class FunctionSource(Source):
    """A read-only Source whose latest Snapshot comes from a function (which may raise)."""

    kind = "engine"
    shares_gil = False
    announces_refusals = False
    read_only = "this view is read-only"
    flood_target = None

    def __init__(self, latest: Callable) -> None:
        self.latest = latest

    def submit(self, command: object):
        from muxtop.commands import Outcome
        from muxtop.source import answered

        return answered(Outcome(False, self.read_only))
