"""The picture of another process (`muxtop attach`): what each fd is, its TCP state, the
epoll masks that watch it and which epoll fd holds them, its kernel queues and the findings
that name it. Its wait calls cannot be seen from /proc, so there is no ready-list log."""

from __future__ import annotations

from muxtop import findings as kinds
from muxtop.events import long, short
from muxtop.kernel import epoll
from muxtop.snapshot import (
    FLAG_MEANINGS,
    KIND_EPOLL,
    KIND_LISTENER,
    STATUS_STOPPED,
    ConnView,
    Snapshot,
)
from muxtop.ui import format as fmt
from muxtop.ui.views import engine, ring
from muxtop.ui.views.base import ALERT, WARN, Column, Detail, Facts, Header, SourceView


class _ByIdentity:
    """The last value made from a sequence of parts, kept while the parts are the same
    objects: the attach reader hands over the same EpollSet while an interest list does not
    change, so thousands of watches are not walked again every Snapshot."""

    def __init__(self, make) -> None:
        self.make = make
        self.parts: tuple | None = None  # none yet: even () must be made once
        self.value = None

    def __call__(self, parts: tuple):
        kept = self.parts
        if kept is None or len(parts) != len(kept) or any(
                a is not b for a, b in zip(parts, kept)):
            self.parts, self.value = parts, self.make(parts)
        return self.value


def _watches_by_fd(epoll_sets: tuple) -> dict[int, list[tuple[int, int]]]:
    watches: dict[int, list[tuple[int, int]]] = {}  # fd -> [(epoll fd, mask)]
    for e in epoll_sets:
        for w in e.watches:
            watches.setdefault(w.fd, []).append((e.fd, w.mask))
    return watches


_WATCHES = _ByIdentity(_watches_by_fd)
_SOCKETS = _ByIdentity(lambda sockets: {k.fd: k for k in sockets})


class ProcessFacts(Facts):
    """The attach parts of a Snapshot by fd: sockets, the registrations watching each fd,
    the epoll sets, and the kinds of finding that name each fd."""

    def __init__(self, snapshot: Snapshot) -> None:
        super().__init__(snapshot)
        self.sockets = _SOCKETS(snapshot.sockets)
        self.epoll = {e.fd: e for e in snapshot.epoll}
        self.watches = _WATCHES(snapshot.epoll)
        self.findings: dict[int, list[str]] = {}
        for d in snapshot.diagnoses:
            for fd in d.named_fds():
                found = self.findings.setdefault(fd, [])
                kind = fmt.plain(d.kind)  # drawn in the row: a recording may say anything
                if kind not in found:
                    found.append(kind)

    def accept_queue(self, v: ConnView) -> int:
        socket = self.sockets.get(v.fd)
        if v.kind != KIND_LISTENER or socket is None:
            return 0
        return socket.accept_queue or 0

    def masks(self, v: ConnView) -> str:
        return "; ".join(epoll.words(mask) for _, mask in self.watches.get(v.fd, ()))


def local_cell(v: ConnView, f: ProcessFacts) -> str:
    socket = f.sockets.get(v.fd)
    if socket is not None:
        local = fmt.plain(socket.local)
        if socket.proto and not socket.proto.startswith("tcp"):
            local = f"{socket.proto} {local}"
        return local
    if v.kind == KIND_EPOLL:  # its trigger summary is in the header and the panel
        e = f.epoll.get(v.fd)
        return f"epoll: {len(e.watches) if e else 0} fds"
    return fmt.plain(v.note)


def state_cell(v: ConnView, f: ProcessFacts) -> str:
    socket = f.sockets.get(v.fd)
    if socket is not None:
        return socket.tcp_state or socket.unix_state or v.state
    return "epoll" if v.kind == KIND_EPOLL else fmt.DASH


def rx_cell(v: ConnView, f: ProcessFacts) -> str:
    socket = f.sockets.get(v.fd)
    if v.kind == KIND_LISTENER and socket is not None and socket.accept_queue is not None:
        return f"{socket.accept_queue}/{'?' if socket.backlog is None else socket.backlog}"
    return fmt.size(v.rx_queue)


def finding_cell(v: ConnView, f: ProcessFacts) -> str:
    found = f.findings.get(v.fd)
    return "! " + ",".join(map(kinds.short, found)) if found else ""


