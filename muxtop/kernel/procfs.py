"""Parsers for the /proc files `muxtop attach` reads: fd links, socket tables, limits (epoll
fdinfo is kernel.epoll's).

Every function takes a pid and returns plain records. A file that vanishes between listing and
reading (an fd closed meanwhile) is skipped; a vanished process surfaces as OSError for the
caller to judge. The socket tables are per network namespace: /proc/PID/net/... is the
target's namespace, which is the one its sockets live in.
"""

from __future__ import annotations

import os
import socket
import struct
from typing import NamedTuple

EPOLL_LINK = "anon_inode:[eventpoll]"

TCP_STATES = {
    0x01: "ESTABLISHED", 0x02: "SYN_SENT", 0x03: "SYN_RECV", 0x04: "FIN_WAIT1",
    0x05: "FIN_WAIT2", 0x06: "TIME_WAIT", 0x07: "CLOSE", 0x08: "CLOSE_WAIT", 0x09: "LAST_ACK",
    0x0A: "LISTEN", 0x0B: "CLOSING", 0x0C: "NEW_SYN_RECV",
}
# /proc/net/unix: `St` is the socket's SS_* state; Flags bit __SO_ACCEPTCON marks a listener.
UNIX_STATES = {0: "FREE", 1: "UNCONNECTED", 2: "CONNECTING", 3: "CONNECTED", 4: "DISCONNECTING"}
UNIX_TYPES = {1: "stream", 2: "dgram", 5: "seqpacket"}
_SO_ACCEPTCON = 0x10000


class InetSocket(NamedTuple):
    """One row of /proc/PID/net/{tcp,tcp6,udp,udp6}."""

    proto: str  # "tcp", "tcp6", "udp", "udp6"
    local: str
    peer: str  # "" when there is none (a listener, an unconnected udp socket)
    state: str  # TCP state name (udp uses the same numbers: 07 CLOSE, 01 "connected")
    tx_queue: int
    rx_queue: int  # on a listener: the accept-queue length


class UnixSocket(NamedTuple):
    """One row of /proc/PID/net/unix. The kernel shows no queues and no peer here."""

    type: str
    state: str
    listening: bool
    path: str  # "" for unnamed (socketpair, client ends); "@name" for the abstract namespace


def list_fds(pid: int) -> dict[int, str]:
    """fd -> link text (``socket:[123]``, ``anon_inode:[eventpoll]``, ``/dev/null``...).

    Raises PermissionError for another user's process, FileNotFoundError once it is gone."""
    base = f"/proc/{pid}/fd"
    links = {}
    for name in os.listdir(base):
        try:
            links[int(name)] = os.readlink(f"{base}/{name}")
        except FileNotFoundError:  # closed between listdir and readlink
            continue
    return links


def socket_inode(link: str) -> int | None:
    """``socket:[4769]`` -> 4769; anything else -> None."""
    if link.startswith("socket:[") and link.endswith("]"):
        return int(link[8:-1])
    return None


def _ipv4(hex_addr: str) -> str:
    # The kernel prints the 32-bit address as it sits in memory, read as a host-order int.
    return socket.inet_ntop(socket.AF_INET, struct.pack("=I", int(hex_addr, 16)))


def _ipv6(hex_addr: str) -> str:
    # Four 32-bit words, each printed as a host-order int (see _ipv4).
    words = struct.unpack(">4I", bytes.fromhex(hex_addr))
    return socket.inet_ntop(socket.AF_INET6, struct.pack("=4I", *words))


def decode_address(text: str) -> str:
    """``0100007F:1F90`` -> ``127.0.0.1:8080``; IPv6 as ``[::1]:8080``; port 0 -> ``""``."""
    hex_addr, hex_port = text.split(":")
    port = int(hex_port, 16)
    if len(hex_addr) == 8:
        host = _ipv4(hex_addr)
        return f"{host}:{port}" if port or host != "0.0.0.0" else ""
    host = _ipv6(hex_addr)
    return f"[{host}]:{port}" if port or host != "::" else ""


def read_inet_table(pid: int, proto: str, wanted: set[int]) -> dict[int, InetSocket]:
    """Rows of /proc/PID/net/<proto> whose inode is in `wanted`, by inode.

    The table lists every socket of the namespace; only the target's are kept. Columns:
    sl local rem st tx_queue:rx_queue tr:when retrnsmt uid timeout inode ..."""
    found = {}
    try:
        with open(f"/proc/{pid}/net/{proto}") as f:
            next(f, None)  # header
            for line in f:
                fields = line.split()
                inode = int(fields[9])
                if inode not in wanted:
                    continue
                tx, rx = fields[4].split(":")
                state = int(fields[3], 16)
                found[inode] = InetSocket(
                    proto, decode_address(fields[1]), decode_address(fields[2]),
                    TCP_STATES.get(state, f"0x{state:02X}"), int(tx, 16), int(rx, 16))
    except FileNotFoundError:  # no IPv6 in this kernel
        pass
    return found


