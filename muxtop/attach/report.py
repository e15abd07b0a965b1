"""An attach Snapshot as a JSON document (for scripts) and as plain text (for a terminal).

Names, argv, paths and notes are the target's text: every text line here goes through
`printable`, so none of it reaches the terminal as a control sequence. (JSON escapes them.)
"""

from __future__ import annotations

from muxtop import events
from muxtop.attach import traced
from muxtop.findings import evidence_text
from muxtop.kernel import epoll
from muxtop.printable import printable
from muxtop.snapshot import (
    KIND_EPOLL,
    KIND_LISTENER,
    STATUS_STOPPED,
    STOPPED_NOTE,
    ConnView,
    Snapshot,
    SocketInfo,
)


def to_json(snapshot: Snapshot, waits_after: int = -1) -> dict:
    """Everything the snapshot knows, as plain JSON types. See the CLI's help for the shape.
    `waits_after`: only the traced waits with a later seq (a stream of lines carries each
    wait once, not the whole ring at every line)."""
    process, target = snapshot.process, snapshot.target
    sockets = {k.fd: k for k in snapshot.sockets}
    return {
        "pid": target.pid if target else None,
        "name": process.name if process else None,
        "cmdline": target.cmdline if target else "",
        "exited": not snapshot.running,
        "wall_time": snapshot.wall_time,
        "uptime_seconds": round(snapshot.taken_at - snapshot.started_at, 1),
        "process": process._asdict() if process else None,
        "backend": snapshot.backend,
        "trigger": snapshot.trigger,
        "listen": snapshot.listen,
        "registered": snapshot.registered,
        "open_connections": snapshot.open_connections,
        "stuck_after": target.stuck_after if target else None,
        "threads": list(target.threads) if target else [],
        "epoll": [
            {"fd": e.fd, "watches": [
                {"fd": w.fd, "mask": f"0x{w.mask:08x}", "decoded": epoll.decode(w.mask),
                 "disarmed": epoll.is_disarmed(w.mask), "data": w.data, "stale": w.stale}
                for w in e.watches]}
            for e in snapshot.epoll],
        "io_uring": [r._asdict() for r in snapshot.rings],
        "fds": [_fd_json(view, sockets.get(view.fd)) for view in snapshot.connections],
        "diagnoses": [d.as_json() for d in snapshot.diagnoses],
        "notices": [{"level": n.level, "text": n.text} for n in snapshot.notices],
        **(traced.traced_json(snapshot, waits_after) if snapshot.trace is not None else {}),
    }


def _fd_json(view: ConnView, socket: SocketInfo | None) -> dict:
    doc = {"fd": view.fd, "kind": view.kind, "state": view.state,
           "interest": events.long(view.interest), "flags": view.flags,
           "watched_by": list(view.watched_by), "rx_queue": view.rx_queue,
           "tx_queue": view.tx_queue, "note": view.note}
    if socket is not None:
        doc.update(socket._asdict())
    return doc


def _size(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return ""


def header_lines(snapshot: Snapshot) -> list[str]:
    p = snapshot.process
    lines = []
    if p is not None:
        lines.append(f"PID {p.pid} {p.name}  cpu {p.cpu_percent:.1f}%  rss {_size(p.rss)}  "
                     f"threads {p.threads}  fds {p.num_fds}/{p.fd_limit or '?'}"
                     + (f"  STOPPED ({STOPPED_NOTE})" if p.status == STATUS_STOPPED else ""))
    lines.append(f"cmdline: {snapshot.target.cmdline if snapshot.target else ''}")
    lines.append(f"backend {snapshot.backend}  trigger {snapshot.trigger}  "
                 f"registered {snapshot.registered}  connections {snapshot.open_connections}  "
                 f"listen {snapshot.listen or '-'}")
    if snapshot.target is not None and snapshot.running:
        lines += [f"thread {line}" for line in snapshot.target.threads]
    return [printable(line) for line in lines]


def fd_table(snapshot: Snapshot) -> list[str]:
    sockets = {k.fd: k for k in snapshot.sockets}
    rows = [("FD", "KIND", "PROTO", "STATE", "LOCAL", "PEER", "RX", "TX", "EPOLL", "FLAGS")]
    for view in snapshot.connections:
        if view.kind == KIND_EPOLL:
            continue  # shown with its interest list
        k = sockets.get(view.fd)
        if view.kind == KIND_LISTENER and k is not None and k.accept_queue is not None:
            rx = f"{k.accept_queue}/{'?' if k.backlog is None else k.backlog}"
        else:
            rx = "-" if view.rx_queue is None else str(view.rx_queue)
        rows.append((str(view.fd), view.kind, (k.proto if k else "") or "-",
                     (k.tcp_state or k.unix_state if k else "") or view.state,
                     (k.local if k else "") or view.note, view.peer or "-", rx,
                     "-" if view.tx_queue is None else str(view.tx_queue),
                     ",".join(map(str, view.watched_by)) or "none", view.flags or "-"))
    rows = [tuple(map(printable, row)) for row in rows]  # escaped first: widths as printed
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]
    if snapshot.target is not None and snapshot.target.netns:
        lines.append(f"(backlogs ? and no byte counters: the process is in another network "
                     f"namespace, {snapshot.target.netns}, which sock_diag cannot see into)")
    return lines


def epoll_lines(snapshot: Snapshot) -> list[str]:
    lines = []
    for e in snapshot.epoll:
        lines.append(f"epoll fd {e.fd}: {len(e.watches)} watched")
        lines += [f"  fd {w.fd:<5} 0x{w.mask:08x}  {epoll.decode(w.mask)}"
                  + (f" [stale: {w.stale}]" if w.stale else "") for w in e.watches]
    return [printable(line) for line in lines]


def diagnosis_lines(snapshot: Snapshot) -> list[str]:
    lines = []
    for d in snapshot.diagnoses:
        where = "process" if d.fd is None else f"fd {d.fd}"
        evidence = ", ".join(f"{k}={evidence_text(k, v)}" for k, v in d.evidence)
        lines += [f"! {d.kind} ({where}): {d.explanation}", f"    {evidence}"]
    return [printable(line) for line in lines] or ["no findings"]


def live_lines(snapshot: Snapshot) -> list[str]:
    """What `attach --text` prints at each refresh: the header, the fds, the trace and its
    newest waits, the findings and the latest notices (a tracer's warning among them)."""
    return (header_lines(snapshot) + [""] + fd_table(snapshot) + [""]
            + [printable(line) for line in traced.wait_lines(snapshot)]
            + diagnosis_lines(snapshot)
            + [printable(f"{n.level}: {n.text}") for n in snapshot.notices[-3:]])


def to_text(snapshot: Snapshot) -> str:
    """The readable report of `muxtop attach PID --once`."""
    parts = [header_lines(snapshot), epoll_lines(snapshot), fd_table(snapshot),
             [printable(line) for line in traced.wait_lines(snapshot)],
             diagnosis_lines(snapshot),
             [printable(f"{n.level}: {n.text}") for n in snapshot.notices]]
    return "\n\n".join("\n".join(part) for part in parts if part) + "\n"
