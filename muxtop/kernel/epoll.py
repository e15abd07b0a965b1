"""epoll's vocabulary: its bits, how a mask reads in words, and the interest lists that
/proc/PID/fdinfo/<epfd> shows. The one place in muxtop that knows EPOLL* values.

The kernel prints `epitem->event.events`, which is the mask given to epoll_ctl plus EPOLLERR and
EPOLLHUP (always added on ADD and MOD). When a oneshot registration fires, the kernel clears
every bit but its private ones (ET, ONESHOT, EXCLUSIVE, WAKEUP): a mask with ONESHOT and no
event bit left is a registration that fired and was never re-armed with EPOLL_CTL_MOD.
"""

from __future__ import annotations

import re
from typing import NamedTuple

from muxtop import events

# Values from <sys/epoll.h>; kept here (not from `select`) because they also describe another
# process's registrations, whatever this Python was built with. The low bits equal poll's,
# hence muxtop's own flags (events.py): the epoll backend passes them through unchanged.
EPOLLIN = 0x001
EPOLLPRI = 0x002
EPOLLOUT = 0x004
EPOLLERR = 0x008
EPOLLHUP = 0x010
EPOLLRDNORM = 0x040
EPOLLRDBAND = 0x080
EPOLLWRNORM = 0x100
EPOLLWRBAND = 0x200
EPOLLMSG = 0x400
EPOLLRDHUP = 0x2000
EPOLLEXCLUSIVE = 1 << 28
EPOLLWAKEUP = 1 << 29
EPOLLONESHOT = 1 << 30
EPOLLET = 1 << 31

# The bits that survive a oneshot firing (EP_PRIVATE_BITS in fs/eventpoll.c).
PRIVATE_BITS = EPOLLWAKEUP | EPOLLONESHOT | EPOLLET | EPOLLEXCLUSIVE
# What a registration asks for, in muxtop's READ/WRITE: ERR and HUP say nothing (always on).
INTEREST_BITS = events.READ | events.WRITE

_NAMES = (
    (EPOLLIN, "IN"), (EPOLLPRI, "PRI"), (EPOLLOUT, "OUT"), (EPOLLERR, "ERR"), (EPOLLHUP, "HUP"),
    (EPOLLRDNORM, "RDNORM"), (EPOLLRDBAND, "RDBAND"), (EPOLLWRNORM, "WRNORM"),
    (EPOLLWRBAND, "WRBAND"), (EPOLLMSG, "MSG"), (EPOLLRDHUP, "RDHUP"),
    (EPOLLET, "ET"), (EPOLLONESHOT, "ONESHOT"), (EPOLLEXCLUSIVE, "EXCLUSIVE"),
    (EPOLLWAKEUP, "WAKEUP"),
)
_KNOWN = sum(bit for bit, _ in _NAMES)

LEVEL, EDGE, ONESHOT, MIXED = "level", "edge", "oneshot", "mixed"
MODE_BITS = {LEVEL: 0, EDGE: EPOLLET, ONESHOT: EPOLLONESHOT}  # a trigger mode's bit


def is_disarmed(mask: int) -> bool:
    """A oneshot registration that fired: it reports nothing until the app re-arms it."""
    return bool(mask & EPOLLONESHOT) and not mask & ~PRIVATE_BITS


def decode(mask: int) -> str:
    """``0x80000019`` as ``IN|ERR|HUP|ET``; a fired oneshot gets `` (disarmed)``."""
    text = "|".join(name for bit, name in _NAMES if mask & bit) or "-"
    unknown = mask & ~_KNOWN
    if unknown:
        text += f"|0x{unknown:x}"
    return text + " (disarmed)" if is_disarmed(mask) else text


def words(mask: int) -> str:
    """A mask in a few words: ``IN ET``, ``IN OUT``, ``ET disarmed`` (a fired oneshot: only
    the full decode says ONESHOT). ERR and HUP are left out: the kernel adds them to every
    registration."""
    names = [name for bit, name in _NAMES if mask & bit and bit not in (EPOLLERR, EPOLLHUP)]
    if is_disarmed(mask):
        names = [name for name in names if name != "ONESHOT"] + ["disarmed"]
    return " ".join(names) or "none"


def interest(mask: int) -> int:
    """The muxtop READ/WRITE flags a registration asks for."""
    return mask & INTEREST_BITS


