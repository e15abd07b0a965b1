"""bpftrace as a tracer: the script, the command line, what keeps it from running, and a
parser of the lines the script prints.

The script hangs on the syscall tracepoints of the wait calls (and of reads and writes): at
entry it keeps the arguments per thread, at exit it reads the ready list from the target's
memory — the epoll_event array, the pollfd array, the fd_set words — and prints a few short
lines. The target never stops: a probe costs about a microsecond in the kernel, and when the
reader falls behind the kernel drops lines (counted as lost) rather than slow the target.
Times are the kernel's CLOCK_MONOTONIC, which time.monotonic() reads too.

Lines: ``W tid start end syscall epfd timeout_us registered ret`` ends a wait (an epoll wait's
with its first INLINE ``data events`` pairs after it); before it, for the same (tid, start):
``E data events`` per further epoll event, ``P fd revents`` per ready pollfd,
``S word in out except`` per non-zero 64-bit word of select's result sets, and at entry
``N word bits`` per non-zero word of its input sets; ``C tid end epfd op fd data`` is a
successful epoll_ctl; ``@io[fd]: (...)`` one fd's reads and writes summed in the kernel.
"""

from __future__ import annotations

import errno
import os
import platform
import shutil
from functools import partial

from muxtop.snapshot import READY_KEPT
from muxtop.trace.calls import (
    CTL,
    POLLIN,
    POLLOUT,
    POLLPRI,
    READS,
    SELECT_WAITS,
    WRITES,
    TracedCtl,
    TracedIoSummary,
    TracedTotals,
    TracedWait,
)
from muxtop.trace.permissions import bpf_problem

NAME = "bpftrace"
READY_LINE = "READY"  # printed when muxtop calls getppid() once the probes are in (see script)
POLL_SCANNED = 1024  # pollfd entries scanned for revents per call (the verifier bounds loops)
SELECT_WORDS = 16  # 64-bit words of an fd_set read: FD_SETSIZE 1024
# The kernel's per-CPU buffer for the lines, in pages: the default (64) drops lines when a
# busy target makes tens of thousands of calls a second.
ENV = {"BPFTRACE_PERF_RB_PAGES": "1024"}

