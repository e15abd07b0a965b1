"""The dashboard over fixed, made-up Snapshots (a frozen clock): snapshot images of the
screens, network text shown literally, sort/filter/freeze, notices, a failing source."""

from __future__ import annotations

import dataclasses
import os
import random
from pathlib import Path

import pytest
from ui_helpers import FunctionSource, detail_body, until

from muxtop.bench import synthetic
from muxtop.commands import CloseConnection, Outcome, PauseReading, Switch, Watch
from muxtop.kernel import uring
from muxtop.snapshot import Notice, WaitRecord
from muxtop.source import FixedSource
from muxtop.ui import format as fmt
from muxtop.ui.app import MuxtopApp
from muxtop.ui.rows import ConnRows, highest_open_fd

pytestmark = pytest.mark.timeout(60)
SIZE = (160, 48)
SNAPSHOTS = Path(__file__).parent / "snapshots"
TRICKY_PEERS = {3: "[bold]x[/]", 4: "[red", 6: "evil\x1b[2Jpeer"}


def fixed(ticks: int = 6, n: int = 40, **settings) -> FixedSource:
    return FixedSource([synthetic.snapshot(n, tick, **settings) for tick in range(ticks)])


async def play(app: MuxtopApp, pilot, steps: int) -> None:
    """Advance the fixed source `steps` Snapshots, the way the poll timer would."""
    for _ in range(steps):
        app.source.advance()
        app.tick()
        await pilot.pause()


def assert_snapshot(name: str, svg: str, tmp_path: Path) -> None:
    """Compare with tests/snapshots/NAME.svg; MUXTOP_UPDATE_SNAPSHOTS=1 rewrites it."""
    expected = SNAPSHOTS / f"{name}.svg"
    if os.environ.get("MUXTOP_UPDATE_SNAPSHOTS") or not expected.exists():
        SNAPSHOTS.mkdir(exist_ok=True)
        expected.write_text(svg, encoding="utf-8")
        if not os.environ.get("MUXTOP_UPDATE_SNAPSHOTS"):
            pytest.fail(f"created {expected}; look at it, then re-run")
        return
    if expected.read_text(encoding="utf-8") != svg:
        actual = tmp_path / f"{name}.svg"
        actual.write_text(svg, encoding="utf-8")
        pytest.fail(f"{name} differs from {expected}: see {actual} "
                    "(MUXTOP_UPDATE_SNAPSHOTS=1 accepts it)")


# ---- snapshot images ----------------------------------------------------------------------

async def test_main_screen_snapshot(tmp_path):
    source = fixed(peers=TRICKY_PEERS)
    app = MuxtopApp(source, interval=None)
    async with app.run_test(size=SIZE) as pilot:
        await play(app, pilot, 5)
        assert_snapshot("main_screen", app.export_screenshot(), tmp_path)


async def test_detail_view_snapshot(tmp_path):
    source = fixed()
    app = MuxtopApp(source, interval=None)
    async with app.run_test(size=SIZE) as pilot:
        await play(app, pilot, 3)
        table = app.dashboard.table
        table.move_to(next(i for i, v in enumerate(table.rows) if v.fd == 12))  # diagnosed
        await pilot.press("enter")
        await until(lambda: detail_body(app), pilot, what="the detail view")
        assert_snapshot("detail_view", app.export_screenshot(), tmp_path)


async def test_renders_are_deterministic():
    shots = []
    for _ in range(2):
        app = MuxtopApp(fixed(), interval=None)
        async with app.run_test(size=SIZE) as pilot:
            await play(app, pilot, 3)
            shots.append(app.export_screenshot())
    assert shots[0] == shots[1]


# ---- network text ---------------------------------------------------------------------------

async def test_network_text_is_never_markup():
    app = MuxtopApp(fixed(peers=TRICKY_PEERS), interval=None)
    async with app.run_test(size=SIZE) as pilot:
        await play(app, pilot, 1)
        table = app.dashboard.table
        lines = [table.render_line(y).text for y in range(table.size.height)]
        screen = "\n".join(lines)
        assert "[bold]x[/]" in screen
        assert "[red" in screen
        assert "\x1b" not in screen and "evil?[2Jpeer" in screen
        table.move_to(next(i for i, v in enumerate(table.rows) if v.peer == "[red"))
        await pilot.press("enter")
        body = await until(lambda: detail_body(app), pilot, what="the detail view")
        assert "[red" in body


