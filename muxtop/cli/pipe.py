"""The reader of our stdout left (`muxtop ... | head -c1`): end quietly, as Unix tools do."""

from __future__ import annotations

import os
import sys


def reader_left() -> int:
    """Call on BrokenPipeError from stdout: point stdout at /dev/null, so that the flush at
    exit does not raise again (and print a traceback) — and return the exit status, 0: the
    reader had all it wanted."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, sys.stdout.fileno())
    finally:
        os.close(devnull)
    return 0
