"""One connection in full: its counters, TCP_INFO, state history, the last wait calls that
reported it, and what the diagnoses say about it. Follows the connection by cid, so it keeps
showing the same connection (closed, if it closed) even when its fd number is reused.

For an attached process (`muxtop attach`) what only the engine knows (its out-buffer, its
wait calls) is left out, and a last section shows the epoll registrations watching the fd
with their raw masks, and the socket as /proc and sock_diag describe it."""

from __future__ import annotations

from typing import ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Footer, Static

from muxtop.attach import masks
from muxtop.events import long, short
from muxtop.snapshot import KIND_CONN, KIND_EPOLL, KIND_LISTENER, ConnView, Snapshot
from muxtop.ui import format as fmt
from muxtop.ui.rows import can_act_on

WAITS_SHOWN = 12  # wait records listed
SCAN_BUDGET = 100_000  # (fd, events) pairs searched per refresh, whatever the load
FLAG_MEANINGS = {"P": "reading paused by you", "B": "backpressure: out-buffer over high water",
                 "E": "pending edge: more to read without waiting", "F": "flood client",
                 "!": "a diagnosis names it"}
# An attached process's flags are words (from its epoll masks), not letters.
ATTACH_FLAG_MEANINGS = {"ET": "edge-triggered", "ONESHOT": "oneshot",
                        "DISARMED": "oneshot, fired and never re-armed",
                        "EXCL": "EPOLLEXCLUSIVE", "!": "a diagnosis names it"}


class DetailScreen(ModalScreen[None]):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "dismiss", "back", tooltip="Back to the dashboard"),
        Binding("enter", "dismiss", "back", show=False),
        Binding("k", "close_connection", "close it", tooltip="Close this connection"),
        Binding("p", "toggle_reading", "pause/resume reading",
                tooltip="Stop or resume reading from this connection"),
    ]

    def __init__(self, view: ConnView) -> None:
        super().__init__()
        self.view = view
        self.snapshot: Snapshot | None = None
        self._drawn = False  # the app may call show() before compose has run

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="detail-panel"):
            yield Static(id="detail-body")
        yield Footer()

    def on_mount(self) -> None:
        panel = self.query_one("#detail-panel")
        panel.border_subtitle = "esc: back"
        self._drawn = True
        if self.app.shown is not None:  # type: ignore[attr-defined]
            self.show(self.app.shown)  # type: ignore[attr-defined]

    def show(self, snapshot: Snapshot) -> None:
        """Redraw from a new Snapshot (the app calls this at each one it displays)."""
        self.snapshot = snapshot
        if not self._drawn:
            return  # on_mount draws the latest
        for view in snapshot.connections:
            if view.cid == self.view.cid and view.kind == self.view.kind:
                previous, self.view = self.view, view
                if (previous.state, previous.flags) != (view.state, view.flags):
                    self.refresh_bindings()
                break
        panel = self.query_one("#detail-panel")
        panel.border_title = f"fd {self.view.fd} · {fmt.plain(self.view.peer)}"
        self.query_one("#detail-body", Static).update(describe(self.view, snapshot))

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action in ("close_connection", "toggle_reading"):
            return can_act_on(self.view) and self.app.source.can_command or None  # type: ignore
        return True

    def action_close_connection(self) -> None:
        self.app.close_connection(self.view)  # type: ignore[attr-defined]

    def action_toggle_reading(self) -> None:
        self.app.toggle_reading(self.view)  # type: ignore[attr-defined]


