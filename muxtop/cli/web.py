"""`muxtop web [--port 8000] [-- muxtop options]`: the dashboard in a browser.

textual-serve (the Textual project's own server for this) serves a page with a terminal in it
and runs `muxtop <options>` for each browser tab that opens it, streaming the dashboard over
a websocket. Each tab is a muxtop of its own, so unless the options name a --port, each tab's
server listens on a port of its own (--port 0). Only the URL printed at start (it carries a
token) opens the page, and only --max-sessions tabs run at once (muxtop/cli/web_guard.py).
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import shlex
import socket
import sys
from contextlib import redirect_stderr, redirect_stdout
from io import StringIO

from muxtop.arguments import Parser, port_number, positive_int, remote_refused
from muxtop.cli import serve as muxtop_cli
from muxtop.engine.address import AddressError, is_loopback, resolve
from muxtop.extras import install_hint
from muxtop.printable import printable

EPILOG = """\
Everything after -- goes to each muxtop the page starts, as on the command line:
  muxtop web -- --backend poll --trigger level --theme textual-light
Without --port there, each browser tab runs its own server on a port of its own.
Open the URL it prints: its token lets the browser in (nothing else does).
Exit status: 0 after Ctrl-C, 1 when it cannot serve, 2 usage error."""

MAX_SESSIONS = 4  # a tab is a muxtop of its own (~40 MB): a few, not one per click


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="muxtop web", epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Serve the muxtop dashboard to a web browser (with textual-serve).")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address the page is served on (default 127.0.0.1)")
    parser.add_argument("--port", type=port_number, default=8000,
                        help="port the page is served on (default 8000; 0 picks one)")
    parser.add_argument("--allow-remote", action="store_true",
                        help="serve on an address other machines can reach (anyone with the "
                             "URL gets a muxtop of their own on this machine)")
    parser.add_argument("--max-sessions", type=positive_int, default=MAX_SESSIONS, metavar="N",
                        help=f"browser tabs served at once; more get a page that says so "
                             f"(default {MAX_SESSIONS})")
    return parser


def muxtop_command(options: list[str], sessions: int = 1) -> str:
    """The shell command the page runs for each tab. The options are parsed by muxtop's own
    parser, so what would fail in every tab (a typo, --headless however abbreviated), or in
    every tab but the first of `sessions` at once, fails here instead, with a ValueError that
    says why."""
    check = muxtop_cli.parser()
    check.set_defaults(port=None)  # tells "no --port" (in any spelling) from --port 8080
    said = StringIO()
    try:
        with redirect_stdout(StringIO()), redirect_stderr(said):
            args = check.parse_args(options)
    except SystemExit as exc:
        if exc.code == 0:
            raise ValueError("after --: --help and --version show no dashboard") from None
        error = said.getvalue().rpartition("error: ")[2].strip()  # argparse's last line
        raise ValueError(f"after --: {printable(error)}") from None
    if args.headless:
        raise ValueError("--headless has no dashboard to serve")
    if args.metrics is not None:  # each tab would bind it (textual-serve: a process a tab)
        raise ValueError("--metrics: every browser tab is a muxtop of its own; scrape a "
                         "muxtop --headless --metrics instead")
    if args.record is not None:  # each tab would open the same file; all but one would fail
        raise ValueError("--record: every browser tab is a muxtop of its own; press R in a "
                         "tab to record it")
    fixed = [f"{flag} {where}" for flag, where, port in (
        ("--port", args.port, args.port),
        ("--api", args.api and ":".join(map(str, args.api)), args.api and args.api[1]))
        if port]  # 0 or none: each tab picks a port of its own
    if fixed and sessions > 1:
        raise ValueError(f"{fixed[0]}: every browser tab is a muxtop of its own and only one "
                         "can listen there; give port 0 (each tab picks one) or pass "
                         "--max-sessions 1 before --")
    if (problem := muxtop_cli.usage_problem(args)) is not None:
        raise ValueError(f"after --: {problem}")
    try:
        tab_address = resolve(args.host, 0)[3]
    except AddressError as exc:
        raise ValueError(f"after --: {printable(str(exc))}") from None
    if not args.allow_remote and not is_loopback(tab_address):  # as each tab would say it
        refused = remote_refused("listen", tab_address[0], "--host", args.host)
        raise ValueError(f"after --: {refused}")
    if args.port is None and (args.api is None or args.upstream is not None):
        options = [*options, "--port", "0"]  # --api alone listens on no --port
    return shlex.join([sys.executable, "-m", "muxtop", *options])


def url_host(host: str) -> str:
    """`host` as a URL and a `Host` header write it: an IPv6 address in brackets."""
    try:
        return f"[{host}]" if ipaddress.ip_address(host).version == 6 else host
    except ValueError:
        return host.lower()  # a name


def main(argv: list[str]) -> int:
    options: list[str] = []
    if "--" in argv:
        at = argv.index("--")
        argv, options = argv[:at], argv[at + 1:]
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        command = muxtop_command(options, args.max_sessions)
    except ValueError as exc:
        parser.error(str(exc))
    try:
        family, _, _, sockaddr = resolve(args.host, args.port)
    except AddressError as exc:
        print(f"muxtop web: {printable(str(exc))}", file=sys.stderr)
        return 1
    remote = not is_loopback(sockaddr)
    if remote and not args.allow_remote:  # in muxtop's words for its own --host, exit 1 too
        print(f"muxtop web: {remote_refused('serve', sockaddr[0], '--host', args.host)}",
              file=sys.stderr)
        return 1
    if ipaddress.ip_address(sockaddr[0].split("%")[0]).is_unspecified:
        # The page must name the one address its browser uses (in its WebSocket's URL, and
        # the Host every request is checked against); "every address" is not one.
        parser.error(f"--host {printable(args.host)} is every address: name the one browsers "
                     "will use (e.g. --host 192.168.1.5 --allow-remote)")
    try:
        from muxtop.cli.web_guard import WebGuard
        from muxtop.cli.web_page import keeping_the_page_local
        from muxtop.ui.web import WebUnavailable, serve
    except ImportError:  # aiohttp, which comes with textual-serve
        print(f"muxtop web: needs textual-serve: {install_hint('web')}", file=sys.stderr)
        return 1
    try:
        listener = socket.create_server(sockaddr, family=family)
    except OSError as exc:
        # create_server's strerror repeats the address: "... (while attempting to bind on
        # address ('127.0.0.1', 8000))"; the errno's own words say it once.
        why = os.strerror(exc.errno) if exc.errno else str(exc)
        print(f"muxtop web: cannot serve on {printable(args.host)}:{args.port}: {why}",
              file=sys.stderr)
        return 1
    with listener:
        port = listener.getsockname()[1]  # the real one, with --port 0
        guard = WebGuard(f"{url_host(args.host)}:{port}", args.max_sessions)
        banner = f"muxtop web: open {guard.url}"
        if remote:
            banner += " (reachable from other machines: anyone with this URL gets a muxtop)"
        try:
            serve(command, listener, guard.origin, keeping_the_page_local(guard.middleware),
                  banner)
        except WebUnavailable as exc:
            print(f"muxtop web: {exc}", file=sys.stderr)
            return 1
    return 0
