"""The floor for `muxtop bench ui`'s key-to-screen figures: a bare Textual app with one screen
of text and a help screen that `?` opens and `?` or `q` closes, run on the same pseudo-terminal
harness as the dashboard. What it takes is what Textual and the terminal take, nothing of muxtop.

    python -m muxtop.bench.bare_app
"""

from __future__ import annotations

import sys
from typing import ClassVar

from textual.app import App, ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

HELP_TITLE = "bare help"  # what the bench looks for on the screen
READY = "bare app ready"
TEXT = "\n".join(f"line {n}: a bare Textual app, the floor of key to screen" for n in range(60))


class BareHelp(ModalScreen[None]):
    BINDINGS: ClassVar[list[BindingType]] = [Binding("q,question_mark", "dismiss", "close")]

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="bare-help"):
            yield Static(TEXT)

    def on_mount(self) -> None:
        self.query_one("#bare-help").border_title = HELP_TITLE


class BareApp(App[None]):
    CSS = """
    #bare-help { width: 80%; height: 80%; border: round $accent; background: $panel; }
    BareHelp { align: center middle; }
    """
    BINDINGS: ClassVar[list[BindingType]] = [Binding("question_mark", "help", "help")]

    def compose(self) -> ComposeResult:
        yield Static(READY + "\n" + TEXT)

    def action_help(self) -> None:
        if not self.is_screen_installed("help"):  # as the dashboard keeps its help screen
            self.install_screen(BareHelp(), "help")
        self.push_screen("help")

    def on_mount(self) -> None:
        import asyncio
        import signal

        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, self.exit)


if __name__ == "__main__":
    BareApp().run()
    sys.exit(0)