_ENTER_WAIT = """
tracepoint:syscalls:sys_enter_%NAME% /pid == %PID%/ {
  @ws[tid] = nsecs; @wp[tid] = (uint64)args->%PTR%; @wf[tid] = %FD%; @wn[tid] = %NFDS%;
%TIMEOUT%}
"""
# The first two (data, events) pairs ride on the W line itself, the rest eight to an E line:
# most waits of a busy server with many threads return one or two fds, and every line printed
# costs the machine three times (a perf event, bpftrace formats it, muxtop parses it): one line
# a wait instead of two halves what is lost when the reader falls behind. (The pairs read past
# what the call returned are garbage the parser drops.)
_EPOLL_EXIT = """
tracepoint:syscalls:sys_exit_%NAME% /pid == %PID% && @ws[tid]/ {
  $n = args->ret; $p = @wp[tid]; $s = @ws[tid]; $i = (int64)%INLINE%;
%COUNT%  if (@left > 0) { @left = @left - 1;
  while ($i < $n && $i < %KEPT%) {
    $e = $p + (uint64)$i * %STRIDE%;
    printf("E %d %lu %lu %u %lu %u %lu %u %lu %u %lu %u %lu %u %lu %u %lu %u\\n", tid, $s,
           *(uint64*)uptr($e + %DATA%), *(uint32*)uptr($e),
           *(uint64*)uptr($e + 1 * %STRIDE% + %DATA%), *(uint32*)uptr($e + 1 * %STRIDE%),
           *(uint64*)uptr($e + 2 * %STRIDE% + %DATA%), *(uint32*)uptr($e + 2 * %STRIDE%),
           *(uint64*)uptr($e + 3 * %STRIDE% + %DATA%), *(uint32*)uptr($e + 3 * %STRIDE%),
           *(uint64*)uptr($e + 4 * %STRIDE% + %DATA%), *(uint32*)uptr($e + 4 * %STRIDE%),
           *(uint64*)uptr($e + 5 * %STRIDE% + %DATA%), *(uint32*)uptr($e + 5 * %STRIDE%),
           *(uint64*)uptr($e + 6 * %STRIDE% + %DATA%), *(uint32*)uptr($e + 6 * %STRIDE%),
           *(uint64*)uptr($e + 7 * %STRIDE% + %DATA%), *(uint32*)uptr($e + 7 * %STRIDE%));
    $i += 8;
  }
  $a = (uint64)0; $b = (uint32)0; $c = (uint64)0; $d = (uint32)0;
  if ($n > 0) { $a = *(uint64*)uptr($p + %DATA%); $b = *(uint32*)uptr($p); }
  if ($n > 1) {
    $c = *(uint64*)uptr($p + %STRIDE% + %DATA%); $d = *(uint32*)uptr($p + %STRIDE%);
  }
  printf("W %d %lu %lu %NAME% %d %ld -1 %ld %lu %u %lu %u\\n", tid, $s, nsecs, @wf[tid],
         @wt[tid], $n, $a, $b, $c, $d);
  }
  delete(@ws[tid]); delete(@wp[tid]); delete(@wf[tid]); delete(@wt[tid]); delete(@wn[tid]);
}
"""
INLINE = 2  # (data, events) pairs on an epoll wait's W line
# One 64-bit read per pollfd (fd, events, revents); the count of ready entries printed lives in
# a map, not in a loop variable: two counters in one loop make the verifier walk every pair of
# values and give up.
_POLL_EXIT = """
tracepoint:syscalls:sys_exit_%NAME% /pid == %PID% && @ws[tid]/ {
  $n = args->ret; $p = @wp[tid]; $s = @ws[tid]; $nf = (int64)@wn[tid];
  $i = (int64)0; @wc[tid] = 0;
%COUNT%  if (@left > 0) { @left = @left - 1;
  while ($i < $nf && $i < %SCANNED% && @wc[tid] < $n) {
    $v = *(uint64*)uptr($p + (uint64)$i * 8);
    if ($v >> 48 != 0) {
      if (@wc[tid] < %KEPT%) { printf("P %d %lu %d %lu\\n", tid, $s, (int32)$v, $v >> 48); }
      @wc[tid]++;
    }
    $i++;
  }
  printf("W %d %lu %lu %NAME% -1 %ld %ld %ld\\n", tid, $s, nsecs, @wt[tid], $nf, $n);
  }
  delete(@ws[tid]); delete(@wp[tid]); delete(@wf[tid]); delete(@wt[tid]); delete(@wn[tid]);
  delete(@wc[tid]);
}
"""
# select keeps its three set pointers (in: wp, out: wo, except: wx); the sets are read at
# entry (what it asks about) and at exit (what came back), a word at a time.
_SELECT_ENTER = """
tracepoint:syscalls:sys_enter_%NAME% /pid == %PID%/ {
  @ws[tid] = nsecs; @wp[tid] = (uint64)args->inp; @wo[tid] = (uint64)args->outp;
  @wx[tid] = (uint64)args->exp; @wn[tid] = (int64)(int32)args->n;
%TIMEOUT%  $words = (uint64)(@wn[tid] + 63) / 64; $i = (int64)0;
  while ($i < $words && $i < %WORDS%) {
    $bits = (uint64)0;
    if (@wp[tid]) { $bits = $bits | *(uint64*)uptr(@wp[tid] + (uint64)$i * 8); }
    if (@wo[tid]) { $bits = $bits | *(uint64*)uptr(@wo[tid] + (uint64)$i * 8); }
    if (@wx[tid]) { $bits = $bits | *(uint64*)uptr(@wx[tid] + (uint64)$i * 8); }
    if ($bits != 0) { printf("N %d %lu %ld %lu\\n", tid, @ws[tid], $i, $bits); }
    $i++;
  }
}
"""
_SELECT_EXIT = """
tracepoint:syscalls:sys_exit_%NAME% /pid == %PID% && @ws[tid]/ {
  $n = args->ret; $s = @ws[tid]; $words = (uint64)(@wn[tid] + 63) / 64; $i = (int64)0;
%COUNT%  if (@left > 0) { @left = @left - 1;
  while ($n > 0 && $i < $words && $i < %WORDS%) {
    $in = (uint64)0; $out = (uint64)0; $ex = (uint64)0;
    if (@wp[tid]) { $in = *(uint64*)uptr(@wp[tid] + (uint64)$i * 8); }
    if (@wo[tid]) { $out = *(uint64*)uptr(@wo[tid] + (uint64)$i * 8); }
    if (@wx[tid]) { $ex = *(uint64*)uptr(@wx[tid] + (uint64)$i * 8); }
    if (($in | $out | $ex) != 0) {
      printf("S %d %lu %ld %lu %lu %lu\\n", tid, $s, $i, $in, $out, $ex);
    }
    $i++;
  }
  printf("W %d %lu %lu %NAME% -1 %ld -1 %ld\\n", tid, $s, nsecs, @wt[tid], $n);
  }
  delete(@ws[tid]); delete(@wp[tid]); delete(@wo[tid]); delete(@wx[tid]); delete(@wt[tid]);
  delete(@wn[tid]); delete(@wf[tid]);
}
"""
# Every wait is counted in the kernel (per-CPU counters: cheap, never lost) and the counts are
# printed every TOTALS_EVERY_MS; the lines of at most WAITS_ITEMIZED_PER_S waits a second are
# printed, a budget refilled every tenth of a second. What muxtop reads is then bounded
# whatever the target's rate: tens of thousands of lines a second overran the reader and the
# kernel dropped them (a 4-thread echo server at 125k round trips/s: 70% of the lines lost),
# while the rates come from the counts, exact.
_COUNT = "  @nw = count(); if ($n > 0) { @ne = sum($n); }\n"
WAITS_ITEMIZED_PER_S = 2000
TOTALS_EVERY_MS = 200
_BUDGET = (f"interval:ms:100 {{ @left = {WAITS_ITEMIZED_PER_S // 10}; }}\n"
           f"interval:ms:{TOTALS_EVERY_MS} {{ print(@nw); print(@ne); }}\n")

