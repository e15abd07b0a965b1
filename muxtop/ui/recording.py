"""A recording: the replay keys that move the player, and R, which records the source."""

from __future__ import annotations

from muxtop.record.writer import RecordWriteError
from muxtop.ui.widgets.timeline import TimelineBar


class Recording:
    """The MuxtopApp's player and recorder keys (a mixin: it works on the app's state)."""

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
