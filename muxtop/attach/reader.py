"""The stateful reader behind `muxtop attach`: one process, one new Snapshot per `read()`.

Each read lists the target's fds, reads its epoll interest lists and socket tables, asks psutil
for the process figures, and hands the sockets to a `Diagnoser` that remembers them between
reads. The result has the Snapshot shape the engine publishes, so the dashboard draws both.
"""

from __future__ import annotations

import dataclasses
import os
import shlex
import time
from operator import itemgetter
from typing import Protocol

import psutil

from muxtop.attach.diagnose import Diagnoser
from muxtop.attach.rings import RingWatch, read_rings, ring_views
from muxtop.attach.sockets import Census, SocketCensus
from muxtop.attach.threads import multiplexer_of, thread_lines
from muxtop.findings import FD_PRESSURE_SHARE, STUCK_AFTER, Found, SocketFacts
from muxtop.kernel import epoll, procfs
from muxtop.snapshot import (
    CLOSED,
    CLOSING,
    FLAG_DISARMED,
    FLAG_EDGE,
    FLAG_EXCLUSIVE,
    FLAG_FINDING,
    FLAG_ONESHOT,
    HALF_CLOSED,
    KIND_CONN,
    KIND_EPOLL,
    KIND_LISTENER,
    KIND_OTHER,
    LISTENING,
    OPEN,
    STALE_CLOSED,
    STALE_REUSED,
    STATUS_STOPPED,
    ConnView,
    EpollSet,
    Notice,
    ProcessInfo,
    ProcessStats,
    Rates,
    RingView,
    Snapshot,
    SocketInfo,
    TcpInfo,
    Totals,
    Watch,
)

# TCP state -> the nearest muxtop connection state; the exact one stays in ConnView.tcp.state.
_CONN_STATE = {
    "ESTABLISHED": OPEN, "SYN_SENT": OPEN, "SYN_RECV": OPEN, "NEW_SYN_RECV": OPEN,
    "LISTEN": LISTENING, "CLOSE_WAIT": HALF_CLOSED, "FIN_WAIT1": CLOSING,
    "FIN_WAIT2": CLOSING, "LAST_ACK": CLOSING, "CLOSING": CLOSING, "TIME_WAIT": CLOSED,
    "CLOSE": CLOSED,
}
NETNS_NOTE = ("process {pid} is in another network namespace ({netns}): sock_diag cannot see "
              "into it, so listen backlogs, byte counters, RTTs and unix-socket queues are "
              "unknown (shown as ?), and findings rest on /proc's queues alone")
_NO_TOTALS = Totals(0, 0, 0, 0, 0, 0, 0, 0)
_FD = itemgetter(1)  # ConnView.fd
_NO_RATES = Rates(0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0)
# tcp_info's ages are in jiffies turned into ms (4 ms at HZ=250), read a few ms after our clock
_MOMENT_GRAIN = 0.05


class AttachError(Exception):
    """Why attaching cannot start, worded as one line for a terminal."""


class _Gone(Exception):
    """The process exited (or its PID now belongs to another process) during a read."""


class Overlay(Protocol):
    """More than /proc shows, joined to every read: attach --trace's wait calls. The trace
    package composes with attach one layer above both (muxtop/traced.py); attach knows this
    much of it and imports nothing of trace."""

    warning: str  # told once, when the Attacher takes it; "" for none

    def review(self, now: float, epoll_sets: dict[int, list[epoll.Registration]],
               links: dict[int, str], sockets: list[SocketFacts], socket_bytes_per_s: float,
               held: bool) -> tuple[list[Found], set[int]]:
        """Take what happened since the last read; its findings, and the fds whose stuck read
        it proves."""

    def news(self) -> str | None:
        """Why it stopped on its own, once, at the first read after it did; else None."""

    def views(self, views: list[ConnView]) -> list[ConnView]:
        """The fd rows with what the overlay knows of each."""

    def snapshot(self, snapshot: Snapshot, links: dict[int, str]) -> Snapshot:
        """The read's Snapshot with what the overlay adds."""

    def stop(self) -> None: ...


