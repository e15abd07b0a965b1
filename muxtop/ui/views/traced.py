"""The picture of another process whose wait calls are traced (`muxtop attach --trace`): the
attached view (fds, epoll masks, kernel queues, findings) plus what only the trace shows —
the ready list of every wait call, which thread made it with which syscall, what each fd was
last reported with ("last ev"), and what the app then read and wrote."""

from __future__ import annotations

from muxtop.events import long
from muxtop.snapshot import TRACE_TRACING, ConnView, FdIo, Snapshot
from muxtop.ui import format as fmt
from muxtop.ui.views import engine, process
from muxtop.ui.views.base import Column, Detail, Header, SourceView


class TracedFacts(process.ProcessFacts):
    """The attach facts plus the traced reads and writes of each fd."""

    def __init__(self, snapshot: Snapshot) -> None:
        super().__init__(snapshot)
        self.io = {io.fd: io for io in snapshot.fd_io}


def _last_events() -> Column:
    return next(c for c in engine.COLUMNS if c.id == "events")


def _columns() -> tuple[Column, ...]:
    """The attached view's columns with "last ev" after the epoll mask."""
    columns = list(process.COLUMNS)
    at = next(i for i, c in enumerate(columns) if c.id == "interest") + 1
    columns.insert(at, _last_events())
    return tuple(columns)


COLUMNS = _columns()
COLUMNS_HELP = (*process.COLUMNS_HELP[:5],
                ("last ev", "what the last traced wait call reported for the fd: R readable, "
                 "W writable, E error, H hang-up"),
                *process.COLUMNS_HELP[5:])
INTRO = (
    "muxtop reads the process from /proc every --interval seconds and a tracer (bpftrace or "
    "strace) follows its wait calls as they happen: the ready-list log shows every "
    "epoll_wait, poll or select with the thread that made it, its timeout, how long it "
    "blocked and which fds came back with which events. epoll returns the app's own data "
    "for each fd; muxtop maps it back through /proc/PID/fdinfo. With reads and writes traced "
    "too, a stuck read is proven: reported, read short of EAGAIN, and never reported again. "
    "strace stops the target at every traced call, so a busy server runs several times "
    "slower while it is attached; bpftrace does not stop it. Nothing is changed in the "
    "process: the keys that steer muxtop's own engine are greyed out.")


def wait_label(s: Snapshot, index: int) -> str:
    """The ready-list log's column: ``4242 epoll_wait(5)``."""
    calls = s.wait_calls
    if not 0 <= index < len(calls):
        return ""
    call = calls[index]
    where = f"({call.epfd})" if call.epfd >= 0 else ""
    return f"{call.tid} {call.syscall}{where}"


# ---- the detail view --------------------------------------------------------------------

def _ago(now: float, at: float | None) -> str:
    return "never" if at is None else f"{fmt.duration(now - at)} ago"


def traced(d: Detail, v: ConnView, s: Snapshot, facts: TracedFacts) -> None:
    d.heading("Traced")
    now = s.taken_at
    if v.last_ready is None:
        d.row("last events", "-", "no traced wait call has reported it")
    else:
        d.row("last events", long(v.last_events), f"reported {_ago(now, v.last_ready)}")
    io: FdIo | None = facts.io.get(v.fd)
    if s.trace is not None and not s.trace.io:
        d.note("reads and writes are not traced (--no-io)")
    elif io is None:
        d.row("reads / writes", "none", "since tracing began")
    else:
        asked = f" of {io.last_read_asked:,} asked" if io.last_read_asked > 0 else ""
        last = "EOF" if io.last_read == 0 else "error" if io.last_read < 0 else \
            f"{io.last_read:,} B{asked}"
        d.row("reads", f"{io.reads:,} ({io.read_bytes:,} B)",
              f"last {_ago(now, io.last_read_at)}: {last}" if io.reads else "")
        d.row("read EAGAIN", _ago(now, io.eagain_at),
              "the last read that found the queue empty")
        d.row("writes", f"{io.writes:,} ({io.written_bytes:,} B)",
              f"last {_ago(now, io.last_write_at)}" if io.writes else "")
        if io.write_eagain_at is not None:
            d.row("write EAGAIN", _ago(now, io.write_eagain_at), "the send queue was full")
    d.end()


def waits_naming(d: Detail, v: ConnView, s: Snapshot, facts: TracedFacts) -> None:
    engine.waits_naming(d, v, s, facts)
    d.end()


# ---- the header ---------------------------------------------------------------------------

def trace_line(h: Header, s: Snapshot) -> None:
    trace = s.trace
    h.add("trace ", "label")
    if trace is None:
        h.add("-")
        return
    h.add(trace.tracer, "mode")
    h.add("  ")
    if trace.state != TRACE_TRACING:
        h.add(f" TRACE {trace.state.upper()}: {fmt.plain(trace.note)} ", "alert")
        return
    if trace.note:  # strace's slowdown: the numbers here are of a slowed target
        h.add(" SLOWS THE TARGET ", "lab")
        h.add("  ")
    engine.wait_figures(h, s, sampled=False)
    if trace.lost:
        h.add(f"  lost {trace.lost:,}", "alert")


def header(h: Header, s: Snapshot) -> None:
    """Line 1: which process; 2: its command line; 3: its wait calls; 4: what it costs."""
    process.process_line(h, s)
    h.newline()
    process.command_line(h, s)
    h.newline()
    trace_line(h, s)
    h.newline()
    process.resources_line(h, s)


TRACED = SourceView(
    title="muxtop attach --trace", columns=COLUMNS, sort_cycle=process.SORT_CYCLE,
    facts=TracedFacts,
    sections=(process.multiplexer, traced, process.queues, process.tcp_info, engine.history,
              engine.findings, waits_naming, process.registrations),
    header=header, has_waits=True, pinned_first=False, stopped="EXITED",
    help_title="Attached to another process, its wait calls traced", help_intro=INTRO,
    columns_help=COLUMNS_HELP, interest_lists=True, header_lines=4, wait_label=wait_label)
