"""Where each thread of an attached process is blocked right now, in words: `epoll_wait(3,
…, 512, -1)` in ep_poll. /proc/PID/task/TID/syscall needs no tracer, so this says where a
process waits even when a trace has seen no wait call return yet. Numbers are the syscalls
of the machine muxtop runs on (x86_64 or aarch64); others show as `syscall N`."""

from __future__ import annotations

import platform

from muxtop.kernel.procfs import ThreadCall

_X86_64 = {
    0: "read", 1: "write", 7: "poll", 17: "pread64", 19: "readv", 20: "writev", 23: "select",
    34: "pause", 35: "nanosleep", 40: "sendfile", 42: "connect", 43: "accept", 44: "sendto",
    45: "recvfrom", 46: "sendmsg", 47: "recvmsg", 61: "wait4", 202: "futex",
    230: "clock_nanosleep", 232: "epoll_wait", 270: "pselect6", 271: "ppoll",
    281: "epoll_pwait", 288: "accept4", 426: "io_uring_enter", 441: "epoll_pwait2",
}
_AARCH64 = {
    22: "epoll_pwait", 63: "read", 64: "write", 65: "readv", 66: "writev", 71: "sendfile",
    72: "pselect6", 73: "ppoll", 98: "futex", 101: "nanosleep", 115: "clock_nanosleep",
    202: "accept", 203: "connect", 206: "sendto", 207: "recvfrom", 211: "sendmsg",
    212: "recvmsg", 242: "accept4", 260: "wait4", 426: "io_uring_enter", 441: "epoll_pwait2",
}
NAMES = {"x86_64": _X86_64, "aarch64": _AARCH64}.get(platform.machine(), {})
_FD_FIRST = frozenset({"read", "write", "pread64", "readv", "writev", "sendfile", "connect",
                       "accept", "accept4", "sendto", "recvfrom", "sendmsg", "recvmsg"})
_STATES = {"R": "running", "S": "sleeping", "D": "in uninterruptible sleep (disk, a lock)",
           "T": "stopped", "t": "stopped by a tracer", "Z": "a zombie"}
FUTEX_CMD = 0x7F  # futex op without FUTEX_PRIVATE_FLAG and FUTEX_CLOCK_REALTIME


def _signed(value: int) -> int:
    """A 32-bit int argument as C sees it (the kernel prints it as an unsigned long)."""
    value &= 0xFFFFFFFF
    return value - (1 << 32) if value >= 1 << 31 else value


def _timeout(ms: int) -> str:
    ms = _signed(ms)
    return "-1 (forever)" if ms < 0 else f"{ms} ms"


_MULTIPLEXERS = {"poll": "poll", "ppoll": "poll", "select": "select", "pselect6": "select"}


def multiplexer_of(calls: list[ThreadCall]) -> str | None:
    """"poll" or "select" when a thread waits in one now; None otherwise. Without an epoll fd
    the fd table cannot say what a process waits with; its threads' syscalls can."""
    for call in calls:
        found = _MULTIPLEXERS.get(NAMES.get(call.syscall, ""))
        if found is not None:
            return found
    return None


def call_text(call: ThreadCall) -> str:
    """``epoll_wait(3, …, 512, -1 (forever))``, ``futex(wait)``, ``read(fd 7)``, or the
    thread's state when it is in no syscall."""
    if call.syscall is None:
        return _STATES.get(call.state, call.state or "?")
    name = NAMES.get(call.syscall, f"syscall {call.syscall}")
    a = call.args + (0,) * (6 - len(call.args))
    if name in ("epoll_wait", "epoll_pwait"):
        return f"{name}({a[0]}, …, {a[2]}, {_timeout(a[3])})"
    if name == "epoll_pwait2":
        return f"{name}({a[0]}, …, {a[2]}, …)"
    if name == "poll":
        return f"poll(…, {a[1]}, {_timeout(a[2])})"
    if name == "ppoll":
        return f"ppoll(…, {a[1]}, …)"
    if name in ("select", "pselect6"):
        return f"{name}({a[0]}, …)"
    if name in _FD_FIRST:
        return f"{name}(fd {_signed(a[0])})"
    if name == "futex":
        return "futex(wait)" if a[1] & FUTEX_CMD in (0, 9) else "futex(…)"
    if name == "io_uring_enter":
        return f"io_uring_enter({a[0]}, …)"
    return f"{name}(…)"


def thread_lines(calls: list[ThreadCall]) -> tuple[str, ...]:
    """One line per distinct place threads wait, the threads there named: ``tid 812
    (redis-server): epoll_wait(5, …, 10128, 100 ms) in ep_poll``; ``3 threads, tids 813 814
    815 (bio_close_file...): futex(wait) in futex_wait_queue``."""
    places: dict[str, list[ThreadCall]] = {}
    for call in calls:
        text = call_text(call) + (f" in {call.wchan}" if call.wchan else "")
        places.setdefault(text, []).append(call)
    lines = []
    for text, group in places.items():
        names = sorted({c.name for c in group})
        who = ", ".join(names[:3]) + ("…" if len(names) > 3 else "")
        if len(group) == 1:
            lines.append(f"tid {group[0].tid} ({who}): {text}")
        else:
            tids = " ".join(str(c.tid) for c in group[:8]) + (" …" if len(group) > 8 else "")
            lines.append(f"{len(group)} threads, tids {tids} ({who}): {text}")
    return tuple(lines)
