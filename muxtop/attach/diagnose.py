"""What looks wrong in an attached process, in plain words, from what /proc shows over time.

A single look at /proc cannot tell a stuck connection from one caught mid-read, so each socket
has a `SocketTrack` (keyed by inode: fd numbers get reused) that remembers how long the oldest
unread byte has waited, since when its send queue has not moved, and its TCP states. A finding
that needs time needs two samples spanning `stuck_after` seconds.

Where sock_diag gives byte counters (same network namespace) the age of the oldest unread byte
is exact: a TCP stream is FIFO, so if the app's read total (bytes_received - receive queue) is
still below what had been received at an earlier sample, bytes from that sample still wait.
A healthy server under steady load keeps a non-empty queue but never old bytes. Without the
counters a queue that stays non-empty is the only evidence.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass, field

from muxtop.findings import (
    ACCEPT_QUEUE_FULL,
    CLOSE_WAIT,
    FD_PRESSURE,
    FD_PRESSURE_SHARE,
    FDS,
    NO_REPLY,
    STUCK_AFTER,
    STUCK_READ,
    STUCK_WRITE,
    UNREAD,
    FirstSeen,
    Found,
    SocketFacts,
)
from muxtop.kernel import epoll
from muxtop.snapshot import KIND_CONN, KIND_LISTENER, Diagnosis, ProcessStats
from muxtop.units import size


@dataclass(slots=True)
class SocketTrack:
    """The history of one socket across samples."""

    first_seen: float
    state: str
    state_since: float
    last_change: float  # last sample where a queue or the state changed
    history: list[tuple[float, str]] = field(default_factory=list)
    samples: int = 0
    state_samples: int = 0  # samples that saw the current state
    # (sample time, bytes_received then) for samples that brought bytes not all read yet,
    # oldest first; without counters, one mark: the start of the current non-empty run.
    rx_marks: list[tuple[float, int]] = field(default_factory=list)
    # The current run where bytes wait to be sent and the peer acknowledges none of them (or,
    # without counters, the queue never shrinks).
    tx_since: float | None = None
    tx_samples: int = 0
    tx_start: int = 0
    tx_last: int = 0
    tx_acked_mark: int | None = None
    app_read: int | None = None  # the app's read total at the last sample (tcp_info)
    read_since: float | None = None  # since when that total has not moved
    _queues: tuple = ()
    _facts: SocketFacts | None = None  # the last sample's, to tell an unchanged one at once

    @property
    def unread_since(self) -> float | None:
        """When the oldest byte still unread was first seen; None when nothing waits."""
        return self.rx_marks[0][0] if self.rx_marks else None

    def observe(self, now: float, facts: SocketFacts) -> None:
        self.samples += 1
        if facts is self._facts:  # nothing moved since the last sample (most sockets)
            self.state_samples += 1
            if self.tx_since is not None:
                self.tx_samples += 1
            return
        self._facts = facts
        self._observe_state(now, facts)
        self._observe_reading(now, facts)
        self._observe_sending(now, facts)

    def _observe_state(self, now: float, facts: SocketFacts) -> None:
        """The TCP state (or kind) and its history; when the queues last changed."""
        state = facts.tcp_state or facts.kind
        if state != self.state or not self.history:
            if state != self.state:
                self.state, self.state_since, self.state_samples = state, now, 0
            self.history.append((now, state))
            del self.history[:-16]  # bounded: a long attach must not grow memory
        self.state_samples += 1
        queues = (facts.rx_queue, facts.tx_queue, facts.accept_queue, state)
        if queues != self._queues:
            self._queues, self.last_change = queues, now

    def _observe_reading(self, now: float, facts: SocketFacts) -> None:
        """The app's read total and the marks that date the oldest byte still unread."""
        if facts.app_read != self.app_read or self.read_since is None:
            self.app_read, self.read_since = facts.app_read, now
        if facts.app_read is not None and facts.bytes_received is not None:
            marks = [mark for mark in self.rx_marks if mark[1] > facts.app_read]
            if facts.bytes_received > max(facts.app_read, marks[-1][1] if marks else 0):
                marks.append((now, facts.bytes_received))  # new bytes arrived since the last
            # Bounded: drop the second-oldest; the age read from the marks stays a lower bound.
            self.rx_marks = marks if len(marks) <= 32 else marks[:1] + marks[2:]
        elif not facts.rx_queue:
            self.rx_marks = []
        elif not self.rx_marks:
            self.rx_marks = [(now, 0)]

    def _observe_sending(self, now: float, facts: SocketFacts) -> None:
        """Since when the send queue has held bytes that did not move."""
        tx = facts.tx_queue or 0
        if tx <= 0:
            self.tx_since, self.tx_samples = None, 0
        else:
            if facts.bytes_acked is not None:
                moved = facts.bytes_acked != self.tx_acked_mark
            else:
                moved = tx < self.tx_last
            if self.tx_since is None or moved:
                self.tx_since, self.tx_samples, self.tx_start = now, 0, tx
                self.tx_acked_mark = facts.bytes_acked
            self.tx_samples += 1
        self.tx_last = tx


