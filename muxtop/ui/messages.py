"""What the screens ask of the app: they post these, the app acts (no screen calls the app)."""

from __future__ import annotations

from textual.message import Message

from muxtop.snapshot import ConnView


class ShowDetails(Message):
    """Show everything about a row."""

    def __init__(self, view: ConnView) -> None:
        super().__init__()
        self.view = view


class ConnectionAction(Message):
    """Close a connection (`close_connection`) or pause its reading (`toggle_reading`)."""

    def __init__(self, action: str, view: ConnView | None) -> None:
        super().__init__()
        self.action = action
        self.view = view


class FlipLab(Message):
    """Turn a bug-lab switch on or off."""

    def __init__(self, switch: str, on: bool) -> None:
        super().__init__()
        self.switch = switch
        self.on = on