def test_plain_and_fit_keep_cells_exact():
    assert fmt.plain("a\x1b[31mb\nc") == "a?[31mb?c"
    assert fmt.fit("127.0.0.1:8080", 8) == "127.0.0…"
    assert fmt.fit("漢字ab", 4) == "漢 …"  # wide characters count two cells
    assert fmt.fit("12", 5, right=True) == "   12"


def test_short_event_names_for_every_mask():
    """The table behind events.short gives what naming the bits one by one gives, for
    every mask of the known bits and for masks with unknown bits too (an attached
    process's epoll events can be any 32 bits)."""
    from muxtop.events import _NAMES, short

    def named(mask: int) -> str:
        return "".join(ch for bit, ch in _NAMES if mask & bit) or "-"

    rng = random.Random(3)
    for mask in [*range(1 << 14), *(rng.getrandbits(32) for _ in range(2000))]:
        assert short(mask) == named(mask)
    assert short(0) == "-" and short(1 | 4) == "RW"


def test_formats():
    # Bytes in B, KiB, MiB; counts in k and M; each at most 7 cells.
    assert fmt.size(None) == "-" and fmt.size(512) == "512B" and fmt.size(300 * 1024) == "300KiB"
    assert fmt.size(5 * 2**20) == "5.0MiB" and fmt.rate(1536) == "1.5KiB/s"
    assert fmt.duration(12.3e-6) == "12.3µs" and fmt.duration(0.25) == "250ms"
    assert fmt.age(125) == "2m05s" and fmt.uptime(3725) == "1:02:05"
    assert fmt.timeout(None) == "inf" and fmt.count(123_456) == "123.5k"
    assert fmt.count(1_234_567) == "1.23M" and fmt.count(19_600_000) == "19.6M"
    assert fmt.cut_words("REFUSED: select cannot watch fd 1025: its fd_set", 34) == \
        "REFUSED: select cannot watch fd…"


# ---- sort, filter, freeze -------------------------------------------------------------------

def test_rows_sort_pins_the_listener_and_control_on_top():
    rows = ConnRows()
    rows.set_sort("bytes_in")
    shown = rows.update(synthetic.snapshot(30, 1))
    assert [v.kind for v in shown[:2]] == ["listener", "control"]
    body = [v.bytes_in for v in shown[2:]]
    assert body == sorted(body, reverse=True)


def test_rows_take_the_engines_fd_order_as_it_is_and_sort_anything_else():
    snapshot = synthetic.snapshot(30, 1)  # made as the engine makes it: pinned, then by fd
    rows = ConnRows()
    assert rows.update(snapshot) is snapshot.connections  # the default order: no copy
    # Without the promise, the same rows shuffled come out in the same order.
    views = list(snapshot.connections[2:])  # the engine lists the pinned rows first anyway
    random.Random(7).shuffle(views)
    shuffled = dataclasses.replace(snapshot, connections=(*snapshot.connections[:2], *views),
                                   fd_order=False)
    assert list(rows.update(shuffled)) == list(snapshot.connections)
    # Frozen from the fd order, then a Snapshot in another order: the order on screen stays.
    rows.frozen = True
    rows.update(snapshot)
    assert list(rows.update(shuffled)) == list(snapshot.connections)
    rows.frozen = False
    rows.descending = True  # reversed: sorted after all
    body = [v.fd for v in rows.update(snapshot)[2:]]
    assert body == sorted(body, reverse=True)


async def test_filter_narrows_rows_as_you_type():
    app = MuxtopApp(fixed(n=300), interval=None)
    async with app.run_test(size=SIZE) as pilot:
        await play(app, pilot, 1)
        table = app.dashboard.table
        assert len(table.rows) == 304
        await pilot.press("slash", "1", "0", ".", "0", ".", "1", ".", "2", "5")
        # The table filters on the input's Changed message, a hop after each key.
        await until(lambda: len(table.rows) == 1, pilot, what=lambda: f"{len(table.rows)} rows")
        assert [v.peer for v in table.rows] == ["10.0.1.25:40274"]
        assert "matching" in table.border_title
        await pilot.press("enter")  # keep the filter, back to the table
        await play(app, pilot, 1)  # a new Snapshot keeps it
        assert len(table.rows) == 1
        await pilot.press("escape")
        await until(lambda: len(table.rows) == 304, pilot, what=lambda: f"{len(table.rows)} rows")


