"""The picture of muxtop's own server: every fd the engine owns, with the events its last wait
reported, its out-buffer and kernel queues, and the wait calls that named it."""

from __future__ import annotations

from collections.abc import Callable
from operator import attrgetter, itemgetter

from muxtop.events import ERROR, HANGUP, long, short
from muxtop.snapshot import (
    CLOSING,
    FLAG_FINDING,
    FLAG_MEANINGS,
    HALF_CLOSED,
    KIND_CONN,
    KIND_LISTENER,
    PROXY,
    READ_PAUSED,
    ConnView,
    Snapshot,
)
from muxtop.ui import format as fmt
from muxtop.ui.views import ring
from muxtop.ui.views.base import ALERT, WARN, Column, Detail, Facts, Header, SourceView

WAITS_SHOWN = 12  # wait records listed in the detail view
SCAN_BUDGET = 100_000  # (fd, events) pairs searched per refresh, whatever the load
ENGINE_FLAGS = "!PBEF<>"  # the flags the engine's rows carry


def queue_key(field: str) -> Callable[[ConnView], int]:
    get = attrgetter(field)

    def key(view: ConnView) -> int:
        value = get(view)
        return -1 if value is None else value

    return key


def rtt_key(view: ConnView) -> int:
    return -1 if view.tcp is None else view.tcp.rtt_us


def is_conn(v: ConnView) -> bool:
    return v.kind == KIND_CONN


def state_tone(v: ConnView, facts: Facts) -> str | None:
    return WARN if v.state in (READ_PAUSED, CLOSING, HALF_CLOSED) else None


def amount_tone(field: str) -> Callable[[ConnView, Facts], str | None]:
    get = attrgetter(field)
    return lambda v, facts: WARN if get(v) else None


def rx_cell(v: ConnView, f: Facts) -> str:
    """The kernel's receive queue in bytes; on the listener its accept queue, a count of
    connections, over the backlog where TCP_INFO gave it (0/511, as attach writes it)."""
    if v.kind != KIND_LISTENER or v.rx_queue is None:
        return fmt.size(v.rx_queue)
    backlog = f"{v.rx_queue:,}/{v.tcp.sacked:,}" if v.tcp is not None else ""
    return backlog if 0 < len(backlog) <= 7 else f"{v.rx_queue:,}"


def bytes_cell(field: str) -> Callable[[ConnView, Facts], str]:
    get = attrgetter(field)
    return lambda v, facts: fmt.size(get(v)) if is_conn(v) else fmt.DASH


def age_cell(v: ConnView, facts: Facts) -> str:
    end = v.closed_at if v.closed_at is not None else facts.now
    return fmt.age(end - v.opened_at)


def idle_cell(v: ConnView, facts: Facts) -> str:
    live = is_conn(v) and v.closed_at is None
    return fmt.age(facts.now - v.last_io_at) if live else fmt.DASH


def rtt_cell(v: ConnView, facts: Facts) -> str:
    return fmt.duration(v.tcp.rtt_us / 1e6 if v.tcp is not None and is_conn(v) else None)


def flags_tone(v: ConnView, facts: Facts) -> str | None:
    if FLAG_FINDING in v.flags:
        return ALERT
    return WARN if v.flags else None


