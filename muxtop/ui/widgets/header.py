"""The three header lines: what is running and where, how the loop is doing, what the
traffic and the process cost; with badges for what a person must not miss (a refused
switch, a bug lab turned on, a paused display, a dead engine, an attached process that
exited). An attach Snapshot gets its own three lines: the process, its command line, and
its epoll sets (another process's wait calls cannot be seen, so there are no wait rates)."""

from __future__ import annotations

from typing import ClassVar

from rich.cells import cell_len
from rich.style import Style
from rich.text import Text
from textual.widget import Widget

from muxtop.attach import masks
from muxtop.snapshot import Snapshot
from muxtop.ui import format as fmt
from muxtop.ui.widgets.line_api import PaletteMixin


class StatusHeader(PaletteMixin, Widget):
    COMPONENT_CLASSES: ClassVar[set[str]] = {
        "status-header--title", "status-header--mode", "status-header--label",
        "status-header--value", "status-header--paused", "status-header--alert",
        "status-header--lab", "status-header--info",
    }

    DEFAULT_CSS = """
    StatusHeader { height: 3; background: $panel; padding: 0 1; }
    StatusHeader > .status-header--title { text-style: bold; color: $text-accent; }
    StatusHeader > .status-header--mode { text-style: bold; color: $text-success; }
    StatusHeader > .status-header--label { color: $text-muted; }
    StatusHeader > .status-header--value { text-style: bold; }
    StatusHeader > .status-header--paused {
        background: $warning; color: $text; text-style: bold;
    }
    StatusHeader > .status-header--alert { background: $error; color: $text; text-style: bold; }
    StatusHeader > .status-header--lab { background: $warning; color: $text; text-style: bold; }
    StatusHeader > .status-header--info { background: $primary; color: $text; text-style: bold; }
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.snapshot: Snapshot | None = None
        self.paused = False
        self.frozen = False
        self.read_only = False
        self.problem: str | None = None  # the source itself failed (not the engine)

    def show(self, snapshot: Snapshot | None, *, paused: bool, frozen: bool,
             read_only: bool, problem: str | None = None) -> None:
        self.snapshot = snapshot
        self.paused, self.frozen, self.read_only = paused, frozen, read_only
        self.problem = problem
        self.refresh()

    def render(self) -> Text:
        s = self.snapshot
        palette = self.palette()

        def style(name: str) -> Style:
            return palette[name.split("--", 1)[1]]

        label, value = style("status-header--label"), style("status-header--value")
        text = Text(no_wrap=True, overflow="ellipsis", end="")
        if s is None:
            text.append("muxtop", style("status-header--title"))
            text.append("  waiting for the first snapshot…", label)
            if self.problem:
                text.append(f"  {self.problem} ", style("status-header--alert"))
            return text

        def pair(name: str, shown: str, sep: str = "  ") -> None:
            text.append(name + " ", label)
            text.append(shown, value)
            text.append(sep)

        if s.source == "attach":
            return self._render_attach(text, s, pair, style)
        # Line 1: identity, and badges on the right.
        start = len(text)
        text.append("muxtop ", style("status-header--title"))
        text.append(f"{s.backend}/{s.trigger}", style("status-header--mode"))
        text.append("  ")
        pair(s.protocol, fmt.plain(s.listen))
        pair("up", fmt.uptime(s.taken_at - s.started_at))
        pair("conns", f"{s.open_connections:,} open / {s.totals.accepted:,} accepted", "")
        if s.totals.rejected or s.totals.accept_errors:
            text.append(f"  ({s.totals.rejected:,} rejected, {s.totals.accept_errors:,} "
                        "accept errors)", style("status-header--label"))
        self._badges(text, start, s)
        # Line 2: the multiplexer.
        text.append("\n")
        r = s.rates
        pair("waits/s", fmt.count(r.waits))
        pair("events/s", fmt.count(r.events))
        share = f" ({100 * r.ready_per_wait / s.registered:.1f}%)" if s.registered else ""
        pair("ready/wait", f"{r.ready_per_wait:.2f} of {s.registered:,} registered{share}")
        pair("wait p50", fmt.duration(r.wait_p50))
        pair("p99", fmt.duration(r.wait_p99))
        pair("waits", f"{s.totals.waits:,}", "")
        # Line 3: traffic and the process.
        text.append("\n")
        pair("in", fmt.rate(r.bytes_in))
        pair("out", fmt.rate(r.bytes_out))
        pair("accepts/s", fmt.count(r.accepts), "   ")
        p = s.process
        if p is not None:
            pair("cpu", f"{p.cpu_percent:.0f}%")
            pair("rss", fmt.size(p.rss))
            pair("fds", f"{p.num_fds:,}/{p.fd_limit:,}")
            pair("threads", str(p.threads))
            pair("pid", str(p.pid), "")
        return text

    def _render_attach(self, text: Text, s: Snapshot, pair, style) -> Text:
        extra, p = s.extra, s.process
        label = style("status-header--label")
        # Line 1: which process, and badges on the right.
        start = len(text)
        text.append("muxtop attach ", style("status-header--title"))
        text.append(fmt.plain(p.name) if p is not None else "?", style("status-header--mode"))
        text.append(f" pid {extra.get('pid', '?')}  ", label)
        pair("mux", f"{s.backend}/{s.trigger}")
        pair("up", fmt.uptime(s.taken_at - s.started_at))
        pair("listen", fmt.plain(s.listen) or "-")
        pair("conns", f"{s.open_connections:,}", "")
        self._badges(text, start, s)
        # Line 2: the command line: anything at all, drawn as plain text.
        text.append("\n")
        text.append("cmd ", label)
        # Cut here: a long command line must not wrap onto the third line.
        room = max(10, self.size.width - 2 - len("cmd "))
        text.append(fmt.fit(fmt.plain(extra.get("cmdline", "")), room).rstrip())
        # Line 3: what the process costs, and its epoll sets.
        text.append("\n")
        if p is not None:
            pair("cpu", f"{p.cpu_percent:.0f}%")
            pair("rss", fmt.size(p.rss))
            pair("threads", str(p.threads))
            limit = f"{p.fd_limit:,}" if p.fd_limit > 0 else "?"
            share = f" ({100 * p.num_fds / p.fd_limit:.0f}%)" if p.fd_limit > 0 else ""
            pair("fds", f"{p.num_fds:,}/{limit}{share}", "   ")
        epoll = extra.get("epoll", {})
        all_masks = [int(mask, 16) for watches in epoll.values() for _, mask, _ in watches]
        pair("epoll", f"{len(epoll)} instance{'s' * (len(epoll) != 1)}")
        pair("watching", f"{len(all_masks):,} fds", "")
        if all_masks:
            text.append(f" ({trigger_summary(all_masks)})", label)
        text.append("   ")
        pair("in", fmt.rate(s.rates.bytes_in))
        pair("out", fmt.rate(s.rates.bytes_out))
        findings = len(s.diagnoses)
        shown = f"{findings} finding{'s' * (findings != 1)}"
        if findings:
            text.append(f" {shown} ", style("status-header--alert"))
        else:
            text.append(shown, label)
        return text

    def _badges(self, text: Text, start: int, s: Snapshot) -> None:
        palette = self.palette()

        def style(name: str) -> Style:
            return palette[name.split("--", 1)[1]]

        badges: list[tuple[str, Style]] = []
        error = s.extra.get("error") if isinstance(s.extra, dict) else None
        if s.source == "attach" and s.extra.get("exited"):
            badges.append((" EXITED ", style("status-header--alert")))
        if self.problem:
            badges.append((f" {self.problem} ", style("status-header--alert")))
        elif error or (s.source == "engine" and s.extra.get("running") is False):
            badges.append((" ENGINE STOPPED ", style("status-header--alert")))
        if s.refused:
            badges.append((f" REFUSED: {fmt.plain(s.refused)} ", style("status-header--alert")))
        if s.lab:
            badges.append((f" LAB {' '.join(sorted(s.lab))} ", style("status-header--lab")))
        if self.read_only:
            badges.append((" READ-ONLY ", style("status-header--info")))
        if self.frozen:
            badges.append((" ORDER FROZEN ", style("status-header--info")))
        if self.paused:
            badges.append((" PAUSED ", style("status-header--paused")))
        if not badges:
            return
        width = self.size.width
        used = cell_len(text.plain[start:])
        wanted = sum(cell_len(b) for b, _ in badges) + len(badges) - 1
        room = width - used - 2
        if wanted > room and s.refused:
            # Cut the refusal's reason rather than push the other badges off screen; the
            # whole reason is in the notification too.
            for i, (badge, badge_style) in enumerate(badges):
                if badge.startswith(" REFUSED"):
                    keep = max(10, cell_len(badge) - (wanted - room))
                    badges[i] = (fmt.fit(badge, keep), badge_style)
            wanted = sum(cell_len(b) for b, _ in badges) + len(badges) - 1
        text.append(" " * max(2, width - used - wanted))
        for i, (badge, badge_style) in enumerate(badges):
            if i:
                text.append(" ")
            text.append(badge, badge_style)


def trigger_summary(all_masks: list[int]) -> str:
    """How an attached process's registrations report: ``2 edge, 1 level, 1 disarmed``."""
    kinds = [masks.trigger(mask) for mask in all_masks]
    parts = [f"{kinds.count(k)} {k}" for k in (masks.EDGE, masks.LEVEL, masks.ONESHOT)
             if k in kinds]
    disarmed = sum(1 for mask in all_masks if masks.is_disarmed(mask))
    if disarmed:
        parts[-1] += f" ({disarmed} disarmed)"  # oneshot is last when any is disarmed
    return ", ".join(parts)