def trigger(mask: int) -> str:
    """How one registration reports: oneshot wins over edge (an ET|ONESHOT fd fires once)."""
    if mask & EPOLLONESHOT:
        return ONESHOT
    return EDGE if mask & EPOLLET else LEVEL


def summarize_triggers(masks) -> str:
    """One word for a whole process: level, edge, oneshot, mixed, or "-" with no registrations."""
    kinds = {trigger(mask) for mask in masks}
    if not kinds:
        return "-"
    return kinds.pop() if len(kinds) == 1 else MIXED


def meaning(mask: int) -> str:
    """What a registration's trigger bits mean for the app, in one sentence."""
    if is_disarmed(mask):
        return "oneshot that fired and was never re-armed: epoll reports nothing more"
    if mask & EPOLLONESHOT:
        return "oneshot: reported once, then disarmed until EPOLL_CTL_MOD"
    if mask & EPOLLET:
        return "edge-triggered: reported once per arrival; the app must read until EAGAIN"
    wanted = [what for bit, what in ((EPOLLIN, "something to read"), (EPOLLOUT, "room to write"))
              if mask & bit]  # what this registration asks for, and only that
    return ("level-triggered: reported while there is " + " or ".join(wanted) if wanted else
            "level-triggered, asking for neither reading nor writing: reported only on an "
            "error or a hang-up")


# ---- /proc/PID/fdinfo/<epfd> -------------------------------------------------------------

class Registration(NamedTuple):
    """One line of an epoll fd's fdinfo: a watched fd, its mask, and the app's own `data`."""

    epfd: int
    tfd: int  # the fd number when it was registered; the app may have closed it since
    mask: int
    data: int  # epoll_event.data as the app set it: redis stores the fd, nginx a pointer
    ino: int  # inode of the watched file, to tell a stale tfd from the live one


_TFD_LINE = re.compile(
    r"^tfd:\s*(\d+)\s+events:\s*([0-9a-fA-F]+)\s+data:\s*([0-9a-fA-F]+)"
    r".*?\bino:([0-9a-fA-F]+)", re.MULTILINE)


_TFD_ONE = re.compile(_TFD_LINE.pattern[1:])  # one line, from its start


def parse_fdinfo(epfd: int, text: str,
                 known: dict[str, Registration] | None = None) -> list[Registration]:
    """The ``tfd: N events: HEX data: HEX pos: ino: HEX sdev:`` lines of an epoll fd's fdinfo.

    `known`, the caller's: line -> Registration from an earlier parse of the same epoll fd;
    lines seen before are not parsed again (a list of thousands changes a few lines at a
    time), and `known` is left holding this text's lines only."""
    if known is None:
        return [Registration(epfd, int(tfd), int(mask, 16), int(data, 16), int(ino, 16))
                for tfd, mask, data, ino in _TFD_LINE.findall(text)]
    found, seen = [], {}
    for line in text.splitlines():
        if not line.startswith("tfd:"):
            continue
        reg = known.get(line)
        if reg is None:
            m = _TFD_ONE.match(line)
            if m is None:
                continue
            tfd, mask, data, ino = m.groups()
            reg = Registration(epfd, int(tfd), int(mask, 16), int(data, 16), int(ino, 16))
        seen[line] = reg
        found.append(reg)
    known.clear()
    known.update(seen)
    return found


def read_fdinfo(epfd: int, pid: int | str = "self") -> str:
    """The text of /proc/PID/fdinfo/<epfd>; OSError if it cannot be read."""
    with open(f"/proc/{pid}/fdinfo/{epfd}") as f:
        return f.read()


_TFD_MASK = re.compile(r"tfd:\s*(\d+)\s+events:\s*([0-9a-fA-F]+)")


def read_interest_masks(epfd: int, pid: int | str = "self") -> dict[int, int]:
    """tfd -> events mask of every line of epoll fd `epfd`'s fdinfo; OSError if it cannot be
    read. Line by line, keeping two ints a line: at 10,000 fds the whole text, a tuple of
    strings and a Registration per line took ~5 MB at once, which a server's RSS kept."""
    masks = {}
    with open(f"/proc/{pid}/fdinfo/{epfd}") as f:
        for line in f:
            m = _TFD_MASK.match(line)
            if m is not None:
                masks[int(m[1])] = int(m[2], 16)
    return masks


def read_interest_list(epfd: int, pid: int | str = "self") -> list[Registration]:
    """The interest list of epoll fd `epfd` of process `pid`; OSError if it cannot be read."""
    return parse_fdinfo(epfd, read_fdinfo(epfd, pid))
