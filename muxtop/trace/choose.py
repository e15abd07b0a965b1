"""Which tracer runs: `--trace bpftrace`, `--trace strace`, or `auto` — bpftrace when it can
run here (cheap for the target), else strace when ptrace is permitted (slow for the target:
said first), else one message naming what is missing and how to get it."""

from __future__ import annotations

import os
import time
from collections.abc import Callable

from muxtop.trace import bpftrace, strace
from muxtop.trace.permissions import tracefs, tracer_of
from muxtop.trace.tracer import Tracer, TraceUnavailable

AUTO = "auto"
CHOICES = (AUTO, bpftrace.NAME, strace.NAME)


def _tracepoints() -> set[str] | None:
    """The syscalls this kernel has tracepoints for; None when it cannot be listed."""
    root = tracefs()
    if root is None:
        return None
    try:
        return {name[len("sys_enter_"):] for name in os.listdir(f"{root}/events/syscalls")
                if name.startswith("sys_enter_")}
    except OSError:
        return None


def bpftrace_tracer(pid: int, io: bool,
                    progress: Callable[[str], None] = lambda text: None) -> Tracer:
    problem = bpftrace.problem()
    if problem:
        raise TraceUnavailable(problem)
    text = bpftrace.script(pid, io, _tracepoints())
    # Compiling and attaching its probes takes bpftrace seconds (4.5 idle, 17 on a loaded
    # machine): say so before, and how long it took after, rather than hang in silence.
    progress(f"starting bpftrace on process {pid}: compiling its probes takes a few "
             "seconds, more on a busy machine")
    started = time.monotonic()
    tracer = Tracer(bpftrace.NAME, bpftrace.command(text), bpftrace.BpftraceParser(pid),
                    pid=pid, ready=_bpftrace_ready, io=io, env=bpftrace.ENV,
                    detached_at_once=True).start()
    progress(f"bpftrace traces process {pid} (it took {time.monotonic() - started:.1f} s "
             "to start)")
    return tracer


def _bpftrace_ready(tracer: Tracer) -> bool:
    os.getppid()  # the script's last probe answers this call with READY
    return bpftrace.READY_LINE in tracer.parser.messages


def strace_tracer(pid: int, io: bool, warn: Callable[[str], None] = lambda text: None) -> Tracer:
    problem = strace.problem(pid)
    if problem:
        raise TraceUnavailable(problem)
    warn(f"{strace.SLOWDOWN}.")
    parser = strace.StraceParser(pid, strace.thread_of(pid))
    return Tracer(strace.NAME, strace.command(pid, io), parser, pid=pid,
                  ready=lambda t: tracer_of(pid) == t.child_pid, note=strace.SLOWDOWN,
                  io=io).start()


def open_tracer(pid: int, want: str = AUTO, io: bool = True,
                warn: Callable[[str], None] = lambda text: None,
                progress: Callable[[str], None] = lambda text: None) -> Tracer:
    """A started Tracer of `pid`'s wait calls (and reads and writes when `io`); raises
    TraceUnavailable. `warn` hears, before strace starts, what it costs the target (and,
    under `auto`, why bpftrace could not run); `progress`, bpftrace's slow start."""
    if want == bpftrace.NAME:
        return bpftrace_tracer(pid, io, progress)
    if want == strace.NAME:
        return strace_tracer(pid, io, warn)
    try:
        return bpftrace_tracer(pid, io, progress)
    except TraceUnavailable as exc:
        without_bpf = str(exc)
    try:
        return strace_tracer(pid, io, lambda text: warn(
            f"bpftrace cannot run: {without_bpf}; tracing with strace instead: {text}"))
    except TraceUnavailable as exc:
        raise TraceUnavailable(f"no tracer can run: bpftrace: {without_bpf}; "
                               f"strace: {exc}") from None
