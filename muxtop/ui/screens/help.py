"""`?` / F1: every key, what each column means, floods, the bug lab and what each detector
finds, and how select, poll, epoll, io_uring and the trigger modes work, in a few plain
paragraphs."""

from __future__ import annotations

from typing import ClassVar

from rich.console import Group
from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

from muxtop.engine.config import LABS
from muxtop.flood.patterns import PATTERNS
from muxtop.flood.process import DEFAULT_FLOOD
from muxtop.ui.screens.lab_menu import LAB_HELP
from muxtop.ui.views import ENGINE, SourceView

_F = DEFAULT_FLOOD
FLOODS = f"""\
f launches the default flood at this server: {_F.clients} clients each send {_F.messages} \
messages of {_F.size} bytes at {_F.rate:g}/s and check every echoed byte. F opens a form to \
choose the pattern, clients, messages, size, rate and duration. Each flood is a `muxtop flood` \
child process; the floods panel shows its connections (connected, failed, open), messages sent \
and echoed back, mismatched bytes ("bad"), bytes each way and round-trip times, then done or \
failed with the exit code and the flood's last error line. Its connections carry the F flag in \
the table. x stops every flood; quitting stops them too."""

DETECTORS = (
    ("stuck-read", "bytes wait in the kernel receive queue (rx-q), READ is registered, and "
                   "nothing was read for 2 s: the edge-trigger trap"),
    ("stuck-write", "output waits in the out-buffer but WRITE is not registered (nothing will "
                    "send it), or it has not shrunk for 2 s (the peer does not read)"),
    ("busy-loop", "over 1,000 waits a second report ready fds while almost no bytes move: "
                  "the loop spins (WRITE left on, or a listener failing accept())"),
    ("fd-pressure", "accept() fails with EMFILE, open fds pass 80% of RLIMIT_NOFILE, or select "
                    "nears its FD_SETSIZE of 1024"),
    ("interest-mismatch", "the kernel's epoll interest list (/proc/self/fdinfo) disagrees with "
                          "the engine's: a lost, stale or never re-armed registration"),
)

MULTIPLEXERS = """\
select(2) takes three bitmaps (fd_sets) of FD_SETSIZE = 1024 bits: only fds 0..1023 can be \
watched, however few fds there are (an fd numbered 1500 is refused outright). Every call \
copies the sets into the kernel, which checks every fd up to the highest one and overwrites \
the sets with the ready ones, so the caller rebuilds them and scans them again: the cost of \
a call grows with the highest fd number, not with how many fds are ready. Level-triggered only.

poll(2) takes an array of (fd, events) structs: no limit on fd numbers, but the whole array \
is copied in and every entry is checked on every call, so a call costs O(registered fds) even \
when one fd is ready. Level-triggered only.

epoll keeps the interest list inside the kernel: epoll_create1() makes the instance, \
epoll_ctl() adds, changes or removes an fd once (not on every call), and the kernel queues fds \
on a ready list as their state changes. epoll_wait() copies only the ready events out to user \
space, up to maxevents, so its cost follows the number of ready fds, not registered ones. It \
copies them; it does not share memory with user space through mmap (a common myth). \
epoll_create()'s size argument has been ignored since Linux 2.6.8 (it must only be > 0).

io_uring (uring) shares two rings with the kernel through mmap: the program writes \
requests (SQEs) to the submission queue and reads results (CQEs) from the completion queue, \
one io_uring_enter both submitting and waiting. In readiness mode each fd has a poll request \
in the ring and a completion says "ready", as epoll would; muxtop still reads. In completion \
mode muxtop hands the kernel a buffer with a recv operation and the completion says how many \
bytes are already in it. The header shows the rings' heads and tails and what is in flight.

Compare "ready/wait" with "registered" in the header: with 10,000 mostly idle connections, \
select and poll still look at all of them on every call; epoll hands back only the few ready.
"""