class Attacher:
    """Reads one process from /proc, read-only. Build it, then call `read()` on a timer.

    The constructor raises AttachError (no such process, not allowed); `read()` never raises
    for a process that goes away: it returns a Snapshot with running=False and a
    Notice, and keeps doing so (the PID may be reused by a stranger)."""

    def __init__(self, pid: int, *, stuck_after: float = STUCK_AFTER,
                 fd_pressure: float = FD_PRESSURE_SHARE, clock=time.monotonic) -> None:
        self.pid = pid
        self._clock = clock
        self.name = ""
        try:
            self._proc = psutil.Process(pid)
            self.name = self._proc.name()
            status = self._proc.status()
            self._cmdline = command_line(self._proc.cmdline(), self.name)
            create_time = self._proc.create_time()
        except psutil.ZombieProcess:  # a subclass of NoSuchProcess: it did exist
            status = psutil.STATUS_ZOMBIE
        except psutil.NoSuchProcess:
            raise AttachError(f"no process with PID {pid}") from None
        except psutil.AccessDenied:
            raise AttachError(self._denied()) from None
        if status == psutil.STATUS_ZOMBIE:
            raise AttachError(f"process {pid}{f' ({self.name})' if self.name else ''} has "
                              "exited (a zombie its parent has not reaped)")
        if procfs.is_kernel_thread(pid):  # its /proc/PID/syscall reads as read(0): not one
            raise AttachError(f"process {pid}{f' ({self.name})' if self.name else ''} is a "
                              "kernel thread: it has no file descriptors or wait calls to show")
        try:
            procfs.list_fds(pid)
        except PermissionError:
            raise AttachError(self._denied(self.name)) from None
        except FileNotFoundError:
            raise AttachError(f"process {pid} ({self.name}) exited") from None
        self._proc.cpu_percent(None)  # the first call only starts psutil's CPU clock
        # started_at is monotonic, like the engine's: the process's age mapped onto our clock.
        self._started_at = clock() - max(0.0, time.time() - create_time)
        # sock_diag answers for our network namespace only: elsewhere backlogs and byte
        # counters are unknown and the diagnoses fall back on /proc's queues alone.
        own_netns, netns = procfs.net_namespace("self"), procfs.net_namespace(pid)
        self._same_netns = own_netns is not None and own_netns == netns
        self._netns = "" if self._same_netns else (netns or "unknown")
        self.census = SocketCensus(pid, self._same_netns)
        self.diagnoser = Diagnoser(stuck_after=stuck_after, fd_pressure=fd_pressure)
        self._rings = RingWatch(stuck_after)  # findings about its io_uring instances
        self._multiplexer: str | None = None  # poll or select, once a thread was seen in one
        self.exited = False
        self._last: Snapshot | None = None
        self._notices: list[Notice] = []
        self._seq = 0
        self._fd_seen: dict[tuple[int, str], float] = {}
        self._counters: dict[int, tuple[int, int]] = {}  # inode -> (bytes in, bytes out)
        self._counters_at: float | None = None
        self._moments: dict[int, tuple[float, float, float]] = {}
        self.trace: Overlay | None = None  # attach --trace (muxtop/traced.py)
        # What the last read built, for what did not change since (by inode, or epoll fd).
        self._fdinfo: dict[int, tuple[str, list[epoll.Registration]]] = {}
        self._fdinfo_lines: dict[int, dict[str, epoll.Registration]] = {}
        self._facts: dict[int, tuple[tuple, SocketFacts]] = {}
        self._views: dict[int, tuple[SocketFacts, tuple, ConnView, SocketInfo]] = {}
        self._epoll_sets: dict[int, tuple[list, tuple, EpollSet]] = {}
        self._trigger_of: tuple[tuple, str] | None = None
        if not self._same_netns:
            self._notice(clock(), "warning", NETNS_NOTE.format(pid=pid, netns=self._netns))
        if (children := self._children()):
            self._notice(clock(), "info", children)

    def _children(self) -> str:
        """Who else to look at, when the process has children: a master (nginx, apache,
        gunicorn) accepts nothing itself, its workers serve the connections."""
        try:
            kids = [(kid.pid, kid.name()) for kid in self._proc.children()]
        except psutil.Error:
            return ""
        if not kids:
            return ""
        names = sorted({name for _, name in kids})
        listed = ", ".join(str(kid) for kid, _ in kids[:8]) + (", …" if len(kids) > 8 else "")
        return (f"process {self.pid} has {len(kids)} child process(es) ({listed}): if it is a "
                "master, its workers serve the connections: attach one of them, or all of "
                f"them with attach --name {names[0] if len(names) == 1 else 'NAME'}")

    def use(self, overlay: Overlay) -> Attacher:
        """Join `overlay` to every read (attach --trace: muxtop/traced.py `with_trace`). The
        Attacher stops it when the process exits or on `close()`."""
        self.trace = overlay
        if overlay.warning:
            self._notice(self._clock(), "warning", overlay.warning)
        return self

    @property
    def stuck_after(self) -> float:
        return self.diagnoser.stuck_after

    def read(self) -> Snapshot:
        """A new Snapshot of the process now; the per-socket history moves one step."""
        now, wall = self._clock(), time.time()
        if not self.exited:
            try:
                snapshot = self._read(now, wall)
            except (OSError, psutil.Error, _Gone) as exc:
                if self._alive():  # a transient failure, e.g. permission lost after a setuid
                    self._notice(now, "error", f"could not read process {self.pid}: {exc}")
                    return self._repeat(now, wall)
                self.exited = True
            else:
                self._last = snapshot
                return snapshot
            self._notice(now, "error", f"process {self.pid} ({self.name}) exited")
            self.close()
        return self._repeat(now, wall)

    def close(self) -> None:
        """Stop the tracer, if any (reading /proc needs no cleanup)."""
        if self.trace is not None:
            self.trace.stop()

    # -- reading ------------------------------------------------------------------------------

    def _read(self, now: float, wall: float) -> Snapshot:
        if not self._alive():
            raise _Gone()
        pid = self.pid
        links = procfs.list_fds(pid)
        epoll_sets = self._interest_lists(links)
        inodes = {fd: ino for fd, link in links.items()
                  if (ino := procfs.socket_inode(link)) is not None}
        watches = _watches(epoll_sets, inodes)
        census = self.census.read(set(inodes.values()))
        moments = self._moments_of(census)
        fd_of = {ino: fd for fd, ino in inodes.items()}
        listening = {d.sport for d in census.tcp.values() if d.state == "LISTEN"} | {
            _port(row.local) for row in census.inet.values() if row.state == "LISTEN"}

        process = self._process_stats(len(links))
        sockets = [self._socket_facts(fd, ino, census, tuple(watches.get(fd, ())), fd_of,
                                      moments.get(ino), listening)
                   for fd, ino in sorted(inodes.items())]
        self._facts = {f.inode: self._facts[f.inode] for f in sockets}
        rates = self._byte_rates(now, sockets)
        held = process.status == STATUS_STOPPED  # SIGSTOP: its queues say nothing now
        trace, trace_found, proven = self.trace, [], set()
        if trace is not None:
            trace_found, proven = trace.review(now, epoll_sets, links, sockets,
                                               rates.bytes_in + rates.bytes_out, held)
            if (news := trace.news()) is not None:
                self._notice(now, "error", news)
        rings = read_rings(pid, links)
        diagnoses = self.diagnoser.observe(
            now, sockets, process, held=held,
            extra=[*trace_found, *self._rings.review(now, rings)], proven=proven,
            uses_epoll=bool(epoll_sets))
        flagged = {fd for d in diagnoses for fd in d.named_fds()}  # "!": a finding names it

        infos, views = [], []
        for facts in sockets:
            view, info = self._socket_view(facts, census, watches.get(facts.fd, ()),
                                           facts.fd in flagged, fd_of)
            views.append(view)
            infos.append(info)
        self._views = {f.inode: self._views[f.inode] for f in sockets}
        views += self._other_views(now, links, epoll_sets, watches, inodes, rings)
        if trace is not None:
            views = trace.views(views)
        views.sort(key=_FD)

        registered = sum(map(len, epoll_sets.values()))
        calls = procfs.thread_calls(pid)
        # Without an epoll fd: poll or select if a thread was seen waiting in one (kept, as a
        # busy thread is in neither at most moments), else "?" (blocking calls, or not seen).
        self._multiplexer = multiplexer_of(calls) or self._multiplexer
        snapshot = Snapshot(
            source="attach", taken_at=now, wall_time=wall, started_at=self._started_at,
            backend="epoll" if epoll_sets else self._multiplexer or "?",
            trigger=self._triggers(epoll_sets),
            protocol="?",
            listen=", ".join(_local(census.inet.get(f.inode), census.unix.get(f.inode))
                             for f in sockets if f.kind == KIND_LISTENER),
            connections=tuple(views), waits=(), totals=_NO_TOTALS, rates=rates,
            process=process, registered=registered,
            open_connections=sum(1 for f in sockets if f.kind == KIND_CONN),
            notices=tuple(self._notices), diagnoses=diagnoses,
            target=self._target(thread_lines(calls)),
            epoll=tuple(self._epoll_set(epfd, regs, links, inodes)
                        for epfd, regs in sorted(epoll_sets.items())),
            sockets=tuple(infos), rings=rings,
        )
        return snapshot if trace is None else trace.snapshot(snapshot, links)

    def _other_views(self, now: float, links: dict[int, str],
                     epoll_sets: dict[int, list[epoll.Registration]],
                     watches: dict[int, list[epoll.Registration]], inodes: dict[int, int],
                     rings: tuple[RingView, ...]) -> list[ConnView]:
        """The rows of the fds that are not sockets: epoll sets, the other fds they watch,
        io_uring rings. They have no track: each (fd, file) remembers when it was first seen."""
        views = []
        seen = {}
        for fd in sorted(epoll_sets):
            seen[fd, links[fd]] = first = self._fd_seen.get((fd, links[fd]), now)
            views.append(_epoll_view(fd, epoll_sets[fd], watches.get(fd, ()), first))
        for fd in sorted(watches.keys() - inodes.keys() - epoll_sets.keys()):
            if fd in links:  # a watched pipe, eventfd, timerfd...: part of the loop's picture
                seen[fd, links[fd]] = first = self._fd_seen.get((fd, links[fd]), now)
                views.append(_plain_view(fd, KIND_OTHER, links[fd], watches[fd], first))
        for r in rings:  # when each ring was first seen, as for the epoll fds
            seen[r.fd, links[r.fd]] = self._fd_seen.get((r.fd, links[r.fd]), now)
        views += ring_views(rings, {fd: at for (fd, _), at in seen.items()}, now)
        self._fd_seen = seen
        return views

    def _target(self, threads: tuple[str, ...] = ()) -> ProcessInfo:
        return ProcessInfo(self.pid, self._cmdline, self.stuck_after, self._netns, threads)

    def _interest_lists(self, links: dict[int, str]) -> dict[int, list[epoll.Registration]]:
        """epoll fd -> its interest list; the same list object as last time while the
        kernel's text of it has not changed (most refreshes, at thousands of fds)."""
        sets = {}
        for fd, link in links.items():
            if link != procfs.EPOLL_LINK:
                continue
            try:
                text = epoll.read_fdinfo(fd, self.pid)
            except FileNotFoundError:  # closed since the listing
                continue
            known = self._fdinfo.get(fd)
            if known is None or known[0] != text:
                lines = self._fdinfo_lines.setdefault(fd, {})
                known = self._fdinfo[fd] = (text, epoll.parse_fdinfo(fd, text, lines))
            sets[fd] = known[1]
        for fd in [fd for fd in self._fdinfo if fd not in sets]:
            del self._fdinfo[fd]
            self._fdinfo_lines.pop(fd, None)
            self._epoll_sets.pop(fd, None)
        return sets

    def _triggers(self, epoll_sets: dict[int, list[epoll.Registration]]) -> str:
        """How the process's registrations report, in one word (kept while the lists are the
        same objects: thousands of masks)."""
        lists = tuple(epoll_sets.values())
        if self._trigger_of is None or len(self._trigger_of[0]) != len(lists) or \
                any(a is not b for a, b in zip(self._trigger_of[0], lists)):
            masks = [reg.mask for regs in lists for reg in regs]
            self._trigger_of = (lists, epoll.summarize_triggers(masks))
        return self._trigger_of[1]

    def _epoll_set(self, epfd: int, regs: list[epoll.Registration], links: dict[int, str],
                   inodes: dict[int, int]) -> EpollSet:
        """Snapshot.epoll's entry for one epoll fd: the same object while neither the
        interest list nor the staleness of any registration changed."""
        stale = tuple(reg.tfd for reg in regs if reg.tfd not in links
                      or reg.tfd in inodes and inodes[reg.tfd] != reg.ino)
        known = self._epoll_sets.get(epfd)
        if known is not None and known[0] is regs and known[1] == stale:
            return known[2]
        entry = EpollSet(epfd, tuple(_watch(reg, links, inodes)
                                     for reg in sorted(regs, key=lambda reg: reg.tfd)))
        self._epoll_sets[epfd] = (regs, stale, entry)
        return entry

    def _moments_of(self, census: Census) -> dict[int, tuple[float, float, float]]:
        """inode -> (data sent, data received, ACK received) as moments of our clock, from
        tcp_info's "ms since" ages. A moment that moved by less than the ages' grain (a
        jiffy, plus the time the read took) is the same moment as last read: the socket's
        facts then stay the same object."""
        if not census.ages:
            self._moments = {}
            return self._moments
        at = self._clock()  # just after the dump: the ages were measured a moment ago
        previous, moments = self._moments, {}
        for inode, ages in census.ages.items():
            fresh = (at - ages.data_sent / 1e3, at - ages.data_recv / 1e3,
                     at - ages.ack_recv / 1e3)
            known = previous.get(inode)
            if known is not None and all(abs(a - b) < _MOMENT_GRAIN
                                         for a, b in zip(known, fresh)):
                fresh = known
            moments[inode] = fresh
        self._moments = moments
        return moments

    def _socket_facts(self, fd: int, inode: int, census: Census, regs: tuple,
                      fd_of: dict[int, int], moments: tuple[float, float, float] | None,
                      listening: set[int]) -> SocketFacts:
        """The evidence of one socket; the same object as last read while nothing it is made
        of changed (the checks downstream then skip it by identity)."""
        unix_diag = census.unix_diag.get(inode)
        peer = census.unix_diag.get(unix_diag.peer) if unix_diag is not None else None
        inet = census.inet.get(inode)
        outgoing = inet is not None and inet.state != "LISTEN" and bool(inet.peer) and \
            _port(inet.local) not in listening
        key = (fd, inet, census.unix.get(inode), census.tcp.get(inode),
               unix_diag, peer, regs, moments, outgoing)
        known = self._facts.get(inode)
        if known is not None and known[0] == key:
            return known[1]
        facts = _socket_facts(fd, inode, *key[1:5], regs, peer, fd_of, moments, outgoing)
        self._facts[inode] = (key, facts)
        return facts

    def _byte_rates(self, now: float, sockets: list[SocketFacts]) -> Rates:
        """Bytes per second in and out since the last read: what the sockets open at both
        moved, and all that a socket new since then moved (a server of short connections,
        nginx under ab, moves most of its bytes on sockets that live less than a refresh).
        What a socket opened and closed between two reads moved is out of reach.

        Only rates: a lifetime total is out of reach (closed sockets take their counters
        with them), so Totals stay zero."""
        counters = {f.inode: (f.bytes_received, f.bytes_acked) for f in sockets
                    if f.bytes_received is not None and f.bytes_acked is not None}
        previous, then = self._counters, self._counters_at
        self._counters, self._counters_at = counters, now
        if then is None or now <= then:
            return _NO_RATES
        moved_in = moved_out = 0
        for inode, (received, acked) in counters.items():
            before = previous.get(inode, (0, 0))  # new since the last read: all of it
            moved_in += received - before[0]
            moved_out += acked - before[1]
        elapsed = now - then
        return _NO_RATES._replace(bytes_in=moved_in / elapsed, bytes_out=moved_out / elapsed)

    def _process_stats(self, num_fds: int) -> ProcessStats:
        with self._proc.oneshot():
            status = self._proc.status()
            if status == psutil.STATUS_ZOMBIE:
                raise _Gone()
            self.name = self._proc.name()
            stats = ProcessStats(
                pid=self.pid, name=self.name, cpu_percent=self._proc.cpu_percent(None),
                rss=self._proc.memory_info().rss, num_fds=num_fds,
                fd_limit=procfs.read_fd_limit(self.pid), threads=self._proc.num_threads(),
                status=status)
        return stats

    def _socket_view(self, facts: SocketFacts, census: Census, regs, flagged: bool,
                     fd_of: dict[int, int]) -> tuple[ConnView, SocketInfo]:
        """The row and the SocketInfo of one socket, rebuilt only when what they show
        changed (at 5,000 idle connections, almost none do between two reads)."""
        track = self.diagnoser.tracks[facts.inode]
        # facts is a new object whenever anything it is made of changed (rtt included)
        known = self._views.get(facts.inode)
        if known is not None and known[0] is facts and known[1] == (
                flagged, track.last_change, len(track.history)):
            return known[2], known[3]
        inet, unix = census.inet.get(facts.inode), census.unix.get(facts.inode)
        diag = census.tcp.get(facts.inode)
        tcp = None
        if facts.tcp_state and diag is not None:
            tcp = TcpInfo(facts.tcp_state, diag.rtt_us, diag.rttvar_us, diag.rto_us,
                          diag.retransmits, diag.unacked, diag.sacked)
        elif facts.tcp_state:  # another network namespace: only /proc's figures
            tcp = TcpInfo(facts.tcp_state, 0, 0, 0, 0, facts.accept_queue or 0, 0)
        if inet is not None:
            state = _CONN_STATE.get(inet.state, OPEN) if inet.proto.startswith("tcp") else OPEN
            peer = inet.peer
        elif unix is not None:
            state = LISTENING if unix.listening else (
                CLOSING if unix.state == "DISCONNECTING" else OPEN)
            peer = ""  # unix sockets have no address on the other side (often no name)
        else:
            state, peer = OPEN, ""
        view = ConnView(
            cid=facts.inode, fd=facts.fd, kind=facts.kind, peer=peer, state=state,
            interest=_interest(regs), last_events=0, last_ready=None, out_buffer=0,
            rx_queue=facts.rx_queue, tx_queue=facts.tx_queue,
            bytes_in=facts.bytes_received or 0, bytes_out=facts.bytes_acked or 0,
            msgs_in=0, msgs_out=0, opened_at=_opened_at(facts, track.first_seen),
            last_io_at=_last_io_at(facts, track.last_change),
            closed_at=None, tcp=tcp, flags=_flags(regs, flagged),
            history=tuple(track.history), note=_describe(inet, unix, facts, census, fd_of),
            watched_by=tuple(reg.epfd for reg in regs))
        info = _socket_info(facts, inet, unix)
        self._views[facts.inode] = (facts, (flagged, track.last_change, len(track.history)),
                                    view, info)
        return view, info

    # -- a process that is gone -----------------------------------------------------------------

    def _alive(self) -> bool:
        try:  # is_running() also compares the start time: a reused PID is not our process
            return self._proc.is_running() and self._proc.status() != psutil.STATUS_ZOMBIE
        except psutil.Error:
            return False

    def _denied(self, name: str = "") -> str:
        try:
            owner_uid, owner = self._proc.uids().real, self._proc.username()
        except (psutil.Error, KeyError):
            owner_uid, owner = None, "another user"
        what = f"process {self.pid} ({name + ', ' if name else ''}owned by {owner})"
        if owner_uid is not None and owner_uid != os.geteuid() and os.geteuid() != 0:
            return f"permission denied: cannot read {what}; attach as that user or as root"
        # Our own user, or root: the kernel's ptrace access rules refuse (another user
        # namespace, a missing CAP_SYS_PTRACE, yama's ptrace_scope...).
        return f"permission denied: the kernel will not show the open files of {what}"

    def notice(self, level: str, text: str) -> None:
        """Tell the viewers something (a Notice in the next Snapshots)."""
        self._notice(self._clock(), level, text)

    def _notice(self, now: float, level: str, text: str) -> None:
        self._seq += 1
        self._notices.append(Notice(self._seq, now, level, text))
        del self._notices[:-20]

    def _repeat(self, now: float, wall: float) -> Snapshot:
        """The last picture again (or an empty one), stamped now, with the notices."""
        if self._last is None:
            return Snapshot(
                source="attach", taken_at=now, wall_time=wall, started_at=self._started_at,
                backend="?", trigger="-", protocol="?", listen="", connections=(), waits=(),
                totals=_NO_TOTALS, rates=_NO_RATES, process=None, registered=0,
                open_connections=0, notices=tuple(self._notices), running=not self.exited,
                target=self._target())
        # The findings stay with the last picture: what was wrong just before the process
        # went away is often why it went away. The EXITED mark says they are history.
        return dataclasses.replace(
            self._last, taken_at=now, wall_time=wall, notices=tuple(self._notices),
            running=not self.exited)


