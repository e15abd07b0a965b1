"""The main screen: header, connection table, the lower panels, filter box, footer.

What the lower half holds follows the view: where the source sees wait calls, the ready-list
log; then a side column (floods, diagnoses, trends), or, for another process, its epoll
interest lists with the findings. Its keys act on what it shows (sort, filter, freeze, the selected
connection); the keys that steer the engine (b, t) and the display (space, q, ?) are the
app's, so they work everywhere. Both come from the table of actions (muxtop.ui.actions), and the
footer (widgets/key_bar.py) shows, from it, the keys that act now.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar

from textual import events
from textual.app import ComposeResult
from textual.binding import BindingType
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.screen import Screen
from textual.widgets import Input, Static

from muxtop.replay.player import Player
from muxtop.snapshot import Snapshot
from muxtop.ui import actions, layout
from muxtop.ui.messages import ConnectionAction, ShowDetails
from muxtop.ui.views import ENGINE, SourceView
from muxtop.ui.widgets.conn_table import ConnTable
from muxtop.ui.widgets.diagnoses import DiagnosesPanel
from muxtop.ui.widgets.flood_panel import FloodPanel
from muxtop.ui.widgets.header import StatusHeader
from muxtop.ui.widgets.interest_lists import InterestLists
from muxtop.ui.widgets.key_bar import KeyBar
from muxtop.ui.widgets.lesson_panel import LOWER, WATCHED, LessonPanel
from muxtop.ui.widgets.ready_log import ReadyLog
from muxtop.ui.widgets.sparklines import Trends
from muxtop.ui.widgets.step_panel import StepPanel
from muxtop.ui.widgets.target_bar import TargetBar
from muxtop.ui.widgets.timeline import TimelineBar
from muxtop.ui.widgets.toxics_panel import ToxicsPanel


class DashboardScreen(Screen[None]):
    ready = False  # its widgets are mounted and found
    # Its keys, from the table of actions (muxtop.ui.actions): the app decides when each acts.
    BINDINGS: ClassVar[list[BindingType]] = actions.bindings(screen=True)

    class Mounted(Message):
        """The screen's widgets are up: time for the first Snapshot."""

    class Resumed(Message):
        """Back from a detail or help screen: the screen wants the Snapshot on screen."""

    class FreezeChanged(Message):
        """The table's row order was frozen or let go: the header says so."""

    def __init__(self, view: SourceView = ENGINE, player: Player | None = None,
                 read_only: str | None = None,
                 keys: Callable[[], list[actions.Action]] = list, targets=None) -> None:
        """`player`: the source is a recording; a timeline bar shows where it is. `keys`: the
        actions that act now, for the footer. `targets`: several processes (a TargetList);
        a line above the table lists them."""
        super().__init__()
        self.targets = targets
        self.view = view
        self.player = player
        self.read_only = read_only
        self.keys = keys

    def compose(self) -> ComposeResult:
        yield StatusHeader(self.view, id="header")
        if self.targets is not None:
            yield TargetBar(self.targets, id="targets")
        yield ConnTable(id="conns")
        with Horizontal(id="lower"):
            if self.view.has_waits:
                yield ReadyLog(id="ready-log", label=self.view.wait_label,
                               newest="LIVE" if self.player is None else "REPLAY")
            if self.view.has_waits and not self.view.interest_lists:
                yield StepPanel(id="step")  # shown while the engine is stepping
            if self.view.interest_lists:
                # Beside the ready-list log (a traced process) it takes the narrower part.
                yield InterestLists(id="interest-lists",
                                    classes="-beside-log" if self.view.has_waits else None)
            else:
                with Vertical(id="side"):
                    yield DiagnosesPanel(id="diagnoses")  # the most urgent on top
                    yield ToxicsPanel(id="toxics")  # a proxy's: its proxies and toxics
                    yield FloodPanel(id="flood-panel")
                    yield Trends(id="trends")
        yield Input(id="filter", placeholder="filter rows by fd, address, state or flag · "
                    "enter keeps it · esc clears")
        if self.player is not None:
            yield TimelineBar(self.player, read_only=self.read_only, id="timeline")
        yield LessonPanel(id="lesson")
        yield KeyBar(self.keys, id="keys")
        yield Static(id="too-small")

    def on_mount(self) -> None:
        self.table = self.query_one(ConnTable)
        self.table.use(self.view)
        self.header = self.query_one(StatusHeader)
        self.filter_box = self.query_one("#filter", Input)
        # The panels this view has: each is None where the view shows another instead.
        self.ready_log = self._one(ReadyLog)
        self.trends = self._one(Trends)
        self.floods = self._one(FloodPanel)
        self.diagnoses = self._one(DiagnosesPanel)
        self.toxics = self._one(ToxicsPanel)
        self.interest_lists = self._one(InterestLists)
        self.step = self._one(StepPanel)
        self.side = self._one("#side")
        self.timeline = self._one(TimelineBar)
        self.target_bar = self._one(TargetBar)
        self.lesson = self.query_one(LessonPanel)
        self._watched_panel: str | None = None
        self._side_state: tuple[bool, bool, bool] | None = None
        self.side_changed()
        self.table.focus()
        self.ready = True
        self.query_one(KeyBar).update_keys()
        self.post_message(self.Mounted())  # the first Snapshot, now

    def on_resize(self, event: events.Resize) -> None:
        width, height = event.size
        least = layout.MIN_SIZE
        tiny = width < least[0] or height < least[1]
        self.set_class(tiny, "-tiny")
        self.set_class(height < layout.CRAMPED, "-cramped")
        if tiny:
            self.query_one("#too-small", Static).update(
                f"muxtop needs a terminal of at least {least[0]}×{least[1]};"
                f" this one is {width}×{height}.\nMake it larger, or press q to quit.")
            self._close_what_keys_opened()
        if self.ready:
            self._side_state = None
            self.side_changed()

    def _close_what_keys_opened(self) -> None:
        """What a key opened (help, a form, the palette) would stay drawn over the notice,
        its keys live: it goes, as esc would take it. pop_screen takes a screen off the stack
        at once (pop_until_active only schedules it, and a second resize, or an esc, before
        it ran popped twice: ScreenStackError)."""
        app = self.app
        while app.screen is not self and self in app.screen_stack:
            app.pop_screen()

    def _one(self, kind):
        found = self.query(kind)
        return found.first() if found else None

    def record(self, snapshot: Snapshot) -> None:
        """Keep the trends' history (it goes on while the display is paused)."""
        if self.trends is not None:
            self.trends.record(snapshot)

    def replace_history(self, history: tuple[Snapshot, ...]) -> None:
        """The trends' samples as they were at a replay's position."""
        if self.trends is not None:
            self.trends.replace(history)

    def show(self, snapshot: Snapshot) -> None:
        """Draw a new Snapshot in the table and the lower panels (not the header: the
        app keeps that moving even while the display is paused)."""
        self.table.show(snapshot)
        for panel in (self.ready_log, self.step, self.diagnoses, self.interest_lists,
                      self.toxics):
            if panel is not None:
                panel.show(snapshot)
        self.side_changed()
        if self.trends is not None:
            self.trends.redraw()

    def show_targets(self) -> None:
        if self.target_bar is not None:
            self.target_bar.show()

    def show_lesson(self, run, snapshot: Snapshot | None) -> None:
        """The lesson panel, and the panel the lesson says to watch, highlighted."""
        self.lesson.show(run, snapshot)
        watch = None
        running = run is not None and run.phase != "done"
        if running and run.step.watch:
            watch = WATCHED.get(run.step.watch)
        # A short screen keeps, beside the lesson, the half it says to watch.
        self.set_class(running and watch not in LOWER, "-lesson-upper")
        self.set_class(running and watch in LOWER, "-lesson-lower")
        if watch == self._watched_panel:
            return
        for selector in (self._watched_panel, watch):
            if selector is not None:
                for widget in self.query(selector):
                    widget.set_class(selector == watch, "-lesson-watch")
        self._watched_panel = watch

    def show_floods(self, floods: list) -> None:
        if self.floods is not None:
            self.floods.show(floods)
            self.side_changed()

    def side_changed(self) -> None:
        """The side column grows (and the table shrinks) while it lists floods or findings;
        its title says what it holds. A layout only when that changes."""
        if self.side is None:
            return  # no side column in this view
        state = (self.floods.has_class("-shown"), self.diagnoses.has_class("-shown"),
                 self.toxics.has_class("-shown"))
        if state == self._side_state:
            return
        self._side_state = state
        self.set_class(any(state[:2]), "-side-busy")
        self.set_class(state[2], "-side-toxics")  # shown at any width, the lower half as is
        floods, diagnoses, toxics = state
        parts = [name for name, on in (("diagnoses", diagnoses), ("toxics", toxics),
                                       ("floods", floods)) if on]  # top to bottom
        trends = [] if self.has_class("-narrow") else ["trends"]
        self.side.border_title = " · ".join([*parts, *trends])

    def on_screen_resume(self) -> None:
        # Back from a detail or help screen: the app skipped this screen meanwhile.
        if self.ready:
            self.post_message(self.Resumed())

    # ---- keys --------------------------------------------------------------------------

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if not self.ready:
            return None
        return self.app.check_action(action, parameters)  # the app reads the table of actions

    def action_details(self) -> None:
        view = self.table.selected
        if view is not None:
            self.post_message(ShowDetails(view))

    def action_close_connection(self) -> None:
        self.post_message(ConnectionAction("close_connection", self.table.selected))

    def action_toggle_reading(self) -> None:
        self.post_message(ConnectionAction("toggle_reading", self.table.selected))

    def action_cycle_sort(self) -> None:
        table = self.table
        column = table.column(table.model.cycle_sort(table.shown_ids()))
        table.rebuild()
        self.notify(f"sorted by {column.label}", timeout=1.5)

    def action_reverse_sort(self) -> None:
        self.table.model.descending = not self.table.model.descending
        self.table.rebuild()

    def action_freeze(self) -> None:
        model = self.table.model
        model.frozen = not model.frozen
        self.table.rebuild()
        self.post_message(self.FreezeChanged())

    def action_toggle_empty(self) -> None:
        if self.ready_log is not None:
            self.ready_log.toggle_empty()

    def action_filter(self) -> None:
        self.filter_box.add_class("-active")
        self.filter_box.focus()

    def action_clear_filter(self) -> None:
        self.filter_box.value = ""
        self.filter_box.remove_class("-active")
        self.table.focus()

    def on_input_changed(self, event: Input.Changed) -> None:
        self.table.model.query = event.value.strip().lower()
        self.table.rebuild()  # as you type, from the Snapshot on screen
        self.refresh_bindings()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        # The table's title keeps showing the filter; `/` brings the box back to edit it.
        self.filter_box.remove_class("-active")
        self.table.focus()

    def on_conn_table_cursor_changed(self, event: ConnTable.CursorChanged) -> None:
        self.refresh_bindings()

    def on_diagnoses_panel_chosen(self, event: DiagnosesPanel.Chosen) -> None:
        """A finding picked in the panel: its fd, selected in the table."""
        table = self.table
        for i, view in enumerate(table.rows):
            if view.fd == event.fd and view.state != "closed":
                table.move_to(i)
                table.focus()
                return
        self.notify(f"fd {event.fd} is not in the table now (filtered out, or closed)",
                    severity="warning", timeout=4)

    def on_conn_table_chosen(self, event: ConnTable.Chosen) -> None:
        self.post_message(ShowDetails(event.view))
