"""The echo load client: find ``shared/tools/loadgen.c`` beside the repo, build it once into a
cache dir, and run it; without gcc or the source, the slower Python client in `pyclient` stands in.

Both take the same flags and print the same one JSON line (round trips/s, p50/p99 latency in µs,
mismatches, errors, client and server CPU%), so the echo bench reads either alike.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import muxtop

SOURCE_ENV = "MUXTOP_LOADGEN_C"  # points at another loadgen.c


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


def source_candidates() -> list[Path]:
    """Where loadgen.c may be: $MUXTOP_LOADGEN_C, then ``shared/tools`` beside the checkout
    (the repo is ``.../main`` with ``.../shared`` next to it, here and in CI)."""
    repo = Path(muxtop.__file__).resolve().parents[1]
    found = [Path(os.environ[SOURCE_ENV])] if os.environ.get(SOURCE_ENV) else []
    return found + [repo.parent / "shared" / "tools" / "loadgen.c",
                    repo / "shared" / "tools" / "loadgen.c"]


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "muxtop"


def build_loadgen(source: Path, cc: str) -> Path:
    """Compile ``source`` into the cache (once per source content); the binary's path."""
    digest = hashlib.sha256(source.read_bytes()).hexdigest()[:16]
    last_error = ""
    for folder in (cache_dir(), Path(tempfile.gettempdir()) / f"muxtop-{os.getuid()}"):
        binary = folder / f"loadgen-{digest}"
        if os.access(binary, os.X_OK):
            return binary
        try:
            folder.mkdir(parents=True, exist_ok=True)
            # Build under a private name and rename: two benches building at once never run a
            # half-written binary.
            fd, partial = tempfile.mkstemp(prefix=".loadgen-", dir=folder)
            os.close(fd)
        except OSError as exc:
            last_error = str(exc)
            continue
        try:
            proc = subprocess.run([cc, "-O2", "-o", partial, str(source)],
                                  check=False, capture_output=True, text=True, timeout=120)
            if proc.returncode != 0:
                raise ClientError(f"{cc} failed on {source}: {proc.stderr.strip()[-500:]}")
            os.replace(partial, binary)
            return binary
        finally:
            if os.path.exists(partial):
                os.unlink(partial)
    raise ClientError(f"no writable folder to build loadgen in ({last_error})")


def python_client(reason: str) -> Client:
    return Client("python", (sys.executable, "-m", "muxtop.bench.pyclient"),
                  f"Python client (slower than the servers: figures are the client's ceiling) "
                  f"because {reason}")


def find_client(choice: str = "auto") -> Client:
    """The client to use: ``auto`` builds loadgen if it can and otherwise falls back to Python,
    ``loadgen`` insists on it (ClientError otherwise), ``python`` skips it."""
    if choice == "python":
        return python_client("--client python was asked for")
    source = next((p for p in source_candidates() if p.is_file()), None)
    cc = os.environ.get("CC") or shutil.which("gcc") or shutil.which("cc")
    if source is None:
        reason = ("loadgen.c was not found (looked at "
                  + ", ".join(str(p) for p in source_candidates()) + ")")
    elif cc is None:
        reason = "no C compiler (gcc) is installed"
    else:
        try:
            binary = build_loadgen(source, cc)
        except (ClientError, OSError, subprocess.SubprocessError) as exc:
            reason = f"building loadgen failed: {exc}"
        else:
            return Client("loadgen", (str(binary),), f"loadgen (C, epoll) built from {source}")
    if choice == "loadgen":
        raise ClientError(reason)
    return python_client(reason)


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
