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

import psutil

from muxtop.attach.diagnose import Diagnoser, SocketFacts
from muxtop.findings import FD_PRESSURE_SHARE, STUCK_AFTER
from muxtop.kernel import epoll, procfs, sockdiag
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
    SOURCE_TRACED,
    STALE_CLOSED,
    STALE_REUSED,
    STATUS_STOPPED,
    TRACE_STOPPED,
    ConnView,
    EpollSet,
    Notice,
    ProcessInfo,
    ProcessStats,
    Rates,
    Snapshot,
    SocketInfo,
    TcpInfo,
    Totals,
    Watch,
)
from muxtop.trace.calls import MULTIPLEXER
from muxtop.trace.diagnose import TraceDiagnoser
from muxtop.trace.session import Trace

# TCP state -> the nearest muxtop connection state; the exact one stays in ConnView.tcp.state.
_CONN_STATE = {
    "ESTABLISHED": OPEN, "SYN_SENT": OPEN, "SYN_RECV": OPEN, "NEW_SYN_RECV": OPEN,
    "LISTEN": LISTENING, "CLOSE_WAIT": HALF_CLOSED, "FIN_WAIT1": CLOSING,
    "FIN_WAIT2": CLOSING, "LAST_ACK": CLOSING, "CLOSING": CLOSING, "TIME_WAIT": CLOSED,
    "CLOSE": CLOSED,
}
_NO_TOTALS = Totals(0, 0, 0, 0, 0, 0, 0, 0)
_NO_RATES = Rates(0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0)


class AttachError(Exception):
    """Why attaching cannot start, worded as one line for a terminal."""


