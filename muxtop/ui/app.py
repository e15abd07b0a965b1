"""The muxtop dashboard: a Textual app over a Source (muxtop.source): the embedded engine,
or a read-only one such as another process (`muxtop attach`) or a recording (`muxtop
replay`). What it draws for each kind of picture comes from the source's SourceView
(muxtop.ui.views), never from asking which source it has; what else a source can do comes
as data too: a `player` (a recording: the replay keys and a timeline), a `recorder` (R),
`targets` (several processes: a line listing them, > and < switch).

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
from concurrent.futures import Future
from pathlib import Path
from typing import ClassVar

from textual.app import App
from textual.binding import BindingType
from textual.theme import BUILTIN_THEMES

from muxtop.engine.source import EngineSource
from muxtop.flood.process import DEFAULT_FLOOD, FloodProcess, FloodSettings
from muxtop.lessons.format import Lesson
from muxtop.lessons.runner import LessonRun
from muxtop.record.control import Recordable, RecorderControl
from muxtop.snapshot import Snapshot
from muxtop.source import Source
from muxtop.ui import actions, layout, pacing
from muxtop.ui import format as fmt
from muxtop.ui.flood_keys import FloodKeys
from muxtop.ui.floods import Floods
from muxtop.ui.hangup import HANGUP_EVERY, TerminalWatch, driver_for
from muxtop.ui.keys import Keys
from muxtop.ui.lesson_keys import LessonKeys
from muxtop.ui.recording import Recording
from muxtop.ui.screens.dashboard import DashboardScreen
from muxtop.ui.sending import Sending
from muxtop.ui.thread_names import name_threads
from muxtop.ui.tick import Ticking
from muxtop.ui.views import view_for

POLL_INTERVAL = 0.25  # the engine publishes every 0.25 s: polling faster only costs the GIL


class MuxtopApp(Keys, Ticking, Sending, Recording, FloodKeys, LessonKeys, App[int]):
    """The dashboard. Its parts live beside it, one module each: the keys (ui/keys.py, over the
    table in ui/actions.py), the tick (ui/tick.py), commands (ui/sending.py), the player and
    the recorder (ui/recording.py), floods (ui/flood_keys.py), lessons (ui/lesson_keys.py)."""

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
        self.targets = source.targets  # several processes: a TargetList, > and < switch
        self._switches = 0  # the targets' switches seen: a new one is not news of the old
        self._many_targets: bool | None = None  # another process to show (> <): last seen
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
                                         keys=lambda: actions.footer(self.now()),
                                         targets=self.targets)
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
        if self.freeze_at_start:  # a process that runs one dashboard
            pacing.freeze()
            name_threads()  # the driver's threads are up by now

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

    # ---- the dashboard's messages ------------------------------------------------------

    def on_dashboard_screen_mounted(self, _message: DashboardScreen.Mounted) -> None:
        self.tick()

    def on_dashboard_screen_freeze_changed(self, _: DashboardScreen.FreezeChanged) -> None:
        self.update_header()

    def on_dashboard_screen_resumed(self, _message: DashboardScreen.Resumed) -> None:
        if self.shown is not None:
            self.dashboard.show(self.shown)


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
