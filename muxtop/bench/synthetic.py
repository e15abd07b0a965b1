"""Made-up Snapshots with N connections, fully determined by (n, tick): for the UI's snapshot
tests (a frozen clock: `taken_at` is fixed per tick) and the frame-time benchmark (values
change every tick, as on a busy server)."""

from __future__ import annotations

from itertools import chain

from muxtop.events import HANGUP, READ, WRITE
from muxtop.snapshot import (
    CLOSED,
    CONTROL,
    HALF_CLOSED,
    KIND_CONN,
    KIND_CONTROL,
    KIND_LISTENER,
    LISTENING,
    OPEN,
    READ_PAUSED,
    ConnView,
    Diagnosis,
    Notice,
    ProcessStats,
    Rates,
    Snapshot,
    TcpInfo,
    Totals,
    WaitRecord,
)

STARTED_AT = 1000.0  # monotonic seconds, made up
LISTEN = "127.0.0.1:8080"


def connection(i: int, tick: int, now: float, peer: str | None = None) -> ConnView:
    """Connection number i (fd i + 7), its numbers moving with the tick."""
    fd = i + 7
    opened = STARTED_AT + 1.0 + (i % 600) * 0.05
    spin = (i * 7919 + tick * 104729) % 1000  # deterministic "noise"
    state = OPEN
    flags = ""
    interest = READ
    if i % 97 == 5:
        state, flags = READ_PAUSED, "P"
        interest = 0
    elif i % 89 == 7:
        state, flags, interest = READ_PAUSED, "B", WRITE
    elif i % 83 == 9:
        state = HALF_CLOSED
    bytes_in = 64 * (i * 37 + tick * (i % 13 + 1) * 11)
    out_buffer = 300 * 1024 if "B" in flags else (spin * 3 if spin > 900 else 0)
    rx = spin * 64 if spin > 950 else 0
    tx = (spin % 7) * 1448 if spin > 800 else 0
    last_io = now - (i % 300) * 0.01 - (5.0 if state == READ_PAUSED else 0.0)
    tcp = TcpInfo("ESTABLISHED", 40 + spin, 20 + spin // 2, 204000, 0, spin % 3, 0)
    return ConnView(
        cid=i + 1, fd=fd, kind=KIND_CONN,
        peer=peer if peer is not None else f"10.0.{i // 250 % 256}.{i % 250 + 1}:{40000 + i}",
        state=state, interest=interest,
        last_events=READ if spin % 5 else READ | WRITE, last_ready=now - spin * 1e-5,
        out_buffer=out_buffer, rx_queue=rx, tx_queue=tx, bytes_in=bytes_in,
        bytes_out=bytes_in - out_buffer if bytes_in >= out_buffer else 0,
        msgs_in=bytes_in // 64, msgs_out=bytes_in // 64, opened_at=opened, last_io_at=last_io,
        closed_at=None, tcp=tcp, flags=flags,
        history=((opened, OPEN),) + (((now - 5.0, state),) if state != OPEN else ()),
        note="")


def closed_connection(i: int, now: float) -> ConnView:
    view = connection(i, 0, now)
    return view._replace(state=CLOSED, interest=0, closed_at=now - 1.5, rx_queue=None,
                         tx_queue=None, tcp=None, note="peer closed",
                         history=view.history + ((now - 1.5, CLOSED),))


def waits(tick: int, n: int, count: int = 400) -> tuple[WaitRecord, ...]:
    """The ring: `count` wait records ending at this tick, 100 new ones a tick (each a
    function of its seq alone, so consecutive ticks share records). Most return a few fds,
    some time out."""
    records = []
    last_seq = 10_000 + tick * 100
    for k in range(count):
        seq = last_seq - count + 1 + k
        start = STARTED_AT + 35 + seq * 0.0025
        if seq % 11 == 0:
            records.append(WaitRecord(seq, start, 0.25, 0.25, n + 2, (), 0))
            continue
        ready = tuple(chain.from_iterable(
            ((seq * 31 + j * 17) % max(n, 1) + 7,
             READ | (HANGUP if (seq + j) % 53 == 0 else 0) | (WRITE if (seq + j) % 7 == 0 else 0))
            for j in range(1 + seq % 5)))
        duration = 12e-6 + (seq % 9) * 3e-6
        records.append(WaitRecord(seq, start, 0.01, duration, n + 2, ready, len(ready) // 2,
                                  duration * 0.8 if seq % 4 == 0 else None))
    return tuple(records)


def snapshot(n: int = 40, tick: int = 0, *, backend: str = "epoll", trigger: str = "level",
             peers: dict[int, str] | None = None, closed: int = 2,
             notices: tuple[Notice, ...] = (), lab: frozenset[str] = frozenset(),
             refused: str | None = None, diagnoses: tuple[Diagnosis, ...] | None = None,
             running: bool = True, error: str | None = None,
             wait_count: int = 400) -> Snapshot:
    """A Snapshot of a server with n open connections (plus `closed` recently closed ones),
    taken 60 + tick/4 seconds after it started."""
    now = STARTED_AT + 60 + tick * 0.25
    peers = peers or {}
    views = [
        ConnView(0, 4, KIND_LISTENER, LISTEN, LISTENING, READ, READ, now - 0.5, 0, 0, None,
                 0, 0, n + closed, 0, STARTED_AT, STARTED_AT, None,
                 TcpInfo("LISTEN", 0, 0, 0, 0, 0, 1024), "", (), "backlog 1024"),
        ConnView(-1, 5, KIND_CONTROL, "eventfd (commands)", CONTROL, READ, READ, now - 2.0,
                 0, None, None, 0, 0, 0, 0, STARTED_AT, STARTED_AT, None, None, "", (),
                 "wakes the loop for commands from other threads"),
    ]
    views.extend(connection(i, tick, now, peers.get(i)) for i in range(n))
    views.extend(closed_connection(n + i, now) for i in range(closed))
    if diagnoses is None:
        diagnoses = (Diagnosis(
            "stuck-read", 7 + 5, "bytes wait in the kernel receive queue and no wait call "
            "has reported the fd for 3.0 s", (("rx_queue", 4096), ("seconds", 3.0)),
            now - 3.0),) if n > 5 else ()
    rates = Rates(waits=4000 + 40 * (tick % 10), events=9000 + 90 * (tick % 7),
                  bytes_in=2.5e6 + 1e5 * (tick % 5), bytes_out=2.5e6 + 1e5 * (tick % 5),
                  accepts=3.0, ready_per_wait=2.25 + 0.1 * (tick % 4),
                  wait_p50=24e-6 + 1e-6 * (tick % 3), wait_p99=310e-6 + 2e-5 * (tick % 6),
                  wait_cpu=9e-6 + 1e-6 * (tick % 3), registered_per_wait=n + 2,
                  scanned_per_wait=2.25 + 0.1 * (tick % 4))
    totals = Totals(waits=10_000 + tick * 400, events=22_500 + tick * 900,
                    bytes_in=150_000_000 + tick * 625_000, bytes_out=150_000_000 + tick * 625_000,
                    accepted=n + closed, closed=closed, accept_errors=0, rejected=0)
    return Snapshot(
        source="engine", taken_at=now, wall_time=1_700_000_000.0 + now, started_at=STARTED_AT,
        backend=backend, trigger=trigger, protocol="echo", listen=LISTEN,
        connections=tuple(views), waits=waits(tick, n, wait_count), totals=totals, rates=rates,
        process=ProcessStats(4242, "muxtop", 37.5, 48 * 1024 * 1024, n + 12, 1024, 4),
        registered=n + 2, open_connections=n, notices=notices, diagnoses=diagnoses, lab=lab,
        refused=refused, running=running, error=error, fd_order=True)
