"""Short, fixed-width text for what the dashboard shows: the numbers (muxtop/units.py, which
the lessons and reports share, is the UI's too: `fmt.size`...); and `plain`, which makes text from
the network safe to draw in a fixed-width cell."""

from __future__ import annotations

from rich.cells import cell_len, set_cell_size
from rich.markup import escape

from muxtop.units import (  # noqa: F401 - the numbers, drawn by the UI as fmt.size...
    DASH,
    age,
    amount,
    count,
    duration,
    rate,
    size,
    timeout,
    uptime,
)

# Network text may hold anything: escape sequences or newlines would corrupt the screen.
_CONTROL = {c: "?" for c in (*range(0x20), 0x7F, *range(0x80, 0xA0))}


def title(text: str) -> str:
    """Text for a border title, which Textual reads as markup: plain, and escaped."""
    return escape(plain(text))


def plain(text: str) -> str:
    """Text from the network, made safe to draw: control characters become '?'.

    The result is still shown only as plain text (a Segment or rich Text), never as markup."""
    return text.translate(_CONTROL)


def cut_words(text: str, width: int) -> str:
    """`text` in at most `width` cells, cut after a whole word and marked with '…'."""
    if cell_len(text) <= width:
        return text
    head = set_cell_size(text, max(1, width - 1))
    space = head.rstrip().rfind(" ")
    return (head[:space] if space > 0 else head).rstrip() + "…"


def fit(text: str, width: int, right: bool = False) -> str:
    """Pad or cut text to exactly `width` cells (wide characters counted as two); a cut
    ends with '…' so a truncated address never looks like a whole one. The text has no
    control characters (`plain` made it safe): an ASCII one is counted a cell by length."""
    if width <= 0:
        return ""
    length = len(text) if text.isascii() else cell_len(text)  # isascii: O(1), a flag
    if length > width:
        return set_cell_size(text, width - 1) + "…"
    if length == width:
        return text
    pad = " " * (width - length)
    return pad + text if right else text + pad
