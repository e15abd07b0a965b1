"""Kernel probes of one socket: receive queue, send queue and TCP_INFO, straight from ioctl and
getsockopt. Each costs a syscall, so the engine calls them for a bounded number of fds per
snapshot, never per event."""

from __future__ import annotations

import fcntl
import socket
import struct
import termios

from muxtop.kernel.procfs import TCP_STATES
from muxtop.snapshot import TcpInfo

SIOCOUTQ = 0x5411  # bytes sent but not acknowledged, plus bytes not yet sent
SIOCOUTQNSD = 0x894B  # bytes not yet sent
_INT = struct.Struct("i")
TCP_INFO_HEAD = struct.Struct("=8B24I")  # struct tcp_info up to rttvar (<linux/tcp.h>)
_TCP_INFO_LEN = 104
_ZERO = bytes(4)



def rx_queue(fd: int) -> int | None:
    """Bytes the kernel holds for us to read (FIONREAD); None where it does not apply."""
    try:
        return _INT.unpack(fcntl.ioctl(fd, termios.FIONREAD, _ZERO))[0]
    except OSError:
        return None  # EINVAL on a listener, EBADF on a closed fd


def tx_queue(fd: int) -> int | None:
    """Bytes in the kernel's send queue, unsent or unacknowledged (SIOCOUTQ)."""
    try:
        return _INT.unpack(fcntl.ioctl(fd, SIOCOUTQ, _ZERO))[0]
    except OSError:
        return None


def tcp_info(sock: socket.socket) -> TcpInfo | None:
    """State, RTT, retransmits and unacked from TCP_INFO; on a listener `unacked` is the
    accept-queue length and `sacked` its backlog."""
    try:
        raw = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, _TCP_INFO_LEN)
    except OSError:
        return None
    if len(raw) < _TCP_INFO_LEN:
        return None
    f = TCP_INFO_HEAD.unpack_from(raw)
    state = TCP_STATES.get(f[0], str(f[0]))
    # 8 bytes of u8 fields, then u32s: rto=f[8], ato, snd_mss, rcv_mss, unacked=f[12],
    # sacked=f[13], lost, retrans, fackets, 4 timestamps, pmtu, rcv_ssthresh, rtt=f[23], rttvar
    return TcpInfo(state=state, rtt_us=f[23], rttvar_us=f[24], rto_us=f[8],
                   retransmits=f[2], unacked=f[12], sacked=f[13])