def rtt_cell(v: ConnView, f: Facts) -> str:
    known = v.tcp is not None and engine.is_conn(v) and v.tcp.rtt_us  # 0: sock_diag unseen
    return fmt.duration(v.tcp.rtt_us / 1e6 if known else None)


def _by_id(column_id: str, **changes) -> Column:
    return next(c for c in engine.COLUMNS if c.id == column_id)._replace(**changes)


# Columns keep the engine's ids where they sort the same way, so s, r and header clicks
# work unchanged; "local" and "watched" do not sort.
COLUMNS: tuple[Column, ...] = (
    _by_id("fd"),
    Column("local", "local / what", 0, False, None, False, local_cell, drop=2, least=14,
           most=40),
    _by_id("peer", cell=lambda v, f: fmt.plain(v.peer) or fmt.DASH, drop=3),
    _by_id("state", label="tcp state", cell=state_cell),
    _by_id("interest", label="epoll mask", width=16,
           cell=lambda v, f: f.masks(v) or fmt.DASH,
           tone=lambda v, f: ALERT if "disarmed" in f.masks(v) else None, drop=1),
    Column("watched", "by ep", 5, True, None, False,
           lambda v, f: ",".join(map(str, v.watched_by)) or fmt.DASH, drop=5),
    _by_id("rx_queue", label="rx/accq", width=8, cell=rx_cell,
           tone=lambda v, f: WARN if v.rx_queue or f.accept_queue(v) else None),
    _by_id("tx_queue"), _by_id("bytes_in"), _by_id("bytes_out"),
    _by_id("age", label="seen", cell=lambda v, f: fmt.age(f.now - v.opened_at)),
    _by_id("idle", cell=lambda v, f: fmt.age(f.now - v.last_io_at)
           if engine.is_conn(v) else fmt.DASH),
    _by_id("rtt", cell=rtt_cell),
    _by_id("flags", label="finding", width=14, cell=finding_cell,
           tone=lambda v, f: ALERT if f.findings.get(v.fd) else None),
)
SORT_CYCLE = tuple(c.id for c in COLUMNS if c.key is not None)

COLUMNS_HELP = (
    ("fd", "the process's file descriptor"),
    ("local / what", "the socket's own address (with its protocol unless TCP), or what another "
     "fd is: an epoll set and how many fds it watches, an eventfd, a pipe"),
    ("peer", "the remote address"),
    ("tcp state", "from /proc/net/tcp: LISTEN, ESTABLISHED, CLOSE_WAIT (the peer closed, the "
     "app has not)...; a unix socket's state"),
    ("epoll mask", "what each epoll set watching the fd asks for, without ERR and HUP (the "
     "kernel adds those to every one): IN, OUT, RDHUP; ET edge-triggered, ONESHOT, EXCLUSIVE; "
     "disarmed: a oneshot that fired and was never re-armed"),
    ("by ep", "the epoll fd(s) watching it"),
    ("rx/accq", "kernel receive queue: bytes arrived, not yet read; on a listener, connections "
     "waiting for accept() / the backlog"),
    ("tx-q", "kernel send queue: bytes not yet acknowledged by the peer, or unsent"),
    ("in / out", "bytes received / acknowledged by the peer over the socket's life (sock_diag; "
     "same network namespace only)"),
    ("seen / idle", "since muxtop first saw the fd / since its queues or state last changed"),
    ("rtt", "smoothed round-trip time (sock_diag)"),
    ("finding", "the diagnoses that name the fd: stuck-read, stuck-write, accept-full, "
     "close-wait; details with enter"),
)
INTRO = (
    "muxtop reads the process from /proc every --interval seconds and changes nothing: the "
    "keys that steer muxtop's own engine (b t k p f F x l) are greyed out. Another process's "
    "wait calls cannot be seen, so the ready-list log and the wait trends give way to its "
    "epoll interest lists and the findings. A queue must stay stuck --stuck-after seconds "
    "to count.")


# ---- the detail view --------------------------------------------------------------------

def multiplexer(d: Detail, v: ConnView, s: Snapshot, facts: Facts) -> None:
    d.heading("Multiplexer")
    if v.interest:
        d.row("interest", long(v.interest), f"({short(v.interest)}) what it is registered for")
    elif v.watched_by:
        d.row("interest", "none", "watched, but for nothing now: a fired oneshot, or no IN/OUT")
    else:
        d.row("interest", "none", "no epoll instance watches it")
    if v.watched_by:
        d.row("watched by", ", ".join(f"epoll fd {fd}" for fd in v.watched_by))
    if v.flags:
        d.row("flags", v.flags, "; ".join(FLAG_MEANINGS.get(f, f) for f in v.flags))
    d.end()


