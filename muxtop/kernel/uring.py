"""io_uring(7) from Python: one ring set up with io_uring_setup(2), its three regions mmap'd,
SQEs written and CQEs read in place, io_uring_enter(2) through ctypes.

Not liburing: its PyPI wheel dies with SIGILL on import on some CPUs, and the ring is small
enough to drive by hand. Layouts and constants are those of the kernel's uapi header
<linux/io_uring.h>. The submission queue's index array is filled once with 0..n-1, so SQE
slot i is always array entry i (what liburing does too); then only the tail moves.

Ordering: the kernel reads the SQ tail with an acquire and writes the CQ tail with a release;
stores to an mmap from Python are plain stores, which x86's memory model keeps in order
(store-store, load-load). This module assumes that: it refuses to set up elsewhere.
"""

from __future__ import annotations

import ctypes
import errno
import mmap
import os
import platform
import struct
import time
from typing import NamedTuple

# Syscall numbers: the same on every architecture (asm-generic, since 5.1).
SYS_SETUP, SYS_ENTER = 425, 426

# mmap offsets of the three regions.
OFF_SQ_RING, OFF_CQ_RING, OFF_SQES = 0, 0x8000000, 0x10000000

# Opcodes (enum io_uring_op) that muxtop uses.
OP_NOP = 0
OP_POLL_ADD = 6
OP_POLL_REMOVE = 7
OP_ASYNC_CANCEL = 14
OP_SEND = 26
OP_RECV = 27
OP_NAMES = {OP_NOP: "nop", OP_POLL_ADD: "poll_add", OP_POLL_REMOVE: "poll_remove",
            OP_ASYNC_CANCEL: "cancel", OP_SEND: "send", OP_RECV: "recv"}

POLL_ADD_MULTI = 1 << 0  # in the SQE's len: the poll stays armed (CQE_F_MORE on each CQE)
CQE_F_MORE = 1 << 1  # this request will post more CQEs
SQ_CQ_OVERFLOW = 1 << 1  # in the SQ ring's flags: completions wait in the kernel's list
ENTER_GETEVENTS = 1 << 0
ENTER_EXT_ARG = 1 << 3  # the last argument is an io_uring_getevents_arg (a timeout)
SETUP_CQSIZE = 1 << 3
SETUP_CLAMP = 1 << 4

FEATURES = (  # IORING_FEAT_*, bit by bit
    "single_mmap", "nodrop", "submit_stable", "rw_cur_pos", "cur_personality", "fast_poll",
    "poll_32bits", "sqpoll_nonfixed", "ext_arg", "native_workers", "rsrc_tags", "cqe_skip",
    "linked_file", "reg_reg_ring", "recvsend_bundle", "min_timeout", "rw_attr",
    "no_iowait")
FEAT_SINGLE_MMAP, FEAT_NODROP, FEAT_EXT_ARG = 1 << 0, 1 << 1, 1 << 8

# struct io_uring_params: 10 u32 (sq_entries .. resv[3]), then io_sqring_offsets
# (7 u32, resv1, u64 resv2) and io_cqring_offsets (8 u32, u64 resv2): 120 bytes.
_PARAMS = struct.Struct("=10I 7I I Q 8I Q")
# struct io_uring_sqe, 64 bytes: opcode, flags, ioprio, fd, off, addr, len, op_flags
# (poll32_events, msg_flags, cancel_flags...), user_data, buf_index, personality,
# splice_fd_in, addr3, pad.
SQE = struct.Struct("=BBHiQQIIQHHiQQ")
SQE_SIZE = 64
CQE = struct.Struct("=QiI")  # struct io_uring_cqe: user_data, res, flags (16 bytes)
# struct io_uring_getevents_arg (sigmask, sigmask_sz, min_wait_usec, ts) and a timespec.
_GETEVENTS_ARG = struct.Struct("=QIIQ")
_TIMESPEC = struct.Struct("=qq")
_U32 = struct.Struct("=I")

_libc = ctypes.CDLL(None, use_errno=True)
_syscall = _libc.syscall
_syscall.restype = ctypes.c_long
_syscall.argtypes = [ctypes.c_long] * 7  # syscall() is variadic: say every argument is a long


class RingError(OSError):
    """io_uring cannot be used; str() says why in plain words."""


class Completion(NamedTuple):
    user_data: int
    res: int  # bytes, a poll mask, or -errno
    flags: int  # CQE_F_MORE: the request goes on