# `drop`: which give way first as the screen narrows (fd, state, flags never; the queues
# last). The peer takes what is left up to an IPv6 address and port; the note (why a
# connection closed, what an fd is) only shows where there is room to spare.
COLUMNS: tuple[Column, ...] = (
    Column("fd", "fd", 6, True, itemgetter(1), False,  # ConnView.fd, by index: the default
           lambda v, f: str(v.fd)),
    Column("peer", "peer", 0, False, attrgetter("peer"), False, lambda v, f: fmt.plain(v.peer),
           drop=1, least=12, most=47),
    # plain: a recording may hold any state or flags (an escape sequence, a newline)
    Column("state", "state", 11, False, attrgetter("state"), False,
           lambda v, f: fmt.plain(v.state), state_tone),
    Column("interest", "interest", 8, False, attrgetter("interest"), True,
           lambda v, f: short(v.interest), drop=2),
    Column("events", "last ev", 7, False, attrgetter("last_events"), True,
           lambda v, f: short(v.last_events) if v.last_events else fmt.DASH,
           lambda v, f: ALERT if v.last_events & (ERROR | HANGUP) else None, drop=2),
    Column("out_buffer", "app-out", 7, True, attrgetter("out_buffer"), True,
           lambda v, f: fmt.size(v.out_buffer if is_conn(v) else v.out_buffer or None),
           amount_tone("out_buffer"), drop=3),
    Column("rx_queue", "rx-q", 7, True, queue_key("rx_queue"), True, rx_cell,
           amount_tone("rx_queue"), drop=1),
    Column("tx_queue", "tx-q", 7, True, queue_key("tx_queue"), True,
           lambda v, f: fmt.size(v.tx_queue), amount_tone("tx_queue"), drop=1),
    Column("bytes_in", "in", 7, True, attrgetter("bytes_in"), True, bytes_cell("bytes_in"),
           drop=4),
    Column("bytes_out", "out", 7, True, attrgetter("bytes_out"), True, bytes_cell("bytes_out"),
           drop=4),
    # Age and idle sort on the time they count from: the oldest (smallest) first.
    Column("age", "age", 7, True, attrgetter("opened_at"), False, age_cell, drop=7),
    Column("idle", "idle", 7, True, attrgetter("last_io_at"), False, idle_cell, drop=5),
    Column("rtt", "rtt", 7, True, rtt_key, True, rtt_cell, drop=6),
    Column("flags", "flags", 5, False, attrgetter("flags"), True,
           lambda v, f: fmt.plain(v.flags), flags_tone),
    Column("note", "note", 0, False, None, False, lambda v, f: fmt.plain(v.note), drop=9,
           least=40),
)
# What `s` steps through: the sortable columns, left to right as on screen.
SORT_CYCLE = tuple(c.id for c in COLUMNS if c.key is not None)

COLUMNS_HELP = (
    ("fd", "the file descriptor number (fds get reused; rows follow connections)"),
    ("peer", ("the remote address (the listener shows its own; control is the eventfd"
             " other threads use to wake the loop with commands)")),
    ("state", ("open, paused (not reading), half-closed (peer sent FIN), closing, closed,"
              " listen, control")),
    ("interest", ("the events the fd is registered for: R read, W write (only while the"
                 " out-buffer holds data)")),
    ("last ev", "what the last wait reported: R readable, W writable, E error, H hang-up, "
     "F the peer's FIN (RDHUP, asked for on edge)"),
    ("app-out", "bytes muxtop produced that the kernel has not taken yet (a proxy's leg: "
                "with what the toxics on the other leg hold on their way here)"),
    ("rx-q", ("kernel receive queue (FIONREAD): bytes arrived, not yet read; on the listener,"
             " connections waiting in the accept queue / its backlog")),
    ("tx-q", "kernel send queue (SIOCOUTQ): bytes not yet acknowledged by the peer, or unsent"),
    ("in / out", "bytes received and sent on this connection"),
    ("age / idle", "time since accept / since the last byte moved either way"),
    ("rtt", "smoothed round-trip time from TCP_INFO"),
    ("flags", ", ".join(f"{flag} {FLAG_MEANINGS[flag]}" for flag in ENGINE_FLAGS)),
    ("note", "why a connection closed, or what another fd is (on wide screens)"),
)


# ---- the detail view --------------------------------------------------------------------

def multiplexer(d: Detail, v: ConnView, s: Snapshot, facts: Facts) -> None:
    d.heading("Multiplexer")
    if v.interest:
        d.row("interest", long(v.interest), f"({short(v.interest)}) what it is registered for")
    else:
        d.row("interest", "none", "not registered in the backend (not reading, nothing to write)")
    now = s.taken_at
    if v.last_ready is None:
        when = "never"
    elif now - v.last_ready < 1e-3:
        when = "just now"
    else:
        when = f"{fmt.duration(now - v.last_ready)} ago"
    d.row("last events", long(v.last_events), f"reported {when}")
    if v.flags:
        d.row("flags", v.flags, "; ".join(FLAG_MEANINGS.get(f, f) for f in v.flags))
    d.end()


