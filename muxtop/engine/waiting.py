"""The step both of the engine's loops begin each pass with: one wait call, timed, counted
and kept in the ring (telemetry's wait records), so the echo loop and the proxy's share it.

Now and then (CPU_SAMPLE_EVERY) the wait is a probe: a call with no timeout, which returns at
once, so its CPU time is what looking at the fds costs and not a sleep. Spaced so probes take
under 1% of the loop."""

from __future__ import annotations

import time
from collections import deque
from itertools import chain

from muxtop.backends import Backend
from muxtop.engine.counts import LoopCounts
from muxtop.snapshot import CPU_SAMPLE_EVERY, READY_KEPT, WaitRecord, wait_record

_flatten = chain.from_iterable
_monotonic, _thread_time = time.monotonic, time.thread_time


class WaitStep:
    __slots__ = ("_record", "_counts", "_next_probe", "after")

    def __init__(self, ring: deque[WaitRecord], counts: LoopCounts) -> None:
        self._record = ring.append
        self._counts = counts
        self._next_probe = 0.0
        self.after = 0.0  # when the last wait returned: the loop's "now" for what it reports

    def wait(self, backend: Backend, now: float, timeout: float,
             registered: int) -> list[tuple[int, int]]:
        """Wait (from `now`, for up to `timeout` s) and record the call; the ready list."""
        if now < self._next_probe:
            ready = backend.wait(timeout)
            self.after = after = _monotonic()
            cpu = None
        else:
            ready, cpu = self._probe(backend)
            after = self.after
            timeout = 0.0
        counts = self._counts
        counts.waits += 1
        count = len(ready)
        counts.events += count
        # Flat, so the (fd, events) tuples die with the list: kept, each cost a garbage
        # collector visit. The flat tuple leaves the collector after one pass.
        self._record(wait_record((
            counts.waits, now, timeout, after - now, registered,
            tuple(_flatten(ready if count <= READY_KEPT else ready[:READY_KEPT])), count, cpu)))
        return ready

    def defer_probe(self, now: float) -> None:
        """No probe at the next wait (step mode: the user asked for the loop's own call)."""
        self._next_probe = now + 1.0  # past the step: the next is asked for after a hold

    def _probe(self, backend: Backend) -> tuple[list[tuple[int, int]], float]:
        started = _thread_time()
        ready = backend.wait(0.0)
        cpu = _thread_time() - started
        self.after = after = _monotonic()
        self._counts.probes += 1
        self._next_probe = after + max(CPU_SAMPLE_EVERY, 100 * cpu)
        return ready, cpu
