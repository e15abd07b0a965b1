"""Short, fixed-width text for numbers: bytes, rates, durations, counts. The dashboard, the
plain-text reports and the lessons' measures all show numbers alike (no Textual, no rich)."""

from __future__ import annotations

DASH = "-"
_BYTE_UNITS = ("B", "KiB", "MiB", "GiB", "TiB")


def size(n: float | None) -> str:
    """Bytes in at most 7 cells: 512B, 12.3KiB, 4.0MiB; '-' when unknown."""
    if n is None:
        return DASH
    if n < 1024:
        return f"{n:.0f}B"
    for unit in _BYTE_UNITS[1:]:
        n /= 1024
        if n < 1000 or unit == _BYTE_UNITS[-1]:
            return f"{n:.1f}{unit}" if n < 100 else f"{n:.0f}{unit}"
    return DASH  # not reached


def rate(n: float) -> str:
    """Bytes per second: '1.2MiB/s'."""
    return f"{size(n)}/s"


def count(n: float) -> str:
    """A count that may be large, in at most 6 cells: 999, 12,345, 123.4k, 1.23M, 12.3M."""
    if n < 100_000:
        return f"{n:,.0f}"
    value, unit = (n / 1e3, "k") if n < 1e6 else (n / 1e6, "M")
    return f"{value:.{2 if value < 10 else 1}f}{unit}"


def duration(seconds: float | None) -> str:
    """A short span in at most 7 cells: 850ns, 12.3µs, 4.56ms, 1.23s, 12m03s, 3h05m."""
    if seconds is None:
        return DASH
    if seconds < 0:
        seconds = 0.0
    if seconds < 1e-6:
        return f"{seconds * 1e9:.0f}ns"
    if seconds < 1e-3:
        us = seconds * 1e6
        return f"{us:.1f}µs" if us < 100 else f"{us:.0f}µs"
    if seconds < 1:
        ms = seconds * 1e3
        return f"{ms:.2f}ms" if ms < 10 else f"{ms:.1f}ms" if ms < 100 else f"{ms:.0f}ms"
    if seconds < 60:
        return f"{seconds:.2f}s" if seconds < 10 else f"{seconds:.1f}s"
    return age(seconds)


def age(seconds: float | None) -> str:
    """How long something has existed, coarse: 0.4s, 12s, 5m03s, 2h07m, 3d04h."""
    if seconds is None:
        return DASH
    if seconds < 10:
        return f"{max(seconds, 0.0):.1f}s"
    s = int(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d{s % 86400 // 3600:02d}h"


def uptime(seconds: float) -> str:
    """Clock-style uptime: 0:01:23, 26:04:09."""
    s = max(int(seconds), 0)
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


def timeout(seconds: float | None) -> str:
    """A wait call's timeout: 'inf' when it blocks until something is ready."""
    if seconds is None:
        return "inf"
    if seconds == 0:
        return "0"
    return duration(seconds)


def amount(n: int | None, unit: str = "B") -> str:
    """``1,234 B``; a dash where nothing was measured."""
    return DASH if n is None else f"{n:,} {unit}"
