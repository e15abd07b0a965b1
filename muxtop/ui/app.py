"""The muxtop dashboard: a Textual app over a Source (muxtop.source): the embedded engine,
or a read-only one such as another process (`muxtop attach`) or a recording (`muxtop
replay`). What it draws for each kind of picture comes from the source's SourceView
(muxtop.ui.views), never from asking which source it has; what else a source can do comes
as data too: a `player` (a recording: the replay keys and a timeline), a `recorder` (R).

The app polls the source with `set_interval` (4 Hz, the engine's publish rate) and redraws
only when a new Snapshot arrived; everything on screen is a function of the latest Snapshot
plus UI state (selection, sort, filter, pause). It never blocks on the engine: commands go
out through the source and their Futures are polled on the next tick, and the engine's
Notices come back as notifications, each shown once. Floods launched from here (f, F) are
child processes read on their own threads; the tick only looks at what they last said, and
quitting stops them.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Iterable
from concurrent.futures import Future
from functools import partial
from pathlib import Path
from typing import ClassVar

from textual import events
from textual.app import App, SystemCommand
from textual.binding import BindingType
from textual.css.query import NoMatches
from textual.screen import Screen
from textual.theme import BUILTIN_THEMES

from muxtop.backends import BACKENDS, FD_SETSIZE, NAMES, TRIGGERS
from muxtop.commands import (
    CloseConnection,
    Continue,
    PauseReading,
    SetLab,
    Step,
    Switch,
    Watch,
)
from muxtop.engine.source import EngineSource
from muxtop.flood.process import DEFAULT_FLOOD, IDLE_HERD, FloodProcess, FloodSettings
from muxtop.lessons.format import Lesson, LessonError
from muxtop.lessons.format import builtin as builtin_lessons
from muxtop.record.control import Recordable, RecorderControl
from muxtop.record.recorder import file_size
from muxtop.record.writer import RecordWriteError
from muxtop.snapshot import ConnView, Snapshot
from muxtop.source import Source
from muxtop.ui import actions, layout, pacing
from muxtop.ui import format as fmt
from muxtop.ui.floods import Floods
from muxtop.ui.hangup import HANGUP_EVERY, TerminalWatch, driver_for
from muxtop.ui.lesson import LessonRun
from muxtop.ui.rows import can_act_on
from muxtop.ui.screens.dashboard import DashboardScreen
from muxtop.ui.screens.detail import DetailScreen
from muxtop.ui.screens.flood_form import FloodForm
from muxtop.ui.screens.help import HelpScreen
from muxtop.ui.screens.lab_menu import LabMenu
from muxtop.ui.screens.lesson_picker import LessonPicker
from muxtop.ui.views import view_for
from muxtop.ui.widgets.timeline import TimelineBar

POLL_INTERVAL = 0.25  # the engine publishes every 0.25 s: polling faster only costs the GIL
NOTICES_AT_START = 5  # older notices than these are not replayed when the dashboard opens
BUSY_CPU_PERCENT = 75.0  # process CPU from which the panels redraw at half the rate
_SEVERITY = {"info": "information", "warning": "warning", "error": "error"}
# Their outcome comes back as an engine Notice, or in a panel (a step), or not at all.
_QUIET_COMMANDS = (Switch, Watch, Step)


class MuxtopApp(App[int]):
    CSS_PATH = Path(__file__).with_name("app.tcss")
    # Classes on the screen by its size; app.tcss lays the dashboard out by them.
    HORIZONTAL_BREAKPOINTS = layout.HORIZONTAL_BREAKPOINTS
    VERTICAL_BREAKPOINTS = layout.VERTICAL_BREAKPOINTS
    TITLE = "muxtop"
    # ctrl+p: every action by name (get_system_commands), and Textual's theme picker.
    COMMAND_PALETTE_BINDING = "ctrl+p"
    # Every key and when it acts: the table of actions (muxtop.ui.actions).
    BINDINGS: ClassVar[list[BindingType]] = actions.bindings(screen=False)

    def __init__(self, source: Source, *, duration: float | None = None,
                 interval: float | None = POLL_INTERVAL, handle_signals: bool = False,
                 flood: FloodSettings = DEFAULT_FLOOD, theme: str | None = None,
                 freeze_at_start: bool = False, lesson: Lesson | None = None) -> None:
        """`duration`: quit after that many seconds. `interval`: seconds between polls of
        the source (None: only when `tick()` is called, for tests and benchmarks). `flood`:
        what `f` launches and what the `F` form starts from (aimed at the source's server).
        `freeze_at_start`: once the first frame is up, take what exists out of the garbage
        collector's sight (muxtop.ui.pacing; for a process that runs one dashboard)."""
        super().__init__()
        self.freeze_at_start = freeze_at_start
        if theme is not None:
            self.theme = theme  # checked by the command line (THEMES)
        self.source = source
        self.view = view_for(source.kind)
        # What the source can do besides pictures and commands, as data: be played (a
        # recording), be recorded. Neither: no keys for it.
        self.player = source.player
        self.recorder: RecorderControl | None = source.recorder
        self._told: dict[int, int] = {}  # notices shown, by holder (player, recorder)
        self._jumps = 0
        self.title = self.view.title
        self.flood_settings = flood
        self.floods = Floods()
        self.herd: FloodProcess | None = None  # the idle herd `h` holds
        self.duration = duration
        self.interval = interval
        self.handle_signals = handle_signals
        self.latest: Snapshot | None = None  # the newest Snapshot taken from the source
        self.shown: Snapshot | None = None  # the one on screen (older while paused)
        self.paused = False
        self.problem: str | None = None  # the source itself failed
        self._notice_seq: int | None = None
        self._engine_error_told = False
        self._pending: list[tuple[object, Future]] = []
        self._watched: tuple[int, ...] = ()
        # backend, trigger, can_command, running free: the keys that apply follow them
        self._mode: tuple[str, str, bool, bool, bool] | None = None
        # The backend/trigger a Switch asked for, until a Snapshot shows it (or it is
        # refused): a second b or t before the next Snapshot goes on from there.
        self._intended: tuple[str, str] | None = None
        self._skipped = False  # the last Snapshot's panels were not redrawn (busy server)
        self._floods_running = False
        self._highest_fd = -1  # the latest Snapshot's highest open fd (b skips select past 1023)
        self.dashboard = DashboardScreen(self.view, self.player, source.read_only,
                                         keys=lambda: actions.footer(self.now()))
        self.lesson: LessonRun | None = None
        self._lesson_timer = None
        self._first_lesson = lesson  # started once the first Snapshot is in

    @property
    def can_command(self) -> bool:
        return self.source.read_only is None

    def notify(self, message: str, *, title: str = "", severity: str = "information",
               timeout: float | None = None, markup: bool = True) -> None:
        """Every notification of the app and its screens comes here: Notices carry a
        target's or the network's text (a process named `[/]` would be a MarkupError, one
        named `[b red]X[/]` bold red), so none is read as markup, whatever the caller asks
        (screens and widgets ask for markup by default), and control characters show as '?',
        line by line."""
        message = "\n".join(map(fmt.plain, message.split("\n")))
        super().notify(message, title=fmt.plain(title), severity=severity, timeout=timeout,
                       markup=False)

    # ---- life cycle --------------------------------------------------------------------

    def get_default_screen(self) -> DashboardScreen:
        # The base of the stack from the start: a key pressed while the app starts up
        # always finds a screen.
        return self.dashboard

    def on_mount(self) -> None:
        self.tick()
        if self.interval is not None:
            self.set_interval(self.interval, self.tick)
        if self.duration is not None:
            self.set_timer(self.duration, self.exit)
        if self.handle_signals:
            loop = asyncio.get_running_loop()
            for sig, handler in ((signal.SIGTERM, self.exit), (signal.SIGHUP, self.hang_up)):
                try:
                    loop.add_signal_handler(sig, handler)
                except (NotImplementedError, RuntimeError, ValueError):
                    pass  # not the main thread: the default handler stays
            if self.terminal.fds:  # a terminal that hangs up without a SIGHUP to us
                self.set_interval(HANGUP_EVERY,
                                  lambda: self.terminal.hung_up() and self.hang_up())

    def get_driver_class(self):
        self.terminal = TerminalWatch()
        return driver_for(super().get_driver_class(), self.terminal)

    def hang_up(self) -> None:
        """The terminal went away: end as on SIGTERM, writing nothing more to it."""
        self.terminal.detach()
        self.exit()

    def on_ready(self) -> None:
        if self.freeze_at_start:
            pacing.freeze()

    def on_unmount(self) -> None:
        if self.lesson is not None:
            self.lesson.finish()  # the server as it was, and the lesson's fds let go
        self.floods.close()  # no flood outlives the dashboard that launched it
        if self.handle_signals:
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGTERM, signal.SIGHUP):
                try:
                    loop.remove_signal_handler(sig)
                except (NotImplementedError, RuntimeError, ValueError):
                    pass

    # ---- the tick ----------------------------------------------------------------------

    def tick(self) -> None:
        """Take the latest Snapshot; if it is new, redraw what depends on it."""
        if not self.screen_stack:
            return  # exiting: the timer can fire once more after the screens are gone
        self._collect_outcomes()
        self._show_floods()
        self._told_by_capabilities()
        try:
            snapshot = self.source.latest()
        except Exception as exc:  # noqa: BLE001 - a failing source must not kill the UI
            self._source_failed(f"cannot read: {exc!r}")
            return
        if snapshot is None or not self.dashboard.ready:
            return
        snapshot = self.floods.mark(snapshot)  # the same object while nothing changed
        if snapshot is self.latest:
            return
        self.problem = None
        self.latest = snapshot
        player = self.player
        if player is not None and player.jumps != self._jumps:
            # Moved back or across the recording: the notices passed are not news.
            self._jumps = player.jumps
            self._notice_seq = max((n.seq for n in snapshot.notices), default=0)
        self._notices(snapshot)
        if player is None:
            self.dashboard.record(snapshot)  # history goes on while paused
        else:
            self.dashboard.replace_history(player.history())  # as it was at the position
        if not self.paused and not self._thin_out(snapshot):
            self.display_snapshot(snapshot)
        self.update_header()
        if self.dashboard.timeline is not None:
            self.dashboard.timeline.show()
        if self._intended == (snapshot.backend, snapshot.trigger):
            self._intended = None
        self._highest_fd = max((c.fd for c in snapshot.connections if c.state != "closed"),
                               default=-1)
        mode = (snapshot.backend, snapshot.trigger, self.can_command, snapshot.step is None,
                self._highest_fd >= FD_SETSIZE)
        if mode != self._mode:
            self._mode = mode
            self.refresh_bindings()
        if isinstance(self.screen, LabMenu):
            self._show_on(self.screen, snapshot)
        self._watch_visible()
        if self._first_lesson is not None:
            lesson, self._first_lesson = self._first_lesson, None
            self.start_lesson(lesson)

    def _show_floods(self) -> None:
        floods = self.floods
        if not floods.floods:
            return
        listed = floods.listed()
        self.dashboard.show_floods([(floods.numbers[f.pid], f) for f in listed])
        running = bool(floods.running)
        if running != self._floods_running:
            self._floods_running = running
            self.refresh_bindings()

    def _thin_out(self, snapshot: Snapshot) -> bool:
        """True to skip redrawing the panels this time. When the server process is busy,
        the panels redraw every other Snapshot (2 Hz) and the header every one: a frame
        holds the GIL the engine needs (see `muxtop bench ui`). A source in another process
        has a GIL of its own: nothing to thin out for."""
        process = snapshot.process
        busy = process is not None and process.cpu_percent >= BUSY_CPU_PERCENT
        if not (self.source.shares_gil and busy):
            self._skipped = False
            return False
        self._skipped = not self._skipped
        return self._skipped

    def display_snapshot(self, snapshot: Snapshot) -> None:
        self.shown = snapshot
        self.dashboard.show(snapshot)
        if isinstance(self.screen, DetailScreen):
            self._show_on(self.screen, snapshot)

    def _show_on(self, screen: DetailScreen | LabMenu, snapshot: Snapshot) -> None:
        try:
            screen.show(snapshot)
        except NoMatches:
            pass  # the app is exiting: the screen's widgets are already gone

    def update_header(self) -> None:
        status = self.recorder.status() if self.recorder is not None else None
        recording = None
        if status is not None:
            recording = f"REC {file_size(status.bytes)}" + (
                f" · {status.lost:,} waits lost" if status.lost else "")
        self.dashboard.header.show(
            self.latest, paused=self.paused, frozen=self.dashboard.table.model.frozen,
            read_only=not self.can_command, problem=self.problem, recording=recording)

    def _told_by_capabilities(self) -> None:
        """Notices of the recorder and of the player (a recording started or stopped, a
        file that ends early...), each shown once. Their text holds file names: no markup."""
        for holder in (self.recorder, self.player):
            if holder is None:
                continue
            seen = self._told.get(id(holder), 0)
            try:
                notices = tuple(holder.notices)  # the recorder's thread appends to it
            except RuntimeError:
                continue  # changed while copied: next tick
            for notice in notices:
                if notice.seq > seen:
                    seen = notice.seq
                    severity = _SEVERITY.get(notice.level, "information")
                    self.notify(notice.text, severity=severity, markup=False,
                                timeout=10 if severity != "information" else 5)
            self._told[id(holder)] = seen

    def _source_failed(self, message: str) -> None:
        if self.problem is None:
            self.notify(message, title="snapshot source", severity="error", timeout=10)
        self.problem = "SOURCE FAILED"
        self.update_header()

    def _notices(self, s: Snapshot) -> None:
        """Each engine Notice becomes one notification, once (by seq)."""
        notices = s.notices
        if self._notice_seq is None:  # first Snapshot: only the latest few
            notices = notices[-NOTICES_AT_START:]
            self._notice_seq = 0
        for notice in notices:
            if notice.seq > self._notice_seq:
                self._notice_seq = notice.seq
                severity = _SEVERITY.get(notice.level, "information")
                self.notify(notice.text, severity=severity,
                            timeout=8 if severity == "error" else 5)
        if s.error and not self._engine_error_told:
            self._engine_error_told = True
            self.notify(f"{s.error}. The dashboard shows the last state; q quits.",
                        title="engine stopped", severity="error", timeout=30)

    def _watch_visible(self) -> None:
        """Tell the engine which fds are on screen, so it probes their queues first."""
        if not self.can_command:
            return
        fds = self.dashboard.table.visible_fds()
        if fds != self._watched:
            self._watched = fds
            self.send(Watch(fds))

    # ---- commands ----------------------------------------------------------------------

    def send(self, command: object) -> None:
        if not self.can_command:
            self.notify(self.source.read_only or "read-only", severity="warning")
            return
        try:
            future = self.source.submit(command)
        except Exception as exc:  # noqa: BLE001
            self.notify(f"could not send {type(command).__name__}: {exc!r}", severity="error")
            return
        if isinstance(future, Future):  # a sink may answer nothing at all
            self._pending.append((command, future))

    def _collect_outcomes(self) -> None:
        """Outcomes of finished commands. Refusals arrive as engine Notices already; only
        successes the engine does not announce (close, pause) and failures of a source
        that has no Notices become notifications here."""
        if not self._pending:
            return
        still = []
        for command, future in self._pending:
            if not future.done():
                still.append((command, future))
                continue
            try:
                outcome = future.result()
            except Exception as exc:  # noqa: BLE001
                self.notify(f"{type(command).__name__} failed: {exc!r}", severity="error")
                continue
            if isinstance(command, Switch) and not outcome.ok:
                self._intended = None  # refused: the mode stays what the Snapshot says
            if isinstance(command, _QUIET_COMMANDS):
                continue
            if outcome.ok:
                self.notify(outcome.message, timeout=3)
            elif isinstance(command, SetLab) or not self.source.announces_refusals \
                    or not self.can_command:
                self.notify(outcome.message, severity="warning")
        self._pending = still

    def close_connection(self, view: ConnView | None) -> None:
        if can_act_on(view):
            self.send(CloseConnection(view.fd))
            self.set_timer(0.05, self.tick)  # show the outcome without waiting a whole tick

    def toggle_reading(self, view: ConnView | None) -> None:
        if can_act_on(view):
            self.send(PauseReading(view.fd, "P" not in view.flags))
            self.set_timer(0.05, self.tick)

    def on_dashboard_screen_details(self, message: DashboardScreen.Details) -> None:
        self.push_screen(DetailScreen(message.view))

    def on_dashboard_screen_connection_action(
            self, message: DashboardScreen.ConnectionAction) -> None:
        if message.action == "close_connection":
            self.close_connection(message.view)
        else:
            self.toggle_reading(message.view)

    def on_dashboard_screen_mounted(self, _message: DashboardScreen.Mounted) -> None:
        self.tick()

    def on_dashboard_screen_freeze_changed(self, _: DashboardScreen.FreezeChanged) -> None:
        self.update_header()

    def on_dashboard_screen_resumed(self, _message: DashboardScreen.Resumed) -> None:
        if self.shown is not None:
            self.dashboard.show(self.shown)

    def set_lab(self, name: str, on: bool) -> None:
        """Turn a bug-lab switch on or off; the Outcome comes back as a notification."""
        self.send(SetLab(name, on))
        self.set_timer(0.05, self.tick)

    def launch_flood(self, settings: FloodSettings) -> FloodProcess | None:
        target = self.source.flood_target
        if target is None:
            self.notify("no server of our own to flood here", severity="warning")
            return None
        settings = settings.at(*target)
        try:
            flood = self.floods.launch(settings)
        except OSError as exc:
            self.notify(f"could not start the flood: {exc}", severity="error")
            return None
        number = self.floods.numbers[flood.pid]
        self.notify(f"flood #{number}: {settings.pattern}, {settings.clients:,} clients "
                    f"× {settings.messages:,} messages (pid {flood.pid})", timeout=3)
        self._show_floods()
        return flood

    # ---- keys --------------------------------------------------------------------------

    def current_mode(self) -> tuple[str, str] | None:
        """(backend, trigger) now, or as a Switch on its way will make it."""
        if self._intended is not None:
            return self._intended
        if self.latest is None:
            return None
        return self.latest.backend, self.latest.trigger

    def now(self) -> actions.Now:
        """What the keys depend on now (muxtop.ui.actions reads it)."""
        latest, dashboard = self.latest, self.dashboard
        ready = dashboard.ready
        return actions.Now(
            read_only=self.source.read_only, player=self.player is not None,
            recorder=self.recorder is not None, own_engine=self.view.own_engine,
            flood_target=self.source.flood_target is not None,
            floods_running=bool(self.floods.running),
            lesson=self.lesson is not None and self.lesson.phase != "done",
            stepping=latest is not None and latest.step is not None, mode=self.current_mode(),
            highest_fd=self._highest_fd, selected=dashboard.table.selected if ready else None,
            has_waits=self.view.has_waits,
            filtering=ready and (bool(dashboard.table.model.query)
                                 or dashboard.filter_box.has_class("-active")))

    def why_not(self, action: str) -> str | None:
        """Why an action cannot act now, in words a person can act on; None when it can."""
        return actions.why_not(action, self.now())

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        return actions.state(action, self.now())

    def on_key(self, event: events.Key) -> None:
        """A key whose actions cannot act now says why instead of doing nothing."""
        if self.screen is not self.dashboard:
            return
        reason = actions.refusal(event.key, self.now())
        if reason:
            event.stop()
            self.notify(reason, title=f"{event.key}: not now", severity="warning", timeout=6)

    def action_cycle_backend(self) -> None:
        """The next backend that can take the trigger mode and the open fds (the table greys
        b out, and says why, when there is none)."""
        now = self.now()
        name = actions.next_backend(now)
        if name is not None and now.mode is not None:
            self._switch(name, now.mode[1])  # the engine's Notice says how it went

    def action_backend(self, name: str) -> None:
        """Switch to the backend `name` (the palette offers each by name)."""
        mode = self.current_mode()
        if mode is not None and name != mode[0]:
            self._switch(name, mode[1])

    def action_cycle_trigger(self) -> None:
        mode = self.current_mode()
        if mode is None or mode[0] not in BACKENDS:
            return
        backend, trigger = mode
        supported = [t for t in TRIGGERS if t in BACKENDS[backend].triggers]
        if len(supported) < 2:
            return
        here = supported.index(trigger) if trigger in supported else -1
        self._switch(backend, supported[(here + 1) % len(supported)])

    def _switch(self, backend: str, trigger: str) -> None:
        mode = self.current_mode()
        self._intended = (backend, trigger)
        self.send(Switch(backend=backend if mode is None or backend != mode[0] else None,
                         trigger=trigger if mode is None or trigger != mode[1] else None))
        self.refresh_bindings()

    def action_toggle_pause(self) -> None:
        self.paused = not self.paused
        if not self.paused and self.latest is not None and self.latest is not self.shown:
            self.display_snapshot(self.latest)
        self.update_header()

    # ---- a recording: replay and record ---------------------------------------------

    def _player_moved(self) -> None:
        self.tick()
        if self.dashboard.timeline is not None:
            self.dashboard.timeline.show()

    def action_play(self) -> None:
        self.player.toggle()
        self._player_moved()

    def action_step(self, n: int) -> None:
        if not self.player.step(n):
            self.notify(f"at the {'end' if n > 0 else 'start'} of the recording", timeout=2)
        self._player_moved()

    def action_step_engine(self) -> None:
        self.send(Step())
        self.set_timer(0.05, self.tick)  # the step's picture without waiting a whole tick

    def action_continue_engine(self) -> None:
        self.send(Continue())
        self.set_timer(0.05, self.tick)

    def action_step_back(self) -> None:
        self.action_step(-1)

    def action_faster(self) -> None:
        self.player.change_speed(1)
        self._player_moved()

    def action_slower(self) -> None:
        self.player.change_speed(-1)
        self._player_moved()

    def action_to_start(self) -> None:
        self.player.to_start()
        self._player_moved()

    def action_to_end(self) -> None:
        self.player.to_end()
        self._player_moved()

    def on_timeline_bar_seek(self, message: TimelineBar.Seek) -> None:
        self.player.seek(message.t)
        self._player_moved()

    def action_record(self) -> None:
        """Start a recording into a new file, or stop the one running."""
        recorder = self.recorder
        if recorder.active is not None:
            recorder.stop()
        else:
            try:
                recorder.start()
            except RecordWriteError as exc:
                self.notify(str(exc), severity="error", markup=False, timeout=10)
        self._told_by_capabilities()
        self.update_header()

    def action_flood(self) -> None:
        self.launch_flood(self.flood_settings)

    def action_idle_herd(self) -> None:
        """Hold IDLE_HERD idle connections, or let them go: the herd select and poll pay for
        on every call (watch cpu/call and scans in the header) and epoll does not."""
        herd = self.herd
        if herd is not None and herd.running:
            self.floods.stop(herd)
            self.herd = None
            self.notify("letting the idle herd go", timeout=3)
            return
        self.herd = self.launch_flood(IDLE_HERD)

    def action_flood_form(self) -> None:
        target = self.source.flood_target
        if target is None or isinstance(self.screen, FloodForm):
            return

        def launch(settings: FloodSettings | None) -> None:
            if settings is not None:
                self.launch_flood(settings)

        self.push_screen(FloodForm(self.flood_settings.at(*target)), launch)

    def action_stop_floods(self) -> None:
        stopped = self.floods.stop_all()
        if stopped:
            self.notify(f"stopping {stopped} flood{'s' if stopped > 1 else ''}", timeout=3)

    # ---- lessons -----------------------------------------------------------------------

    def action_lessons(self) -> None:
        try:
            lessons = builtin_lessons()
        except LessonError as exc:
            self.notify(str(exc), title="lessons", severity="error")
            return
        self.push_screen(LessonPicker(lessons), self._picked)

    def _picked(self, lesson: Lesson | None) -> None:
        if lesson is not None:
            self.start_lesson(lesson)

    def start_lesson(self, lesson: Lesson) -> None:
        """Run a lesson over this server (one at a time: a new one ends the last)."""
        why = self.why_not("lessons")
        if why is not None:
            self.notify(f"no lesson here: {why}", severity="warning")
            return
        if self.lesson is not None:
            self.lesson.finish()
        self.lesson = LessonRun(self, lesson)
        self.lesson.start()
        if self._lesson_timer is None:
            self._lesson_timer = self.set_interval(0.1, self._lesson_tick)
        self._lesson_tick()
        self.refresh_bindings()

    def _lesson_tick(self) -> None:
        run = self.lesson
        if run is None or not self.dashboard.ready:
            return
        run.tick()
        self.dashboard.show_lesson(run, self.source.latest())
        if run.phase == "done":
            self.lesson = None
            self.dashboard.show_lesson(None, None)
            if self._lesson_timer is not None:
                self._lesson_timer.stop()
                self._lesson_timer = None
            self.refresh_bindings()

    def action_answer(self, choice: int) -> None:
        if self.lesson is not None and self.lesson.answer(choice):
            self._lesson_tick()
            self.refresh_bindings()

    def action_lesson_next(self) -> None:
        if self.lesson is not None and self.lesson.next():
            if self.lesson.phase == "done":
                self.notify(f"lesson over: {self.lesson.lesson.title}. The server is as it "
                            "was.", timeout=5)
            self._lesson_tick()
            self.refresh_bindings()

    def action_leave_lesson(self) -> None:
        if self.lesson is not None:
            self.lesson.finish()
            self.notify("left the lesson; the server is as it was", timeout=3)
            self._lesson_tick()

    def action_lab(self) -> None:
        if not isinstance(self.screen, LabMenu):
            lab = self.latest.lab if self.latest is not None else frozenset()
            self.push_screen(LabMenu(lab))

    def action_help(self) -> None:
        if isinstance(self.screen, HelpScreen):
            return
        # One help screen for the app's life, installed so that closing it keeps it: the
        # next ? resumes it instead of composing and measuring its long text again (that
        # took most of a press's 40-60 ms, `muxtop bench ui --keys`). What it says depends
        # only on the source's kind and capabilities, which do not change.
        if not self.is_screen_installed("help"):
            self.install_screen(HelpScreen(self.key_help(), self.view), "help")
        self.push_screen("help")

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        """The palette (ctrl+p): Textual's own (theme, keys; not its quit: ours is in the
        table), then each of this source's actions once, named as the footer names it, and each
        backend by name. One that cannot act now says why when chosen."""
        yield from (c for c in super().get_system_commands(screen) if c.title != "Quit")
        if screen is not self.dashboard:
            return
        for action in actions.listed(self.now()):
            if action.name != "command_palette":
                yield SystemCommand(f"{action.label} ({action.display})", action.description,
                                    partial(self._palette_run, action))
        for name in NAMES:
            yield SystemCommand(f"backend: {name}", f"Switch live to {name}",
                                partial(self._palette_backend, name))

    async def _palette_run(self, action: actions.Action) -> None:
        reason = self.why_not(action.name)
        if reason is None and action.argument == "(key)":
            reason = f"press {action.display} to {action.label}"
        if reason:
            self.notify(reason, severity="warning", timeout=6)
            return
        await self.run_action(action.name + action.argument,
                              self.dashboard if action.screen else self)

    def _palette_backend(self, name: str) -> None:
        now = self.now()
        reason = actions.why_not("cycle_backend", now)
        if reason is None and now.mode is not None and now.mode[0] == name:
            reason = f"the server runs on {name} already"
        elif reason is None and now.mode is not None and \
                not actions.can_take(name, now.mode[1], now.highest_fd):
            reason = f"{name} cannot take {now.mode[1]} triggering with fd {now.highest_fd} open"
        if reason:
            self.notify(reason, severity="warning", timeout=6)
            return
        self.action_backend(name)

    def key_help(self) -> list[tuple[str, str, str]]:
        """(keys, what, why): every action this source has, from the table, then the mouse."""
        rows = [(a.display, a.label, a.description) for a in actions.listed(self.now())]
        rows.append(("↑ ↓ PgUp PgDn", "move", "Move the cursor; Home and End jump"))
        rows.append(("tab", "focus", "Move between the table, the ready-list log and the "
                     "findings (enter on a finding selects its fd)"))
        rows.append(("click header", "sort", "Sort by that column; click again to reverse"))
        if self.player is not None:
            rows.append(("click timeline", "jump", "Jump to that moment of the recording"))
        return rows