async def test_sort_key_and_header_click():
    app = MuxtopApp(fixed(), interval=None)
    async with app.run_test(size=SIZE) as pilot:
        await play(app, pilot, 1)
        model = app.dashboard.table.model
        await pilot.press("s")  # the next sortable column, left to right: peer
        assert model.sort == "peer" and not model.descending
        await pilot.press("s", "s", "s", "s", "s")  # state, interest, last ev, app-out, rx-q
        assert model.sort == "rx_queue" and model.descending
        await pilot.press("r")
        assert not model.descending
        # The "in" header: click it once (biggest first), twice (reversed).
        table = app.dashboard.table
        x = table.render_line(0).text.index("  in ") + 3
        await pilot.click("#conns", offset=(x + 1, 1))  # +1: the border
        assert model.sort == "bytes_in" and model.descending
        await pilot.click("#conns", offset=(x + 1, 1))
        assert not model.descending


async def test_freeze_keeps_row_order_while_values_change():
    app = MuxtopApp(fixed(), interval=None)
    async with app.run_test(size=SIZE) as pilot:
        await play(app, pilot, 1)
        table = app.dashboard.table
        table.model.set_sort("rx_queue")
        table.rebuild()
        await pilot.press("z")
        order = [v.cid for v in table.rows]
        values = [v.bytes_in for v in table.rows]
        await play(app, pilot, 2)
        assert [v.cid for v in table.rows] == order
        assert [v.bytes_in for v in table.rows] != values
        assert "ORDER FROZEN" in app.dashboard.header.render().plain
        await pilot.press("z")
        assert [v.cid for v in table.rows] != order  # sorted by rx-q again


async def test_cursor_follows_its_connection_when_rows_reorder():
    app = MuxtopApp(fixed(), interval=None)
    async with app.run_test(size=SIZE) as pilot:
        await play(app, pilot, 1)
        table = app.dashboard.table
        table.model.set_sort("rx_queue")
        table.rebuild()
        table.move_to(10)
        cid = table.selected.cid
        for _ in range(3):
            await play(app, pilot, 1)
            assert table.selected.cid == cid


async def test_hide_empty_waits_and_scroll_back_stays_on_the_same_records():
    app = MuxtopApp(fixed(), interval=None)
    async with app.run_test(size=SIZE) as pilot:
        await play(app, pilot, 1)
        log = app.dashboard.ready_log
        assert log._count() == 400
        await pilot.press("e")
        empty = sum(1 for w in app.shown.waits if not w.ready)
        assert empty and log.hide_empty and log._count() == 400 - empty
        log.focus()
        log.scroll_to(y=50, animate=False, immediate=True)
        await pilot.pause()
        top = log._top_seq()
        await play(app, pilot, 1)  # 400 newer waits arrive
        assert log._top_seq() == top


@pytest.mark.parametrize("seq", [1_760_734, 123_456_789])
async def test_ready_list_seqs_of_millions_read_whole_at_80x24(seq):
    from recordings import wait

    shot = synthetic.snapshot(10, 0, wait_count=0)
    waits = tuple(wait(s, start=shot.taken_at - (seq - s) * 0.001)
                  for s in range(seq - 30, seq + 1))
    app = MuxtopApp(FixedSource(dataclasses.replace(shot, waits=waits)), interval=None)
    async with app.run_test(size=(80, 24)) as pilot:
        log = app.dashboard.ready_log
        newest = f"{seq:,}" if len(f"{seq:,}") <= 10 else str(seq)
        await until(lambda: newest in log.render_line(1).text, pilot,
                    what=lambda: log.render_line(1).text)
        assert "…" not in log.render_line(1).text.split()[0]


@pytest.mark.parametrize(("registered", "shown"), [(1038, "2/1,038"), (1_000_001, "2/1000001")])
async def test_the_ready_lists_registered_count_reads_as_the_headers(registered, shown):
    """With its commas, as the header writes 1,038, while they fit the column; whole
    without them past it."""
    shot = synthetic.snapshot(10, 0, wait_count=0)
    waits = tuple(WaitRecord(s, shot.taken_at - (40 - s) * 0.001, 0.25, 3e-6, registered,
                             (7, 1, 8, 5), 2, None) for s in range(1, 41))
    app = MuxtopApp(FixedSource(dataclasses.replace(shot, waits=waits)), interval=None)
    async with app.run_test(size=(160, 48)) as pilot:
        log = app.dashboard.ready_log
        await until(lambda: shown in log.render_line(1).text, pilot,
                    what=lambda: log.render_line(1).text)


