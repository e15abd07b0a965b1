"""Helpers for pilot tests of the dashboard."""

from __future__ import annotations

import time


async def until(predicate, pilot, timeout: float = 10.0, what: str = ""):
    """Let the app run until predicate() is truthy (bounded); return its value."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not in time: {what}")
        await pilot.pause(0.05)