# epoll_ctl: which fd each data value stands for, as the app registers it (read at entry, told
# at exit with the result: a refused call changes nothing).
_CTL = """
tracepoint:syscalls:sys_enter_epoll_ctl /pid == %PID%/ {
  @cf[tid] = (int64)(int32)args->epfd; @co[tid] = (int64)(int32)args->op;
  @ct[tid] = (int64)(int32)args->fd; $e = (uint64)args->event; @cd[tid] = (uint64)0;
  if ($e) { @cd[tid] = *(uint64*)uptr($e + %DATA%); }
  @cs[tid] = 1;
}
tracepoint:syscalls:sys_exit_epoll_ctl /pid == %PID% && @cs[tid]/ {
  if (args->ret == 0) {
    printf("C %d %lu %ld %ld %ld %lu\\n", tid, nsecs, @cf[tid], @co[tid], @ct[tid], @cd[tid]);
  }
  delete(@cf[tid]); delete(@co[tid]); delete(@ct[tid]); delete(@cd[tid]); delete(@cs[tid]);
}
"""
# Reads and writes are summed per fd in the kernel, not printed one by one (a busy server makes
# hundreds of thousands a second, and formatting each line would cost more than the server):
# @io[fd] = (reads, bytes read, last read's result, bytes it asked for, when, last EAGAIN,
# writes, bytes written, when, last EAGAIN), printed and emptied every IO_EVERY_MS.
_IO = """
tracepoint:syscalls:sys_enter_%NAME% /pid == %PID%/ {
  @rf[tid] = (int64)(int32)args->%FD%; @ra[tid] = %ASKED%;
}
tracepoint:syscalls:sys_exit_%NAME% /pid == %PID% && @ra[tid]/ {
  $fd = @rf[tid]; $r = (int64)args->ret; $t = @io[$fd]; $now = (int64)nsecs;
  @io[$fd] = %UPDATE%;
  delete(@rf[tid]); delete(@ra[tid]);
}
"""
_READ_UPDATE = ("($t.0 + 1, $t.1 + ($r > 0 ? $r : 0), $r, @ra[tid], $now, "
                "$r == -11 ? $now : $t.5, $t.6, $t.7, $t.8, $t.9)")
