"""Command line: `muxtop [options]` runs the server (dashboard or --headless, cli/serve.py);
each subcommand has a module here, imported only when it runs."""

from __future__ import annotations

import importlib
import sys

from muxtop.cli.pipe import reader_left

SUBCOMMANDS = {
    "flood": "muxtop.flood.cli",
    "bench": "muxtop.bench.cli",
    "attach": "muxtop.cli.attach",
    "web": "muxtop.cli.web",
    "replay": "muxtop.cli.replay",
    "lesson": "muxtop.cli.lesson",
}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        if argv and argv[0] in SUBCOMMANDS:
            return importlib.import_module(SUBCOMMANDS[argv[0]]).main(argv[1:])
        from muxtop.cli.serve import main as serve_main

        return serve_main(argv)
    except BrokenPipeError:  # `muxtop bench wait | head`: the reader had all it wanted
        return reader_left()
