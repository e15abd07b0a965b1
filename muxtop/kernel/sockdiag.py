"""TCP details /proc/net/tcp does not show, through NETLINK_SOCK_DIAG (the interface of `ss`).

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

from muxtop.kernel.probes import TCP_INFO_HEAD

NETLINK_SOCK_DIAG = 4
SOCK_DIAG_BY_FAMILY = 20
NLM_F_REQUEST, NLM_F_DUMP = 0x1, 0x300
NLMSG_ERROR, NLMSG_DONE = 2, 3
INET_DIAG_INFO = 2  # the rtattr that carries struct tcp_info
ALL_STATES = 0xFFFFFFFF

_NLMSG = struct.Struct("=IHHII")  # len, type, flags, seq, pid
# inet_diag_req_v2: family, protocol, ext (a bitmask of 1 << (attr - 1)), pad, states; then a
# 48-byte inet_diag_sockid of zeros (no filter).
_REQUEST = struct.Struct("=BBBBI48x")
# inet_diag_msg: family, state, timer, retrans, the 48-byte sockid, then these:
_MSG = struct.Struct("=BBBB48xIIIII")  # ... expires, rqueue, wqueue, uid, inode
_RTATTR = struct.Struct("=HH")  # len, type
_TCPI_BYTES = struct.Struct("=QQ")  # bytes_acked, bytes_received (Linux >= 4.1)
_TCPI_BYTES_OFFSET = 120


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


def _parse(buf: bytes, offset: int, length: int) -> tuple[int, TcpDiag]:
    body = offset + _NLMSG.size
    _f, _state, _timer, _retrans, _exp, rqueue, wqueue, _uid, inode = _MSG.unpack_from(buf, body)
    rtt = rttvar = rto = retransmits = unacked = sacked = 0
    acked = received = None
    attr = body + _MSG.size
    while attr + _RTATTR.size <= offset + length:
        attr_len, attr_type = _RTATTR.unpack_from(buf, attr)
        if attr_len < _RTATTR.size:
            break
        payload, size = attr + _RTATTR.size, attr_len - _RTATTR.size
        if attr_type == INET_DIAG_INFO and size >= TCP_INFO_HEAD.size:
            info = TCP_INFO_HEAD.unpack_from(buf, payload)
            retransmits, rto, unacked, sacked = info[2], info[8], info[12], info[13]
            rtt, rttvar = info[8 + 15], info[8 + 16]  # byte offsets 68 and 72
            if size >= _TCPI_BYTES_OFFSET + _TCPI_BYTES.size:
                acked, received = _TCPI_BYTES.unpack_from(buf, payload + _TCPI_BYTES_OFFSET)
        attr += (attr_len + 3) & ~3
    return inode, TcpDiag(rqueue, wqueue, rtt, rttvar, rto, retransmits, unacked, sacked,
                          acked, received)


def _dump(family: int) -> dict[int, TcpDiag]:
    request = _REQUEST.pack(family, socket.IPPROTO_TCP, 1 << (INET_DIAG_INFO - 1), 0,
                            ALL_STATES)
    header = _NLMSG.pack(_NLMSG.size + len(request), SOCK_DIAG_BY_FAMILY,
                         NLM_F_REQUEST | NLM_F_DUMP, 1, 0)
    found = {}
    with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_SOCK_DIAG) as nl:
        nl.settimeout(2.0)  # the kernel answers at once; never hang a refresh on it
        nl.sendall(header + request)
        while buf := nl.recv(1 << 16):
            offset = 0
            while offset + _NLMSG.size <= len(buf):
                length, kind, _flags, _seq, _pid = _NLMSG.unpack_from(buf, offset)
                if kind == NLMSG_DONE:
                    return found
                if kind == NLMSG_ERROR:
                    errno = -struct.unpack_from("=i", buf, offset + _NLMSG.size)[0]
                    raise OSError(errno, "sock_diag request failed")
                inode, diag = _parse(buf, offset, length)
                found[inode] = diag
                offset += (length + 3) & ~3
    return found


def tcp_sockets() -> dict[int, TcpDiag]:
    """inode -> TcpDiag for every TCP socket (IPv4 and IPv6) of this network namespace.

    Empty when sock_diag is unavailable (no netlink, a seccomp filter...): the figures it adds
    then show as unknown rather than failing the refresh."""
    found: dict[int, TcpDiag] = {}
    for family in (socket.AF_INET, socket.AF_INET6):
        try:
            found.update(_dump(family))
        except OSError:
            continue
    return found
