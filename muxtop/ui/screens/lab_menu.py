"""`l`: the bug lab. Each switch makes the engine misbehave the classic way, so a detector
can be seen to catch it; enter or space flips the highlighted one (SetLab), and the engine's
answer comes back as a notification."""

from __future__ import annotations

from typing import ClassVar

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import OptionList, Static
from textual.widgets.option_list import Option

from muxtop.engine.config import LABS
from muxtop.snapshot import Snapshot
from muxtop.ui.messages import FlipLab

LAB_HELP = {
    "naive-edge": ("edge-triggered reads stop after one recv instead of reading to EAGAIN: "
                   "the rest of the bytes raise no new edge (stuck-read; needs t → edge)"),
    "busy-writable": ("WRITE interest stays on with nothing to write: every wait returns at "
                      "once, the loop spins (busy-loop)"),
    "no-backpressure": ("keep reading while the peer does not read our echo: the out-buffer "
                        "grows without bound (stuck-write)"),
    "emfile-spin": ("out of fds, keep the listener armed without backing off: accept() "
                    "fails in a tight loop (fd-pressure, busy-loop)"),
    "no-rearm": ("oneshot: forget to re-arm a connection after its event: the kernel "
                 "reports it once, then never again (interest-mismatch; needs t → oneshot)"),
}


class LabMenu(ModalScreen[None]):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,l,q", "dismiss", "close", tooltip="Back to the dashboard"),
        Binding("space", "toggle", "flip", tooltip="Turn the highlighted switch on or off"),
    ]

    def __init__(self, lab: frozenset[str]) -> None:
        super().__init__()
        self.lab = lab

    def compose(self) -> ComposeResult:
        with Vertical(id="lab-panel"):
            yield Static(Text("Each switch breaks the engine on purpose, the way real servers "
                              "break; the diagnoses panel should name what goes wrong. Turn it "
                              "off again and the engine recovers every byte.", "dim"),
                         id="lab-intro")
            yield OptionList(*self._options(), id="lab-switches")

    def on_mount(self) -> None:
        panel = self.query_one("#lab-panel")
        panel.border_title = "bug lab"
        panel.border_subtitle = "enter or space flips · esc closes"
        options = self.query_one(OptionList)
        options.highlighted = 0
        options.focus()

    def _options(self) -> list[Option]:
        options = []
        for name in LABS:
            on = name in self.lab
            # A grid, so the help wraps under itself, not under the ON/off mark.
            prompt = Table.grid(padding=(0, 1))
            prompt.add_column(no_wrap=True, width=5)
            prompt.add_column()
            prompt.add_row(Text(" ON  " if on else " off ", "bold reverse red" if on else "dim"),
                           Text(name, "bold"))
            prompt.add_row("", Text(LAB_HELP[name], "dim"))
            options.append(Option(prompt, id=name))
        return options

    def show(self, snapshot: Snapshot) -> None:
        """Redraw the switches' states from a new Snapshot (the app calls this)."""
        if snapshot.lab == self.lab:
            return
        self.lab = snapshot.lab
        options = self.query_one(OptionList)
        highlighted = options.highlighted
        options.clear_options()
        options.add_options(self._options())
        options.highlighted = highlighted

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        event.stop()
        if event.option.id:
            self._flip(event.option.id)

    def action_toggle(self) -> None:
        options = self.query_one(OptionList)
        if options.highlighted is not None:
            self._flip(LABS[options.highlighted])

    def _flip(self, name: str) -> None:
        self.post_message(FlipLab(name, name not in self.lab))