def describe(v: ConnView, s: Snapshot) -> Text:
    """Everything known about one fd, as plain text (network text is never markup)."""
    now = s.taken_at
    attached = s.source == "attach"
    text = Text(end="")
    heading = "bold underline"
    label = "dim"

    def row(name: str, value: str, note: str = "") -> None:
        text.append(f"  {name:<18}", label)
        text.append(value, "bold")
        if note:
            text.append(f"   {note}", label)
        text.append("\n")

    text.append(f"fd {v.fd}", "bold")
    text.append(f"  {v.kind}  ", label)
    text.append(fmt.plain(v.peer))
    text.append(f"  {v.state}\n", "bold")
    if v.note:
        text.append(f"  {fmt.plain(v.note)}\n", "italic")
    text.append("\n")

    text.append("Multiplexer\n", heading)
    if v.interest:
        row("interest", long(v.interest), f"({short(v.interest)}) what it is registered for")
    elif attached and v.watched_by:
        row("interest", "none", "watched, but for nothing now: a fired oneshot, or no IN/OUT")
    elif attached:
        row("interest", "none", "no epoll instance watches it")
    else:
        row("interest", "none", "not registered in the backend (not reading, nothing to write)")
    if v.last_ready is None:
        when = "never"
    elif now - v.last_ready < 1e-3:
        when = "just now"
    else:
        when = f"{fmt.duration(now - v.last_ready)} ago"
    if not attached:  # another process's wait calls cannot be seen
        row("last events", long(v.last_events), f"reported {when}")
    if v.watched_by:
        row("watched by", ", ".join(f"epoll fd {fd}" for fd in v.watched_by))
    if v.flags and attached:
        row("flags", v.flags,
            "; ".join(ATTACH_FLAG_MEANINGS.get(f, f) for f in v.flags.split()))
    elif v.flags:
        row("flags", v.flags, "; ".join(FLAG_MEANINGS.get(f, f) for f in v.flags))
    text.append("\n")

    text.append("Queues and counters\n", heading)
    if not attached:
        row("app out-buffer", f"{v.out_buffer:,} B", "produced, not yet taken by the kernel")
    if v.kind == KIND_LISTENER and attached:
        details = s.extra.get("sockets", {}).get(v.fd, {})
        row("accept queue", _bytes_or_dash(details.get("accept_queue"), "connections"),
            f"handshakes done, waiting for accept(); backlog {details.get('backlog', '?')}")
    elif v.kind == KIND_LISTENER:
        row("accept queue", _bytes_or_dash(v.rx_queue, "connections"),
            "handshakes done, waiting for accept()")
    elif attached and v.rx_queue is None and v.tx_queue is None:
        pass  # not a socket (an epoll set, an eventfd...): no queues to show
    else:
        row("kernel rx queue", _bytes_or_dash(v.rx_queue), "arrived, not yet read (FIONREAD)")
        row("kernel tx queue", _bytes_or_dash(v.tx_queue),
            "sent but unacknowledged, or unsent (SIOCOUTQ)")
    if v.kind == KIND_CONN and attached:
        row("bytes in / out", f"{v.bytes_in:,} / {v.bytes_out:,}",
            "received / acknowledged by the peer (sock_diag)")
    elif v.kind == KIND_CONN:
        row("bytes in / out", f"{v.bytes_in:,} / {v.bytes_out:,}")
        row("messages in / out", f"{v.msgs_in:,} / {v.msgs_out:,}", "recv and send calls")
    end = v.closed_at if v.closed_at is not None else now
    row("age", fmt.age(end - v.opened_at),
        "since first seen" if attached else
        "lifetime" if v.closed_at is not None else "since accepted")
    if v.kind == KIND_CONN and v.closed_at is None:
        row("idle", fmt.age(now - v.last_io_at),
            "since its queues or state last changed" if attached else
            "since the last byte either way")
    if v.closed_at is not None:
        row("closed", f"{fmt.age(now - v.closed_at)} ago")
    text.append("\n")

    text.append("TCP_INFO\n", heading)
    t = v.tcp
    if t is None and attached:
        text.append("  none (not a TCP socket)\n", label)
    elif t is None:
        text.append("  not measured (the engine probes a bounded number of sockets per "
                    "snapshot; visible rows first)\n", label)
    elif v.kind == KIND_LISTENER:
        row("state", t.state)
        row("accept queue", f"{t.unacked:,}", f"of a backlog of {t.sacked:,}")
    else:
        row("state", t.state)
        row("rtt", fmt.duration(t.rtt_us / 1e6), f"± {fmt.duration(t.rttvar_us / 1e6)}")
        row("rto", fmt.duration(t.rto_us / 1e6))
        row("retransmits", f"{t.retransmits:,}")
        row("unacked", f"{t.unacked:,}", "segments in flight")
        row("sacked", f"{t.sacked:,}")
    text.append("\n")

    text.append("State history\n", heading)
    if not v.history:
        text.append("  -\n", label)
    for at, state in v.history:
        text.append(f"  {f'+{at - s.started_at:.3f}s':>12}  ", label)
        text.append(f"{state}\n")
    text.append("\n")

    findings = [d for d in s.diagnoses if v.fd in d.named_fds()]
    text.append("Diagnoses\n", heading)
    if not findings:
        text.append("  none for this fd\n", label)
    for d in findings:
        text.append(f"  {d.kind}", "bold red")
        whole = "  (the process; names this fd)" if d.fd is None else ""
        text.append(f"{whole}  for {fmt.age(now - d.since)}\n", label)
        text.append(f"    {fmt.plain(d.explanation)}\n")
        for name, value in d.evidence:
            text.append(f"    {name}: ", label)
            text.append(f"{fmt.plain(str(value))}\n")
    text.append("\n")

    if attached:
        _describe_attached(text, v, s, row, heading, label)
        return text

    text.append("Last wait calls that reported it\n", heading)
    found, searched = _waits_naming(v, s)
    if not found:
        text.append(f"  none in the newest {searched:,} wait calls\n", label)
    for w, events in found:
        text.append(f"  #{w.seq:<10,} {f'+{w.start - s.started_at:.3f}s':>12}  ", label)
        text.append(f"{long(events):<16}", "bold")
        text.append(f"  blocked {fmt.duration(w.duration):>7}  {w.count} of "
                    f"{w.registered} fds ready  timeout {fmt.timeout(w.timeout)}\n", label)
    return text


