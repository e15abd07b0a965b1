"""muxtop's own interest/event flags and the Ready pair every backend returns.

The values are Linux's poll(2) bits (POLLIN=1, POLLOUT=4, POLLERR=8, POLLHUP=16), which
epoll shares (EPOLLIN, EPOLLOUT, ...). So the poll and epoll backends translate by identity and
the hot loop never converts a mask; select builds these masks from its three lists.
"""

from typing import NamedTuple

READ = 0x001
WRITE = 0x004
ERROR = 0x008
HANGUP = 0x010
INVALID = 0x020  # POLLNVAL: the fd was not open
RDHUP = 0x2000  # POLLRDHUP: the peer shut down writing (a FIN), seen by epoll when asked for
# Not readiness: io_uring's completion mode reports an fd whose recv or send completed (the
# bytes are already read or sent). Above every poll bit.
RECVD = 0x10000
SENT = 0x20000

_NAMES = ((READ, "R"), (WRITE, "W"), (ERROR, "E"), (HANGUP, "H"), (INVALID, "N"),
          (RDHUP, "F"), (RECVD, "r"), (SENT, "s"))
_LONG = ((READ, "READ"), (WRITE, "WRITE"), (ERROR, "ERROR"), (HANGUP, "HANGUP"),
         (INVALID, "INVALID"), (RDHUP, "RDHUP"), (RECVD, "RECV-DONE"), (SENT, "SEND-DONE"))


class Ready(NamedTuple):
    """One fd a wait call returned, with the events it reported.

    Backends return plain ``(fd, events)`` tuples (building a NamedTuple per event costs in the
    hot loop); this type names the same shape for readers."""

    fd: int
    events: int


def _short(mask: int) -> str:
    return "".join(ch for bit, ch in _NAMES if mask & bit) or "-"


_KNOWN = sum(bit for bit, _ in _NAMES)
_SHORT = {mask: _short(mask) for mask in (
    sum(bit for i, (bit, _) in enumerate(_NAMES) if subset >> i & 1)
    for subset in range(1 << len(_NAMES)))}


def short(mask: int) -> str:
    """``READ|WRITE`` as ``RW``; ``-`` for nothing. (A table of the 256 answers: the
    ready-list log asks for one per fd on every line it draws.)"""
    return _SHORT[mask & _KNOWN]


def long(mask: int) -> str:
    """``READ|WRITE`` as ``READ|WRITE``; ``-`` for nothing."""
    return "|".join(name for bit, name in _LONG if mask & bit) or "-"