_WRITE_UPDATE = ("($t.0, $t.1, $t.2, $t.3, $t.4, $t.5, $t.6 + 1, $t.7 + ($r > 0 ? $r : 0), "
                 "$now, $r == -11 ? $now : $t.9)")
IO_EVERY_MS = 200
_IO_DUMP = f"interval:ms:{IO_EVERY_MS} {{ print(@io); clear(@io); }}\n"
# @io must have its type before the probes read it: ten int64s, given once and taken away.
_IO_TYPE = ("@io[-1] = ((int64)0, (int64)0, (int64)0, (int64)0, (int64)0, (int64)0, "
            "(int64)0, (int64)0, (int64)0, (int64)0); delete(@io[-1]);")

# Cleared at the end, so bpftrace does not print what they held when it stops.
_WAIT_MAPS = ("@ws", "@wp", "@wf", "@wt", "@wn", "@wo", "@wx", "@wc", "@cf", "@co", "@ct",
              "@cd", "@cs", "@left", "@nw", "@ne")
_IO_MAPS = ("@rf", "@ra", "@io")

# Timeouts in µs, -1 for none: milliseconds in an int, or a timespec/timeval pointer.
# Syscall tracepoints store every argument as a 64-bit unsigned: an int's sign comes back with
# an (int32) cast.
_MS = "  $ms = (int32)args->%ARG%; @wt[tid] = $ms < 0 ? -1 : (int64)$ms * 1000;\n"
_TS = ("  $t = (uint64)args->%ARG%; @wt[tid] = -1;\n"
       "  if ($t) {\n"
       "    @wt[tid] = *(int64*)uptr($t) * 1000000 + (uint64)*(int64*)uptr($t + 8) / %DIV%;\n"
       "  }\n")
# (syscall, pointer argument, fd expression, nfds expression, timeout)
_EPOLL = (("epoll_wait", _MS.replace("%ARG%", "timeout")),
          ("epoll_pwait", _MS.replace("%ARG%", "timeout")),
          ("epoll_pwait2", _TS.replace("%ARG%", "timeout").replace("%DIV%", "1000")))
_POLL = (("poll", _MS.replace("%ARG%", "timeout_msecs")),
         ("ppoll", _TS.replace("%ARG%", "tsp").replace("%DIV%", "1000")))
_SELECT = (("select", _TS.replace("%ARG%", "tvp").replace("%DIV%", "1")),
           ("pselect6", _TS.replace("%ARG%", "tsp").replace("%DIV%", "1000")))
# What each read and write asks for; -1 where the sizes sit behind a pointer (iovecs).
_SIZE_ARG = {"read": "count", "write": "count", "recvfrom": "size", "sendto": "len",
             "sendfile": "count"}
# sendfile's tracepoint is sendfile64 (the 64-bit-offset call every libc uses), its socket
# argument out_fd
_TRACEPOINT = {"sendfile": "sendfile64"}
_FD_ARG = {"sendfile": "out_fd"}


def epoll_event_size() -> int:
    """struct epoll_event is packed on x86-64 only (12 bytes); 16 elsewhere."""
    return 12 if platform.machine() in ("x86_64", "amd64") else 16


def available(tracepoints: set[str] | None, name: str) -> bool:
    return tracepoints is None or name in tracepoints


