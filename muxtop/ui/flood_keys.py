"""The flood keys: f launches the default flood, F a chosen one, h holds an idle herd, x stops
them; the floods panel follows what they last said."""

from __future__ import annotations

from muxtop.flood.process import IDLE_HERD, FloodProcess, FloodSettings
from muxtop.ui.screens.flood_form import FloodForm


class FloodKeys:
    """The MuxtopApp's flood keys (a mixin: it works on the app's state)."""

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
