"""One fd in full, in the sections its view has (the engine's: counters, TCP_INFO, state
history, findings, the last wait calls that reported it; another process's: its epoll
registrations with raw masks and its socket instead of what only the engine knows).
Follows the connection by cid, so it keeps showing the same connection (closed, if it
closed) even when its fd number is reused."""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar

from rich.text import Text
from textual import events
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Footer, Static

from muxtop.snapshot import ConnView, Snapshot, partner_of
from muxtop.ui import actions
from muxtop.ui import format as fmt
from muxtop.ui.messages import ConnectionAction
from muxtop.ui.views import SourceView
from muxtop.ui.views.base import Detail


class DetailScreen(ModalScreen[None]):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "dismiss", "back", tooltip="Back to the dashboard"),
        Binding("enter", "dismiss", "back", show=False),
        Binding("k", "close_connection", "close it", tooltip="Close this connection"),
        Binding("p", "toggle_reading", "pause/resume reading",
                tooltip="Stop or resume reading from this connection"),
    ]

    def __init__(self, view: ConnView, source_view: SourceView, shown: Snapshot | None,
                 now: Callable[[ConnView], actions.Now]) -> None:
        """`view`: the row; `source_view`: how the source's pictures are drawn; `shown`: the
        Snapshot on screen; `now`: what the keys depend on, with this fd selected (k and p
        read the table of actions, as on the dashboard)."""
        super().__init__()
        self.view = view
        self.source_view = source_view
        self.now = now
        self.snapshot: Snapshot | None = shown
        self._drawn = False  # the app may call show() before compose has run

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="detail-panel"):
            yield Static(id="detail-body")
        yield Footer()

    def on_mount(self) -> None:
        panel = self.query_one("#detail-panel")
        panel.border_subtitle = "esc: back"
        self._drawn = True
        if self.snapshot is not None:
            self.show(self.snapshot)

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
        panel.border_title = f"fd {self.view.fd} · {fmt.title(self.view.peer)}"
        body = self.query_one("#detail-body", Static)
        body.update(describe(self.source_view, self.view, snapshot,
                             body.content_region.width or None))

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """k and p are offered only when they act on this fd: otherwise pressing them says
        why (on_key), as on the dashboard."""
        if action in ("close_connection", "toggle_reading"):
            return actions.why_not(action, self.now(self.view)) is None
        return True

    def on_key(self, event: events.Key) -> None:
        if event.key not in ("k", "p"):
            return
        reason = actions.refusal(event.key, self.now(self.view))
        if reason:
            event.stop()
            self.notify(reason, title=f"{event.key}: not now", severity="warning", timeout=6)

    def action_close_connection(self) -> None:
        self.post_message(ConnectionAction("close_connection", self.view))

    def action_toggle_reading(self) -> None:
        self.post_message(ConnectionAction("toggle_reading", self.view))


def describe(view: SourceView, v: ConnView, s: Snapshot, width: int | None = None) -> Text:
    """Everything known about one fd, section by section as the view has them (network
    text is never markup); `width`: the cells it is drawn in, for wrapping."""
    detail = Detail(width)
    text = detail.text
    text.append(f"fd {v.fd}", "bold")
    text.append(f"  {fmt.plain(v.kind)}  ", detail.LABEL)  # plain: a recording may say anything
    text.append(fmt.plain(v.peer))
    text.append(f"  {fmt.plain(v.state)}\n", "bold")
    if v.note:
        text.append(f"  {fmt.plain(v.note)}\n", "italic")
    other = partner_of(v, s.connections)
    if other is not None:
        text.append(f"  a proxied pair: its partner is fd {other.fd} "
                    f"({fmt.plain(other.state)}), in full below\n", "italic")
    text.append("\n")
    facts = view.facts(s)
    for section in view.sections:
        section(detail, v, s, facts)
    if other is not None:  # a proxied pair: its other leg, in full, below
        text.append("\n")
        text.append("its partner leg: ", "bold")
        text.append(f"fd {other.fd}", "bold")
        text.append(f"  {fmt.plain(other.peer)}")
        text.append(f"  {fmt.plain(other.state)}\n", "bold")
        if other.note:
            text.append(f"  {fmt.plain(other.note)}\n", "italic")
        text.append("\n")
        for section in view.sections:
            section(detail, other, s, facts)
    return text
