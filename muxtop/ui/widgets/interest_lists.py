"""For another process: its epoll interest lists with their decoded masks, and the findings
in plain words; in place of the ready-list log, or beside it when its wait calls are traced."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static

from muxtop.kernel import epoll
from muxtop.snapshot import Snapshot
from muxtop.ui import format as fmt
from muxtop.ui.widgets.line_api import set_border_title

WATCHES_LISTED = 64  # registrations listed per epoll set; the table has them all


class InterestLists(Static):
    DEFAULT_CSS = """
    InterestLists {
        width: 1fr;
        border: round $primary 40%;
        border-title-color: $text-accent;
        padding: 0 1;
        overflow-y: auto;
    }
    """

    _shown: Text | None = None

    def show(self, snapshot: Snapshot) -> None:
        text = describe_process(snapshot)
        shown = self._shown
        if shown is None or text.plain != shown.plain or text.spans != shown.spans:
            # A layout only when the height may change: the findings' ages change every
            # second, and a layout of the whole screen each time is most of a frame.
            lines = text.plain.count("\n")
            self.update(text, layout=shown is None or lines != shown.plain.count("\n"))
            self._shown = text
        count = len(snapshot.diagnoses)
        set_border_title(self, f"epoll interest lists · {count} finding{'s' * (count != 1)}")


def describe_process(s: Snapshot) -> Text:
    """Findings first (they are why one attaches), then every epoll set with its watches."""
    text = Text(end="", no_wrap=True, overflow="ellipsis")
    for d in s.diagnoses:
        where = "process" if d.fd is None else f"fd {d.fd}"
        text.append(f"! {fmt.plain(d.kind)}", "bold red")
        text.append(f" ({where}, for {fmt.age(s.taken_at - d.since)})  ", "dim")
        text.append(fmt.plain(d.explanation) + "\n")
    if not s.running:
        text.append("the process has exited: this is the last picture\n", "bold red")
    elif not s.diagnoses:
        stuck_after = s.target.stuck_after if s.target else "?"
        text.append(f"no findings (a queue must stay stuck {stuck_after} s to count)\n", "dim")
    if not s.epoll:
        known = s.backend not in ("?", "epoll")  # a trace has seen its wait calls
        text.append(f"no epoll instances: it waits with {s.backend}\n" if known else
                    "no epoll instances: select, poll or blocking calls (cannot tell which)\n",
                    "dim")
    for e in s.epoll:
        text.append(f"epoll fd {e.fd}", "bold")
        text.append(f"  {len(e.watches)} watched\n", "dim")
        for w in e.watches[:WATCHES_LISTED]:
            text.append(f"  fd {w.fd:<6}", "bold")
            text.append(f"0x{w.mask:08x}  ", "dim")
            stale = f" [stale: {fmt.plain(w.stale)}]" if w.stale else ""
            text.append(epoll.decode(w.mask) + stale + "\n")
        if len(e.watches) > WATCHES_LISTED:
            text.append(f"  … and {len(e.watches) - WATCHES_LISTED:,} more (the table shows "
                        "each fd's mask)\n", "dim")
    return text