def _socket_facts(fd, inode, inet, unix, diag, unix_diag, regs, peer,
                  fd_of: dict[int, int], moments=None, outgoing: bool = False) -> SocketFacts:
    watches = tuple((reg.epfd, reg.mask) for reg in regs)
    if inet is not None and inet.proto.startswith("tcp"):
        counters = {}
        if diag is not None and diag.bytes_received is not None:
            received, acked = _data_bytes(diag, outgoing)
            # diag.rqueue and bytes_received come from one message, so they agree.
            unread = diag.rqueue - (diag.state in _FIN_RECEIVED and diag.rqueue > 0)
            counters = {"app_read": max(0, received - unread),
                        "bytes_received": received, "bytes_acked": acked}
        if inet.state == "LISTEN":  # rx_queue of a listener is its accept queue
            return SocketFacts(fd, inode, KIND_LISTENER, inet.proto, inet.state, None, None,
                               inet.rx_queue, diag.wqueue if diag else None, watches)
        if moments is not None:
            counters.update(sent_at=moments[0], received_at=moments[1], ack_at=moments[2])
        # The queue is rcv_nxt - copied_seq: a FIN the app has not read yet (its EOF) is
        # one of it, and no byte of data.
        rx_queue = inet.rx_queue - (inet.state in _FIN_RECEIVED and inet.rx_queue > 0)
        return SocketFacts(fd, inode, KIND_CONN, inet.proto, inet.state, rx_queue,
                           inet.tx_queue, None, None, watches, **counters, peer=inet.peer,
                           outgoing=outgoing)
    if inet is not None:  # udp
        return SocketFacts(fd, inode, KIND_OTHER, inet.proto, "", inet.rx_queue,
                           inet.tx_queue, None, None, watches)
    if unix is not None:
        if unix.listening:
            return SocketFacts(fd, inode, KIND_LISTENER, "unix", "", None, None,
                               unix_diag.rqueue if unix_diag else None,
                               unix_diag.wqueue if unix_diag else None, watches)
        # Both ends in this process (a socketpair: a wake-up channel, a worker's pipe) is
        # no connection to anyone; nor is a socketpair whose other end another process holds
        # (nginx's channel to its master): neither end has a name, where a client of a
        # listening socket reaches an end that has its listener's.
        internal = unix_diag is not None and (unix_diag.peer in fd_of or _channel(unix, peer))
        # What this end sent and the peer has not read waits in the peer's receive queue.
        sent = peer.rqueue if peer is not None and unix.type != "dgram" else None
        return SocketFacts(fd, inode, KIND_OTHER if internal else KIND_CONN, "unix", "",
                           unix_diag.rqueue if unix_diag else None, sent, None, None, watches)
    return SocketFacts(fd, inode, KIND_OTHER, "", "", None, None, None, None, watches)


