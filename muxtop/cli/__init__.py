"""Command line: `muxtop [options]` runs the server (dashboard or --headless, cli/serve.py);
each subcommand has a module here, imported only when it runs."""

from __future__ import annotations

import difflib
import importlib
import sys

from muxtop.cli.pipe import reader_left
from muxtop.printable import printable

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
        if argv and not argv[0].startswith("-"):
            # The server takes options only: a first word is a subcommand, mistyped.
            print(f"muxtop: {not_a_subcommand(argv[0])}", file=sys.stderr)
            return 2
        from muxtop.cli.serve import main as serve_main

        return serve_main(argv)
    except BrokenPipeError:  # `muxtop bench wait | head`: the reader had all it wanted
        return reader_left()


def not_a_subcommand(word: str) -> str:
    """What to say of a first word that is no subcommand: the nearest one, as git does."""
    said = f"'{printable(word)}' is not a muxtop command"
    # 0.8: one letter off (lessons, flod, bnech), not any word sharing a few (foo, flood)
    nearest = difflib.get_close_matches(word, SUBCOMMANDS, n=1, cutoff=0.8)
    if nearest:
        return f"{said}; did you mean 'muxtop {nearest[0]}'?"
    return f"{said} (the commands: {', '.join(SUBCOMMANDS)}; muxtop --help says more)"
