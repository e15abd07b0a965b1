"""Child processes muxtop starts (servers for benchmarks, floods): ending one for sure."""

from __future__ import annotations

import subprocess


def end(proc: subprocess.Popen, grace: float = 3.0) -> None:
    """SIGTERM, then SIGKILL if it is still there after `grace` seconds; reaped either way."""
    if proc.poll() is not None:
        return
    try:
        proc.terminate()
    except ProcessLookupError:
        pass  # it ended between the poll and the signal: the wait reaps it
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