# States in which the peer's FIN has come (it counts one in bytes_received), and in which
# ours has been acknowledged (one in bytes_acked).
_FIN_RECEIVED = frozenset({"CLOSE_WAIT", "LAST_ACK", "CLOSING", "TIME_WAIT"})
_FIN_ACKED = frozenset({"FIN_WAIT2", "TIME_WAIT"})


def _data_bytes(diag, outgoing: bool) -> tuple[int, int]:
    """(bytes received, bytes acknowledged) of data alone: tcp_info counts sequence space, so
    the peer's FIN is one byte received, and our SYN (on a connection we opened) and our
    FIN one byte acknowledged each (checked on 6.18: 1,000 bytes then a FIN read 1,001)."""
    received = diag.bytes_received - (diag.state in _FIN_RECEIVED)
    acked = diag.bytes_acked - (outgoing and diag.bytes_acked > 0) \
        - (diag.state in _FIN_ACKED)
    return max(0, received), max(0, acked)


def _port(address: str) -> int:
    """``127.0.0.1:8080``, ``[::1]:8080`` -> 8080; 0 when there is none."""
    tail = address.rpartition(":")[2]
    return int(tail) if tail.isdigit() else 0


def _opened_at(facts: SocketFacts, first_seen: float) -> float:
    """The earliest moment the socket is known to have been open: tcp_info's times go back
    to the handshake (for a connection that never moved data, one of them is it), where
    muxtop's own first sight is only when it attached."""
    known = [at for at in (facts.sent_at, facts.received_at, facts.ack_at) if at is not None]
    return min(known + [first_seen])