THEMES = tuple(BUILTIN_THEMES)  # what --theme takes; textual-light reads best on a projector


def run_dashboard(engine, duration: float | None = None, *, refresh: float = POLL_INTERVAL,
                  theme: str | None = None, recorder: RecorderControl | None = None,
                  lesson: Lesson | None = None, metrics=None) -> int:
    """Run the dashboard over a started engine until q (or `duration` seconds); R records
    through `recorder`; `metrics` (a MetricsServer) also counts the floods launched here.
    Textual restores the terminal however the app ends; the caller stops the engine (and the
    recorder, and the metrics)."""
    source = EngineSource(engine)
    app = MuxtopApp(source if recorder is None else Recordable(source, recorder),
                    duration=duration, handle_signals=True, interval=refresh, theme=theme,
                    freeze_at_start=True, lesson=lesson)
    if metrics is not None:
        metrics.floods = lambda: app.floods.floods
    # The engine thread shares the GIL and the garbage collector with the UI: pacing says
    # how both are set while the dashboard runs, and why.
    try:
        with pacing.dashboard_pacing():
            app.run()
    finally:
        app.floods.close()  # also when the app failed before unmounting
    if getattr(engine, "error", None):
        return 1
    return app.return_code or 0


def run_source(source: Source, duration: float | None = None,
               interval: float | None = POLL_INTERVAL, theme: str | None = None) -> int:
    """Run the dashboard over any Source (e.g. another process, read-only) until q."""
    app = MuxtopApp(source, duration=duration, interval=interval, handle_signals=True,
                    theme=theme, freeze_at_start=True)
    # No engine in this process to hand the GIL to; the collector's pauses are the same.
    with pacing.dashboard_pacing(switch_interval=None):
        app.run()
    return app.return_code or 0