def queues(d: Detail, v: ConnView, s: Snapshot, facts: Facts) -> None:
    d.heading("Queues and counters")
    d.row("app out-buffer", f"{v.out_buffer:,} B", "produced, not yet taken by the kernel"
          + (" (and what the other leg's toxics hold on the way here)"
             if s.protocol.startswith(PROXY) else ""))
    if v.kind == KIND_LISTENER:
        d.row("accept queue", fmt.amount(v.rx_queue, "connections"),
              "handshakes done, waiting for accept()")
    else:
        d.row("kernel rx queue", fmt.amount(v.rx_queue), "arrived, not yet read (FIONREAD)")
        d.row("kernel tx queue", fmt.amount(v.tx_queue),
              "sent but unacknowledged, or unsent (SIOCOUTQ)")
    if is_conn(v):
        d.row("bytes in / out", f"{v.bytes_in:,} / {v.bytes_out:,}")
        d.row("messages in / out", f"{v.msgs_in:,} / {v.msgs_out:,}", "recv and send calls")
    now = s.taken_at
    end = v.closed_at if v.closed_at is not None else now
    d.row("age", fmt.age(end - v.opened_at),
          "lifetime" if v.closed_at is not None else "since accepted")
    if is_conn(v) and v.closed_at is None:
        d.row("idle", fmt.age(now - v.last_io_at), "since the last byte either way")
    if v.closed_at is not None:
        d.row("closed", f"{fmt.age(now - v.closed_at)} ago")
    d.end()


def tcp_info(d: Detail, v: ConnView, s: Snapshot, facts: Facts,
             missing: str = "not measured (the engine probes a bounded number of sockets per "
                            "snapshot; visible rows first)") -> None:
    d.heading("TCP_INFO")
    t = v.tcp
    if t is None:
        d.note(missing)
    elif v.kind == KIND_LISTENER:
        d.row("state", t.state)
        d.row("accept queue", f"{t.unacked:,}", f"of a backlog of {t.sacked:,}")
    else:
        d.row("state", t.state)
        d.row("rtt", fmt.duration(t.rtt_us / 1e6), f"± {fmt.duration(t.rttvar_us / 1e6)}")
        d.row("rto", fmt.duration(t.rto_us / 1e6))
        d.row("retransmits", f"{t.retransmits:,}")
        d.row("unacked", f"{t.unacked:,}", "segments in flight")
        d.row("sacked", f"{t.sacked:,}")
    d.end()


def history(d: Detail, v: ConnView, s: Snapshot, facts: Facts) -> None:
    d.history(v, s)


def findings(d: Detail, v: ConnView, s: Snapshot, facts: Facts) -> None:
    d.findings(v, s)


def waits_naming(d: Detail, v: ConnView, s: Snapshot, facts: Facts) -> None:
    d.heading("Last wait calls that reported it")
    found, searched = _waits_naming(v, s)
    if not found:
        d.note(f"none in the newest {searched:,} wait calls")
    text = d.text
    for w, events in found:
        text.append(f"  #{w.seq:<10,} {f'+{w.start - s.started_at:.3f}s':>12}  ", d.LABEL)
        text.append(f"{long(events):<16}", "bold")
        text.append(f"  blocked {fmt.duration(w.duration):>7}  {w.count} of "
                    f"{w.registered} fds ready  timeout {fmt.timeout(w.timeout)}\n", d.LABEL)


def _waits_naming(v: ConnView, s: Snapshot):
    """The newest wait records whose ready list holds this fd while this connection had it
    (fds get reused), searching at most SCAN_BUDGET pairs."""
    fd = v.fd
    end = v.closed_at
    found = []
    budget = SCAN_BUDGET
    searched = 0
    for w in reversed(s.waits):
        if w.start < v.opened_at or budget <= 0:
            break
        searched += 1
        if end is not None and w.start > end:
            continue
        budget -= len(w.ready) // 2
        for ready_fd, events in w.pairs():
            if ready_fd == fd:
                found.append((w, events))
                break
        if len(found) >= WAITS_SHOWN:
            break
    return found, searched


# ---- the header ---------------------------------------------------------------------------

