"""How the process is tuned while a dashboard runs in it: the GIL switch interval and the
garbage collector. Both are process-wide, so they are set around `App.run` and put back after.

The collector is what made a key wait longest (`muxtop bench ui --keys`). Textual keeps many
small objects alive (every Strip holds a handful of caches): with CPython's default thresholds
(700, 10, 10) a full collection ran about once a second at 130,000 tracked objects, 50-150 ms
each, holding the GIL, so the engine stood still too. Here the objects of the start-up (modules,
classes, the stylesheet, the DOM) are frozen out of the collector once the first frame is up
(`freeze`), young collections come every 5,000 allocations instead of 700 (a frame makes tens
of thousands) and a full one only after 500 of them, i.e. every half a minute or more. Garbage
that forms cycles is still collected: young cycles at once, old ones at the next full collection.
"""

from __future__ import annotations

import gc
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager

# Seconds: Python's own default, measured rather than assumed (`muxtop bench ui --switch S`).
# The engine thread gives the GIL up in every syscall, so the UI gets it at once when it
# asks, whatever the interval; the interval only says how long the UI keeps it before the
# engine may take it back. At 0.0005 a frame was cut into slices of half a millisecond with
# a hand-off between each: under 100 echo connections key to screen p99 was 70-137 ms against
# 33-100 ms at 0.005, and the echo ratio dashboard/headless the same within the runs' spread
# (medians 0.87 and 0.87 over four runs each).
GIL_SWITCH_INTERVAL = 0.005
SWITCH_ENV = "MUXTOP_GIL_SWITCH"  # seconds, instead of GIL_SWITCH_INTERVAL (for the bench)
GC_THRESHOLDS = (5000, 5, 100)  # young, middle, full; CPython's default is (700, 10, 10)


@contextmanager
def dashboard_pacing(switch_interval: float | None = -1.0,
                     thresholds: tuple[int, int, int] | None = GC_THRESHOLDS) -> Iterator[None]:
    """Set the switch interval and the collector's thresholds (None: leave that one) for the
    dashboard's run; restore both, and unfreeze what `freeze` froze, afterwards. The default
    interval is $MUXTOP_GIL_SWITCH if set, else GIL_SWITCH_INTERVAL."""
    if switch_interval is not None and switch_interval < 0:
        switch_interval = float(os.environ.get(SWITCH_ENV) or GIL_SWITCH_INTERVAL)
    interval, previous = sys.getswitchinterval(), gc.get_threshold()
    if switch_interval is not None:
        sys.setswitchinterval(switch_interval)
    if thresholds is not None:
        gc.set_threshold(*thresholds)
    try:
        yield
    finally:
        sys.setswitchinterval(interval)
        gc.set_threshold(*previous)
        gc.unfreeze()


def freeze() -> None:
    """Move every object alive now out of the collector's sight: once the dashboard is up,
    what exists is the program itself, and a full collection need not walk it again."""
    gc.collect()  # what start-up left as garbage goes now, not never
    gc.freeze()
