"""The attached process's sockets found in the kernel's tables, asking for as little as it can:
a refresh at thousands of connections must stay within a few tens of milliseconds.

In muxtop's own network namespace sock_diag answers everything: TCP sockets (state,
addresses, queues, tcp_info) in one netlink dump per address family, filtered in the kernel to
the target's listening ports (and the remote ports of its outgoing connections), so the
clients' ends of loopback connections are never sent; unix sockets (queues and peers) from
unix_diag. /proc/net/tcp, which lists and formats every socket of the namespace, is not read.
A socket found in no table once is remembered as such (udp, netlink...) and not looked for
again. A TcpDiag whose figures did not change comes back as the same object, so callers can
skip what did not change by identity. In another network namespace sock_diag sees nothing of
the target: /proc/PID/net/* then tells what it can (no backlogs, counters or unix queues).
"""

from __future__ import annotations

import socket
from typing import NamedTuple

from muxtop.kernel import procfs, sockdiag
from muxtop.kernel.procfs import InetSocket, UnixSocket
from muxtop.kernel.sockdiag import FILTER_PORTS, Ages, TcpDiag, UnixDiag

_FAMILIES = {socket.AF_INET: "tcp", socket.AF_INET6: "tcp6"}
TCP4, TCP6, UNIX, UDP, OTHER = "tcp", "tcp6", "unix", "udp", "other"


class Census(NamedTuple):
    """The target's sockets by inode: /proc/net-style rows, and sock_diag's records."""

    inet: dict[int, InetSocket]
    unix: dict[int, UnixSocket]
    tcp: dict[int, TcpDiag]
    unix_diag: dict[int, UnixDiag]  # the target's unix sockets and their peers
    ages: dict[int, Ages] | None = None  # TCP sockets: ms since data last moved (sock_diag)