def header(h: Header, s: Snapshot) -> None:
    """Line 1: what runs where; 2: the multiplexer and what each wait call costs; 3: traffic
    and the process. On a narrow screen the pieces with the highest `drop` give way first."""
    h.add("muxtop ", "title")
    h.add(fmt.plain(f"{s.backend}/{s.trigger}"), "mode")  # plain: a recording may say anything
    h.add("  ")
    h.pair(fmt.plain(s.protocol), fmt.plain(s.listen), drop=2)
    h.pair("up", fmt.uptime(s.taken_at - s.started_at), drop=3)
    if s.protocol.startswith(PROXY):  # a row (and an fd) is a leg: a client is two of them
        legs, clients = s.open_connections, s.totals.accepted
        h.pair("conns", f"{legs:,} {'leg' if legs == 1 else 'legs'} open", drop=0, sep=" ")
        h.add(f"/ {clients:,} {'client' if clients == 1 else 'clients'} accepted", "label",
              drop=1)
    else:
        h.pair("conns", f"{s.open_connections:,} open", drop=0, sep=" ")
        h.add(f"/ {s.totals.accepted:,} accepted", "label", drop=1)
    if s.totals.rejected or s.totals.accept_errors:
        h.add(f"  ({s.totals.rejected:,} rejected, {s.totals.accept_errors:,} accept errors)",
              "label", drop=1)
    t = s.totals
    limited = [f"{n:,} {why}" for n, why in ((t.closed_idle, "idle"),
               (t.closed_header, "slow head"), (t.closed_out_buffer, "out-buffer")) if n]
    if limited:
        h.add(f"  closed by limits: {', '.join(limited)}", "label", drop=1)
    ring.header(h, s)
    h.newline()
    wait_figures(h, s)
    h.newline()
    r = s.rates
    h.pair("in", fmt.rate(r.bytes_in))
    h.pair("out", fmt.rate(r.bytes_out))
    h.pair("accepts/s", fmt.count(r.accepts), "   ", drop=3)
    p = s.process
    if p is not None:
        h.pair("cpu", f"{p.cpu_percent:.0f}%")
        h.pair("rss", fmt.size(p.rss), drop=2)
        h.pair("fds", f"{p.num_fds:,}/{p.fd_limit:,}", drop=1)
        h.pair("threads", str(p.threads), drop=4)
        h.pair("pid", str(p.pid), "", drop=5)


def wait_figures(h: Header, s: Snapshot, sampled: bool = True) -> None:
    """How the loop is doing, from its wait calls: the rate, how many fds each returns, what
    a call costs (`sampled`: the engine measures it; a trace cannot), how long each blocks."""
    r = s.rates
    registered = r.registered_per_wait or s.registered
    h.pair("waits/s", fmt.count(r.waits))
    h.pair("ready/wait", f"{r.ready_per_wait:.1f}", sep=" ")
    share = f" ({100 * r.ready_per_wait / registered:.0f}%)" if registered else ""
    h.add(f"of {registered:,.0f}{share}  ", "label", drop=2)
    if sampled:
        h.pair("cpu/call", fmt.duration(r.wait_cpu) if r.wait_cpu else fmt.DASH)
        h.pair("scans", f"{fmt.count(r.scanned_per_wait)} fds", drop=1)
    # No wait call in the rates' window (the engine stepping, or stopped): no percentile.
    h.pair("wait p50", fmt.duration(r.wait_p50) if r.waits else fmt.DASH, drop=4)
    h.pair("p99", fmt.duration(r.wait_p99) if r.waits else fmt.DASH, drop=3)
    h.pair("events/s", fmt.count(r.events), drop=5)
    # The loop's calls, the CPU probes aside: muxtop_wait_calls_total and --json's "waits".
    h.pair("waits", f"{s.totals.waits - s.totals.probes:,}", "", drop=6)


ENGINE = SourceView(
    title="muxtop", columns=COLUMNS, sort_cycle=SORT_CYCLE, facts=Facts,
    sections=(multiplexer, ring.section, queues, tcp_info, history, findings, waits_naming),
    header=header, has_waits=True, pinned_first=True, stopped="ENGINE STOPPED",
    columns_help=COLUMNS_HELP, own_engine=True)
