"""`muxtop attach PID`: another process's epoll sets and sockets, read from /proc, as a Snapshot.

Read-only and headless: nothing here imports textual. The dashboard builds an `Attacher` and
calls `read()` on its own timer; the CLI does the same for `--once` and the text loop.
"""

from muxtop.attach.reader import Attacher, AttachError

__all__ = ["AttachError", "Attacher"]
