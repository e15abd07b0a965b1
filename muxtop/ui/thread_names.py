"""Give the dashboard process's threads their names in the kernel too (the engine, Textual's
writer and input threads): `top -H`, `ps -L`, py-spy, perf and `muxtop bench ui`'s per-thread
CPU (/proc/PID/task/*/stat) then tell them apart. CPython before 3.14 leaves every thread
named after the program. The main thread keeps its name: it is the process's name in `ps`."""

from __future__ import annotations

import contextlib
import threading

COMM_LENGTH = 15  # the kernel keeps 15 bytes of a thread's name


def name_threads() -> None:
    """Write each Python thread's name (but the main thread's) to its /proc comm (Linux;
    elsewhere, or if the kernel refuses, nothing happens)."""
    main = threading.main_thread()
    for thread in threading.enumerate():
        if thread is main or thread.native_id is None:
            continue
        with contextlib.suppress(OSError):
            with open(f"/proc/self/task/{thread.native_id}/comm", "w", encoding="utf-8") as f:
                f.write(thread.name.encode("ascii", "replace")[:COMM_LENGTH].decode())
