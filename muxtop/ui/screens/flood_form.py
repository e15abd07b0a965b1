"""`F`: choose a flood's pattern (the fault patterns too), clients, messages, size, rate,
duration and open or closed loop, then launch it at the embedded server. Bad values are
explained under the form; nothing is launched until every field makes sense."""

from __future__ import annotations

from dataclasses import replace
from typing import ClassVar

from textual import events
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Checkbox, Input, Label, Select, Static

from muxtop.arguments import MAX_NUMBER
from muxtop.flood.patterns import PATTERNS, misfit
from muxtop.flood.process import DEFAULT_FLOOD, IDLE_HERD, SEED_FLOOD, FloodSettings
from muxtop.ui import format as fmt

MAX_CLIENTS = 100_000  # past this a typo, not a test: each client is an fd on both ends
MAX_SIZE = 16 * 1024 * 1024  # what `muxtop flood --size` accepts
# Named floods the form starts from (each fills every field; any field can then change).
PRESETS = {
    "steady": ("500 clients × 20 messages at 2/s: about 10 s on screen (f)", DEFAULT_FLOOD),
    "seed": ("500 clients × 3 messages as fast as echoed: over in a blink", SEED_FLOOD),
    "idle herd": ("1,000 connections that only sit there (h)", IDLE_HERD),
}
# How the form names a flood's settings in patterns.misfit's words (it offers no byte limit),
# and the field each of misfit's settings is.
FORM_NAMES = {"messages": "messages", "size": "size", "rate": "a rate above 0",
              "open_loop": "open loop"}
FIELD_OF = {"open_loop": "open-loop"}
# (field, label, hint): the Input ids and what they take.
FIELDS = (
    ("clients", "clients", "connections at once, 1 or more"),
    ("messages", "messages", "per client; 0 = no limit (echo, slow-reader)"),
    ("size", "size", "bytes per message, 1 to 16 MiB"),
    ("rate", "rate", "messages/s per client; 0 = as fast as echoed"),
    ("duration", "duration", "seconds; empty = until the pattern is done"),
)


class BadValue(ValueError):
    """A field that does not make sense, with the words that say why."""


def parse(values: dict[str, str], pattern: str, base: FloodSettings, *,
          open_loop: bool = False) -> FloodSettings:
    """FloodSettings from the form's text, or BadValue naming the first wrong field."""
    if pattern not in PATTERNS:
        raise BadValue(f"pattern: choose one of {', '.join(PATTERNS)}")
    settings = replace(base, pattern=pattern,
                       clients=_whole(values, "clients", 1, MAX_CLIENTS),
                       messages=_whole(values, "messages", 0, 10**9),
                       size=_whole(values, "size", 1, MAX_SIZE),
                       rate=_seconds_or_rate(values, "rate", empty_ok=False) or 0.0,
                       duration=_seconds_or_rate(values, "duration", empty_ok=True),
                       open_loop=open_loop)
    wrong = misfit(pattern, messages=settings.messages, size=settings.size, rate=settings.rate,
                   open_loop=open_loop, names=FORM_NAMES)
    if wrong is not None:
        raise BadValue(f"{FIELD_OF.get(wrong.setting, wrong.setting)}: {wrong.problem}")
    return settings


def _whole(values: dict[str, str], name: str, low: int, high: int) -> int:
    text = values[name].strip().replace(",", "").replace("_", "")
    try:
        value = int(text)
    except ValueError:
        raise BadValue(f"{name}: {text!r} is not a whole number") from None
    if not low <= value <= high:
        raise BadValue(f"{name}: {value:,} is outside {low:,}..{high:,}")
    return value


def _seconds_or_rate(values: dict[str, str], name: str, *, empty_ok: bool) -> float | None:
    """A number 0 or more; with `empty_ok`, more than 0, or empty for None."""
    text = values[name].strip()
    if not text:
        if empty_ok:
            return None
        raise BadValue(f"{name}: give a number (0 is allowed)")
    try:
        value = float(text)
    except ValueError:
        raise BadValue(f"{name}: {text!r} is not a number") from None
    if value != value or value in (float("inf"), float("-inf")):
        raise BadValue(f"{name}: {text!r} is not a finite number")
    if value < 0 or (empty_ok and value == 0):
        raise BadValue(f"{name}: must be more than 0" if empty_ok else
                       f"{name}: must be 0 or more")
    if value > MAX_NUMBER:  # the flood's own command line refuses it (its clocks overflow)
        raise BadValue(f"{name}: must be at most {MAX_NUMBER:,.0f}")
    return value


MARK = "▸"  # before the label of the focused field's row


def form_label(name: str) -> Label:
    return Label(f"  {name}", name=name, classes="form-label", markup=False)