def script(pid: int, io: bool, tracepoints: set[str] | None = None) -> str:
    """The bpftrace program for `pid`; `tracepoints` (sys_enter names this kernel has, None:
    assume all) leaves out what the machine lacks (no epoll_wait or select on arm64)."""
    # One BEGIN (bpftrace takes no second): the first budget, and @io's type
    parts = [f"BEGIN {{ @left = {WAITS_ITEMIZED_PER_S // 10}; {_IO_TYPE if io else ''} }}\n",
             _BUDGET]
    stride = str(epoll_event_size())
    fill = partial(_filled, pid)
    for name, timeout in _EPOLL:
        if available(tracepoints, name):
            parts.append(fill(_ENTER_WAIT, name, PTR="events", FD="(int32)args->epfd",
                              NFDS="(int32)args->maxevents", TIMEOUT=timeout))
            parts.append(fill(_EPOLL_EXIT, name, KEPT=str(READY_KEPT), STRIDE=stride,
                              DATA=str(epoll_event_size() - 8), INLINE=str(INLINE)))
    if available(tracepoints, CTL):
        parts.append(fill(_CTL, CTL, DATA=str(epoll_event_size() - 8)))
    for name, timeout in _POLL:
        if available(tracepoints, name):
            parts.append(fill(_ENTER_WAIT, name, PTR="ufds", FD="-1", NFDS="(int32)args->nfds",
                              TIMEOUT=timeout))
            parts.append(fill(_POLL_EXIT, name, KEPT=str(READY_KEPT),
                              SCANNED=str(POLL_SCANNED)))
    for name, timeout in _SELECT:
        if available(tracepoints, name):
            parts.append(fill(_SELECT_ENTER, name, TIMEOUT=timeout,
                              WORDS=str(SELECT_WORDS)))
            parts.append(fill(_SELECT_EXIT, name, WORDS=str(SELECT_WORDS)))
    if io:
        for name in READS + WRITES:
            point = _TRACEPOINT.get(name, name)
            if available(tracepoints, point):
                asked = f"(int64)args->{_SIZE_ARG[name]}" if name in _SIZE_ARG else "-1"
                # @ra is the "in a call" mark too: 0 would read as absent, so -1 stands in.
                parts.append(fill(_IO, point, ASKED=asked if asked == "-1" else
                                  f"{asked} == 0 ? -1 : {asked}", FD=_FD_ARG.get(name, "fd"),
                                  UPDATE=_READ_UPDATE if name in READS else _WRITE_UPDATE))
        parts.append(_IO_DUMP)
    # bpftrace says "Attaching N probes..." before it attaches them, and attaches in order:
    # this last probe fires on muxtop's own getppid(), so READY means every probe is in.
    parts.append(f"tracepoint:syscalls:sys_enter_getppid /pid == {os.getpid()}/ "
                 f'{{ printf("{READY_LINE}\\n"); }}\n')
    used = [name for name in _WAIT_MAPS + _IO_MAPS if any(f"{name}[" in part for part in parts)]
    return "".join(parts) + "END { " + " ".join(f"clear({name});" for name in used) + " }\n"


def _filled(pid: int, template: str, name: str, **more: str) -> str:
    """A probe's template with its %NAME%, %PID%, %COUNT% and the `more` placeholders filled."""
    text = template.replace("%NAME%", name).replace("%PID%", str(pid)) \
        .replace("%COUNT%", _COUNT)
    for key, value in more.items():
        text = text.replace(f"%{key}%", value)
    return text


def command(script_text: str) -> list[str]:
    return ["bpftrace", "-B", "line", "--no-warnings", "-e", script_text]


def problem() -> str | None:
    """Why bpftrace cannot run here, with what would fix it; None if it should."""
    if shutil.which(NAME) is None:
        return "bpftrace is not installed (Debian and Ubuntu: apt-get install bpftrace)"
    return bpf_problem()


def _errno_name(negative: int) -> str:
    return errno.errorcode.get(-negative, f"errno {-negative}")


def _io_summary(key: str, values: list[str]) -> TracedIoSummary:
    """``@io[7]: (3, 48, 16, 16, 123456789, 0, 1, 10, 123456999, 0)``: one fd's reads and
    writes over the last IO_EVERY_MS (times in ns; 0: none)."""
    fd = int(key[4:key.index("]")])
    numbers = [int(v.strip("(),")) for v in values]

    def at(ns: int) -> float | None:
        return ns / 1e9 if ns > 0 else None

    reads, read_bytes, last, asked, read_at, eagain, writes, written, write_at, w_eagain = \
        numbers
    return TracedIoSummary(fd, reads, read_bytes, -1 if last < 0 else last, asked,
                           at(read_at), at(eagain), writes, written, at(write_at), at(w_eagain))


def _select_events(index: int, readable: int, writable: int, exceptional: int) -> list[int]:
    """An S line's three fd_set words (fds index*64 to index*64+63) as ready pairs, flat as
    the E lines carry them: fd, events, fd, events..., by fd."""
    found: dict[int, int] = {}
    for word, bit in ((readable, POLLIN), (writable, POLLOUT), (exceptional, POLLPRI)):
        while word:
            low = word & -word
            fd = index * 64 + low.bit_length() - 1
            found[fd] = found.get(fd, 0) | bit
            word ^= low
    return [number for pair in sorted(found.items()) for number in pair]


