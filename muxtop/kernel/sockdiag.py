"""TCP and unix-socket details /proc/net does not show, through NETLINK_SOCK_DIAG (the interface
of `ss`). For unix sockets: their queues and the inode at the other end (/proc/net/unix has
neither).


/proc/net/tcp has no listen backlog (its tx_queue column is 0 for listeners, checked on
Linux 6.x) and no byte counters. inet_diag gives, per socket, the queues (for a listener: the
accept queue and the backlog, sk_max_ack_backlog = listen()'s argument capped by
net.core.somaxconn) and the kernel's tcp_info, whose bytes_received minus the receive queue is
how much the app has read: the difference between "data keeps arriving" and "nobody reads".
No privilege is needed, but it sees only this process's network namespace: the caller checks
the target shares it.
"""

from __future__ import annotations

import socket
import struct
from typing import NamedTuple

NETLINK_SOCK_DIAG = 4
SOCK_DIAG_BY_FAMILY = 20
NLM_F_REQUEST, NLM_F_DUMP = 0x1, 0x300
NLMSG_ERROR, NLMSG_DONE = 2, 3
INET_DIAG_INFO = 2  # the rtattr that carries struct tcp_info
INET_DIAG_REQ_BYTECODE = 1  # the request's rtattr that carries a filter
INET_DIAG_BC_S_EQ, INET_DIAG_BC_D_EQ = 11, 12  # local / remote port == (Linux >= 4.16)
ALL_STATES = 0xFFFFFFFF
# Sockets in SYN_RECV, TIME_WAIT and NEW_SYN_RECV are kernel-only (inode 0): no process has
# them as an fd, and a busy machine has tens of thousands of TIME_WAIT ones.
WITH_FDS = ALL_STATES & ~(1 << 3 | 1 << 6 | 1 << 12)
FILTER_PORTS = 31  # a filter op's "yes" jump is one byte: 31 tests of 8 bytes at most

_NLMSG = struct.Struct("=IHHII")  # len, type, flags, seq, pid
# inet_diag_req_v2: family, protocol, ext (a bitmask of 1 << (attr - 1)), pad, states; then a
# 48-byte inet_diag_sockid of zeros (no filter).
_REQUEST = struct.Struct("=BBBBI48x")
# inet_diag_msg: family, state, timer, retrans, the sockid (ports, source and destination
# addresses, interface, cookie), expires, rqueue, wqueue, uid, inode. What is read of it:
_HEAD = struct.Struct("=xB2x4s16s16s12x4xII4xI")  # state, ports, src, dst, rqueue, wqueue, ino
_INODE_AT = 68
_MSG_SIZE = 72
_U32 = struct.Struct("=I")
_PORTS = struct.Struct("!HH")
_RTATTR = struct.Struct("=HH")  # len, type
_BC_OP = struct.Struct("=BBH")  # code, yes, no
# struct tcp_info (include/uapi/linux/tcp.h, checked on 6.18): retransmits (byte 2), rto (8),
# unacked and sacked (24), last_data_sent (44), last_data_recv (52), last_ack_recv (56; ms
# since each), rtt and rttvar (68, µs), bytes_acked and bytes_received (120; Linux >= 4.1)
_INFO = struct.Struct("=2xB5xI12xII12xI4xII8xII44xQQ")
_INFO_OLD = struct.Struct("=2xB5xI12xII12xI4xII8xII")
_AGES = slice(4, 7)  # the three "ms since" fields of an unpacked _INFO


def _split(info: tuple) -> tuple[tuple, tuple]:
    """(the fields a TcpDiag keeps, the ages): the ages grow at every read, so a TcpDiag made
    of them would never be the same twice, and an idle socket would be decoded every time."""
    return info[:4] + info[7:], info[_AGES]
_STATES = {0x01: "ESTABLISHED", 0x02: "SYN_SENT", 0x03: "SYN_RECV", 0x04: "FIN_WAIT1",
           0x05: "FIN_WAIT2", 0x06: "TIME_WAIT", 0x07: "CLOSE", 0x08: "CLOSE_WAIT",
           0x09: "LAST_ACK", 0x0A: "LISTEN", 0x0B: "CLOSING", 0x0C: "NEW_SYN_RECV"}


class Ages(NamedTuple):
    """Milliseconds since a TCP socket last sent data, received data and received an ACK
    (struct tcp_info's last_data_sent, last_data_recv, last_ack_recv). A connection that never
    moved data counts from its handshake."""

    data_sent: int
    data_recv: int
    ack_recv: int