def _describe_attached(text: Text, v: ConnView, s: Snapshot, row, heading: str,
                       label: str) -> None:
    """The attach section: epoll registrations with raw masks and the socket."""
    text.append("Attached\n", heading)
    epoll = s.extra.get("epoll", {})
    watching = [(epfd, mask, decoded) for epfd, watches in epoll.items()
                for tfd, mask, decoded in watches if tfd == v.fd]
    if not watching and v.kind != KIND_EPOLL:
        row("epoll", "none", "no epoll instance watches this fd")
    for epfd, mask, decoded in watching:
        row(f"epoll fd {epfd}", f"{mask}  {decoded}", _mask_meaning(int(mask, 16)))
    if v.kind == KIND_EPOLL:
        watches = epoll.get(v.fd, [])
        row("interest list", f"{len(watches)} fds")
        for tfd, mask, decoded in watches:
            row(f"  fd {tfd}", f"{mask}  {decoded}")
    details = s.extra.get("sockets", {}).get(v.fd)
    if details:
        state = details.get("tcp_state") or details.get("unix_state") or ""
        kind = " ".join(filter(None, (details.get("proto"), details.get("unix_type"), state)))
        ends = fmt.plain(details.get("local") or fmt.DASH)
        if details.get("peer"):
            ends += f" <-> {fmt.plain(details['peer'])}"
        row("socket", f"inode {details.get('inode', fmt.DASH)}", f"{kind}  {ends}")
    text.append("\n")
    if s.extra.get("exited"):
        text.append("The process has exited: this is the last picture.\n", "bold red")


def _mask_meaning(mask: int) -> str:
    if masks.is_disarmed(mask):
        return "oneshot that fired and was never re-armed: epoll reports nothing more"
    if mask & masks.EPOLLONESHOT:
        return "oneshot: reported once, then disarmed until EPOLL_CTL_MOD"
    if mask & masks.EPOLLET:
        return "edge-triggered: reported once per arrival; the app must read until EAGAIN"
    return "level-triggered: reported while there is something to read or room to write"


def _bytes_or_dash(n: int | None, unit: str = "B") -> str:
    return fmt.DASH if n is None else f"{n:,} {unit}"


def _waits_naming(v: ConnView, s: Snapshot):
    """The newest wait records whose ready list holds this fd while this connection had it
    (fds get reused), searching at most SCAN_BUDGET pairs."""
    fd = v.fd
    start = v.opened_at
    end = v.closed_at
    found = []
    budget = SCAN_BUDGET
    searched = 0
    for w in reversed(s.waits):
        if w.start < start or budget <= 0:
            break
        searched += 1
        if end is not None and w.start > end:
            continue
        budget -= len(w.ready) // 2
        for ready_fd, events in w.pairs():
            if ready_fd == fd:
                found.append((w, events))
                break
        if len(found) >= WAITS_SHOWN:
            break
    return found, searched
