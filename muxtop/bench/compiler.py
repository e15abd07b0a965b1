"""The system C compiler, and building a C program muxtop ships with it into the user's cache.

A binary is named after a hash of its source and flags, so an upgraded muxtop builds its own,
and one built before runs even once the compiler is gone; it is compiled under a private name
and renamed into place, so two benches building at once never run a half-written file.
"""

from __future__ import annotations

import hashlib
import os
import shlex
import shutil
import stat
import subprocess
import tempfile
from pathlib import Path

COMPILERS = ("cc", "gcc", "clang")  # after $CC, the first found on PATH
FLAGS = ("-std=c99", "-O2", "-Wall")
BUILD_TIMEOUT = 120.0
INSTALL_HINT = "apt install gcc"


class BuildError(Exception):
    """The program could not be built or run; the message says why and what would help."""


def find_compiler() -> list[str]:
    """The compiler's argv: $CC (which may carry flags, e.g. ``ccache gcc``), else the first
    of cc, gcc, clang on PATH."""
    tried = []
    chosen = os.environ.get("CC", "").strip()
    if chosen:
        try:
            argv = shlex.split(chosen)
        except ValueError:
            argv = []
        path = shutil.which(argv[0]) if argv else None
        if path:
            return [path, *argv[1:]]
        tried.append(f"$CC={chosen}")
    for name in COMPILERS:
        if path := shutil.which(name):
            return [path]
    raise BuildError(f"no C compiler found (tried {', '.join(tried + list(COMPILERS))}); "
                     f"install one: {INSTALL_HINT}")


def cache_dirs() -> list[Path]:
    """Where binaries are kept, best first: $XDG_CACHE_HOME/muxtop (~/.cache/muxtop), then a
    private folder in the temp dir for a home that cannot be written."""
    base = os.environ.get("XDG_CACHE_HOME", "")
    if not os.path.isabs(base):  # the XDG spec: a relative path is to be ignored
        base = os.path.join(os.path.expanduser("~"), ".cache")
    return [Path(base) / "muxtop", Path(tempfile.gettempdir()) / f"muxtop-{os.getuid()}"]


def binary_name(source: Path) -> str:
    """``<stem>-<hash of the source and flags>``: another source, another binary."""
    try:
        code = source.read_bytes()
    except OSError as exc:
        raise BuildError(f"cannot read {source}: {exc.strerror or exc}") from None
    digest = hashlib.sha256(b"\0".join([code, *map(str.encode, FLAGS)]))
    return f"{source.stem}-{digest.hexdigest()[:16]}"


def build(source: Path) -> Path:
    """The binary of ``source``: one built before, in any cache folder, if it still runs; else
    compiled (with `find_compiler`) into the first folder that will hold one that runs.
    BuildError if there is no compiler, it fails, or no folder will do."""
    name = binary_name(source)
    for folder in cache_dirs():
        binary = folder / name
        if binary.is_file() and is_private(folder) and not does_not_run(binary):
            return binary
    compiler = find_compiler()
    problems = []
    for folder in cache_dirs():
        binary = folder / name
        try:
            if why := make_private(folder):
                problems.append(f"{folder}: {why}")
                continue
            compile_into(source, compiler, binary)
        except OSError as exc:  # a read-only home, a full disk: the next folder may do
            problems.append(f"{folder}: {exc.strerror or exc}")
            continue
        if not (why := does_not_run(binary)):
            return binary
        problems.append(f"{binary}: {why}")
    raise BuildError(f"no folder to build {source.name} in ({'; '.join(problems)})")


# Whatever binary sits in a cache folder is about to be run, and the temp dir is shared: a
# folder counts only if no other user can write to it.
def is_private(folder: Path) -> bool:
    try:
        info = folder.stat()
    except OSError:
        return False
    return info.st_uid == os.getuid() and not info.st_mode & (stat.S_IWGRP | stat.S_IWOTH)


def make_private(folder: Path) -> str | None:
    """Create ``folder`` for this user alone, or take write access from others if it is this
    user's; why it cannot be used, if it cannot (OSError if it cannot be made)."""
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    info = folder.stat()
    if info.st_uid != os.getuid():
        return f"owned by uid {info.st_uid}"
    if info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        os.chmod(folder, stat.S_IMODE(info.st_mode) & ~(stat.S_IWGRP | stat.S_IWOTH))
    return None


def compile_into(source: Path, compiler: list[str], binary: Path) -> None:
    fd, partial = tempfile.mkstemp(prefix=f".{binary.name}-", dir=binary.parent)
    os.close(fd)
    try:
        try:
            proc = subprocess.run([*compiler, *FLAGS, "-o", partial, str(source)],
                                  capture_output=True, text=True, timeout=BUILD_TIMEOUT,
                                  check=False)
        except subprocess.TimeoutExpired:
            raise BuildError(f"{compiler[0]} took over {BUILD_TIMEOUT:.0f} s "
                             f"on {source.name}") from None
        except OSError as exc:
            raise BuildError(f"{compiler[0]} did not start: {exc.strerror or exc}") from None
        if proc.returncode != 0:
            raise BuildError(f"{compiler[0]} could not build {source.name}: "
                             f"{compiler_complaint(proc.stderr)}")
        os.chmod(partial, 0o700)
        os.replace(partial, binary)
    finally:
        if os.path.exists(partial):
            os.unlink(partial)


def compiler_complaint(stderr: str) -> str:
    """The line of a compiler's output that says what went wrong, with what would fix it when
    that is a well-known gap (a compiler installed without the C library's headers)."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    line = next((x for x in lines if "error" in x), lines[-1] if lines else "no message")
    if ".h: No such file" in line or "cannot find crt1.o" in line or "cannot find -lc" in line:
        line += " (if that is the C library's: apt install libc6-dev)"
    return line


def does_not_run(binary: Path) -> str | None:
    """Why ``binary`` cannot be run (a noexec mount, a broken file), or None if it starts and
    exits: a probe, since the bench would otherwise fail every run the same way."""
    try:
        proc = subprocess.run([str(binary), "-h"], capture_output=True, timeout=10,
                              check=False)
    except subprocess.TimeoutExpired:
        return "it did not exit within 10 s of starting with -h"
    except OSError as exc:
        return f"it does not run: {exc.strerror or exc}"
    if proc.returncode < 0:
        return f"it died of signal {-proc.returncode} when started with -h"
    return None