class TcpDiag(NamedTuple):
    """One TCP socket as inet_diag reports it."""

    rqueue: int  # listener: accept-queue length; else bytes received, not yet read by the app
    wqueue: int  # listener: the backlog; else bytes sent, not yet acknowledged
    rtt_us: int
    rttvar_us: int
    rto_us: int
    retransmits: int
    unacked: int  # listener: accept-queue length again
    sacked: int  # listener: the backlog again
    bytes_acked: int | None  # None on kernels too old to count
    bytes_received: int | None
    state: str = ""  # LISTEN, ESTABLISHED, ...
    local: str = ""  # 127.0.0.1:8080, [::1]:8080
    peer: str = ""  # "" for a listener
    family: int = 0  # AF_INET or AF_INET6
    sport: int = 0  # the local port
    dport: int = 0


def _address(family: int, raw: bytes, port: int) -> str:
    if family == socket.AF_INET:
        host = socket.inet_ntop(socket.AF_INET, raw[:4])
        return f"{host}:{port}" if port or host != "0.0.0.0" else ""
    host = socket.inet_ntop(socket.AF_INET6, raw)
    return f"[{host}]:{port}" if port or host != "::" else ""


def _info(buf: bytes, offset: int, length: int) -> tuple | None:
    """The tcp_info fields muxtop reads, from the INET_DIAG_INFO attribute."""
    attr = offset + _NLMSG.size + _MSG_SIZE
    while attr + _RTATTR.size <= offset + length:
        attr_len, attr_type = _RTATTR.unpack_from(buf, attr)
        if attr_len < _RTATTR.size:
            break
        size = attr_len - _RTATTR.size
        if attr_type == INET_DIAG_INFO:
            if size >= _INFO.size:
                return _INFO.unpack_from(buf, attr + _RTATTR.size)
            if size >= _INFO_OLD.size:
                return _INFO_OLD.unpack_from(buf, attr + _RTATTR.size) + (None, None)
            return None
        attr += (attr_len + 3) & ~3
    return None


def _port_filter(sports, dports) -> bytes:
    """inet_diag bytecode: local port in `sports` or remote port in `dports`. Each test jumps
    to the end (accept) when it holds, else to the next; the last one past the end (reject)."""
    tests = [(INET_DIAG_BC_S_EQ, p) for p in sorted(sports)] + \
            [(INET_DIAG_BC_D_EQ, p) for p in sorted(dports)]
    code = b""
    total = 8 * len(tests)
    for i, (op, port) in enumerate(tests):
        left = total - 8 * i
        code += _BC_OP.pack(op, left, 8 if i < len(tests) - 1 else left + 4)
        code += _BC_OP.pack(0, 0, port)
    return code


def tcp_dump(family: int, wanted: set[int] | None = None,
             cache: dict[int, tuple[tuple, TcpDiag]] | None = None,
             sports=(), dports=(), ages: dict[int, Ages] | None = None) -> dict[int, TcpDiag]:
    """inode -> TcpDiag for the TCP sockets of one family in this network namespace.

    `wanted`: only these inodes (the rest are skipped before any decoding). `cache`, owned by
    the caller: a socket whose figures have not changed since it was last seen comes back as
    the same TcpDiag object, not decoded again. `sports`/`dports`: ask the kernel only for
    sockets with one of these local or remote ports (at most FILTER_PORTS in all). `ages`:
    filled with each socket's Ages (kept out of TcpDiag: they change at every read). Raises
    OSError when sock_diag cannot answer."""
    request = _REQUEST.pack(family, socket.IPPROTO_TCP, 1 << (INET_DIAG_INFO - 1), 0,
                            WITH_FDS)
    if sports or dports:
        code = _port_filter(sports, dports)
        request += _RTATTR.pack(_RTATTR.size + len(code), INET_DIAG_REQ_BYTECODE) + code
    dump = _Dump(family, wanted, cache, ages)
    _messages(request, dump.handle, dump.run)
    return dump.found


