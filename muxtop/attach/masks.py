"""Epoll interest masks as /proc/PID/fdinfo shows them: decoded to words and to muxtop flags.

The kernel prints `epitem->event.events`, which is the mask given to epoll_ctl plus EPOLLERR and
EPOLLHUP (always added on ADD and MOD). When a oneshot registration fires, the kernel clears
every bit but its private ones (ET, ONESHOT, EXCLUSIVE, WAKEUP): a mask with ONESHOT and no
event bit left is a registration that fired and was never re-armed with EPOLL_CTL_MOD.
"""

from __future__ import annotations

from muxtop import events

# Values from <sys/epoll.h>; kept here (not from `select`) because they describe another
# process's registrations, whatever this Python was built with.
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

_NAMES = (
    (EPOLLIN, "IN"), (EPOLLPRI, "PRI"), (EPOLLOUT, "OUT"), (EPOLLERR, "ERR"), (EPOLLHUP, "HUP"),
    (EPOLLRDNORM, "RDNORM"), (EPOLLRDBAND, "RDBAND"), (EPOLLWRNORM, "WRNORM"),
    (EPOLLWRBAND, "WRBAND"), (EPOLLMSG, "MSG"), (EPOLLRDHUP, "RDHUP"),
    (EPOLLET, "ET"), (EPOLLONESHOT, "ONESHOT"), (EPOLLEXCLUSIVE, "EXCLUSIVE"),
    (EPOLLWAKEUP, "WAKEUP"),
)

LEVEL, EDGE, ONESHOT, MIXED = "level", "edge", "oneshot", "mixed"


def is_disarmed(mask: int) -> bool:
    """A oneshot registration that fired: it reports nothing until the app re-arms it."""
    return bool(mask & EPOLLONESHOT) and not mask & ~PRIVATE_BITS


def decode(mask: int) -> str:
    """``0x80000019`` as ``IN|ERR|HUP|ET``; a fired oneshot gets `` (disarmed)``."""
    text = "|".join(name for bit, name in _NAMES if mask & bit) or "-"
    unknown = mask & ~sum(bit for bit, _ in _NAMES)
    if unknown:
        text += f"|0x{unknown:x}"
    return text + " (disarmed)" if is_disarmed(mask) else text


def interest(mask: int) -> int:
    """The muxtop READ/WRITE flags a registration asks for.

    ERR and HUP are left out: the kernel adds them to every registration, so they say nothing
    about what the app asked for. muxtop's bits equal poll's, hence epoll's (see events.py).
    """
    return mask & (events.READ | events.WRITE)


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


def flag_tokens(mask: int) -> list[str]:
    """Short markers for ConnView.flags: ET, ONESHOT, DISARMED, EXCL."""
    tokens = []
    if mask & EPOLLET:
        tokens.append("ET")
    if mask & EPOLLONESHOT:
        tokens.append("DISARMED" if is_disarmed(mask) else "ONESHOT")
    if mask & EPOLLEXCLUSIVE:
        tokens.append("EXCL")
    return tokens
