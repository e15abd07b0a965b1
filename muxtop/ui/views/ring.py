"""An io_uring instance in the header and the detail view: the engine's own ring (the uring
backend) or another process's (attach), from the Snapshot's RingViews."""

from __future__ import annotations

from muxtop.kernel.uring import feature_names
from muxtop.snapshot import ConnView, RingView, Snapshot
from muxtop.ui import format as fmt
from muxtop.ui.views.base import WARN, Detail, Facts, Header


def of(v: ConnView, s: Snapshot) -> RingView | None:
    """The ring whose fd this row is, if any."""
    for ring in s.rings:
        if ring.fd == v.fd:
            return ring
    return None


def header(h: Header, s: Snapshot) -> None:
    """The engine's ring in one piece of the header: queue positions, in flight, per enter."""
    if not s.rings:
        return
    r = s.rings[0]
    h.add("  ", drop=1)  # the line's last piece before this one ends with no gap
    h.pair("ring", f"SQ {r.sq_head:,}/{r.sq_tail:,} CQ {r.cq_head:,}/{r.cq_tail:,}", drop=2)
    h.pair("in flight", f"{r.in_flight:,}", drop=1)
    if r.enters > 0 and r.submitted >= 0:
        h.pair("sqe/enter", f"{r.submitted / r.enters:.2f}", drop=4)
    if r.cq_overflow:
        h.add(f"CQ overflow {r.cq_overflow:,}  ", WARN)


def section(d: Detail, v: ConnView, s: Snapshot, facts: Facts) -> None:
    r = of(v, s)
    if r is None:
        return
    d.heading("io_uring")
    if r.mode:
        d.row("mode", r.mode, "the kernel copies the bytes: recv/send complete with a count"
              if r.mode == "completion" else "a poll request says an fd is ready; muxtop reads")
    d.row("SQ head / tail", f"{r.sq_head:,} / {r.sq_tail:,}",
          f"{(r.sq_tail - r.sq_head) & 0xFFFFFFFF:,} submissions not yet consumed, of "
          f"{r.sq_entries:,} entries")
    d.row("CQ head / tail", f"{r.cq_head:,} / {r.cq_tail:,}",
          f"{(r.cq_tail - r.cq_head) & 0xFFFFFFFF:,} completions not yet reaped, of "
          f"{r.cq_entries:,} entries")
    d.row("in flight", f"{r.in_flight:,}", "requests the kernel holds (armed polls, "
          "recv/send not yet completed)")
    d.row("CQ overflow", f"{r.cq_overflow:,}", "completions that found the CQ full")
    if r.enters >= 0:
        per = f"{r.submitted / r.enters:.2f} SQEs per enter" if r.enters else ""
        d.row("io_uring_enter", f"{r.enters:,} calls", per)
        d.row("submitted / reaped", f"{r.submitted:,} / {r.completed:,}")
    if r.sq_thread >= 0:
        d.row("SQ thread", str(r.sq_thread), "a kernel thread polls the SQ (SQPOLL)")
    if r.features >= 0:
        d.row("features", fmt.plain(" ".join(feature_names(r.features)) or "none"))
    d.end()