class _Dump:
    """One tcp_dump's answers as they come: each message of the wanted sockets decoded (or
    found unchanged in the cache) into `found`."""

    def __init__(self, family: int, wanted: set[int] | None,
                 cache: dict[int, tuple[tuple, TcpDiag]] | None,
                 ages: dict[int, Ages] | None) -> None:
        self.family, self.wanted, self.cache, self.ages = family, wanted, cache, ages
        self.found: dict[int, TcpDiag] = {}

    def keep(self, inode: int, head_key: tuple, head: tuple, info: tuple | None) -> None:
        if info is not None:
            info, times = _split(info)
            if self.ages is not None:
                self.ages[inode] = Ages(*times)
        key = (head_key, info)  # what the TcpDiag is made of (the ages left out)
        cache = self.cache
        if cache is not None:
            known = cache.get(inode)
            if known is not None and known[0] == key:
                self.found[inode] = known[1]
                return
        self.found[inode] = diag = _decode(self.family, head, info)
        if cache is not None:
            cache[inode] = (key, diag)

    def handle(self, buf: bytes, offset: int, length: int) -> None:
        """One message, of any layout."""
        body = offset + _NLMSG.size
        inode = _U32.unpack_from(buf, body + _INODE_AT)[0]
        if self.wanted is not None and inode not in self.wanted:
            return
        head = _HEAD.unpack_from(buf, body)
        self.keep(inode, head, head, _info(buf, offset, length))

    def run(self, buf: bytes, offset: int) -> int:
        """The messages of a dump are mostly of one layout (the same attributes, in the
        same order, on each): unpack a run of them from `offset` at C speed; return where
        the run ended."""
        length = _NLMSG.unpack_from(buf, offset)[0]
        info_at = _info_at(buf, offset, length)
        if info_at is None or length & 3 or offset + length > len(buf):
            return offset
        fixed = _fixed(info_at, length)
        count = (len(buf) - offset) // length
        wanted, keep = self.wanted, self.keep
        for row in fixed.iter_unpack(memoryview(buf)[offset:offset + count * length]):
            if row[0] != length or row[1] != SOCK_DIAG_BY_FAMILY or row[10] != INET_DIAG_INFO \
                    or row[9] < _RTATTR.size + _INFO.size:
                break
            offset += length
            inode = row[8]
            if wanted is not None and inode not in wanted:
                continue
            keep(inode, row[2:11], row[2:9], row[11:])
        return offset


_FIXED_BY_LAYOUT: dict[tuple[int, int], struct.Struct] = {}


def _fixed(info_at: int, length: int) -> struct.Struct:
    """One whole message whose INET_DIAG_INFO attribute starts `info_at` bytes in: the
    netlink header's length and type, the inet_diag_msg fields read, the attribute's
    header, the tcp_info fields read."""
    found = _FIXED_BY_LAYOUT.get((info_at, length))
    if found is None:
        head = _NLMSG.size + _MSG_SIZE
        after = length - info_at - _RTATTR.size - _INFO.size
        found = _FIXED_BY_LAYOUT[info_at, length] = struct.Struct(
            "=IH10x" + _HEAD.format[1:] + f"{info_at - head}xHH" + _INFO.format[1:]
            + f"{after}x")
    return found


def _info_at(buf: bytes, offset: int, length: int) -> int | None:
    """Where the INET_DIAG_INFO attribute of a message starts, from the message's start;
    None if it has none (or too short a one)."""
    attr = offset + _NLMSG.size + _MSG_SIZE
    while attr + _RTATTR.size <= offset + length:
        attr_len, attr_type = _RTATTR.unpack_from(buf, attr)
        if attr_len < _RTATTR.size:
            return None
        if attr_type == INET_DIAG_INFO:
            return attr - offset if attr_len >= _RTATTR.size + _INFO.size else None
        attr += (attr_len + 3) & ~3
    return None


def _decode(family: int, head: tuple, info: tuple | None) -> TcpDiag:
    state, ports, src, dst, rqueue, wqueue, _inode = head
    sport, dport = _PORTS.unpack(ports)
    retransmits = rto = unacked = sacked = rtt = rttvar = 0
    acked = received = None
    if info is not None:
        retransmits, rto, unacked, sacked, rtt, rttvar, acked, received = info
    return TcpDiag(rqueue, wqueue, rtt, rttvar, rto, retransmits, unacked, sacked, acked,
                   received, _STATES.get(state, f"0x{state:02X}"),
                   _address(family, src, sport), _address(family, dst, dport) if dport else "",
                   int(family), sport, dport)


class UnixDiag(NamedTuple):
    """One unix socket as unix_diag reports it."""

    rqueue: int  # listener: connections waiting for accept(); else bytes not yet read
    wqueue: int  # listener: the backlog; else the memory its unread sends hold (not bytes)
    peer: int  # the inode of the other end; 0 when unconnected
    type: str = ""  # stream, dgram, seqpacket
    state: str = ""  # LISTEN, CONNECTED, UNCONNECTED (the names /proc/net/unix would give)
    path: str = ""  # "" unnamed, "@name" abstract


UNIX_DIAG_NAME, UNIX_DIAG_PEER, UNIX_DIAG_RQLEN = 0, 2, 4
UDIAG_SHOW_NAME, UDIAG_SHOW_PEER, UDIAG_SHOW_RQLEN = 0x01, 0x04, 0x10
_UNIX_TYPES = {1: "stream", 2: "dgram", 5: "seqpacket"}
# unix_diag gives the sock's state (TCP_* numbers), /proc/net/unix the socket's (SS_*)
_UNIX_STATES = {1: "CONNECTED", 2: "CONNECTING", 7: "UNCONNECTED", 10: "LISTEN"}
# unix_diag_req: family, protocol, pad, states, ino (0: all), show, cookie[2]
_UNIX_REQUEST = struct.Struct("=BBHIII8x")
_UNIX_MSG = struct.Struct("=BBBBI8x")  # family, type, state, pad, inode, cookie
_RQLEN = struct.Struct("=II")


