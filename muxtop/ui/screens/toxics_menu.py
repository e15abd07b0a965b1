"""`T`: toxiproxy's toxics on the proxies (muxtop --upstream with --toxic or --api). The list
shows the toxics on now, proxy by proxy (enter removes one), then presets to add to the
first proxy (enter adds one); changes go to the registry, which the engine and the API share,
and apply to the next bytes of every connection."""

from __future__ import annotations

from typing import ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import OptionList, Static
from textual.widgets.option_list import Option

from muxtop.proxy.errors import ApiError
from muxtop.proxy.registry import Registry

# (what it does, the toxic as the API takes it): one of each type, with values that show.
PRESETS: tuple[tuple[str, dict], ...] = (
    ("latency 100 ms ± 10 downstream", {"type": "latency", "stream": "downstream",
                                        "attributes": {"latency": 100, "jitter": 10}}),
    ("bandwidth 100 KB/s downstream", {"type": "bandwidth", "stream": "downstream",
                                       "attributes": {"rate": 100}}),
    ("slicer: 64-byte slices, 1 ms apart, upstream",
     {"type": "slicer", "stream": "upstream",
      "attributes": {"average_size": 64, "size_variation": 32, "delay": 1000}}),
    ("slow_close 1 s downstream", {"type": "slow_close", "stream": "downstream",
                                   "attributes": {"delay": 1000}}),
    ("timeout 2 s upstream (no byte through, then closed)",
     {"type": "timeout", "stream": "upstream", "attributes": {"timeout": 2000}}),
    ("reset_peer after 1 s downstream", {"type": "reset_peer", "stream": "downstream",
                                         "attributes": {"timeout": 1000}}),
    ("limit_data 1,000 bytes downstream", {"type": "limit_data", "stream": "downstream",
                                           "attributes": {"bytes": 1000}}),
)


def toxic_line(toxic) -> str:
    attributes = ", ".join(f"{k}={v}" for k, v in dict(toxic.attributes).items())
    share = "" if toxic.toxicity >= 1 else f", toxicity {toxic.toxicity:g}"
    return f"{toxic.name}: {toxic.type} {toxic.stream} ({attributes}{share})"


class ToxicsMenu(ModalScreen[None]):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,T,q", "dismiss", "close", tooltip="Back to the dashboard"),
    ]

    def __init__(self, registry: Registry) -> None:
        super().__init__()
        self.registry = registry
        self._shown = -1  # the registry's version the list was built from

    def compose(self) -> ComposeResult:
        with Vertical(id="toxics-panel"):
            yield Static(Text("Toxics act on every connection of a proxy, live: rows with one "
                              "carry the ~ flag. enter on a toxic removes it; on a preset, "
                              "adds it to the first proxy.", "dim"), id="toxics-intro")
            yield OptionList(id="toxics-list")

    def on_mount(self) -> None:
        panel = self.query_one("#toxics-panel")
        panel.border_title = "toxics"
        panel.border_subtitle = "enter adds or removes · esc closes"
        self.refresh_list()
        options = self.query_one(OptionList)
        options.focus()
        self.set_interval(0.5, self.refresh_list)  # the API may change them meanwhile

    def refresh_list(self) -> None:
        if self.registry.version == self._shown:
            return
        self._shown = self.registry.version
        options = self.query_one(OptionList)
        highlighted = options.highlighted
        options.clear_options()
        options.add_options(self._options())
        options.highlighted = 0 if highlighted is None else min(
            highlighted, options.option_count - 1)

    def _options(self) -> list[Option | None]:
        made: list[Option | None] = []
        proxies = self.registry.proxies()
        for proxy in proxies:
            state = "" if proxy.enabled else "  (down)"
            made.append(Option(Text(f"{proxy.name}  {proxy.listen} → {proxy.upstream}{state}",
                                    "bold"), disabled=True))
            toxics = proxy.toxics.all()
            for toxic in toxics:
                made.append(Option(Text(f"  ✕ {toxic_line(toxic)}"),
                                   id=f"del\0{proxy.name}\0{toxic.name}"))
            if not toxics:
                made.append(Option(Text("  no toxics", "dim"), disabled=True))
        if proxies:
            made.append(None)  # a separator
            for index, (words, _) in enumerate(PRESETS):
                made.append(Option(Text(f"+ {words}"), id=f"add\0{index}"))
        else:
            made.append(Option(Text("no proxies yet (the API makes them)", "dim"),
                               disabled=True))
        return made

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        event.stop()
        if event.option.id:
            self.choose(event.option.id)

    def choose(self, option: str) -> None:
        kind, *rest = option.split("\0")
        try:
            if kind == "del":
                proxy, toxic = rest
                self.registry.remove_toxic(proxy, toxic)
                self.notify(f"removed {toxic} from {proxy}")
            else:
                proxies = self.registry.proxies()
                if not proxies:
                    return
                words, plain = PRESETS[int(rest[0])]
                made = self.registry.add_toxic(proxies[0].name, plain)
                self.notify(f"added {made.name} to {proxies[0].name}: {words}")
        except ApiError as exc:
            self.notify(f"toxics: {exc}", severity="warning")
        self.refresh_list()