class SocketCensus:
    """One process's sockets, refreshed by `read(inodes)`; keeps what it learnt between
    reads (which table each inode is in, the ports to filter on, decoded records)."""

    def __init__(self, pid: int, same_netns: bool) -> None:
        self.pid = pid
        self.same_netns = same_netns
        self.kinds: dict[int, str] = {}  # inode -> TCP4, TCP6, UNIX, UDP or OTHER
        self.full_dumps = self.filtered_dumps = 0  # how each read asked sock_diag (bench)
        self._tcp_cache: dict[int, tuple[tuple, TcpDiag]] = {}
        self._rows: dict[int, tuple[object, InetSocket | UnixSocket]] = {}
        self._last_tcp: dict[int, TcpDiag] = {}
        self._ages: dict[int, Ages] = {}

    def read(self, inodes: set[int]) -> Census:
        if not self.same_netns:
            return self._from_proc(inodes)
        kinds = {inode: kind for inode, kind in self.kinds.items() if inode in inodes}
        unknown = inodes - kinds.keys()
        ports = self._ports()
        self._ages = {}
        tcp = self._tcp_dump(inodes, kinds, ports)
        # A TCP socket the filter missed (its listener closed, say) is looked for again.
        for inode in [i for i, kind in kinds.items() if kind in (TCP4, TCP6) and i not in tcp]:
            del kinds[inode]
            unknown.add(inode)
        unknown -= tcp.keys()
        unix_diag: dict[int, UnixDiag] = {}
        if unknown or UNIX in kinds.values():
            unix_diag = sockdiag.unix_sockets(inodes)
            kinds.update(dict.fromkeys(unknown & unix_diag.keys(), UNIX))
            unknown -= unix_diag.keys()
        inet: dict[int, InetSocket] = {}
        if unknown or UDP in kinds.values():
            wanted = unknown | {inode for inode, kind in kinds.items() if kind == UDP}
            for table in ("udp", "udp6"):
                found = procfs.read_inet_table(self.pid, table, wanted)
                inet.update(found)
                kinds.update(dict.fromkeys(found, UDP))
                wanted -= found.keys()
                unknown -= found.keys()
        if unknown and ports is not None:
            # Found in no table: a new connection out to a port the filter did not name?
            tcp.update(self._tcp_dump(unknown, kinds, None))
            unknown -= tcp.keys()
        for inode, diag in tcp.items():
            kinds[inode] = _FAMILIES.get(diag.family, TCP4)
        kinds.update(dict.fromkeys(unknown, OTHER))  # netlink, packet, or closed meanwhile
        self.kinds, self._last_tcp = kinds, tcp
        inet.update((inode, self._inet_row(inode, diag)) for inode, diag in tcp.items())
        unix = {inode: self._unix_row(inode, unix_diag[inode]) for inode, kind in kinds.items()
                if kind == UNIX and inode in unix_diag}
        self._rows = {inode: row for inode, row in self._rows.items() if inode in kinds}
        cache = self._tcp_cache
        for inode in [inode for inode in cache if inode not in tcp]:
            del cache[inode]
        return Census(inet, unix, tcp, unix_diag, self._ages)

    # ---- TCP ------------------------------------------------------------------------------

    def _ports(self) -> tuple[set[int], set[int]] | None:
        """(local ports, remote ports) that every TCP socket of the target matches: its
        listeners' ports (accepted connections share them) and the remote ports of its
        outgoing connections. None: too many for one filter, or nothing learnt yet."""
        listening = {d.sport for d in self._last_tcp.values() if d.state == "LISTEN"}
        remote = {d.dport for d in self._last_tcp.values()
                  if d.state != "LISTEN" and d.sport not in listening and d.dport}
        if not self._last_tcp or len(listening) + len(remote) > FILTER_PORTS:
            return None
        return listening, remote

    def _tcp_dump(self, inodes: set[int], kinds: dict[int, str],
                  ports: tuple[set[int], set[int]] | None) -> dict[int, TcpDiag]:
        """The TCP sockets among `inodes`: filtered on `ports` in the families the target
        has TCP sockets in, or (None) a whole dump of both."""
        found: dict[int, TcpDiag] = {}
        if ports is not None:
            families = [family for family, name in _FAMILIES.items() if name in kinds.values()]
            try:
                for family in families:
                    found.update(sockdiag.tcp_dump(family, inodes, self._tcp_cache, *ports,
                                                   ages=self._ages))
                self.filtered_dumps += 1
                return found
            except OSError:
                pass  # an older kernel without port tests: ask for everything
        for family in _FAMILIES:
            try:
                found.update(sockdiag.tcp_dump(family, inodes, self._tcp_cache,
                                               ages=self._ages))
            except OSError:
                continue
        self.full_dumps += 1
        return found

    def _inet_row(self, inode: int, diag: TcpDiag) -> InetSocket:
        """/proc/net/tcp's row for a socket, from its TcpDiag (the same object while it does
        not change)."""
        known = self._rows.get(inode)
        if known is not None and known[0] is diag:
            return known[1]  # type: ignore[return-value]
        listening = diag.state == "LISTEN"
        row = InetSocket(_FAMILIES.get(diag.family, TCP4), diag.local, diag.peer, diag.state,
                         0 if listening else diag.wqueue, diag.rqueue)
        self._rows[inode] = (diag, row)
        return row

    def _unix_row(self, inode: int, diag: UnixDiag) -> UnixSocket:
        known = self._rows.get(inode)
        if known is not None and known[0] == diag:
            return known[1]  # type: ignore[return-value]
        listening = diag.state == "LISTEN"
        row = UnixSocket(diag.type, "UNCONNECTED" if listening else diag.state, listening,
                         diag.path)
        self._rows[inode] = (diag, row)
        return row

    # ---- another network namespace ------------------------------------------------------------

    def _from_proc(self, inodes: set[int]) -> Census:
        """inode -> InetSocket and inode -> UnixSocket from /proc/PID/net/*.

        Each table lists the whole namespace, so stop reading as soon as every inode is found
        (a plain TCP server never pays for the unix and udp tables)."""
        inet: dict[int, InetSocket] = {}
        unix: dict[int, UnixSocket] = {}
        remaining = set(inodes)
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
        return Census(inet, unix, {}, {})