def _last_io_at(facts: SocketFacts, last_change: float) -> float:
    """When data last moved either way (idle = now - this): tcp_info's, else the last read
    that saw a queue or the state change."""
    if facts.sent_at is None or facts.received_at is None:
        return last_change
    return max(facts.sent_at, facts.received_at)


def _channel(unix, peer) -> bool:
    """A socketpair with its other end in another process: no name at either end."""
    return peer is not None and not unix.path and not peer.path and not unix.listening


def _local(inet, unix) -> str:
    if inet is not None:
        return inet.local
    if unix is not None:
        return unix.path or "(unnamed)"
    return ""


def _describe(inet, unix, facts: SocketFacts, census: Census, fd_of: dict[int, int]) -> str:
    """What the socket is, for ConnView.note: ``tcp 127.0.0.1:8080``, ``unix stream /run/x``,
    ``unix stream socketpair with fd 7 (both ends here)``."""
    if inet is not None:
        return f"{inet.proto} {inet.local}"
    if unix is not None:
        unix_diag = census.unix_diag.get(facts.inode)
        if unix_diag is not None and unix_diag.peer in fd_of:
            return (f"unix {unix.type} socketpair with fd {fd_of[unix_diag.peer]} "
                    "(both ends here)")
        if unix_diag is not None and _channel(unix, census.unix_diag.get(unix_diag.peer)):
            return f"unix {unix.type} socketpair (the other end in another process)"
        return f"unix {unix.type} {unix.path or '(unnamed)'}"
    return "socket (netlink, packet, or another network namespace)"