class RingFigures(NamedTuple):
    """The ring's state as the rings say it, and what this process did with it."""

    sq_entries: int
    cq_entries: int
    sq_head: int  # how far the kernel has consumed submissions
    sq_tail: int  # how far we have written them
    cq_head: int  # how far we have reaped completions
    cq_tail: int  # how far the kernel has posted them
    cq_overflow: int  # completions the kernel dropped for a full CQ (none with nodrop)
    overflow_flag: bool  # completions wait in the kernel's overflow list (nodrop)
    enters: int  # io_uring_enter calls
    submitted: int  # SQEs the kernel took
    completed: int  # CQEs reaped
    features: int  # IORING_FEAT_* the kernel offered


def feature_names(features: int) -> list[str]:
    names = [name for i, name in enumerate(FEATURES) if features >> i & 1]
    unknown = features & ~((1 << len(FEATURES)) - 1)
    return names + ([f"0x{unknown:x}"] if unknown else [])


def _disabled_setting() -> int | None:
    try:
        with open("/proc/sys/kernel/io_uring_disabled") as f:
            return int(f.read().strip())
    except (OSError, ValueError):
        return None


def explain(err: int) -> str:
    """Why io_uring_setup failed, in plain words."""
    if err == errno.ENOSYS:
        return "this kernel has no io_uring (io_uring_setup: ENOSYS)"
    if err == errno.EPERM:
        setting = _disabled_setting()
        if setting == 2:
            return "io_uring is disabled on this machine (kernel.io_uring_disabled = 2)"
        if setting == 1:
            return ("io_uring is limited to the group kernel.io_uring_group "
                    "(kernel.io_uring_disabled = 1), and this process is not in it")
        return ("io_uring_setup is not permitted here (EPERM): a seccomp filter, such as "
                "a container's default profile, blocks it")
    if err in (errno.ENOMEM, errno.EMFILE, errno.ENFILE):
        return f"cannot set up a ring: {os.strerror(err)}"
    return f"io_uring_setup failed: {os.strerror(err)}"


_available: str | None | bool = False  # False: not checked yet; None: works; str: why not


def unavailable() -> str | None:
    """None if this process can use io_uring, else why not in plain words (checked once, by
    setting up a one-entry ring)."""
    global _available
    if _available is False:
        try:
            Ring(1).close()
            _available = None
        except RingError as exc:
            _available = str(exc)
    return _available


