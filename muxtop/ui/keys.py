"""The app's side of the table of actions (muxtop.ui.actions): what holds now, check_action,
the refusal notices, the palette and the help; and the keys that steer the engine."""

from __future__ import annotations

from collections.abc import Iterable
from functools import partial

from textual import events
from textual.app import SystemCommand
from textual.screen import Screen

from muxtop.backends import BACKENDS, NAMES, TRIGGERS
from muxtop.commands import (
    Continue,
    Step,
    Switch,
)
from muxtop.lessons.runner import ASK, EXPLAIN
from muxtop.snapshot import PROXY
from muxtop.ui import actions
from muxtop.ui.screens.help import HelpScreen
from muxtop.ui.screens.lab_menu import LabMenu
from muxtop.ui.screens.toxics_menu import ToxicsMenu


class Keys:
    """The MuxtopApp's keys (a mixin: it works on the app's state)."""

    def current_mode(self) -> tuple[str, str] | None:
        """(backend, trigger) now, or as a Switch on its way will make it."""
        if self._intended is not None:
            return self._intended
        if self.latest is None:
            return None
        return self.latest.backend, self.latest.trigger

    def now(self) -> actions.Now:
        """What the keys depend on now (muxtop.ui.actions reads it)."""
        latest, dashboard, lesson = self.latest, self.dashboard, self.lesson
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
                                 or dashboard.filter_box.has_class("-active")),
            targets=None if self.targets is None else len(self.targets.entries()),
            proxies=self.source.proxies is not None,
            proxy=latest is not None and latest.protocol.startswith(PROXY),
            question=len(lesson.step.choices) if lesson is not None and lesson.phase == ASK
            else 0,
            explained=lesson is not None and lesson.phase == EXPLAIN)

    def why_not(self, action: str) -> str | None:
        """Why an action cannot act now, in words a person can act on; None when it can."""
        return actions.why_not(action, self.now())

    @property
    def too_small(self) -> bool:
        """The terminal is below the smallest size: the dashboard shows only its notice."""
        return self.dashboard.has_class("-tiny")

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if self.too_small and actions.action_name(action) != "quit":
            return False  # ctrl+p, a priority key, would open the palette behind the notice
        return actions.state(action, self.now(), parameters)

    def on_key(self, event: events.Key) -> None:
        """A key whose actions cannot act now says why instead of doing nothing. Below the
        smallest size nothing but quit acts: what a key opened (help, the flood form, whose
        enter launches) would be out of sight."""
        if self.too_small:
            if event.key not in actions.BY_NAME["quit"].keys:
                event.prevent_default()  # no binding of any widget either (App._on_key)
                event.stop()
            return
        if self.screen is not self.dashboard:
            self._not_here(event)
            return
        reason = actions.refusal(event.key, self.now())
        if reason:
            event.stop()
            self.notify(reason, title=f"{event.key}: not now", severity="warning", timeout=6)

    def _not_here(self, event: events.Key) -> None:
        """A dashboard key pressed on another screen (the help, a menu, the detail view) that
        this screen does not take: say where it acts. esc and enter move between screens
        everywhere, so they stay quiet."""
        action = next((a for a in actions.ACTIONS if event.key in a.keys), None)
        if action is None or event.key in ("escape", "enter") \
                or event.key in self.screen.active_bindings:
            return
        event.stop()
        self.notify(f"{action.display} acts on the dashboard: esc goes back to it",
                    title=f"{action.display}: not here", severity="warning", timeout=4)

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

    def action_next_target(self) -> None:
        self._show_target(1)

    def action_previous_target(self) -> None:
        self._show_target(-1)

    def _show_target(self, step: int) -> None:
        """Show another of the processes watched, at once (not at the next tick)."""
        self.targets.switch(step)
        self.tick()
        if self.paused and self.latest is not None and self.latest is not self.shown:
            self.display_snapshot(self.latest)  # paused keeps a picture, not the process

    def action_toggle_pause(self) -> None:
        self.paused = not self.paused
        if not self.paused and self.latest is not None and self.latest is not self.shown:
            self.display_snapshot(self.latest)
        self.update_header()

    def action_step_engine(self) -> None:
        self.send(Step())
        self.set_timer(0.05, self.tick)  # the step's picture without waiting a whole tick

    def action_continue_engine(self) -> None:
        self.send(Continue())
        self.set_timer(0.05, self.tick)

    def action_toxics(self) -> None:
        if not isinstance(self.screen, ToxicsMenu) and self.source.proxies is not None:
            self.push_screen(ToxicsMenu(self.source.proxies))

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
        # on the source's kind and capabilities, which do not change, and on the answer keys
        # (1-3 while a question of 3 choices waits): it is written again when those change.
        keys = self.key_help()
        if not self.is_screen_installed("help"):
            self.install_screen(HelpScreen(keys, self.view), "help")
        else:
            self.get_screen("help").show_keys(keys)
        self.push_screen("help")

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        """The palette (ctrl+p): Textual's own (theme, screenshot; not its quit: ours is in
        the table; nor its Keys panel: muxtop's help lists every key, and esc did not close
        that panel), then each of this source's actions once, named as the footer names it,
        and each backend by name. One that cannot act now says why when chosen."""
        yield from (c for c in super().get_system_commands(screen)
                    if c.title not in ("Quit", "Keys"))
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
        elif reason is None and actions.unavailable(name):
            reason = actions.unavailable(name)
        elif reason is None and now.mode is not None and \
                not actions.can_take(name, now.mode[1], now.highest_fd):
            reason = f"{name} cannot take {now.mode[1]} triggering with fd {now.highest_fd} open"
        if reason:
            self.notify(reason, severity="warning", timeout=6)
            return
        self.action_backend(name)

    def key_help(self) -> list[tuple[str, str, str]]:
        """(keys, what, why): every action this source has, from the table, then the mouse."""
        rows = [(a.help_keys, a.label, a.description) for a in actions.listed(self.now())]
        rows.append(("esc", "back", "Leave the detail view (k and p act on its fd there too)"))
        rows.append(("↑ ↓ PgUp PgDn", "move", "Move the cursor; Home and End jump"))
        rows.append(("tab", "focus", "Move between the table, the ready-list log and the "
                     "findings (enter on a finding selects its fd)"))
        rows.append(("click header", "sort", "Sort by that column; click again to reverse"))
        if self.player is not None:
            rows.append(("click timeline", "jump", "Jump to that moment of the recording"))
        return rows
