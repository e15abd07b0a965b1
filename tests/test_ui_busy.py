"""A busy server (its process over BUSY_CPU_PERCENT, or an engine whose wait calls hardly
block; the dashboard in the same process): the screen, header and panels together, redraws
every other Snapshot, so the frames it does not draw leave the GIL to the engine; a quiet one
redraws every Snapshot."""

from __future__ import annotations

import dataclasses

import pytest

from muxtop.bench import synthetic
from muxtop.snapshot import WaitRecord
from muxtop.source import FixedSource
from muxtop.ui.app import MuxtopApp
from muxtop.ui.tick import BUSY_CPU_PERCENT

pytestmark = pytest.mark.timeout(60)


class SameProcessSource(FixedSource):
    shares_gil = True  # as the embedded engine: the dashboard's frames hold its GIL


def waits(blocked: float) -> tuple[WaitRecord, ...]:
    """A thousand wait calls 100 µs apart, each blocked `blocked` of that, each finding one
    fd ready."""
    return tuple(WaitRecord(seq, 100.0 + seq * 1e-4, 0.25, blocked * 1e-4, 22, (7, 1), 1)
                 for seq in range(1000))


def snapshots(cpu: float, blocked: float = 1.0, count: int = 7) -> list:
    out = []
    for tick in range(count):
        snap = synthetic.snapshot(20, tick)
        out.append(dataclasses.replace(snap, process=snap.process._replace(cpu_percent=cpu),
                                       waits=waits(blocked)))
    return out


async def redraws(cpu: float, blocked: float = 1.0) -> tuple[int, int]:
    """Header and panel redraws over six new Snapshots."""
    app = MuxtopApp(SameProcessSource(snapshots(cpu, blocked)), interval=None)
    drawn = {"header": 0, "panels": 0}
    async with app.run_test(size=(160, 48)) as pilot:
        await pilot.pause()
        dashboard = app.dashboard
        header_show, panels_show = dashboard.header.show, dashboard.show

        def count(what, method):
            def counted(*args, **kwargs):
                drawn[what] += 1
                return method(*args, **kwargs)
            return counted

        dashboard.header.show = count("header", header_show)
        dashboard.show = count("panels", panels_show)
        for _ in range(6):
            app.source.advance()
            app.tick()
            await pilot.pause()
    return drawn["header"], drawn["panels"]


async def test_a_busy_server_redraws_header_and_panels_together_every_other_snapshot():
    assert await redraws(BUSY_CPU_PERCENT + 15) == (3, 3)


async def test_an_engine_that_never_waits_is_busy_however_little_cpu_it_gets():
    # A crowded machine gives the process 40% of a core, and the engine spends it all
    # serving: its wait calls return at once (blocked 10% of the time).
    assert await redraws(40.0, blocked=0.1) == (3, 3)


async def test_a_quiet_server_redraws_every_snapshot():
    assert await redraws(BUSY_CPU_PERCENT - 30) == (6, 6)
    assert await redraws(BUSY_CPU_PERCENT - 30, blocked=0.9) == (6, 6)