def queues_source(socket, s: Snapshot) -> tuple[str, str]:
    """Where an attached socket's (rx, tx) queue figures came from, for the detail view."""
    elsewhere = s.target is not None and s.target.netns
    if socket is None:
        return "", ""
    if socket.proto.startswith("tcp"):
        table = f"/proc/net/{socket.proto}" if elsewhere else "sock_diag"
        return table, table
    if socket.proto == "unix":
        return "unix_diag", "unix_diag: what the peer has not read yet"
    return f"/proc/net/{socket.proto}", f"/proc/net/{socket.proto}"


def queues(d: Detail, v: ConnView, s: Snapshot, facts: ProcessFacts) -> None:
    d.heading("Queues and counters")
    socket = facts.sockets.get(v.fd)
    elsewhere = s.target.netns if s.target is not None else ""
    if v.kind == KIND_LISTENER:
        backlog = "?" if socket is None or socket.backlog is None else socket.backlog
        why = (f" (unknown: the process is in another network namespace, {elsewhere}, which "
               "sock_diag cannot see into)" if elsewhere and backlog == "?" else "")
        d.row("accept queue",
              fmt.amount(socket.accept_queue if socket else None, "connections"),
              f"handshakes done, waiting for accept(); backlog {backlog}{why}")
    elif v.rx_queue is not None or v.tx_queue is not None:  # else not a socket: no queues
        rx_from, tx_from = queues_source(socket, s)
        d.row("kernel rx queue", fmt.amount(v.rx_queue), f"arrived, not yet read ({rx_from})")
        d.row("kernel tx queue", fmt.amount(v.tx_queue),
              f"sent but unacknowledged, or unsent ({tx_from})" if socket is None
              or socket.proto != "unix" else f"sent, not yet read ({tx_from})")
    if engine.is_conn(v) and not elsewhere:
        d.row("bytes in / out", f"{v.bytes_in:,} / {v.bytes_out:,}",
              "received / acknowledged by the peer (sock_diag)")
    now = s.taken_at
    # tcp_info's times (sock_diag) go back before muxtop attached; elsewhere, muxtop's own
    timed = socket is not None and socket.proto.startswith("tcp") and not elsewhere
    d.row("age", fmt.age(now - v.opened_at),
          "at least this old (tcp_info's earliest time)" if timed else "since first seen")
    if engine.is_conn(v):
        d.row("idle", fmt.age(now - v.last_io_at),
              "since data last moved either way (tcp_info)" if timed
              else "since its queues or state last changed")
    d.end()


def tcp_info(d: Detail, v: ConnView, s: Snapshot, facts: Facts) -> None:
    engine.tcp_info(d, v, s, facts, missing="none (not a TCP socket)")


def registrations(d: Detail, v: ConnView, s: Snapshot, facts: ProcessFacts) -> None:
    """The epoll registrations watching the fd with their raw masks, and the socket."""
    d.heading("Attached")
    watching = [(e.fd, w) for e in s.epoll for w in e.watches if w.fd == v.fd]
    if not watching and v.kind != KIND_EPOLL:
        d.row("epoll", "none", "no epoll instance watches this fd")
    for epfd, w in watching:
        d.row(f"epoll fd {epfd}", _mask(w), epoll.meaning(w.mask))
    own = facts.epoll.get(v.fd)
    if own is not None:
        d.row("interest list", f"{len(own.watches)} fds")
        for w in own.watches:
            d.row(f"  fd {w.fd}", _mask(w))
    socket = facts.sockets.get(v.fd)
    if socket is not None:
        state = socket.tcp_state or socket.unix_state
        kind = " ".join(filter(None, (socket.proto, socket.unix_type, state)))
        ends = fmt.plain(socket.local or fmt.DASH)
        if socket.peer:
            ends += f" <-> {fmt.plain(socket.peer)}"
        d.row("socket", f"inode {socket.inode}", f"{kind}  {ends}")
    d.end()
    if s.running and s.target is not None and s.target.threads:
        # /proc/PID/task/*/syscall: where the process waits, with or without a tracer
        d.heading("Threads, blocked now")
        for line in s.target.threads:
            d.note(fmt.plain(line))
        d.end()
    if not s.running:
        d.text.append("The process has exited: this is the last picture.\n", "bold red")