TRIGGER_MODES = (
    ("level", "an fd is reported on every wait while it is ready (unread bytes stay readable). "
     "Forgiving: read some now, the rest is reported again next time."),
    ("edge", "EPOLLET: an fd is reported when its state changes (new bytes arrive), once. The "
     "reader must read until EAGAIN; stop early and the bytes left in the kernel queue raise "
     "no new event, so the connection stalls with a growing rx-q (the naive-edge bug lab "
     "shows this). muxtop reads with a budget and keeps a pending list, so it never loses an "
     "edge."),
    ("oneshot", "EPOLLONESHOT: an fd is reported once, then disarmed until the program re-arms "
     "it with epoll_ctl(MOD); one thread handles it at a time. muxtop re-arms each fd after "
     "handling it."),
    ("completion", "uring only: no readiness at all. The kernel reads into muxtop's buffer and "
     "sends from it; a completion says how many bytes (< and > flag a recv and a send in "
     "flight). Leaving the mode cancels every operation and waits for its completion."),
)
LIVE_SWITCH = """\
A live switch (b, t) builds a fresh backend from muxtop's own table of fds and interests, \
registers every fd in it and closes the old one, between two wait calls: no connection or \
byte is lost."""
WAIT_COST = """\
cpu/call in the header (and cpu in the ready list) is the CPU time the engine's thread spends \
in one wait call that returns at once: mostly the kernel looking at fds. It comes from probes: \
every 2 ms at most (and never more than 1% of the time) the loop makes one wait call with no \
timeout, timed with the thread's CPU clock; the other calls are not timed (two more syscalls \
each). "scans" is how many fds a call looks at: select and poll every registered one, epoll \
only the ready ones. h holds 1,000 idle connections: on select or poll cpu/call climbs with \
them, and drops when b moves to epoll."""



class HelpScreen(ModalScreen[None]):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,q,question_mark,f1", "dismiss", "close help"),
    ]

    def __init__(self, keys: list[tuple[str, str, str]], view: SourceView = ENGINE) -> None:
        super().__init__()
        self.keys = keys
        self.view = view

    def show_keys(self, keys: list[tuple[str, str, str]]) -> None:
        """Write the help again if its keys changed (the answer keys follow the question)."""
        if keys != self.keys:
            self.keys = keys
            if self.is_mounted:
                self.query_one("#help-body", Static).update(self._text())

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="help-panel"):
            yield Static(self._text(), id="help-body")

    def on_mount(self) -> None:
        panel = self.query_one("#help-panel")
        panel.border_title = "muxtop help"
        panel.border_subtitle = "esc, q or ? closes · arrows scroll"
        panel.focus()

    def on_screen_resume(self) -> None:
        # The app keeps this screen between presses of ?: each opens at the top, as the first.
        self.query_one("#help-panel").scroll_home(animate=False, immediate=True)

    def _text(self) -> Group:
        view = self.view
        intro = [Text(view.help_title, "bold underline"), Text(view.help_intro), Text("")] \
            if view.help_title else []
        return Group(
            *intro,
            Text("Keys", "bold underline"), _grid(self.keys, "bold", None, "dim"), Text(""),
            Text("Columns", "bold underline"), _grid(view.columns_help), Text(""),
            Text("Floods", "bold underline"), Text(FLOODS), Text(""),
            Text("Flood patterns (F)", "bold underline"),
            _grid((p.name, p.does) for p in PATTERNS.values()),
            Text(""),
            Text("Bug lab (l, or muxtop --lab NAME)", "bold underline"),
            _grid((name, LAB_HELP[name]) for name in LABS), Text(""),
            Text("Diagnoses (the side panel; ! in flags; details with enter)",
                 "bold underline"), _grid(DETECTORS), Text(""),
            Text("select, poll, epoll, io_uring", "bold underline"), Text(MULTIPLEXERS),
            Text("Trigger modes (epoll or uring for edge and oneshot)", "bold underline"),
            _grid(TRIGGER_MODES), Text(""), Text(LIVE_SWITCH), Text(""),
            Text("What a wait call costs", "bold underline"), Text(WAIT_COST),
        )


def _grid(rows, *styles: str | None) -> Table:
    """A borderless table: the first column bold and never wrapped, the rest as `styles`."""
    styles = styles or ("bold", None)
    grid = Table.grid(padding=(0, 2))
    for i, style in enumerate(styles):
        grid.add_column(style=style, no_wrap=i < len(styles) - 1)
    for row in rows:
        grid.add_row(*row)
    return grid
