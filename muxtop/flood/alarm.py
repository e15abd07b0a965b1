"""A wakeup at a precise time for the flood's epoll loop: a timerfd registered in the epoll set.

``epoll.poll(timeout)`` takes whole milliseconds (CPython rounds up), so a message due at
t fires up to 1 ms late, ~0.5 ms on average. An open loop charges that lateness to the server:
against a loopback echo of ~50 µs it would multiply the median by ten. A timerfd armed at the
exact due time (CLOCK_MONOTONIC, the clock ``time.perf_counter`` reads on Linux) wakes the
wait within the kernel's timer slack (50 µs) instead. Python 3.11 has no ``os.timerfd_create``
(3.13 does), hence ctypes; where it is missing the loop keeps its millisecond wakeups.
"""

from __future__ import annotations

import ctypes
import os
import time

CLOCK_MONOTONIC = 1
TFD_NONBLOCK = os.O_NONBLOCK
TFD_CLOEXEC = os.O_CLOEXEC
TFD_TIMER_ABSTIME = 1


class _Timespec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]


class _Itimerspec(ctypes.Structure):
    _fields_ = [("it_interval", _Timespec), ("it_value", _Timespec)]


def _libc():
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.timerfd_create.argtypes = (ctypes.c_int, ctypes.c_int)
        libc.timerfd_settime.argtypes = (ctypes.c_int, ctypes.c_int,
                                         ctypes.POINTER(_Itimerspec), ctypes.c_void_p)
        return libc
    except (OSError, AttributeError):
        return None


class Alarm:
    """One timerfd; ``at(when)`` arms it for ``when`` (perf_counter seconds). ``fd`` becomes
    readable then; ``clear()`` reads it back to unreadable."""

    def __init__(self) -> None:
        self._libc = _libc()
        if self._libc is None or time.get_clock_info("perf_counter").implementation != \
                "clock_gettime(CLOCK_MONOTONIC)":
            raise OSError("no timerfd on CLOCK_MONOTONIC here")
        fd = self._libc.timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC)
        if fd < 0:
            raise OSError(ctypes.get_errno(), "timerfd_create failed")
        self.fd = fd
        self._spec = _Itimerspec()
        self._armed = 0.0

    def at(self, when: float) -> None:
        if when == self._armed:
            return   # one settime per new wake time, not per loop turn
        self._armed = when
        seconds = int(when)   # the monotonic clock is well past 0 s: never the 0/0 that disarms
        self._spec.it_value.tv_sec = seconds
        self._spec.it_value.tv_nsec = int((when - seconds) * 1e9)
        self._libc.timerfd_settime(self.fd, TFD_TIMER_ABSTIME, ctypes.byref(self._spec), None)

    def clear(self) -> None:
        try:
            os.read(self.fd, 8)
        except BlockingIOError:
            pass   # re-armed since it fired: nothing to read
        self._armed = 0.0

    def close(self) -> None:
        os.close(self.fd)
