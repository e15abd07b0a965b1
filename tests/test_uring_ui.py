"""uring in the dashboard: b cycles select -> poll -> epoll -> uring; where io_uring is
unavailable b passes over it and says why when nothing else is left; the ring's figures in the
header and the detail view of the ring's row."""

from __future__ import annotations

import dataclasses

import pytest
from ui_helpers import until

from muxtop.bench import synthetic
from muxtop.commands import Switch
from muxtop.kernel import uring
from muxtop.snapshot import KIND_EPOLL, RingView
from muxtop.source import FixedSource
from muxtop.ui import actions
from muxtop.ui.app import MuxtopApp
from muxtop.ui.screens.detail import DetailScreen

pytestmark = pytest.mark.timeout(60)
RING = RingView(fd=5, mode="readiness", sq_entries=1024, cq_entries=16384, sq_head=7340,
                sq_tail=7341, cq_head=9000, cq_tail=9003, in_flight=41, cq_overflow=0,
                enters=4000, submitted=7340, completed=9000, features=0x3)


def on(backend: str, trigger: str = "level", **changes):
    snapshot = synthetic.snapshot(10, 0, backend=backend, trigger=trigger)
    return dataclasses.replace(snapshot, **changes)


async def press_b(snapshot) -> list:
    source = FixedSource(snapshot)
    app = MuxtopApp(source, interval=None)
    async with app.run_test(size=(160, 48)) as pilot:
        await until(lambda: app.latest is not None, pilot)
        await pilot.press("b")
        await pilot.pause()
        notices = [str(n.message) for n in app._notifications]
        return [c for c in source.sent if isinstance(c, Switch)], notices


@pytest.fixture
def no_io_uring(monkeypatch):
    monkeypatch.setattr(uring, "_available", uring.explain(1))  # as under a seccomp filter


@pytest.mark.skipif(uring.unavailable() is not None, reason="io_uring unavailable here")
async def test_b_goes_from_epoll_to_uring_and_on_to_select():
    assert (await press_b(on("epoll")))[0] == [Switch(backend="uring")]
    assert (await press_b(on("uring")))[0] == [Switch(backend="select")]


async def test_b_passes_over_uring_where_io_uring_is_unavailable(no_io_uring):
    assert (await press_b(on("epoll")))[0] == [Switch(backend="select")]


async def test_b_says_why_when_only_an_unavailable_uring_could_take_the_mode(no_io_uring):
    sent, notices = await press_b(on("epoll", "edge"))
    assert sent == []
    assert any("uring is unavailable" in n and "seccomp" in n for n in notices), notices


def test_the_palette_and_the_action_table_say_why_uring_is_missing(no_io_uring):
    assert "uring is unavailable" in actions.unavailable("uring")
    assert actions.unavailable("epoll") is None
    assert not actions.can_take("uring", "level", 10)


async def test_the_header_and_the_rings_row_show_its_figures():
    snapshot = on("uring")
    control = next(v for v in snapshot.connections if v.kind == "control")
    row = control._replace(cid=-2, fd=3, kind=KIND_EPOLL, peer="io_uring instance")
    snapshot = dataclasses.replace(snapshot, rings=(RING._replace(fd=3),),
                                   connections=(row, *snapshot.connections))
    app = MuxtopApp(FixedSource(snapshot), interval=None)
    async with app.run_test(size=(200, 48)) as pilot:
        await until(lambda: app.latest is not None, pilot)
        header = app.dashboard.header.render().plain
        assert "SQ 7,340/7,341 CQ 9,000/9,003" in header and "in flight 41" in header
        assert " ring SQ" in header, header  # apart from what comes before it (was "acceptedring")
        table = app.dashboard.table
        table.move_to(next(i for i, v in enumerate(table.rows) if v.fd == 3))
        await pilot.press("enter")
        await until(lambda: isinstance(app.screen, DetailScreen), pilot)
        await pilot.pause()
        shown = app.export_screenshot()
        for words in ("io_uring", "SQ head / tail", "3 completions not yet reaped",
                      "single_mmap nodrop", "1.83 SQEs per enter"):
            assert words.replace(" ", "&#160;") in shown or words in shown, words