def read_unix_table(pid: int, wanted: set[int]) -> dict[int, UnixSocket]:
    """Rows of /proc/PID/net/unix whose inode is in `wanted`, by inode.

    Columns: Num RefCount Protocol Flags Type St Inode [Path]."""
    found = {}
    with open(f"/proc/{pid}/net/unix") as f:
        next(f, None)
        for line in f:
            fields = line.split(maxsplit=7)
            inode = int(fields[6])
            if inode not in wanted:
                continue
            sock_type, state = int(fields[4], 16), int(fields[5], 16)
            found[inode] = UnixSocket(
                UNIX_TYPES.get(sock_type, str(sock_type)), UNIX_STATES.get(state, str(state)),
                bool(int(fields[3], 16) & _SO_ACCEPTCON),
                fields[7].rstrip("\n") if len(fields) > 7 else "")
    return found


def read_fd_limit(pid: int) -> int:
    """The soft RLIMIT_NOFILE from /proc/PID/limits (readable for any process, unlike prlimit
    on another user's). 0 if it cannot be read or is unlimited."""
    with open(f"/proc/{pid}/limits") as f:
        for line in f:
            if line.startswith("Max open files"):
                soft = line[len("Max open files"):].split()[0]
                return int(soft) if soft.isdigit() else 0
    return 0


PF_KTHREAD = 0x00200000  # include/linux/sched.h: the task is a kernel thread


def is_kernel_thread(pid: int) -> bool:
    """The process is a kernel thread (kthreadd, kworkers): no user space, no fds of its own.
    False when its stat cannot be read."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return stat_is_kernel_thread(f.read())
    except OSError:
        return False


def stat_is_kernel_thread(stat: str) -> bool:
    """PF_KTHREAD in a /proc/PID/stat line's flags (its 9th field; the name before may hold
    spaces and parentheses)."""
    fields = stat.rpartition(") ")[2].split()  # after "pid (comm) ": state is field 3
    return len(fields) > 6 and fields[6].isdigit() and bool(int(fields[6]) & PF_KTHREAD)


def net_namespace(pid: int | str) -> str | None:
    """``net:[4026531833]``, or None when it cannot be read."""
    try:
        return os.readlink(f"/proc/{pid}/ns/net")
    except OSError:
        return None



class ThreadCall(NamedTuple):
    """Where one thread is now, from /proc/PID/task/TID/{syscall,wchan,comm,stat}."""

    tid: int
    name: str  # the thread's comm: the target's text
    state: str  # R running, S sleeping, D uninterruptible, T stopped, t traced...
    syscall: int | None  # the syscall it is blocked in; None when in none (running, -1)
    args: tuple[int, ...]  # its six arguments, as the kernel shows them (unsigned)
    wchan: str  # the kernel function it sleeps in ("" when none)


MAX_THREADS = 256  # threads read per refresh: a JVM's thousands would cost a refresh each


def thread_calls(pid: int) -> list[ThreadCall]:
    """Each thread's syscall now (owner or root, no tracer needed), tids in order, at most
    MAX_THREADS. A thread that ends meanwhile, or one we may not read, is left out."""
    try:
        tids = sorted(int(name) for name in os.listdir(f"/proc/{pid}/task") if name.isdigit())
    except OSError:
        return []
    calls = []
    for tid in tids[:MAX_THREADS]:
        base = f"/proc/{pid}/task/{tid}"
        try:
            with open(f"{base}/syscall") as f:
                fields = f.read().split()
            with open(f"{base}/stat") as f:
                stat = f.read()
            with open(f"{base}/wchan") as f:
                wchan = f.read().strip()
        except OSError:  # gone, or not ours to read
            continue
        # stat: "tid (comm) S ...": the name may hold spaces and parentheses
        name, _, rest = stat.partition(" (")[2].rpartition(") ")
        state = rest[:1]
        syscall, args = None, ()
        if fields and fields[0].lstrip("-").isdigit() and int(fields[0]) >= 0:
            syscall = int(fields[0])
            args = tuple(int(a, 16) for a in fields[1:7])
        calls.append(ThreadCall(tid, name, state, syscall, args, "" if wchan == "0" else wchan))
    return calls
