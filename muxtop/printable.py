"""Text from a target or the network, made safe to print on a terminal.

A process name, an argv or a unix socket path may hold anything: `ESC ] 0 ; … BEL` retitles
the terminal, `ESC [ 2 J` clears it, a newline forges a line of the report. Text output
(`attach --once`, `--text`, error lines) shows each such character as a visible escape
instead, so the reader sees what is there and the terminal obeys none of it. (The dashboard
draws into fixed-width cells and shows them as '?': ui/format.py `plain`.)
"""

from __future__ import annotations


def printable(text: str) -> str:
    """`text` with every non-printable character as a Python-style escape: ESC is `\\x1b`,
    a newline `\\n`, U+202E `\\u202e`, a byte that was not UTF-8 (a surrogate escape) `\\udcff`.
    Printable text, the common case, comes back as it is."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else _escape(c) for c in text)


def _escape(c: str) -> str:
    code = ord(c)
    if code < 0x100:
        return {"\n": "\\n", "\r": "\\r", "\t": "\\t"}.get(c, f"\\x{code:02x}")
    return f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"
