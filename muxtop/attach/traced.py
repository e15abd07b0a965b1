"""The traced parts of an attach Snapshot (attach --trace) for the report: the wait calls as
JSON and as text lines, the tracer's state, and the reads and writes per fd."""

from __future__ import annotations

from muxtop import events
from muxtop.kernel import epoll
from muxtop.snapshot import Snapshot, WaitCall, WaitRecord

WAITS_IN_TEXT = 20  # the newest wait calls the text report lists


def _ready(record: WaitRecord) -> list[dict]:
    # epoll's names (IN, OUT, RDHUP...): poll's bits are the same, select maps onto them
    return [{"fd": fd, "events": epoll.decode(mask)} for fd, mask in record.pairs()]


def wait_json(record: WaitRecord, call: WaitCall, first: float) -> dict:
    return {"seq": record.seq, "at": round(record.start - first, 6), "tid": call.tid,
            "syscall": call.syscall, "epfd": call.epfd if call.epfd >= 0 else None,
            "timeout": record.timeout, "blocked": record.duration,
            "registered": record.registered, "count": record.count, "ready": _ready(record),
            "unmapped_data": list(call.unmapped), "error": call.error or None}


def traced_json(snapshot: Snapshot, waits_after: int = -1) -> dict:
    """The "trace", "waits" and "io" keys of `attach --once --json --trace`; "waits" only
    those with a seq over `waits_after`."""
    trace = snapshot.trace
    now = snapshot.taken_at
    first = snapshot.waits[0].start if snapshot.waits else now

    def ago(at: float | None) -> float | None:
        # The Snapshot's moment is taken before the trace is read in: a call the tracer
        # saw after it happened "now", not in the future.
        return None if at is None else round(max(0.0, now - at), 3)

    return {
        "trace": None if trace is None else {
            "tracer": trace.tracer, "state": trace.state, "note": trace.note,
            "seconds": round(now - trace.since, 1), "waits": trace.waits,
            "counted": trace.counted, "io_calls": trace.io_calls, "io": trace.io,
            "lost": trace.lost,
            "loss_share": round(trace.loss_share, 4)},
        "waits": [wait_json(w, c, first) for w, c in zip(snapshot.waits, snapshot.wait_calls)
                  if w.seq > waits_after],
        "io": [{"fd": io.fd, "reads": io.reads, "read_bytes": io.read_bytes,
                "last_read_seconds_ago": ago(io.last_read_at), "last_read": io.last_read,
                "last_read_asked": io.last_read_asked, "eagain_seconds_ago": ago(io.eagain_at),
                "writes": io.writes, "written_bytes": io.written_bytes,
                "write_eagain_seconds_ago": ago(io.write_eagain_at)}
               for io in snapshot.fd_io],
    }


def trace_line(snapshot: Snapshot) -> str:
    """``traced by strace (tracing): 1,234 waits/s, 1.20 ready per wait, p50 ...``."""
    trace, r = snapshot.trace, snapshot.rates
    if trace is None:
        return ""
    line = (f"traced by {trace.tracer} ({trace.state}): {r.waits:,.0f} waits/s, "
            f"{r.ready_per_wait:.2f} ready per wait, blocked p50 {r.wait_p50 * 1e3:.3f} ms "
            f"p99 {r.wait_p99 * 1e3:.3f} ms, {trace.waits:,} waits seen")
    if trace.counted > trace.waits:
        line += (f" of {trace.counted:,} counted (the rest counted in the kernel, not "
                 "itemized: their lines are rationed)")
    if trace.lost:
        line += f", {trace.lost:,} events lost"
        if trace.loss_share:
            line += (f" ({trace.loss_share:.1%} of the latest: the rates are scaled up for "
                     "them, an estimate)")
    return line + (f"; {trace.note}" if trace.note else "")


def wait_lines(snapshot: Snapshot) -> list[str]:
    """The tracer's state and the newest wait calls, one line each (nothing if untraced)."""
    if snapshot.trace is None:
        return []
    lines = [trace_line(snapshot)]
    pairs = list(zip(snapshot.waits, snapshot.wait_calls))[-WAITS_IN_TEXT:]
    for record, call in pairs:
        where = f"({call.epfd})" if call.epfd >= 0 else ""
        ready = " ".join(f"{fd}:{events.short(mask)}" for fd, mask in record.pairs())
        more = record.count - len(record.ready) // 2
        lines.append(f"  #{record.seq:<7} tid {call.tid:<7} {call.syscall + where:<18} "
                     f"blocked {record.duration * 1e3:9.3f} ms  "
                     f"{record.count}/{record.registered} ready  "
                     f"{call.error or ready or '-'}{f' +{more} more' if more > 0 else ''}")
    if not pairs:
        # /proc still says where each thread waits (an epoll_wait(…, -1) that never returns)
        blocked = snapshot.target.threads if snapshot.target is not None else ()
        lines.append("  no wait call returned yet" + (f"; blocked now: {'; '.join(blocked)}"
                                                       if blocked else ""))
    return lines
