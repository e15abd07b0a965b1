"""The main screen: header, connection table, the lower panels, filter box, footer.

What the lower half holds follows the view: where the source sees wait calls, the ready-list
log; then a side column (floods, diagnoses, trends), or, for another process, its epoll
interest lists with the findings. Its keys act on what it shows (sort, filter, freeze, the selected
connection); the keys that steer the engine (b, t) and the display (space, q, ?) are the
app's, so they work everywhere.
"""

from __future__ import annotations

from typing import ClassVar

from textual import events
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.widgets import Footer, Input, Static

from muxtop.replay.player import Player
from muxtop.snapshot import Snapshot
from muxtop.ui import layout
from muxtop.ui.rows import can_act_on
from muxtop.ui.views import ENGINE, SourceView
from muxtop.ui.widgets.conn_table import ConnTable
from muxtop.ui.widgets.diagnoses import DiagnosesPanel
from muxtop.ui.widgets.flood_panel import FloodPanel
from muxtop.ui.widgets.header import StatusHeader
from muxtop.ui.widgets.interest_lists import InterestLists
from muxtop.ui.widgets.lesson_panel import LOWER, WATCHED, LessonPanel
from muxtop.ui.widgets.ready_log import ReadyLog
from muxtop.ui.widgets.sparklines import Trends
from muxtop.ui.widgets.step_panel import StepPanel
from muxtop.ui.widgets.timeline import TimelineBar


class DashboardScreen(Screen[None]):
    ready = False  # its widgets are mounted and found
    BINDINGS: ClassVar[list[BindingType]] = [
        # First here, so the footer shows them first and a narrow one never cuts them off
        # (the footer lists the screen's keys before the app's).
        Binding("question_mark,f1", "app.help", "help", key_display="?",
                tooltip="Keys, columns, and how select, poll and epoll work"),
        Binding("q", "app.quit", "quit", tooltip="Quit"),
        # The two keys muxtop is about: at 80 columns the footer cut them off after the table's.
        Binding("b", "app.cycle_backend", "backend", tooltip="Switch to the next backend live"),
        Binding("t", "app.cycle_trigger", "trigger",
                tooltip="Switch to the next trigger mode the backend supports"),
        Binding("enter", "details", "details", tooltip="Everything about the selected fd"),
        Binding("k", "close_connection", "close", tooltip="Close the selected connection"),
        Binding("p", "toggle_reading", "pause rd",
                tooltip="Stop or resume reading the selected connection"),
        Binding("s", "cycle_sort", "sort", tooltip="Sort by the next column"),
        Binding("r", "reverse_sort", "reverse", show=False, tooltip="Reverse the sort order"),
        Binding("slash", "filter", "filter", key_display="/",
                tooltip="Show only rows whose fd, address, state or flags match"),
        Binding("z", "freeze", "freeze", tooltip="Keep the row order; values still change"),
        Binding("e", "toggle_empty", "empty waits",
                tooltip="Hide or show waits that returned nothing"),
        Binding("escape", "clear_filter", "clear filter", show=False),
    ]

    def __init__(self, view: SourceView = ENGINE, player: Player | None = None,
                 read_only: str | None = None) -> None:
        """`player`: the source is a recording; a timeline bar shows where it is."""
        super().__init__()
        self.view = view
        self.player = player
        self.read_only = read_only

    def compose(self) -> ComposeResult:
        yield StatusHeader(self.view, id="header")
        yield ConnTable(id="conns")
        with Horizontal(id="lower"):
            if self.view.has_waits:
                yield ReadyLog(id="ready-log", label=self.view.wait_label)
            if self.view.has_waits and not self.view.interest_lists:
                yield StepPanel(id="step")  # shown while the engine is stepping
            if self.view.interest_lists:
                # Beside the ready-list log (a traced process) it takes the narrower part.
                yield InterestLists(id="interest-lists",
                                    classes="-beside-log" if self.view.has_waits else None)
            else:
                with Vertical(id="side"):
                    yield DiagnosesPanel(id="diagnoses")  # the most urgent on top
                    yield FloodPanel(id="flood-panel")
                    yield Trends(id="trends")
        yield Input(id="filter", placeholder="filter rows by fd, address, state or flag · "
                    "enter keeps it · esc clears")
        if self.player is not None:
            yield TimelineBar(self.player, read_only=self.read_only, id="timeline")
        yield LessonPanel(id="lesson")
        yield Footer()
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
        self.interest_lists = self._one(InterestLists)
        self.step = self._one(StepPanel)
        self.side = self._one("#side")
        self.timeline = self._one(TimelineBar)
        self.lesson = self.query_one(LessonPanel)
        self._watched_panel: str | None = None
        self._side_state: tuple[bool, bool] | None = None
        self.side_changed()
        self.table.focus()
        self.ready = True
        self.app.tick()  # type: ignore[attr-defined]  # the first Snapshot, now

    def on_resize(self, event: events.Resize) -> None:
        width, height = event.size
        least = layout.MIN_SIZE
        tiny = width < least[0] or height < least[1]
        self.set_class(tiny, "-tiny")
        if tiny:
            self.query_one("#too-small", Static).update(
                f"muxtop needs a terminal of at least {least[0]}×{least[1]};"
                f" this one is {width}×{height}.\nMake it larger, or press q to quit.")
        self.query_one(Footer).compact = width < layout.COMPACT_FOOTER
        if self.ready:
            self._side_state = None
            self.side_changed()

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
        for panel in (self.ready_log, self.step, self.diagnoses, self.interest_lists):
            if panel is not None:
                panel.show(snapshot)
        self.side_changed()
        if self.trends is not None:
            self.trends.redraw()

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
        state = (self.floods.has_class("-shown"), self.diagnoses.has_class("-shown"))
        if state == self._side_state:
            return
        self._side_state = state
        self.set_class(any(state), "-side-busy")
        parts = [name for name, on in zip(("floods", "diagnoses"), state) if on][::-1]
        trends = [] if self.has_class("-narrow") else ["trends"]
        self.side.border_title = " · ".join([*parts, *trends])

    def on_screen_resume(self) -> None:
        # Back from a detail or help screen: the app skipped this screen meanwhile.
        shown = getattr(self.app, "shown", None)
        if shown is not None and self.ready:
            self.show(shown)

    # ---- keys --------------------------------------------------------------------------

    def why_not(self, action: str) -> str | None:
        """Why one of this screen's keys cannot act now; None when it can."""
        if action in ("close_connection", "toggle_reading"):
            if not self.app.can_command:  # type: ignore[attr-defined]
                return self.app.source.read_only  # type: ignore[attr-defined]
            if not can_act_on(self.table.selected):
                return "select an open connection first (the listener, control and epoll " \
                    "fds are not connections)"
        return None

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if not self.ready:
            return None
        if action in ("close_connection", "toggle_reading"):
            return self.why_not(action) is None or None
        if action == "details":
            return self.table.selected is not None or None
        if action == "clear_filter":
            return bool(self.table.model.query) or self.filter_box.has_class("-active")
        if action == "toggle_empty":
            return self.ready_log is not None  # False: no ready-list log in this view
        return True

    def action_details(self) -> None:
        view = self.table.selected
        if view is not None:
            self.app.show_details(view)  # type: ignore[attr-defined]

    def action_close_connection(self) -> None:
        self.app.close_connection(self.table.selected)  # type: ignore[attr-defined]

    def action_toggle_reading(self) -> None:
        self.app.toggle_reading(self.table.selected)  # type: ignore[attr-defined]

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
        self.app.update_header()  # type: ignore[attr-defined]

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
        self.app.show_details(event.view)  # type: ignore[attr-defined]