class BpftraceParser:
    """Feed it the script's lines; it returns the call each W or R line completes. Lines
    bpftrace prints itself are kept (the last few) for the message when it fails."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.unread = 0
        self.lost = 0  # lines the kernel dropped because the reader fell behind
        self.counted = self.ready_counted = 0  # waits (and ready fds) the kernel counted
        self.messages: list[str] = []
        self.exited = False  # bpftrace cannot tell; the Tracer watches the process
        # (tid, start) -> the ready pairs, or select's input bits, seen before its W line
        self._ready: dict[tuple[int, int], list[int]] = {}
        self._asked: dict[tuple[int, int], int] = {}

    def feed(self, line: str) -> TracedWait | TracedIoSummary | TracedCtl | TracedTotals | None:
        fields = line.split()
        if not fields:
            return None
        kind = fields[0]
        try:
            if kind == "W" and len(fields) in (9, 9 + 2 * INLINE):
                return self._wait(fields)
            if kind == "C" and len(fields) == 7:
                tid, end, epfd, op, fd, data = map(int, fields[1:])
                return TracedCtl(tid, end / 1e9, epfd, op, fd, data)
            if kind == "E" and len(fields) == 19:  # eight (data, events) pairs
                self._ready.setdefault((int(fields[1]), int(fields[2])), []).extend(
                    map(int, fields[3:]))
                return None
            if kind == "P" and len(fields) == 5:
                self._ready.setdefault((int(fields[1]), int(fields[2])), []).extend(
                    (int(fields[3]), int(fields[4])))
                return None
            if kind.startswith("@io[") and len(fields) == 11:
                return _io_summary(kind, fields[1:])
            if kind in ("@nw:", "@ne:") and len(fields) == 2:
                return self._totals(kind, int(fields[1]))
            if kind == "S" and len(fields) == 7:
                self._ready.setdefault((int(fields[1]), int(fields[2])), []).extend(
                    _select_events(int(fields[3]), int(fields[4]), int(fields[5]),
                                   int(fields[6])))
                return None
            if kind == "N" and len(fields) == 5:
                key = (int(fields[1]), int(fields[2]))
                self._asked[key] = self._asked.get(key, 0) + int(fields[4]).bit_count()
                return None
        except ValueError:
            self.unread += 1
            return None
        self._bpftrace_said(line, fields)
        return None

    def _totals(self, kind: str, count: int) -> TracedTotals:
        """The kernel's counts of waits (@nw) and of the ready fds they returned (@ne)."""
        if kind == "@nw:":
            self.counted = count
        else:  # no line at all until a wait has returned a ready fd
            self.ready_counted = count
        return TracedTotals(self.counted, self.ready_counted)

    def _bpftrace_said(self, line: str, fields: list[str]) -> None:
        """A line of bpftrace's own: lines the kernel dropped, or a message kept for the
        error when it fails."""
        if line.startswith("Lost ") and len(fields) > 1 and fields[1].isdigit():
            self.lost += int(fields[1])
        else:
            self.messages = (self.messages + [line.rstrip()])[-5:]

    def _wait(self, fields: list[str]) -> TracedWait:
        tid, start, end = int(fields[1]), int(fields[2]), int(fields[3])
        name, epfd, timeout_us = fields[4], int(fields[5]), int(fields[6])
        registered, ret = int(fields[7]), int(fields[8])
        ready = self._ready.pop((tid, start), [])
        if len(fields) > 9:  # epoll's first pairs, on the W line: they come before the E lines'
            ready = [int(v) for v in fields[9:9 + 2 * min(max(ret, 0), INLINE)]] + ready
        if name in SELECT_WAITS:
            registered = self._asked.pop((tid, start), 0)
        kept = 2 * min(max(ret, 0), READY_KEPT)  # E lines come eight pairs at a time
        return TracedWait(tid, name, start / 1e9, (end - start) / 1e9,
                          None if timeout_us < 0 else timeout_us / 1e6, epfd, registered,
                          tuple(ready[:kept]), -1 if ret < 0 else ret,
                          _errno_name(ret) if ret < 0 else "")