async def test_a_probe_reads_as_one_in_the_ready_list():
    """A probe's timeout is 0 by its nature; its line said '0 … nothing ready' after every
    idle wait, with nothing to say why."""
    shot = synthetic.snapshot(10, 0, wait_count=0)
    waits = (WaitRecord(1, shot.taken_at - 0.3, 0.25, 0.25, 12, (), 0, None),
             WaitRecord(2, shot.taken_at - 0.05, 0.0, 4e-6, 12, (), 0, 3e-6))
    app = MuxtopApp(FixedSource(dataclasses.replace(shot, waits=waits)), interval=None)
    async with app.run_test(size=(160, 48)) as pilot:
        log = app.dashboard.ready_log
        await until(lambda: "probe" in log.render_line(1).text, pilot,
                    what=lambda: log.render_line(1).text)
        assert "probe" not in log.render_line(2).text and "250ms" in log.render_line(2).text


# ---- commands, notices and failures ---------------------------------------------------------

async def test_keys_send_commands():
    source = fixed()
    app = MuxtopApp(source, interval=None)
    async with app.run_test(size=SIZE) as pilot:
        await play(app, pilot, 1)
        table = app.dashboard.table
        table.move_to(next(i for i, v in enumerate(table.rows) if v.fd == 8))
        # epoll -> uring -> select (uring is passed over where io_uring is unavailable)
        via = ["uring"] if uring.unavailable() is None else []
        await pilot.press("k", "p", *["b"] * (len(via) + 1))
        await pilot.pause()
        # A second b or t before the next Snapshot goes on from the mode asked for: after
        # b (select), t is greyed out, since select is level-triggered only.
        assert app.check_action("cycle_trigger", ()) is None
        await pilot.press("t")
        sent = [c for c in source.sent if not isinstance(c, Watch)]
        assert sent == [CloseConnection(8), PauseReading(8, True),
                        *(Switch(backend=name) for name in via), Switch(backend="select")]
        assert any(isinstance(c, Watch) and 8 in c.fds for c in source.sent)


async def test_read_only_source_greys_out_engine_keys():
    snapshots = [synthetic.snapshot(20, t) for t in range(3)]
    app = MuxtopApp(FixedSource(snapshots[0], commands=False), interval=None)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        app.dashboard.table.move_to(4)
        for action in ("cycle_backend", "cycle_trigger"):
            assert app.check_action(action, ()) is None
        for action in ("close_connection", "toggle_reading"):
            assert app.dashboard.check_action(action, ()) is None
        assert "READ-ONLY" in app.dashboard.header.render().plain
        await pilot.press("b", "k")  # nothing happens, nothing breaks


async def test_each_notice_is_shown_once_and_refusals_show_a_badge():
    notice = Notice(7, 1050.0, "warning", "switch refused: select cannot watch fd 1500")
    later = Notice(8, 1051.0, "error", "fd 9: boom; closed it")
    source = FixedSource([
        synthetic.snapshot(10, 0, notices=(notice,), refused="select cannot watch fd 1500"),
        synthetic.snapshot(10, 1, notices=(notice,), refused="select cannot watch fd 1500"),
        synthetic.snapshot(10, 2, notices=(notice, later)),
    ])
    app = MuxtopApp(source, interval=None)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        assert "REFUSED" in app.dashboard.header.render().plain
        await play(app, pilot, 2)
        messages = [n.message for n in app._notifications]
        assert messages.count(notice.text) == 1 and messages.count(later.text) == 1


async def test_engine_error_and_failing_source_do_not_crash():
    calls = {"n": 0}
    good = synthetic.snapshot(10, 0, error="engine stopped: OSError(9)", running=False)

    def latest():
        calls["n"] += 1
        if calls["n"] > 2:
            raise RuntimeError("source broke")
        return good

    app = MuxtopApp(FunctionSource(latest), interval=None)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        assert "ENGINE STOPPED" in app.dashboard.header.render().plain
        app.tick()
        app.tick()
        await pilot.pause()
        assert "SOURCE FAILED" in app.dashboard.header.render().plain
        titles = [n.title for n in app._notifications]
        assert "engine stopped" in titles and "snapshot source" in titles
        await pilot.press("s", "space", "e")  # still alive
        assert app.is_running


async def test_refused_outcome_without_engine_notice_is_told():
    source = FixedSource(synthetic.snapshot(10, 0),
                         answer=lambda c: Outcome(False, "no such fd"))
    app = MuxtopApp(source, interval=None)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        app.dashboard.table.move_to(4)
        await pilot.press("k")  # the tick close_connection asks for tells the outcome
        await until(lambda: any(n.message == "no such fd" for n in app._notifications), pilot,
                    what=lambda: f"notifications {[n.message for n in app._notifications]}")


