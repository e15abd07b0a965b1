"""Commands to the source: sent without blocking, their outcomes collected on the next tick;
the dashboard's messages that end in one (close, pause reading, details)."""

from __future__ import annotations

from concurrent.futures import Future
from dataclasses import replace

from muxtop.commands import (
    CloseConnection,
    PauseReading,
    SetLab,
    Step,
    Switch,
    Watch,
)
from muxtop.snapshot import ConnView
from muxtop.ui.messages import ConnectionAction, FlipLab, ShowDetails
from muxtop.ui.rows import can_act_on
from muxtop.ui.screens.detail import DetailScreen

# Their outcome comes back as an engine Notice, or in a panel (a step), or not at all.
QUIET_COMMANDS = (Switch, Watch, Step)


class Sending:
    """The MuxtopApp's commands (a mixin: it works on the app's state)."""

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
            if isinstance(command, QUIET_COMMANDS):
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

    def on_flip_lab(self, message: FlipLab) -> None:
        """Turn a bug-lab switch on or off; the Outcome comes back as a notification."""
        self.send(SetLab(message.switch, message.on))
        self.set_timer(0.05, self.tick)

    def on_show_details(self, message: ShowDetails) -> None:
        self.push_screen(DetailScreen(message.view, self.view, self.shown,
                                      lambda view: replace(self.now(), selected=view)))

    def on_connection_action(self, message: ConnectionAction) -> None:
        if message.action == "close_connection":
            self.close_connection(message.view)
        else:
            self.toggle_reading(message.view)
