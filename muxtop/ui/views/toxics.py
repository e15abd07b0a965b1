"""What the toxics panel lists, as data: each proxy, then its toxics per direction in
toxiproxy's words (name, type, its attributes with their units, toxicity), and the legs each
applies to now (the rows flagged `~`). Lines of (text, style); the widget draws them."""

from __future__ import annotations

import textwrap

from muxtop.snapshot import TOXIC_STREAMS, ProxyView, ToxicView
from muxtop.ui import format as fmt

# toxiproxy's meaning of each stream, and each attribute's unit (its README).
DIRECTIONS = {"upstream": "client → server", "downstream": "server → client"}
UNITS = {"latency": "ms", "jitter": "ms", "rate": "KB/s", "average_size": "B",
         "size_variation": "B", "delay": "ms", "timeout": "ms", "bytes": "B"}
SLICER_DELAY = "µs"  # the slicer's delay, alone of the delays, is in microseconds
ROOMY = 40  # cells from which each direction gets a line of its own
LEGS_SHOWN = 8  # fds listed per toxic; the count says the rest
# Line styles: the widget maps each to a component class.
PROXY, DOWN, STREAM, TOXIC, LEGS, NONE = "proxy", "down", "stream", "toxic", "legs", "none"


def attributes_text(toxic: ToxicView) -> str:
    """`latency=100ms`: toxiproxy's attribute names, each with its unit; those at 0 (toxiproxy's
    unset) are left out unless all are (`timeout=0ms`: never close)."""
    parts = []
    for key, value in toxic.attributes:
        unit = SLICER_DELAY if toxic.type == "slicer" and key == "delay" else UNITS.get(key, "")
        parts.append((value, f"{fmt.plain(key)}={value}{unit}"))
    return " ".join(text for value, text in parts if value) or \
        " ".join(text for _, text in parts)


def legs_text(toxic: ToxicView) -> str:
    """Which legs it applies to now (toxicity draws it once per connection): their fds."""
    share = "" if toxic.toxicity == 1 else f"{toxic.toxicity:.0%} of connections · "
    if not toxic.applied:
        return f"{share}on no open leg"
    fds = " ".join(map(str, toxic.legs[:LEGS_SHOWN]))
    more = toxic.applied - min(len(toxic.legs), LEGS_SHOWN)
    return f"{share}on fd {fds}" + (f" … ({toxic.applied} legs)" if more else "")


def toxic_lines(proxies: tuple[ProxyView, ...], width: int) -> list[tuple[str, str]]:
    """The panel's lines at `width` cells. Roomy, a line per direction heads its toxics; in
    a narrow side column (80 columns) each toxic names its stream, and a line that does not
    fit takes the next shorter form, then wraps."""
    lines: list[tuple[str, str]] = []
    roomy = width >= ROOMY

    def add(forms: tuple[str, ...], style: str, indent: int) -> None:
        room = max(8, width - indent)
        text = next((f for f in forms if len(f) <= room), forms[-1])
        wrapped = textwrap.wrap(text, room, break_on_hyphens=False,
                                subsequent_indent="  ") or [""]
        lines.extend((" " * indent + line, style) for line in wrapped)

    for proxy in proxies:
        name, upstream = fmt.plain(proxy.name), fmt.plain(proxy.upstream)
        # The listen address gives way first: the table's listener row shows it too.
        add((f"{name} {fmt.plain(proxy.listen)} → {upstream}", f"{name} → {upstream}"),
            PROXY, 0)
        if not proxy.enabled:
            add(("down: new clients refused, open ones closed", "down: refuses clients"),
                DOWN, 1)
        if not proxy.toxics:
            add(("no toxics",), NONE, 1)
        for stream in TOXIC_STREAMS:
            toxics = [t for t in proxy.toxics if t.stream == stream]
            if toxics and roomy:
                add((f"{stream} · {DIRECTIONS[stream]}",), STREAM, 1)
            for toxic in toxics:  # in chain order: the order they were added
                # The name only where it says more than toxiproxy's default, TYPE_STREAM.
                named = "" if toxic.name == f"{toxic.type}_{stream}" else \
                    f"{fmt.plain(toxic.name)}: "
                what = f"{'' if roomy else stream + ' '}{named}{fmt.plain(toxic.type)} " \
                    f"{attributes_text(toxic)}".rstrip()
                legs = legs_text(toxic)
                indent = 2 if roomy else 1
                if len(what) + 3 + len(legs) <= width - indent:
                    add((f"{what} · {legs}",), TOXIC, indent)
                else:
                    add((what,), TOXIC, indent)
                    add((legs,), LEGS, indent + 2)
    return lines