def test_the_colour_filter_memo_gives_what_textual_filter_gives():
    """FramedLines maps Styles through Textual's ANSI-to-truecolour filter with a memo of its
    own: the same Segments as the filter's `apply`, for truecolour, ANSI, dim and no style,
    on first sight and from the memo."""
    from rich.segment import Segment
    from rich.style import Style
    from rich.terminal_theme import MONOKAI
    from textual.color import Color
    from textual.filter import ANSIToTruecolor

    from muxtop.ui.widgets.line_api import _filtered

    line_filter, background = ANSIToTruecolor(MONOKAI), Color(10, 20, 30)
    lines = [
        [Segment("plain ", Style(color="#336699")), Segment("none", None)],
        [Segment("truecolour ", Style(color="#112233", bgcolor="#445566", bold=True)),
         Segment("ansi ", Style(color="red")), Segment("dim", Style(color="#808080", dim=True)),
         Segment("meta", Style(color="green") + Style.from_meta({"offset": (1, 2)}))],
        [Segment("bg ", Style(bgcolor="blue")), Segment("x", Style())],
    ]
    memo: dict = {}
    for _ in range(2):  # first sight, then from the memo
        for line in lines:
            ours = [(text, style) for text, style, _ in _filtered(line_filter, line,
                                                                background, memo)]
            theirs = [(text, style) for text, style, _ in line_filter.apply(line, background)]
            assert ours == theirs
    assert _filtered(line_filter, lines[0], background, memo) is lines[0]  # nothing to do


async def test_the_trends_keep_all_four_under_a_lessons_border_and_can_be_selected():
    """Trends is one Line-API widget: its height is its twelve lines whatever border a lesson
    puts round it, and a mouse selection copies its text, not its CSS name."""
    from textual.selection import Selection

    app = MuxtopApp(fixed(), interval=None)
    async with app.run_test(size=SIZE) as pilot:
        await play(app, pilot, 2)
        trends = app.dashboard.trends
        assert trends.content_region.height == 12
        trends.add_class("-lesson-watch")  # a heavy border, as a lesson watching it gives
        await pilot.pause()
        assert trends.content_region.height == 12
        lines = [trends.render_line(y).text for y in range(12)]
        assert lines[9].startswith("cpu per wait call")
        text, end = trends.get_selection(Selection(None, None))
        assert text.splitlines()[0].startswith("waits/s") and "max" in text.splitlines()[0]
        assert len(text.splitlines()) == 12 and end == "\n"


@pytest.mark.parametrize("theme", ["textual-dark", "textual-light", "ansi-dark"])
async def test_framed_lines_draw_what_textual_draws(theme):
    """FramedLines (ui/widgets/line_api.py) draws content rows around Textual's StylesCache:
    every widget using it must give, line by line, the segments Textual's own path gives (a
    Textual upgrade that changes how rows are framed fails here, not on screen)."""
    from textual.geometry import Region
    from textual.widget import Widget

    from muxtop.ui.widgets.line_api import FramedLines

    app = MuxtopApp(fixed(), interval=None, theme=theme)
    async with app.run_test(size=SIZE) as pilot:
        await play(app, pilot, 4)
        widgets = [w for w in app.screen.walk_children() if isinstance(w, FramedLines)
                   and w.display and w.region.height]
        assert len(widgets) >= 4  # the table, the log, the header, the trends
        for widget in widgets:
            width, height = widget.region.size
            crop = Region(0, 0, width, height)
            ours = widget.render_lines(crop)
            widget._styles_cache.clear()
            theirs = Widget.render_lines(widget, crop)
            assert [list(s) for s in ours] == [list(s) for s in theirs], type(widget).__name__


@pytest.mark.parametrize("n", [0, 1, 40, 3000])
def test_the_highest_open_fd_is_found_from_the_end_of_an_fd_ordered_snapshot(n):
    """The select key's FD_SETSIZE check read every row of every Snapshot; in the engine's fd
    order the answer is the last open row (or a pinned one): the same answer as that pass."""
    def every_row(snapshot) -> int:
        return max((c.fd for c in snapshot.connections if c.state != "closed"), default=-1)

    rng = random.Random(n)
    base = synthetic.snapshot(n, 1, closed=3)  # the closed rows come last, on the highest fds
    views = list(base.connections)
    high_listener = views[0]._replace(fd=n + 50)  # a listener opened late: a high fd, pinned
    for variant in (views, [high_listener, *views[1:]],
                    [v._replace(state="closed") if rng.random() < 0.3 and v.kind == "conn"
                     else v for v in views], views[:2]):
        for ordered in (True, False):
            snapshot = dataclasses.replace(base, connections=tuple(variant), fd_order=ordered)
            assert highest_open_fd(snapshot) == every_row(snapshot), (ordered, variant[-3:])
