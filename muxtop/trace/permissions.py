"""What this machine lets a tracer do, asked before starting one: each check returns the
reason it cannot, in one line that names the fix, or None.

ptrace (strace): the target's user or CAP_SYS_PTRACE, one tracer per process, and Yama's
ptrace_scope where it is on. BPF (bpftrace): root, or CAP_BPF with CAP_PERFMON (unprivileged
BPF is off on most kernels), and tracefs, where the syscall tracepoints live.
"""

from __future__ import annotations

import os

TRACEFS = ("/sys/kernel/tracing", "/sys/kernel/debug/tracing")
CAP_SYS_PTRACE, CAP_SYS_ADMIN, CAP_PERFMON, CAP_BPF = 19, 21, 38, 39


def _status(pid: int | str) -> dict[str, str]:
    fields = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            fields[key] = value.strip()
    return fields


def capabilities() -> int:
    """This process's effective capability bits."""
    try:
        return int(_status("self").get("CapEff", "0"), 16)
    except (OSError, ValueError):
        return 0


def _has(caps: int, *bits: int) -> bool:
    return all(caps >> bit & 1 for bit in bits)


def tracer_of(pid: int) -> int:
    """The PID tracing `pid` (a debugger, strace), 0 if none; -1 if it cannot be read."""
    try:
        return int(_status(pid).get("TracerPid", "0"))
    except (OSError, ValueError):
        return -1


def ptrace_problem(pid: int) -> str | None:
    try:
        status = _status(pid)
    except FileNotFoundError:
        return f"process {pid} has exited"
    except OSError as exc:
        return f"cannot read /proc/{pid}/status: {exc.strerror}"
    tracer = int(status.get("TracerPid", "0") or 0)
    if tracer:
        return (f"process {pid} is already traced by PID {tracer} (a debugger or another "
                "strace): a process can have only one ptrace tracer")
    privileged = _has(capabilities(), CAP_SYS_PTRACE)
    uids = status.get("Uid", "").split()
    if not privileged and uids and int(uids[0]) != os.geteuid():
        return (f"strace may trace only processes of your own user: run muxtop as the "
                f"target's user (uid {uids[0]}) or as root")
    try:
        with open("/proc/sys/kernel/yama/ptrace_scope") as f:
            scope = int(f.read().strip() or 0)
    except (OSError, ValueError):
        scope = 0  # no Yama: the classic rules above
    if scope >= 3:
        return "ptrace is disabled on this machine (kernel.yama.ptrace_scope = 3)"
    if scope == 2 and not privileged:
        return "ptrace needs root here (kernel.yama.ptrace_scope = 2): run muxtop as root"
    if scope == 1 and not privileged:
        return ("ptrace is limited to a tracer's own children here (kernel.yama.ptrace_scope"
                " = 1): run muxtop as root, or sysctl kernel.yama.ptrace_scope=0")
    return None


def tracefs() -> str | None:
    """Where tracefs is mounted with the syscall tracepoints, or None."""
    for root in TRACEFS:
        if os.path.isdir(f"{root}/events/syscalls"):
            return root
    return None


def bpf_problem() -> str | None:
    caps = capabilities()
    if os.geteuid() != 0 and not (_has(caps, CAP_SYS_ADMIN) or _has(caps, CAP_BPF, CAP_PERFMON)):
        return ("bpftrace needs root (or CAP_BPF and CAP_PERFMON): unprivileged BPF is "
                "disabled on most kernels")
    if tracefs() is None:
        return ("tracefs is not mounted, so bpftrace cannot find the syscall tracepoints: "
                "mount -t tracefs nodev /sys/kernel/tracing")
    return None
