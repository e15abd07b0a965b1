"""`muxtop web [--port 8000] [-- muxtop options]`: the dashboard in a browser.

textual-serve (the Textual project's own server for this) serves a page with a terminal in it
and runs `muxtop <options>` for each browser tab that opens it, streaming the dashboard over
a websocket. Each tab is a muxtop of its own, so unless the options name a --port, each tab's
server listens on a port of its own (--port 0).
"""

from __future__ import annotations

import argparse
import ipaddress
import shlex
import socket
import sys

from muxtop.cli.types import port_number

EPILOG = """\
Everything after -- goes to each muxtop the page starts, as on the command line:
  muxtop web -- --backend poll --trigger level --theme textual-light
Without --port there, each browser tab runs its own server on a port of its own.
Exit status: 0 after Ctrl-C, 1 when it cannot serve, 2 usage error."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="muxtop web", epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Serve the muxtop dashboard to a web browser (with textual-serve).")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address the page is served on (default 127.0.0.1)")
    parser.add_argument("--port", type=port_number, default=8000,
                        help="port the page is served on (default 8000)")
    parser.add_argument("--allow-remote", action="store_true",
                        help="serve on an address other machines can reach (anyone who opens "
                             "the page gets a muxtop of their own on this machine)")
    return parser


def muxtop_command(options: list[str]) -> str:
    """The shell command the page runs for each tab."""
    if not any(o == "--port" or o.startswith("--port=") for o in options):
        options = [*options, "--port", "0"]
    if "--headless" in options:
        raise ValueError("--headless has no dashboard to serve")
    return shlex.join([sys.executable, "-m", "muxtop", *options])


def is_loopback(host: str) -> bool:
    try:
        return all(ipaddress.ip_address(info[4][0]).is_loopback
                   for info in socket.getaddrinfo(host, None))
    except (OSError, ValueError):
        return False


def main(argv: list[str]) -> int:
    options: list[str] = []
    if "--" in argv:
        at = argv.index("--")
        argv, options = argv[:at], argv[at + 1:]
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        command = muxtop_command(options)
    except ValueError as exc:
        parser.error(str(exc))
    if not args.allow_remote and not is_loopback(args.host):
        parser.error(f"{args.host} can be reached from other machines: add --allow-remote "
                     "if that is what you want")
    from muxtop.ui.web import WebUnavailable, serve

    try:
        probe = socket.create_server((args.host, args.port))
        probe.close()
    except OSError as exc:
        print(f"muxtop web: cannot serve on {args.host}:{args.port}: {exc.strerror}",
              file=sys.stderr)
        return 1
    if args.allow_remote and not is_loopback(args.host):
        print(f"muxtop web: serving on {args.host}, reachable from other machines",
              file=sys.stderr)
    try:
        serve(command, args.host, args.port)
    except WebUnavailable as exc:
        print(f"muxtop web: {exc}", file=sys.stderr)
        return 1
    return 0