def _socket_info(facts: SocketFacts, inet, unix) -> SocketInfo:
    return SocketInfo(
        facts.fd, facts.inode, facts.proto, _local(inet, unix),
        inet.peer if inet is not None else "", facts.tcp_state, facts.accept_queue,
        facts.backlog, unix.type if unix is not None else "",
        ("LISTEN" if unix.listening else unix.state) if unix is not None else "")


def _interest(regs) -> int:
    mask = 0
    for reg in regs:
        mask |= epoll.interest(reg.mask)
    return mask


def _flags(regs, flagged: bool) -> str:
    """ConnView.flags from the registrations watching an fd: T edge, O oneshot, D disarmed,
    X exclusive, ! a finding."""
    flags = FLAG_FINDING if flagged else ""
    for reg in regs:
        mask = reg.mask
        disarmed = epoll.is_disarmed(mask)
        for flag, on in ((FLAG_EDGE, mask & epoll.EPOLLET), (FLAG_DISARMED, disarmed),
                         (FLAG_ONESHOT, mask & epoll.EPOLLONESHOT and not disarmed),
                         (FLAG_EXCLUSIVE, mask & epoll.EPOLLEXCLUSIVE)):
            if on and flag not in flags:
                flags += flag
    return flags


def _watch(reg: epoll.Registration, links: dict[int, str], inodes: dict[int, int]) -> Watch:
    """A registration for Snapshot.epoll, marked where it outlives its fd.

    epoll keys on the open file, not the fd number: if the app closes an fd while a dup of it
    (or a forked child) keeps the file open, the registration stays and keeps firing."""
    stale = ""
    if reg.tfd not in links:
        stale = STALE_CLOSED
    elif reg.tfd in inodes and inodes[reg.tfd] != reg.ino:
        stale = STALE_REUSED
    return Watch(reg.tfd, reg.mask, reg.data, stale)