def loop_label(open_loop: bool) -> str:
    """The checkbox's words say its state: its X is drawn either way, only coloured."""
    return f"open loop: {'on' if open_loop else 'off'}"


class FloodForm(ModalScreen[FloodSettings | None]):
    """Dismisses with the FloodSettings to launch, or None (esc)."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "dismiss(None)", "cancel", tooltip="Close the form, launch nothing"),
    ]

    def __init__(self, base: FloodSettings) -> None:
        super().__init__()
        self.base = base

    def compose(self) -> ComposeResult:
        b = self.base
        initial = {"clients": str(b.clients), "messages": str(b.messages),
                   "size": str(b.size), "rate": f"{b.rate:g}",
                   "duration": "" if b.duration is None else f"{b.duration:g}"}
        with Vertical(id="flood-form"):
            with Horizontal(classes="form-row"):
                yield form_label("preset")
                yield Select([(name, name) for name in PRESETS], prompt="choose…",
                             id="preset")
                yield Static("fills the fields below", id="preset-help", classes="form-hint",
                             markup=False)
            with Horizontal(classes="form-row"):
                yield form_label("pattern")
                yield Select([(f"{name}", name) for name in PATTERNS], value=b.pattern,
                             allow_blank=False, id="pattern")
            yield Static(PATTERNS[b.pattern].does, id="pattern-help", classes="form-hint",
                         markup=False)
            for name, label, hint in FIELDS:
                with Horizontal(classes="form-row"):
                    yield form_label(label)
                    # Typing edits the value (500, then 0: 5000), as in any text field.
                    yield Input(initial[name], id=name, select_on_focus=False)
                    yield Static(hint, classes="form-hint", markup=False)
            with Horizontal(classes="form-row"):
                yield form_label("loop")
                yield Checkbox(loop_label(b.open_loop), b.open_loop, id="open-loop")
                yield Static("due on the rate's schedule; latency from when due",
                             classes="form-hint", markup=False)
            yield Static("", id="form-error", markup=False)
            with Horizontal(id="form-buttons"):
                yield Button("launch", variant="primary", id="launch")
                yield Button("cancel", id="cancel")

    def on_mount(self) -> None:
        form = self.query_one("#flood-form")
        host = f"[{self.base.host}]" if ":" in self.base.host else self.base.host
        form.border_title = fmt.title(f"flood {host}:{self.base.port}")
        form.border_subtitle = "enter launches · esc cancels"
        self.query_one("#clients", Input).focus()

    def on_descendant_focus(self, event: events.DescendantFocus) -> None:
        """The focused field's row is marked in its label, not by colour alone: a plain
        capture, or a terminal without colour, shows which field typing goes to."""
        for row in self.query(".form-row"):
            label = row.query_one(".form-label", Label)
            mark = MARK if row in event.widget.ancestors else " "
            label.update(f"{mark} {label.name}")

    def on_checkbox_changed(self, event: Checkbox.Changed) -> None:
        event.checkbox.label = loop_label(event.value)

    def on_select_changed(self, event: Select.Changed) -> None:
        if not isinstance(event.value, str):
            return
        if event.select.id == "preset":
            self.fill(event.value)
        else:
            pattern = PATTERNS.get(event.value)
            self.query_one("#pattern-help", Static).update(pattern.does if pattern else "")

    def fill(self, preset: str) -> None:
        """Put a preset's values in every field."""
        about, settings = PRESETS[preset]
        self.query_one("#preset-help", Static).update(about)
        self.query_one("#pattern", Select).value = settings.pattern
        values = {"clients": str(settings.clients), "messages": str(settings.messages),
                  "size": str(settings.size), "rate": f"{settings.rate:g}",
                  "duration": "" if settings.duration is None else f"{settings.duration:g}"}
        for name, value in values.items():
            self.query_one(f"#{name}", Input).value = value
        self.query_one("#open-loop", Checkbox).value = settings.open_loop

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.launch()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        if event.button.id == "launch":
            self.launch()
        else:
            self.dismiss(None)

    def launch(self) -> None:
        values = {name: self.query_one(f"#{name}", Input).value for name, _, _ in FIELDS}
        pattern = self.query_one("#pattern", Select).value
        open_loop = self.query_one("#open-loop", Checkbox).value
        try:
            settings = parse(values, pattern if isinstance(pattern, str) else "", self.base,
                             open_loop=open_loop)
        except BadValue as exc:
            self.error = str(exc)
            self.query_one("#form-error", Static).update(str(exc))
            field = str(exc).split(":", 1)[0]
            if field in values:
                self.query_one(f"#{field}", Input).focus()
            elif field == "open-loop":
                self.query_one("#open-loop", Checkbox).focus()
            return
        self.dismiss(settings)

    error = ""  # the last validation message (tests read it)