class Diagnoser:
    """Keeps the per-socket tracks between samples and turns each sample into findings."""

    def __init__(self, stuck_after: float = STUCK_AFTER, fd_pressure: float = FD_PRESSURE_SHARE,
                 close_wait_pile: int = 10) -> None:
        self.stuck_after = stuck_after
        self.fd_pressure = fd_pressure  # fraction of the fd limit that counts as "near"
        self.close_wait_pile = close_wait_pile  # this many at one instant is a pile, any age
        self.tracks: dict[int, SocketTrack] = {}
        self._first_seen = FirstSeen()

    def observe(self, now: float, sockets: list[SocketFacts], process: ProcessStats | None,
                *, held: bool = False, extra: Iterable[Found] = (),
                proven: Collection[int] = (), uses_epoll: bool = True) -> tuple[Diagnosis, ...]:
        """One sample's findings. `held`: the process is stopped (SIGSTOP), so an unread
        queue says nothing about its reading: read findings wait. `extra`: findings of the
        trace; `proven`: fds whose stuck read the trace proves (its finding replaces ours).
        `uses_epoll`: the process has an epoll set (an fd none watches is then one it left)."""
        tracks = {}
        for facts in sockets:
            track = self.tracks.get(facts.inode)
            if track is None:
                state = facts.tcp_state or facts.kind
                track = SocketTrack(first_seen=now, state=state, state_since=now,
                                    last_change=now)
            track.observe(now, facts)
            tracks[facts.inode] = track
        self.tracks = tracks  # sockets that closed drop out

        found, behind = self._no_reply(now, sockets)
        for facts in sockets:
            if not facts.rx_queue and not facts.tx_queue and facts.kind != KIND_LISTENER:
                continue  # nothing queued either way: nothing to find (most sockets)
            track = tracks[facts.inode]
            # A client whose next request waits behind a silent upstream: the upstream's
            # finding names it, and the stall is not this fd's.
            if not held and facts.fd not in proven and facts.fd not in behind:
                found += self._stuck_read(now, facts, track, uses_epoll)
            found += self._stuck_write(now, facts, track)
            found += self._accept_queue_full(facts)
        found += self._close_wait(now, sockets)
        found += self._fd_pressure(process)
        found += extra

        return self._first_seen.stamp(now, found)

    def _stuck_read(self, now, facts, track, uses_epoll: bool = True):
        since = track.unread_since
        if facts.kind != KIND_CONN or not facts.rx_queue or since is None:
            return
        seen = now - since
        if since >= now or seen < self.stuck_after:  # one look cannot tell stuck from busy
            return
        # tcp_info's last arrival: every byte still queued came at or before it, which may be
        # long before muxtop attached.
        age = max(seen, now - facts.received_at) if facts.received_at is not None else seen
        unread = (f"{size(facts.rx_queue)} wait in its receive queue, the oldest for {age:.1f} s"
                  if facts.app_read is not None else
                  f"its receive queue has held bytes ({size(facts.rx_queue)} now) for {age:.1f} s")
        blocked = self._write_blocked(now, facts, track)
        triggered = False
        for epfd, mask in facts.watches:
            edge = mask & epoll.EPOLLET and mask & epoll.EPOLLIN and not mask & epoll.EPOLLONESHOT
            if blocked and (edge or epoll.is_disarmed(mask)):
                # A server that answers in order stops reading the next request while its
                # answer cannot go out: not the edge trap, the peer's doing.
                why = (f"fd {facts.fd}: {unread}, and its answer is stuck too ({track.tx_last} "
                       "bytes in the send queue, the peer reads none): the app is waiting for "
                       "the peer to read first before it reads the next (pipelined) request")
            elif edge:
                why = (f"fd {facts.fd} is edge-triggered and {unread}: the app stopped reading "
                       "before EAGAIN, and epoll will not report the fd again until more data "
                       "arrives (unless the app paused reading on purpose)")
            elif epoll.is_disarmed(mask):
                why = (f"fd {facts.fd} is a oneshot registration that fired and was never "
                       f"re-armed; {unread}")
            else:
                triggered = triggered or bool(mask & epoll.EPOLLIN)
                continue
            yield STUCK_READ, facts.fd, why, (
                ("rx_queue", facts.rx_queue), ("seconds", round(age, 1)),
                ("samples", track.samples), ("app_read_bytes", facts.app_read),
                ("epoll_fd", epfd), ("mask", mask), ("behind_write", bool(blocked)))
            return
        yield from self._unread(now, facts, track, unread, age, triggered, blocked, uses_epoll)

    def _unread(self, now, facts, track, unread, age, level, blocked, uses_epoll):
        """Bytes that wait on an fd no epoll set will fail to report: watched level-triggered
        (reported at every wait) or watched by none. Only the read counter tells a paused
        reader from a busy one, so it takes tcp_info's, unmoved for stuck_after."""
        if facts.app_read is None or track.read_since is None:
            return
        idle = now - track.read_since
        if idle < self.stuck_after:
            return
        if blocked:
            why = (f"fd {facts.fd}: {unread}, and its answer is stuck too ({track.tx_last} "
                   "bytes in the send queue, the peer reads none): the app is waiting for the "
                   "peer to read first before it reads on")
        elif level:
            why = (f"fd {facts.fd}: {unread}, and the app has read none of it for at least "
                   f"{idle:.1f} s, though it is watched level-triggered (epoll reports it at "
                   "every wait): the loop is not getting back to its wait calls (blocked in a "
                   "handler: see where its threads wait) or ignores the fd")
        elif uses_epoll:
            why = (f"fd {facts.fd}: {unread}, and no epoll set watches it: the app has paused "
                   f"reading it (nothing read for at least {idle:.1f} s; flow control when "
                   "what it read is not being consumed, or a forgotten fd)")
        else:
            why = (f"fd {facts.fd}: {unread}, and the app has read none of it for at least "
                   f"{idle:.1f} s (it waits with select, poll or blocking calls: see where its "
                   "threads wait)")
        yield UNREAD, facts.fd, why, (
            ("rx_queue", facts.rx_queue), ("seconds", round(age, 1)),
            ("seconds_since_read", round(idle, 1)), ("samples", track.samples),
            ("app_read_bytes", facts.app_read), ("watched", "level" if level else "no"),
            ("behind_write", bool(blocked)))

    def _no_reply(self, now: float, sockets: list[SocketFacts]) -> tuple[list[Found], set[int]]:
        """Outgoing connections whose last request was delivered (acknowledged, nothing
        queued) stuck_after ago or more and got nothing back: the stall that grows no queue
        (a proxy waiting on a backend that accepted and never answers). Each is paired by
        timing with the client connection still waiting for an answer whose last bytes came
        nearest to the request's going out; returns the findings and those clients' fds."""
        silent = sorted((f for f in sockets if self._silent(now, f)), key=lambda f: f.sent_at)
        if not silent:
            return [], set()
        waiting = [f for f in sockets if f.kind == KIND_CONN and not f.outgoing
                   and f.received_at is not None and f.sent_at is not None
                   and (f.received_at > f.sent_at or not f.bytes_acked)]
        found, behind = [], set()
        for upstream in silent:
            client = min(waiting, key=lambda f: abs(f.received_at - upstream.sent_at),
                         default=None)
            age = now - upstream.sent_at
            what = "nothing has come back since" if upstream.bytes_received else \
                "nothing has ever come back"
            why = (f"fd {upstream.fd}: a request went out to {upstream.peer} {age:.1f} s ago, "
                   f"was acknowledged, and {what}: the server at the other end accepted it "
                   "and does not answer")
            if client is not None:
                waiting.remove(client)
                behind.add(client.fd)
                why += (f"; client fd {client.fd} is waiting on it (paired by timing)"
                        + (f", its next {client.rx_queue} bytes unread behind it"
                           if client.rx_queue else ""))
            found.append((NO_REPLY, upstream.fd, why, (
                ("peer", upstream.peer), ("seconds", round(age, 1)),
                ("bytes_sent", upstream.bytes_acked), ("bytes_received", upstream.bytes_received),
                ("client_fd", client.fd if client is not None else None))))
        return found, behind

    def _silent(self, now: float, facts: SocketFacts) -> bool:
        if not (facts.outgoing and facts.kind == KIND_CONN and facts.tcp_state == "ESTABLISHED"
                and facts.sent_at is not None and facts.received_at is not None
                and facts.bytes_acked and not facts.tx_queue):
            return False
        # A reply within the same jiffy reads as the same moment: not a request left waiting.
        answered = facts.bytes_received and facts.received_at >= facts.sent_at - 0.005
        return not answered and now - facts.sent_at >= self.stuck_after

    def _write_blocked(self, now, facts, track) -> bool:
        """The send queue holds bytes the peer has not acknowledged for stuck_after. Without
        ack counters, ask for three samples: two can rise together by chance in a healthy
        bulk transfer."""
        needed = 2 if facts.bytes_acked is not None else 3
        return (facts.kind == KIND_CONN and track.tx_since is not None
                and track.tx_samples >= needed and now - track.tx_since >= self.stuck_after)

    def _stuck_write(self, now, facts, track):
        if not self._write_blocked(now, facts, track):
            return
        age = now - track.tx_since
        if facts.bytes_acked is not None:
            how = f"the peer has acknowledged nothing for {age:.1f} s"
        else:
            how = f"the queue has not shrunk for {age:.1f} s"
        why = (f"{size(track.tx_last)} wait in the send queue of fd {facts.fd} and {how} "
               f"({size(track.tx_start)} -> {size(track.tx_last)}): the peer is not reading")
        yield STUCK_WRITE, facts.fd, why, (
            ("tx_queue", track.tx_last), ("tx_queue_at_start", track.tx_start),
            ("seconds", round(age, 1)), ("samples", track.tx_samples),
            ("bytes_acked", facts.bytes_acked))

    def _accept_queue_full(self, facts):
        # The kernel queues backlog + 1 connections (sk_acceptq_is_full tests `>`), then drops
        # new handshakes; clients see connects hang and retry.
        if facts.kind != KIND_LISTENER or facts.backlog is None or facts.accept_queue is None:
            return
        if facts.accept_queue > facts.backlog:
            why = (f"listener fd {facts.fd} has {facts.accept_queue} connections waiting to be "
                   f"accepted, over its backlog of {facts.backlog}: the kernel drops new "
                   "connection attempts until the app calls accept()")
            yield ACCEPT_QUEUE_FULL, facts.fd, why, (
                ("accept_queue", facts.accept_queue), ("backlog", facts.backlog))

    def _close_wait(self, now, sockets):
        waiting = [(f.fd, self.tracks[f.inode]) for f in sockets if f.tcp_state == "CLOSE_WAIT"]
        if not waiting:
            return
        # Lingering: seen in CLOSE_WAIT by two samples at least stuck_after apart. A healthy
        # app closes within microseconds of reading EOF, so one such socket already counts.
        lingering = [fd for fd, track in waiting
                     if now - track.state_since >= self.stuck_after and track.state_samples >= 2]
        # A pile counts the sockets seen in CLOSE_WAIT at two reads at least: a busy server
        # that closes each within a moment (redis under redis-benchmark -k 0) has a dozen
        # at any instant, never the same ones.
        piled = sum(1 for _, track in waiting if track.state_samples >= 2)
        if not lingering and piled < self.close_wait_pile:
            return
        oldest = max(now - track.state_since for _, track in waiting)
        why = (f"{len(waiting)} connection(s) in CLOSE_WAIT, the oldest for at least "
               f"{oldest:.1f} s: the peers have closed, but the app never closes its end")
        yield CLOSE_WAIT, None, why, (
            ("count", len(waiting)), ("lingering", len(lingering)),
            ("oldest_seconds", round(oldest, 1)),
            (FDS, tuple(sorted(fd for fd, _ in waiting))[:20]))

    def _fd_pressure(self, process):
        if process is None or process.fd_limit <= 0:
            return
        share = process.num_fds / process.fd_limit
        if share >= self.fd_pressure:
            why = (f"{process.num_fds} of {process.fd_limit} file descriptors are open "
                   f"({share:.0%}): at the limit, accept() fails with EMFILE")
            yield FD_PRESSURE, None, why, (
                ("num_fds", process.num_fds), ("fd_limit", process.fd_limit),
                ("percent", round(share * 100)))
