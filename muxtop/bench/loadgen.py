"""The echo load client: muxtop's own C program (``echo_client.c``, shipped in this package),
built on first use with the system C compiler into the user's cache (see `compiler`), and run.
Without a compiler the slower Python client in `pyclient` stands in, and the bench says why.

Both take the same flags and print the same one JSON line (round trips/s, p50/p99 latency in µs,
mismatches, errors, client and server CPU%), so the echo bench reads either alike.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from muxtop.bench.compiler import BuildError, build

SOURCE_NAME = "echo_client.c"
SOURCE_ENV = "MUXTOP_LOADGEN_C"  # another client's C source to build instead (a yardstick)


class ClientError(Exception):
    """A client run failed; the message says how, with the tail of its stderr."""


@dataclass(frozen=True)
class Client:
    """How to start the load client: ``kind`` is "loadgen" (C) or "python"; ``note`` says
    where it came from or why the fallback is in use."""

    kind: str
    argv: tuple[str, ...]
    note: str

    def command(self, port: int, conns: int, duration: float, warmup: float,
                size: int = 64, server_pid: int | None = None) -> list[str]:
        cmd = [*self.argv, "-p", str(port), "-c", str(conns), "-d", f"{duration:g}",
               "-w", f"{warmup:g}", "-s", str(size)]
        if server_pid:
            cmd += ["-P", str(server_pid)]
        return cmd


def python_client(reason: str) -> Client:
    return Client("python", (sys.executable, "-m", "muxtop.bench.pyclient"),
                  f"Python client (slower than the servers: figures are the client's ceiling) "
                  f"because {reason}")


def c_client() -> Client:
    """The C client, built if need be: from $MUXTOP_LOADGEN_C when set (ClientError if that
    file is missing: a wrong override is a mistake to report, not to measure around), else
    from the packaged source. BuildError when it cannot be built."""
    if override := os.environ.get(SOURCE_ENV):
        source = Path(override)
        if not source.is_file():
            raise ClientError(f"${SOURCE_ENV}={override}: no such file")
        binary = build(source)
        return Client("loadgen", (str(binary),), f"{source.name} (C) from ${SOURCE_ENV}, {binary}")
    with resources.as_file(resources.files(__package__) / SOURCE_NAME) as source:
        if not source.is_file():
            raise BuildError(f"{SOURCE_NAME} is missing from the installed package "
                             f"(reinstall muxtop)")
        binary = build(source)
    return Client("loadgen", (str(binary),), f"muxtop's C echo client (epoll), {binary}")


def warn_on_stderr(message: str) -> None:
    print(f"muxtop bench: warning: {message}", file=sys.stderr, flush=True)


def find_client(choice: str = "auto",
                warn: Callable[[str], None] = warn_on_stderr) -> Client:
    """The client to use: ``auto`` builds the C one if it can and otherwise falls back to
    Python, telling ``warn`` why in one line; ``loadgen`` insists on C (ClientError
    otherwise); ``python`` skips it."""
    if choice == "python":
        return python_client("--client python was asked for")
    try:
        return c_client()
    except BuildError as exc:
        if choice == "loadgen":
            raise ClientError(f"cannot build the C client: {exc}") from None
        warn(f"using the Python echo client, slower than the servers it measures, "
             f"because {exc}")
        return python_client(str(exc))


def run_client(command: list[str], timeout: float) -> dict:
    """Run one client command; its JSON line as a dict, with ``exit_status`` added.

    A run that prints no JSON raises ClientError. One that prints JSON but exits 1 (mismatch,
    connection error) returns it; the caller decides whether the run counts."""
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise ClientError(f"client still running after {timeout:.0f} s; killed") from None
    except BaseException:  # Ctrl-C: never leave the client behind
        proc.kill()
        proc.wait()
        raise
    lines = [line for line in out.splitlines() if line.startswith("{")]
    if not lines:
        tail = err.strip().splitlines()[-3:]
        raise ClientError(f"client exited {proc.returncode} without a result"
                          + (f": {' | '.join(tail)}" if tail else ""))
    try:
        result = json.loads(lines[-1])
    except json.JSONDecodeError as exc:
        raise ClientError(f"client printed bad JSON: {exc}") from None
    result["exit_status"] = proc.returncode
    if err.strip():
        result["stderr"] = err.strip()[-500:]
    return result
