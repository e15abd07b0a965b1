"""A multi-threaded echo server for `muxtop bench attach --target threaded`: muxtop's
``threaded_echo.c`` (four threads, an epoll set and an SO_REUSEPORT listener each, as
memcached -t 4 has), built with the system C compiler on first use and exec'd, so the pid the
bench traces is the C server's.

``python -m muxtop.bench.servers.threaded_echo --port P [--threads 4]``.
"""

from __future__ import annotations

import argparse
import os
import sys
from importlib import resources

from muxtop.bench.compiler import BuildError, build

SOURCE_NAME = "threaded_echo.c"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--threads", type=int, default=4)
    args = p.parse_args(argv)
    try:
        with resources.as_file(resources.files("muxtop.bench") / SOURCE_NAME) as source:
            binary = build(source)
    except BuildError as exc:
        print(f"threaded_echo: cannot build {SOURCE_NAME}: {exc}", file=sys.stderr)
        return 1
    os.execv(binary, [str(binary), str(args.port), str(args.threads)])
    return 1  # not reached: execv replaces this process or raises


if __name__ == "__main__":
    raise SystemExit(main())
