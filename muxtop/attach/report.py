"""An attach Snapshot as a JSON document (for scripts) and as plain text (for a terminal)."""

from __future__ import annotations

from muxtop import events
from muxtop.attach import masks
from muxtop.snapshot import KIND_EPOLL, KIND_LISTENER, ConnView, Snapshot


def to_json(snapshot: Snapshot) -> dict:
    """Everything the snapshot knows, as plain JSON types. See the CLI's help for the shape."""
    extra = snapshot.extra
    process = snapshot.process
    sockets = extra.get("sockets", {})
    return {
        "pid": extra.get("pid"),
        "name": process.name if process else None,
        "cmdline": extra.get("cmdline", ""),
        "exited": extra.get("exited", False),
        "wall_time": snapshot.wall_time,
        "uptime_seconds": round(snapshot.taken_at - snapshot.started_at, 1),
        "process": process._asdict() if process else None,
        "backend": snapshot.backend,
        "trigger": snapshot.trigger,
        "listen": snapshot.listen,
        "registered": snapshot.registered,
        "open_connections": snapshot.open_connections,
        "stuck_after": extra.get("stuck_after"),
        "epoll": [
            {"fd": epfd, "watches": [
                {"fd": tfd, "mask": mask, "decoded": decoded,
                 "disarmed": masks.is_disarmed(int(mask, 16))}
                for tfd, mask, decoded in watched]}
            for epfd, watched in extra.get("epoll", {}).items()],
        "fds": [_fd_json(view, sockets.get(view.fd)) for view in snapshot.connections],
        "diagnoses": [d.as_json() for d in snapshot.diagnoses],
        "notices": [{"level": n.level, "text": n.text} for n in snapshot.notices],
    }


def _fd_json(view: ConnView, details: dict | None) -> dict:
    doc = {"fd": view.fd, "kind": view.kind, "state": view.state,
           "interest": events.long(view.interest), "flags": view.flags,
           "watched_by": list(view.watched_by), "rx_queue": view.rx_queue,
           "tx_queue": view.tx_queue, "note": view.note}
    if details is not None:
        doc.update(details)
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
                     f"threads {p.threads}  fds {p.num_fds}/{p.fd_limit or '?'}")
    lines.append(f"cmdline: {snapshot.extra.get('cmdline', '')}")
    lines.append(f"backend {snapshot.backend}  trigger {snapshot.trigger}  "
                 f"registered {snapshot.registered}  connections {snapshot.open_connections}  "
                 f"listen {snapshot.listen or '-'}")
    return lines


def fd_table(snapshot: Snapshot) -> list[str]:
    sockets = snapshot.extra.get("sockets", {})
    rows = [("FD", "KIND", "PROTO", "STATE", "LOCAL", "PEER", "RX", "TX", "EPOLL", "FLAGS")]
    for view in snapshot.connections:
        if view.kind == KIND_EPOLL:
            continue  # shown with its interest list
        d = sockets.get(view.fd, {})
        if view.kind == KIND_LISTENER and d.get("accept_queue") is not None:
            backlog = d.get("backlog")
            rx = f"{d['accept_queue']}/{'?' if backlog is None else backlog}"
        else:
            rx = "-" if view.rx_queue is None else str(view.rx_queue)
        rows.append((str(view.fd), view.kind, d.get("proto", "-"),
                     d.get("tcp_state") or d.get("unix_state") or view.state,
                     d.get("local") or view.note, view.peer or "-", rx,
                     "-" if view.tx_queue is None else str(view.tx_queue),
                     ",".join(map(str, view.watched_by)) or "none", view.flags or "-"))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]


def epoll_lines(snapshot: Snapshot) -> list[str]:
    lines = []
    for epfd, watched in snapshot.extra.get("epoll", {}).items():
        lines.append(f"epoll fd {epfd}: {len(watched)} watched")
        lines += [f"  fd {tfd:<5} {mask}  {decoded}" for tfd, mask, decoded in watched]
    return lines


def diagnosis_lines(snapshot: Snapshot) -> list[str]:
    lines = []
    for d in snapshot.diagnoses:
        where = "process" if d.fd is None else f"fd {d.fd}"
        evidence = ", ".join(f"{k}={v}" for k, v in d.evidence)
        lines += [f"! {d.kind} ({where}): {d.explanation}", f"    {evidence}"]
    return lines or ["no findings"]


def to_text(snapshot: Snapshot) -> str:
    """The readable report of `muxtop attach PID --once`."""
    parts = [header_lines(snapshot), epoll_lines(snapshot), fd_table(snapshot),
             diagnosis_lines(snapshot), [f"{n.level}: {n.text}" for n in snapshot.notices]]
    return "\n\n".join("\n".join(part) for part in parts if part) + "\n"