def _unix_parse(buf: bytes, offset: int, length: int) -> tuple[int, UnixDiag]:
    body = offset + _NLMSG.size
    _family, kind, state, _pad, inode = _UNIX_MSG.unpack_from(buf, body)
    rqueue = wqueue = peer = 0
    path = ""
    attr = body + _UNIX_MSG.size
    while attr + _RTATTR.size <= offset + length:
        attr_len, attr_type = _RTATTR.unpack_from(buf, attr)
        if attr_len < _RTATTR.size:
            break
        payload = attr + _RTATTR.size
        if attr_type == UNIX_DIAG_RQLEN and attr_len >= _RTATTR.size + _RQLEN.size:
            rqueue, wqueue = _RQLEN.unpack_from(buf, payload)
        elif attr_type == UNIX_DIAG_PEER and attr_len >= _RTATTR.size + _U32.size:
            peer = _U32.unpack_from(buf, payload)[0]
        elif attr_type == UNIX_DIAG_NAME and attr_len > _RTATTR.size:
            raw = buf[payload:attr + attr_len]
            path = ("@" + raw[1:].decode(errors="replace") if raw[:1] == b"\0"
                    else raw.rstrip(b"\0").decode(errors="replace"))
        attr += (attr_len + 3) & ~3
    return inode, UnixDiag(rqueue, wqueue, peer, _UNIX_TYPES.get(kind, str(kind)),
                           _UNIX_STATES.get(state, str(state)), path)


def _messages(request: bytes, handle, run=None) -> None:
    """Send one dump request; hand every answer to `handle(buf, offset, length)` until
    NLMSG_DONE. `run(buf, offset)`, if given, may take a run of messages from `offset` at
    once and return the offset it reached. Raises OSError if the kernel refuses."""
    header = _NLMSG.pack(_NLMSG.size + len(request), SOCK_DIAG_BY_FAMILY,
                         NLM_F_REQUEST | NLM_F_DUMP, 1, 0)
    with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_SOCK_DIAG) as nl:
        nl.settimeout(2.0)  # the kernel answers at once; never hang a refresh on it
        nl.sendall(header + request)
        while buf := nl.recv(1 << 17):
            offset = 0
            while offset + _NLMSG.size <= len(buf):
                if run is not None:
                    offset = run(buf, offset)
                    if offset + _NLMSG.size > len(buf):
                        break
                length, kind, _flags, _seq, _pid = _NLMSG.unpack_from(buf, offset)
                if kind == NLMSG_DONE:
                    return
                if kind == NLMSG_ERROR:
                    errno = -struct.unpack_from("=i", buf, offset + _NLMSG.size)[0]
                    if errno:
                        raise OSError(errno, "sock_diag request failed")
                else:
                    handle(buf, offset, length)
                offset += (length + 3) & ~3


def unix_sockets(wanted: set[int] | None = None) -> dict[int, UnixDiag]:
    """inode -> UnixDiag for the unix sockets of this network namespace (`wanted`: only
    these, plus the peers they are connected to, whose queues say what the peer has not read).
    Empty when unix_diag is unavailable (no module, a seccomp filter). /proc/net/unix shows
    no queues."""
    found: dict[int, UnixDiag] = {}

    def handle(buf: bytes, offset: int, length: int) -> None:
        inode, record = _unix_parse(buf, offset, length)
        found[inode] = record

    try:
        _messages(_UNIX_REQUEST.pack(socket.AF_UNIX, 0, 0, ALL_STATES, 0,
                                     UDIAG_SHOW_PEER | UDIAG_SHOW_RQLEN | UDIAG_SHOW_NAME),
                  handle)
    except OSError:
        return {}
    if wanted is None:
        return found
    keep = set(wanted)
    keep.update(found[inode].peer for inode in wanted if inode in found)
    return {inode: record for inode, record in found.items() if inode in keep}


def tcp_sockets(wanted: set[int] | None = None) -> dict[int, TcpDiag]:
    """inode -> TcpDiag for every TCP socket (IPv4 and IPv6) of this network namespace.

    Empty when sock_diag is unavailable (no netlink, a seccomp filter...): the figures it adds
    then show as unknown rather than failing the refresh."""
    found: dict[int, TcpDiag] = {}
    for family in (socket.AF_INET, socket.AF_INET6):
        try:
            found.update(tcp_dump(family, wanted))
        except OSError:
            continue
    return found