def _mask(w) -> str:
    text = f"0x{w.mask:08x}  {epoll.decode(w.mask)}"
    return text + f" [stale: {fmt.plain(w.stale)}]" if w.stale else text


# ---- the header ---------------------------------------------------------------------------

def header(h: Header, s: Snapshot) -> None:
    """Line 1: which process; 2: its command line; 3: what it costs, and its epoll sets."""
    process_line(h, s)
    h.newline()
    command_line(h, s)
    h.newline()
    resources_line(h, s)


def process_line(h: Header, s: Snapshot) -> None:
    p, target = s.process, s.target
    h.add("muxtop attach ", "title")
    h.add(fmt.plain(p.name) if p is not None else "?", "mode")
    h.add(f" pid {target.pid if target else '?'}  ", "label")
    if p is not None and p.status == STATUS_STOPPED:
        h.add(" STOPPED ", "alert")  # SIGSTOP: nothing it does moves; read findings wait
        h.add("  ")
    h.pair("mux", fmt.plain(f"{s.backend}/{s.trigger}"))
    h.pair("up", fmt.uptime(s.taken_at - s.started_at))
    h.pair("listen", fmt.plain(s.listen) or "-")
    h.pair("conns", f"{s.open_connections:,}", "")


def command_line(h: Header, s: Snapshot) -> None:
    target = s.target
    h.add("cmd ", "label")
    # Cut here: a long command line must not wrap onto the next line.
    room = max(10, h.width - 2 - len("cmd "))
    h.add(fmt.fit(fmt.plain(target.cmdline if target else ""), room).rstrip())


def resources_line(h: Header, s: Snapshot) -> None:
    p = s.process
    if p is not None:
        h.pair("cpu", f"{p.cpu_percent:.0f}%")
        h.pair("rss", fmt.size(p.rss))
        h.pair("threads", str(p.threads))
        limit = f"{p.fd_limit:,}" if p.fd_limit > 0 else "?"
        share = f" ({100 * p.num_fds / p.fd_limit:.0f}%)" if p.fd_limit > 0 else ""
        h.pair("fds", f"{p.num_fds:,}/{limit}{share}", "   ")
    watching = sum(len(e.watches) for e in s.epoll)
    h.pair("epoll", f"{len(s.epoll)} instance{'s' * (len(s.epoll) != 1)}")
    h.pair("watching", f"{watching:,} fds", "")
    if watching:
        h.add(f" ({_TRIGGERS(s.epoll)})", "label")
    if s.rings:
        h.add("  ")
        h.pair("io_uring", f"{len(s.rings)} ring{'s' * (len(s.rings) != 1)}", "")
    h.add("   ")
    h.pair("in", fmt.rate(s.rates.bytes_in))
    h.pair("out", fmt.rate(s.rates.bytes_out))
    count = len(s.diagnoses)
    shown = f"{count} finding{'s' * (count != 1)}"
    if count:
        h.add(f" {shown} ", "alert")
    else:
        h.add(shown, "label")


def trigger_summary(all_masks: list[int]) -> str:
    """How an attached process's registrations report: ``2 edge, 1 level, 1 disarmed``."""
    triggers = [epoll.trigger(mask) for mask in all_masks]
    parts = [f"{triggers.count(k)} {k}" for k in (epoll.EDGE, epoll.LEVEL, epoll.ONESHOT)
             if k in triggers]
    disarmed = sum(1 for mask in all_masks if epoll.is_disarmed(mask))
    if disarmed:
        parts[-1] += f" ({disarmed} disarmed)"  # oneshot is last when any is disarmed
    return ", ".join(parts)


_TRIGGERS = _ByIdentity(lambda epoll_sets: trigger_summary(
    [w.mask for e in epoll_sets for w in e.watches]))


PROCESS = SourceView(
    title="muxtop attach", columns=COLUMNS, sort_cycle=SORT_CYCLE, facts=ProcessFacts,
    sections=(multiplexer, ring.section, queues, tcp_info, engine.history, engine.findings,
              registrations),
    header=header, has_waits=False, pinned_first=False, stopped="EXITED", interest_lists=True,
    help_title="Attached to another process", help_intro=INTRO, columns_help=COLUMNS_HELP)
