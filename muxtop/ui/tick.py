"""The app's tick: take the source's latest Snapshot and, when it is new, redraw what depends
on it; the notices of the engine, the recorder, the player and the targets, each shown once."""

from __future__ import annotations

from textual.css.query import NoMatches

from muxtop.backends import FD_SETSIZE
from muxtop.commands import (
    Watch,
)
from muxtop.record.recorder import file_size
from muxtop.snapshot import Snapshot
from muxtop.ui.rows import highest_open_fd
from muxtop.ui.screens.detail import DetailScreen
from muxtop.ui.screens.lab_menu import LabMenu

NOTICES_AT_START = 5  # older notices than these are not replayed when the dashboard opens
BUSY_CPU_PERCENT = 75.0  # process CPU from which the screen redraws at half the rate
BUSY_BLOCKED_SHARE = 0.5  # or an engine blocked in its wait calls less than this share of time
BUSY_WAITS_LOOKED_AT = 512  # the latest wait calls that share is taken over (~10 ms busy)
SEVERITY = {"info": "information", "warning": "warning", "error": "error"}


def never_waits(snapshot: Snapshot) -> bool:
    """True when the engine spent less than BUSY_BLOCKED_SHARE of the time its latest wait
    calls span blocked in them: it always finds work, so it is busy, however little CPU a
    crowded machine gives the process (which then stays under BUSY_CPU_PERCENT)."""
    waits = snapshot.waits[-BUSY_WAITS_LOOKED_AT:]
    if len(waits) < 2:
        return False
    first, last = waits[0], waits[-1]
    span = last.start + last.duration - first.start
    return span > 0 and sum(w.duration for w in waits) < BUSY_BLOCKED_SHARE * span


class Ticking:
    """The MuxtopApp's tick (a mixin: it works on the app's state)."""

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
        if not self.dashboard.ready:
            return
        if self.targets is not None:
            self.dashboard.show_targets()
            self._keys_follow_targets()
        if snapshot is None:
            return
        snapshot = self.floods.mark(snapshot)  # the same object while nothing changed
        if snapshot is self.latest:
            return
        self.problem = None
        self.latest = snapshot
        self._follow_snapshot(snapshot)

    def _follow_snapshot(self, snapshot: Snapshot) -> None:
        """What depends on a new Snapshot: its notices, the history, the panels and header
        (unless paused or thinned out), the keys, the screen on top, a lesson to start."""
        player = self.player
        if player is not None and (player.jumps != self._jumps or self._notice_seq is None):
            # Opened at a position, or moved back or across the recording: the notices up to
            # there (those made before the recording started too) are not news.
            self._jumps = player.jumps
            self._notice_seq = max((n.seq for n in snapshot.notices), default=0)
        if self.targets is not None and self.targets.switches != self._switches:
            # Another process shown: its notices count from its own seq, and are not news.
            self._switches = self.targets.switches
            self._notice_seq = max((n.seq for n in snapshot.notices), default=0)
        self._notices(snapshot)
        if player is None:
            self.dashboard.record(snapshot)  # history goes on while paused
        else:
            self.dashboard.replace_history(player.history())  # as it was at the position
        thinned = self._thin_out(snapshot)
        if not self.paused and not thinned:
            self.display_snapshot(snapshot)
        if not thinned:
            self.update_header()
        if self.dashboard.timeline is not None:
            self.dashboard.timeline.show()
        self._keys_follow(snapshot)
        if isinstance(self.screen, LabMenu):
            self._show_on(self.screen, snapshot)
        self._watch_visible()
        if self._first_lesson is not None:
            lesson, self._first_lesson = self._first_lesson, None
            self.start_lesson(lesson)

    def _keys_follow(self, snapshot: Snapshot) -> None:
        """The keys that act follow the mode, whether the source takes commands, step mode
        and whether an fd past select's FD_SETSIZE is open: refresh them when one changed."""
        if self._intended == (snapshot.backend, snapshot.trigger):
            self._intended = None
        self._highest_fd = highest_open_fd(snapshot)
        mode = (snapshot.backend, snapshot.trigger, self.can_command, snapshot.step is None,
                self._highest_fd >= FD_SETSIZE)
        if mode != self._mode:
            self._mode = mode
            self.refresh_bindings()

    def _keys_follow_targets(self) -> None:
        """> and < act while another process is there to show: refresh them when the number
        watched crosses one."""
        many = len(self.targets.entries()) > 1
        if many != self._many_targets:
            self._many_targets = many
            self.refresh_bindings()

    def _thin_out(self, snapshot: Snapshot) -> bool:
        """True to skip redrawing this time. When the server process is busy, the screen
        (panels and header together) redraws every other Snapshot (2 Hz): a frame holds the
        GIL the engine needs, and its cost is what the dashboard takes from the server's
        round trips (`muxtop bench ui`: a header of its own at 4 Hz cost as much again as
        the panels). A source in another process has a GIL of its own: nothing to thin
        out for."""
        process = snapshot.process
        busy = (process is not None and process.cpu_percent >= BUSY_CPU_PERCENT) \
            or never_waits(snapshot)
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
        for holder in (self.recorder, self.player, self.targets):
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
                    severity = SEVERITY.get(notice.level, "information")
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
        lesson = self.lesson is not None and self.lesson.phase != "done"
        for notice in notices:
            if notice.seq > self._notice_seq:
                self._notice_seq = notice.seq
                severity = SEVERITY.get(notice.level, "information")
                if lesson and severity == "information":
                    continue  # the lesson's panel says what it switched; a toast covered it
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