class _Gone(Exception):
    """The process exited (or its PID now belongs to another process) during a read."""


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
        own_netns = procfs.net_namespace("self")
        self._same_netns = own_netns is not None and own_netns == procfs.net_namespace(pid)
        self.diagnoser = Diagnoser(stuck_after=stuck_after, fd_pressure=fd_pressure)
        self.exited = False
        self._last: Snapshot | None = None
        self._notices: list[Notice] = []
        self._seq = 0
        self._fd_seen: dict[tuple[int, str], float] = {}
        self._counters: dict[int, tuple[int, int]] = {}  # inode -> (bytes in, bytes out)
        self._counters_at: float | None = None
        self.trace: Trace | None = None
        self._trace_review: TraceDiagnoser | None = None
        self._trace_state = ""  # the tracer state last told in a Notice

    def use_trace(self, trace: Trace) -> Attacher:
        """Add a started Trace of the process's wait calls (attach --trace): its ready lists,
        wait figures and findings join every read. The Attacher stops it when the process
        exits or on `close()`."""
        self.trace = trace
        self._trace_review = TraceDiagnoser(self.stuck_after)
        if trace.tracer.note:
            self._notice(self._clock(), "warning", f"{trace.name}: {trace.tracer.note}")
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

        epoll_sets: dict[int, list[epoll.Registration]] = {}
        for fd, link in links.items():
            if link == procfs.EPOLL_LINK:
                try:
                    epoll_sets[fd] = epoll.read_interest_list(fd, pid)
                except FileNotFoundError:  # closed since the listing
                    continue
        watches: dict[int, list[epoll.Registration]] = {}
        for registrations in epoll_sets.values():
            for reg in registrations:
                watches.setdefault(reg.tfd, []).append(reg)

        inodes = {fd: ino for fd, link in links.items()
                  if (ino := procfs.socket_inode(link)) is not None}
        for fd, ino in inodes.items():  # a registration for a closed fd is not this socket's
            if fd in watches:
                watches[fd] = [reg for reg in watches[fd] if reg.ino == ino]
        inet, unix = self._socket_tables(set(inodes.values()))
        diags: dict[int, sockdiag.TcpDiag] = {}
        if self._same_netns and any(s.proto.startswith("tcp") for s in inet.values()):
            diags = sockdiag.tcp_sockets()

        process = self._process_stats(len(links))
        sockets = [_socket_facts(fd, ino, inet.get(ino), unix.get(ino), diags.get(ino),
                                 watches.get(fd, ()))
                   for fd, ino in sorted(inodes.items())]
        rates = self._byte_rates(now, sockets)
        held = process.status == STATUS_STOPPED  # SIGSTOP: its queues say nothing now
        trace, trace_found, proven = self.trace, [], set()
        if trace is not None:
            trace.observe(now, epoll_sets, links)
            trace_found, proven = self._trace_review.review(
                now, trace, sockets, rates.bytes_in + rates.bytes_out, held)
            self._trace_notice(now)
        diagnoses = self.diagnoser.observe(now, sockets, process, held=held,
                                           extra=trace_found, proven=proven)
        flagged = {fd for d in diagnoses for fd in d.named_fds()}  # "!": a finding names it

        views = [self._socket_view(facts, inet.get(facts.inode), unix.get(facts.inode),
                                   diags.get(facts.inode), watches.get(facts.fd, ()),
                                   facts.fd in flagged)
                 for facts in sockets]
        # Non-socket fds have no track; remember when each (fd, file) was first seen instead.
        seen = {}
        for fd in sorted(epoll_sets):
            seen[fd, links[fd]] = first = self._fd_seen.get((fd, links[fd]), now)
            views.append(_epoll_view(fd, epoll_sets[fd], watches.get(fd, ()), first))
        for fd in sorted(watches.keys() - inodes.keys() - epoll_sets.keys()):
            if fd in links:  # a watched pipe, eventfd, timerfd...: part of the loop's picture
                seen[fd, links[fd]] = first = self._fd_seen.get((fd, links[fd]), now)
                views.append(_plain_view(fd, KIND_OTHER, links[fd], watches[fd], first))
        self._fd_seen = seen
        if trace is not None:
            views = _with_last_events(views, trace)
        views.sort(key=lambda view: view.fd)

        all_masks = [reg.mask for regs in epoll_sets.values() for reg in regs]
        snapshot = Snapshot(
            source="attach", taken_at=now, wall_time=wall, started_at=self._started_at,
            # Without an epoll fd the process may use select, poll or blocking calls: the
            # fd table cannot say which (a trace can).
            backend="epoll" if epoll_sets else "?",
            trigger=epoll.summarize_triggers(all_masks),
            protocol="?",
            listen=", ".join(_local(inet.get(f.inode), unix.get(f.inode))
                             for f in sockets if f.kind == KIND_LISTENER),
            connections=tuple(views), waits=(), totals=_NO_TOTALS, rates=rates,
            process=process, registered=len(all_masks),
            open_connections=sum(1 for f in sockets if f.kind == KIND_CONN),
            notices=tuple(self._notices), diagnoses=diagnoses, target=self._target(),
            epoll=tuple(EpollSet(epfd, tuple(_watch(reg, links, inodes)
                                             for reg in sorted(regs, key=lambda reg: reg.tfd)))
                        for epfd, regs in sorted(epoll_sets.items())),
            sockets=tuple(_socket_info(f, inet.get(f.inode), unix.get(f.inode))
                          for f in sockets),
        )
        return snapshot if trace is None else _traced(snapshot, trace, links)

    def _trace_notice(self, now: float) -> None:
        """A Notice when the tracer stops on its own (killed, the tool failed)."""
        info = self.trace.info()
        if info.state != self._trace_state:
            if info.state == TRACE_STOPPED:
                self._notice(now, "error", f"tracing stopped: {info.note}")
            self._trace_state = info.state

    def _target(self) -> ProcessInfo:
        return ProcessInfo(self.pid, self._cmdline, self.stuck_after)

    def _socket_tables(self, wanted: set[int]):
        """inode -> InetSocket and inode -> UnixSocket for the target's sockets.

        Each table lists the whole namespace, so stop reading as soon as every inode is found
        (a plain TCP server never pays for the unix and udp tables)."""
        inet: dict[int, procfs.InetSocket] = {}
        unix: dict[int, procfs.UnixSocket] = {}
        remaining = set(wanted)
        for table in ("tcp", "tcp6", "unix", "udp", "udp6"):
            if not remaining:
                break
            if table == "unix":
                found = procfs.read_unix_table(self.pid, remaining)
                unix.update(found)
            else:
                found = procfs.read_inet_table(self.pid, table, remaining)
                inet.update(found)
            remaining -= found.keys()
        return inet, unix

    def _byte_rates(self, now: float, sockets: list[SocketFacts]) -> Rates:
        """Bytes per second in and out over the sockets open at both of the last two reads.

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
            if inode in previous:
                moved_in += received - previous[inode][0]
                moved_out += acked - previous[inode][1]
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

    def _socket_view(self, facts: SocketFacts, inet, unix, diag, regs,
                     flagged: bool) -> ConnView:
        track = self.diagnoser.tracks[facts.inode]
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
            peer = ""  # /proc/net/unix does not name the peer
        else:
            state, peer = OPEN, ""
        return ConnView(
            cid=facts.inode, fd=facts.fd, kind=facts.kind, peer=peer, state=state,
            interest=_interest(regs), last_events=0, last_ready=None, out_buffer=0,
            rx_queue=facts.rx_queue, tx_queue=facts.tx_queue,
            bytes_in=facts.bytes_received or 0, bytes_out=facts.bytes_acked or 0,
            msgs_in=0, msgs_out=0, opened_at=track.first_seen, last_io_at=track.last_change,
            closed_at=None, tcp=tcp, flags=_flags(regs, flagged),
            history=tuple(track.history), note=_describe(inet, unix),
            watched_by=tuple(reg.epfd for reg in regs))

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


def _socket_facts(fd, inode, inet, unix, diag, regs) -> SocketFacts:
    watches = tuple((reg.epfd, reg.mask) for reg in regs)
    if inet is not None and inet.proto.startswith("tcp"):
        counters = {}
        if diag is not None and diag.bytes_received is not None:
            # diag.rqueue and bytes_received come from one message, so they agree.
            counters = {"app_read": diag.bytes_received - diag.rqueue,
                        "bytes_received": diag.bytes_received, "bytes_acked": diag.bytes_acked}
        if inet.state == "LISTEN":  # rx_queue of a listener is its accept queue
            return SocketFacts(fd, inode, KIND_LISTENER, inet.proto, inet.state, None, None,
                               inet.rx_queue, diag.wqueue if diag else None, watches)
        return SocketFacts(fd, inode, KIND_CONN, inet.proto, inet.state, inet.rx_queue,
                           inet.tx_queue, None, None, watches, **counters)
    if inet is not None:  # udp
        return SocketFacts(fd, inode, KIND_OTHER, inet.proto, "", inet.rx_queue,
                           inet.tx_queue, None, None, watches)
    if unix is not None:
        kind = KIND_LISTENER if unix.listening else KIND_CONN
        return SocketFacts(fd, inode, kind, "unix", "", None, None, None, None, watches)
    return SocketFacts(fd, inode, KIND_OTHER, "", "", None, None, None, None, watches)


def _local(inet, unix) -> str:
    if inet is not None:
        return inet.local
    if unix is not None:
        return unix.path or "(unnamed)"
    return ""


def _describe(inet, unix) -> str:
    """What the socket is, for ConnView.note: ``tcp 127.0.0.1:8080``, ``unix stream /run/x``."""
    if inet is not None:
        return f"{inet.proto} {inet.local}"
    if unix is not None:
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


def _with_last_events(views: list[ConnView], trace: Trace) -> list[ConnView]:
    """ConnViews with what the last traced wait reported for each fd ("last ev")."""
    fds = trace.fds
    shown = []
    for view in views:
        state = fds.get(view.fd)
        if state is not None and state.last_ready_at is not None:
            view = view._replace(last_events=state.last_events, last_ready=state.last_ready_at)
        shown.append(view)
    return shown


def _traced(snapshot: Snapshot, trace: Trace, links: dict[int, str]) -> Snapshot:
    """The attach Snapshot with the trace's ready-list ring, wait figures and reads/writes."""
    waits_per_s, events_per_s, per_wait, p50, p99, _ = trace.rates()
    rates = snapshot.rates._replace(waits=waits_per_s, events=events_per_s,
                                    ready_per_wait=per_wait, wait_p50=p50, wait_p99=p99)
    waits = tuple(trace.ring)
    backend = snapshot.backend
    if waits and backend == "?":  # the trace knows what it waits with
        backend = MULTIPLEXER[trace.calls[-1].syscall]
    return dataclasses.replace(
        snapshot, source=SOURCE_TRACED, backend=backend, waits=waits,
        wait_calls=tuple(trace.calls), trace=trace.info(), fd_io=trace.fd_io(links),
        rates=rates, totals=snapshot.totals._replace(waits=trace.seq, events=trace.events))