class Ring:
    """One io_uring instance: queue SQEs with `prep`, submit and wait with `enter`, take the
    completions with `reap`."""

    def __init__(self, entries: int = 256, cq_entries: int | None = None) -> None:
        if platform.machine() not in ("x86_64", "i686", "i386", "AMD64"):
            raise RingError(errno.ENOTSUP, "muxtop's io_uring needs x86's memory ordering "
                            f"(this machine is {platform.machine()})")
        params = bytearray(_PARAMS.size)
        flags = SETUP_CLAMP
        if cq_entries:
            flags |= SETUP_CQSIZE
            _U32.pack_into(params, 4, cq_entries)
        _U32.pack_into(params, 8, flags)
        buf = (ctypes.c_char * len(params)).from_buffer(params)
        fd = _syscall(SYS_SETUP, entries, ctypes.addressof(buf), 0, 0, 0, 0)
        if fd < 0:
            err = ctypes.get_errno()
            raise RingError(err, explain(err))
        del buf
        self.fd = fd
        self._maps: list[mmap.mmap] = []
        try:
            self._map(_PARAMS.unpack(params))
        except BaseException:
            self.close()
            raise
        self.enters = self.submitted = self.completed = 0
        self._pending = 0  # SQEs written but not yet handed to the kernel
        self._arg = ctypes.create_string_buffer(_GETEVENTS_ARG.size)
        self._ts = ctypes.create_string_buffer(_TIMESPEC.size)
        _GETEVENTS_ARG.pack_into(self._arg, 0, 0, 0, 0, ctypes.addressof(self._ts))
        self._arg_addr = ctypes.addressof(self._arg)
        self._ext_arg = bool(self.features & FEAT_EXT_ARG)

    def _map(self, p: tuple) -> None:
        (self.sq_entries, self.cq_entries, _flags, _cpu, _idle, self.features, _wq,
         _r0, _r1, _r2) = p[:10]
        sq_head, sq_tail, sq_mask, _sq_n, sq_flags, sq_dropped, sq_array, _, _ = p[10:19]
        cq_head, cq_tail, cq_mask, _cq_n, cq_overflow, cq_cqes, _cq_flags, _, _ = p[19:28]
        sq_size = sq_array + self.sq_entries * 4
        cq_size = cq_cqes + self.cq_entries * CQE.size
        prot, share = mmap.PROT_READ | mmap.PROT_WRITE, mmap.MAP_SHARED | mmap.MAP_POPULATE
        if self.features & FEAT_SINGLE_MMAP:
            sq = cq = mmap.mmap(self.fd, max(sq_size, cq_size), share, prot,
                                offset=OFF_SQ_RING)
            self._maps.append(sq)
        else:
            sq = mmap.mmap(self.fd, sq_size, share, prot, offset=OFF_SQ_RING)
            self._maps.append(sq)
            cq = mmap.mmap(self.fd, cq_size, share, prot, offset=OFF_CQ_RING)
            self._maps.append(cq)
        sqes = mmap.mmap(self.fd, self.sq_entries * SQE_SIZE, share, prot, offset=OFF_SQES)
        self._maps.append(sqes)
        # u32 views of the rings: ring[offset // 4] reads or writes one index.
        self._sq32 = memoryview(sq).cast("I")
        self._cq32 = memoryview(cq).cast("I")
        self._cq = memoryview(cq)
        self._sqes = sqes
        self._sq_head, self._sq_tail = sq_head // 4, sq_tail // 4
        self._sq_flags, self._sq_dropped = sq_flags // 4, sq_dropped // 4
        self._sq_mask = self._sq32[sq_mask // 4]
        self._cq_head, self._cq_tail = cq_head // 4, cq_tail // 4
        self._cq_overflow = cq_overflow // 4
        self._cq_mask = self._cq32[cq_mask // 4]
        self._cqes = cq_cqes
        for i in range(self.sq_entries):  # slot i is always array entry i
            self._sq32[sq_array // 4 + i] = i
        self._tail = self._sq32[self._sq_tail]

    # ---- submitting ---------------------------------------------------------------------

    def prep(self, opcode: int, fd: int, user_data: int, *, addr: int = 0, length: int = 0,
             op_flags: int = 0, off: int = 0) -> None:
        """Write one SQE; it goes to the kernel with the next `enter` (at once if the SQ is
        full)."""
        tail = self._tail
        if tail - self._sq32[self._sq_head] >= self.sq_entries:
            self.enter()  # full: hand these over now, the kernel copies them at submit
        SQE.pack_into(self._sqes, (tail & self._sq_mask) * SQE_SIZE, opcode, 0, 0, fd, off,
                      addr, length, op_flags, user_data, 0, 0, 0, 0, 0)
        self._tail = tail = (tail + 1) & 0xFFFFFFFF
        self._sq32[self._sq_tail] = tail  # after the SQE: the kernel reads the tail first
        self._pending += 1

    @property
    def pending(self) -> int:
        """SQEs written, not yet submitted."""
        return self._pending

    def enter(self, wait: int = 0, timeout: float | None = None) -> int:
        """Submit what `prep` queued; with `wait`, block until that many completions are there
        or `timeout` seconds pass (None: no limit). Returns how many SQEs the kernel took."""
        to_submit = self._pending
        flags = arg = argsz = 0
        if wait or self._sq32[self._sq_flags] & SQ_CQ_OVERFLOW:
            flags = ENTER_GETEVENTS  # also flushes completions waiting in the overflow list
        if wait and timeout is not None:
            if not self._ext_arg:
                raise RingError(errno.ENOTSUP, "this kernel's io_uring_enter takes no timeout")
            sec = int(timeout)
            _TIMESPEC.pack_into(self._ts, 0, sec, int((timeout - sec) * 1e9))
            flags |= ENTER_EXT_ARG
            arg, argsz = self._arg_addr, _GETEVENTS_ARG.size
        got = _syscall(SYS_ENTER, self.fd, to_submit, wait, flags, arg, argsz, 0)
        self.enters += 1
        if got < 0:
            err = ctypes.get_errno()
            # ETIME: the timeout passed; EINTR: a signal (ctypes does not retry as Python's
            # own calls do; the caller's next wait does); EBUSY/EAGAIN: the CQ is backed up
            # and must be reaped first. Anything submitted stays counted in the SQ head.
            if err not in (errno.ETIME, errno.EINTR, errno.EBUSY, errno.EAGAIN):
                raise OSError(err, f"io_uring_enter: {os.strerror(err)}")
            got = 0
        taken = (self._tail - self._sq32[self._sq_head]) & 0xFFFFFFFF
        took = to_submit - taken
        self._pending = taken
        self.submitted += took
        return took

    # ---- completions --------------------------------------------------------------------

    def reap(self) -> list[Completion]:
        """Every completion posted so far, oldest first; frees their CQ slots."""
        cq32 = self._cq32
        head = cq32[self._cq_head]
        tail = cq32[self._cq_tail]
        if head == tail:
            return []
        mask, cq, base, unpack = self._cq_mask, self._cq, self._cqes, CQE.unpack_from
        found = [Completion._make(unpack(cq, base + (i & mask) * 16))
                 for i in range(head, tail if tail >= head else tail + (1 << 32))]
        cq32[self._cq_head] = tail  # after reading them: the kernel may now reuse the slots
        self.completed += len(found)
        return found

    def ready(self) -> int:
        """Completions posted and not yet reaped."""
        return (self._cq32[self._cq_tail] - self._cq32[self._cq_head]) & 0xFFFFFFFF

    def figures(self) -> RingFigures:
        sq, cq = self._sq32, self._cq32
        return RingFigures(
            self.sq_entries, self.cq_entries, sq[self._sq_head], sq[self._sq_tail],
            cq[self._cq_head], cq[self._cq_tail], cq[self._cq_overflow],
            bool(sq[self._sq_flags] & SQ_CQ_OVERFLOW), self.enters, self.submitted,
            self.completed, self.features)

    def close(self) -> None:
        if self.fd < 0:
            return
        for name in ("_sq32", "_cq32", "_cq"):
            view = self.__dict__.pop(name, None)
            if view is not None:
                view.release()
        for region in self._maps:
            region.close()
        self._maps.clear()
        os.close(self.fd)
        self.fd = -1

    def fileno(self) -> int:
        return self.fd

    def __enter__(self) -> Ring:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# ---- /proc/PID/fdinfo/<ring fd> -----------------------------------------------------------

_FDINFO_FIELDS = ("SqMask", "SqHead", "SqTail", "CachedSqHead", "CqMask", "CqHead", "CqTail",
                  "CachedCqTail", "SQEs", "CQEs", "SqThread", "SqThreadCpu", "UserFiles",
                  "UserBufs")


def parse_fdinfo(text: str) -> dict[str, int] | None:
    """The numbers a ring's fdinfo gives (SqHead, SqTail, CqHead, CqTail, SqThread, ...),
    and how many entries its PollList and CqOverflowList hold; None if the text is not a
    ring's. Values that are not numbers are left out."""
    fields: dict[str, int] = {}
    section = None
    polls = overflowed = 0
    for line in text.splitlines():
        if line.startswith((" ", "\t")):  # an entry of the list the last header named
            polls += section == "PollList"
            overflowed += section == "CqOverflowList"
            continue
        key, sep, value = line.partition(":")
        section = key
        words = value.split()
        if not sep or key not in _FDINFO_FIELDS or not words:
            continue
        try:  # the masks are in hex (0x7), the rest in decimal
            fields[key] = int(words[0], 16 if words[0].startswith("0x") else 10)
        except ValueError:
            continue
    if "SqHead" not in fields or "CqTail" not in fields:
        return None
    fields["PollList"] = polls  # requests armed on a wait queue (polls, and ops waiting)
    fields["CqOverflowList"] = overflowed  # completions the CQ had no room for
    return fields


FDINFO_TRIES = 5  # reads of a ring's fdinfo, a millisecond apart, before it counts as none


def read_fdinfo(fd: int, pid: int | str = "self") -> dict[str, int] | None:
    """parse_fdinfo of /proc/PID/fdinfo/<fd>; OSError if it cannot be read. The kernel
    writes a ring's fields only when it takes the ring's lock at once (a trylock, so a
    reader cannot deadlock it): while the ring's owner holds it, in io_uring_enter or posting
    completions, the text has none of them. Such a text is read again, a few times."""
    for attempt in range(FDINFO_TRIES):
        if attempt:
            time.sleep(0.001)
        with open(f"/proc/{pid}/fdinfo/{fd}") as f:
            fields = parse_fdinfo(f.read())
        if fields is not None:
            return fields
    return None
