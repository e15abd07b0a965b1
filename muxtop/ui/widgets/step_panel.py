"""Step mode's panel: what the last stepped wait call returned, and what the engine did with
each fd it reported (read, and why the reading stopped; sent; interest; re-armed; accepted;
closed). Shown only while the engine is stepping; redrawn only when a step was made."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static

from muxtop import events
from muxtop.snapshot import (
    READ_EAGAIN,
    READ_EOF,
    READ_FULL,
    READ_NAIVE,
    READ_ONE,
    READ_SHORT,
    FdStep,
    Snapshot,
    StepInfo,
)
from muxtop.ui import format as fmt

WAIT_CALLS = {"select": "select()", "poll": "poll()", "epoll": "epoll_wait()"}
# How the reading of one fd ended, in words (FdStep.read_end).
READ_ENDS = {
    READ_ONE: "one read: the next wait reports the fd again while bytes remain",
    READ_SHORT: "stopped at a short read: the queue was empty, a new byte raises a new edge",
    READ_EAGAIN: "read until EAGAIN",
    READ_FULL: "the buffer kept filling: read on without waiting (pending list)",
    READ_NAIVE: "one read per edge (naive-edge): the rest waits for an edge that never comes",
    READ_EOF: "read to the peer's FIN",
}


class StepPanel(Static):
    DEFAULT_CSS = """
    StepPanel {
        display: none;
        width: 1fr;
        border: round $warning;
        border-title-color: $text-warning;
        padding: 0 1;
        overflow-y: auto;
    }
    StepPanel.-shown { display: block; }
    """

    def __init__(self, **kwargs) -> None:
        super().__init__("", **kwargs)
        self._shown: tuple | None = None

    def show(self, snapshot: Snapshot) -> None:
        step = snapshot.step
        self.set_class(step is not None, "-shown")
        if step is None:
            self._shown = None
            return
        key = (step.steps, snapshot.backend, snapshot.trigger)
        if key == self._shown:
            return
        self._shown = key
        self.border_title = f"STEP · {step.steps:,} stepped · . next · c continue"
        self.update(describe(step, snapshot.backend, snapshot.trigger))


def describe(step: StepInfo, backend: str, trigger: str) -> Text:
    """The step in words: the call, then one line per fd."""
    text = Text()
    call = WAIT_CALLS.get(backend, f"{backend} wait")
    if not step.seq:
        text.append(f"Stopped before the next {call} ({backend}/{trigger}). ", "bold")
        text.append("Clients wait: nothing is read or sent until . makes one wait call.")
        return text
    ready = "nothing ready" if not step.count else f"{step.count:,} ready"
    text.append(f"wait #{step.seq:,}: {call} with timeout 0 → {ready}", "bold")
    text.append(f"  ({backend}/{trigger}; stopped again before the next one)")
    for fd_step in step.fds:
        text.append("\n")
        text.append(f"fd {fd_step.fd:<5}", "bold")
        text.append(f"{_events(fd_step):<8}")
        text.append(fd_line(fd_step))
    return text


def _events(f: FdStep) -> str:
    if f.events:
        return events.short(f.events)
    # Not reported: read from the pending list, or a proxy's leg that sent what its
    # partner read.
    return "pending" if f.pending or f.role == "connection" or f.read else "via pair"


def fd_line(f: FdStep) -> str:
    """What the step did with one ready fd, in words."""
    if f.role == "listener":
        if f.accepted:
            return f"listener: accepted {len(f.accepted)} (fd {', '.join(map(str, f.accepted))})"
        return "listener: accept found nothing (another took it, or a backoff)"
    if f.role == "control":
        return "control: a command arrived (muxtop's own eventfd)"
    if f.role == "gone":
        return "closed earlier in this batch: skipped"
    return " · ".join([*_bytes_moved(f), *_changes(f)]) or "nothing to do"


def _bytes_moved(f: FdStep) -> list[str]:
    """A connection's bytes: read, left in the kernel, sent, left in muxtop's out-buffer."""
    parts = []
    if f.role != "connection":  # a proxy's leg: "client leg ⇄ fd 12"
        parts.append(fmt.plain(f.role))
    if f.read or f.read_end:
        parts.append(f"read {fmt.size(f.read)}" + (f", {READ_ENDS[f.read_end]}"
                                                 if f.read_end in READ_ENDS else ""))
    if f.queued > 0:
        parts.append(f"{fmt.size(f.queued)} still queued in the kernel")
    if f.sent:
        parts.append(f"sent {fmt.size(f.sent)}")
    if f.out:
        parts.append(f"{fmt.size(f.out)} waiting in muxtop's out-buffer")
    return parts


def _changes(f: FdStep) -> list[str]:
    """What the step changed of a connection: its interest, its arming, its place, its end."""
    parts = []
    if f.interest_after != f.interest_before:
        parts.append(f"interest {events.long(f.interest_before) or 'none'} → "
                     f"{events.long(f.interest_after) or 'none'}")
    if f.rearmed:
        parts.append("re-armed (oneshot disarmed it)")
    if f.pending:
        parts.append("on the pending list")
    if f.closed:
        parts.append(f"closed: {fmt.plain(f.closed)}")
    return parts