def _watches(epoll_sets: dict[int, list[epoll.Registration]],
             inodes: dict[int, int]) -> dict[int, list[epoll.Registration]]:
    """fd -> the registrations of every epoll set watching it."""
    watches: dict[int, list[epoll.Registration]] = {}
    for registrations in epoll_sets.values():
        for reg in registrations:
            watches.setdefault(reg.tfd, []).append(reg)
    for fd, ino in inodes.items():  # a registration for a closed fd is not this socket's
        if fd in watches:
            watches[fd] = [reg for reg in watches[fd] if reg.ino == ino]
    return watches


def _epoll_view(fd: int, regs: list[epoll.Registration], watched_by, first: float) -> ConnView:
    kinds = [epoll.trigger(reg.mask) for reg in regs]
    disarmed = sum(1 for reg in regs if epoll.is_disarmed(reg.mask))
    parts = [f"epoll: {len(regs)} fds"]
    parts += [f"{kinds.count(k)} {k}" for k in (epoll.EDGE, epoll.ONESHOT) if k in kinds]
    if disarmed:
        parts.append(f"{disarmed} disarmed")
    return _plain_view(fd, KIND_EPOLL, ", ".join(parts), watched_by, first)


def _plain_view(fd: int, kind: str, note: str, regs, first: float) -> ConnView:
    # Not a socket, so no inode of its own (all epoll fds share one anonymous inode): a
    # negative cid cannot collide with a socket's inode.
    return ConnView(
        cid=-1 - fd, fd=fd, kind=kind, peer="", state=OPEN, interest=_interest(regs),
        last_events=0, last_ready=None, out_buffer=0, rx_queue=None, tx_queue=None,
        bytes_in=0, bytes_out=0, msgs_in=0, msgs_out=0, opened_at=first, last_io_at=first,
        closed_at=None, tcp=None, flags=_flags(regs, False), history=(), note=note,
        watched_by=tuple(reg.epfd for reg in regs))


def command_line(parts: list[str], name: str) -> str:
    """The command line as a shell would take it; a title the process wrote over its own
    arguments (redis, nginx: "redis-server *:6379" then NULs) as it reads."""
    while parts and parts[-1] == "":
        parts = parts[:-1]  # the NULs that pad a rewritten title
    if not parts:
        return f"[{name}]"  # a kernel thread, or a process that blanked its arguments
    if len(parts) == 1:
        return parts[0]  # quoting would wrap a title's spaces in quotes
    return shlex.join(parts)
