"""The dashboard in a browser: textual-serve's server, one `command` run for each tab."""

from __future__ import annotations

import asyncio
import logging
import re
import signal
import socket
import sys
from collections.abc import Callable

from muxtop.extras import install_hint
from muxtop.printable import printable

_TOKEN = re.compile(r"(token=)[^&\s\"]*")
LOG_LINE = 300  # characters: a hostile request line is not repeated whole


class OneLine(logging.Formatter):
    """A log record as one printable line with no token in it. aiohttp logs a traceback for
    each malformed request (a line too long, a WebSocket without its headers): here it is
    the exception's name and words, so a stranger's request cannot fill the terminal."""

    def format(self, record: logging.LogRecord) -> str:
        text = record.getMessage()
        if record.exc_info and record.exc_info[1] is not None:
            error = record.exc_info[1]
            text += f": {type(error).__name__}: {error}"
        text = printable(_TOKEN.sub(r"\1…", text))
        return text if len(text) <= LOG_LINE else text[:LOG_LINE - 1] + "…"


class WebUnavailable(Exception):
    """textual-serve is not installed; the message says how to get it."""


def serve(command: str, listener: socket.socket, public_url: str, middleware: Callable,
          banner: str) -> None:
    """Serve the page on the bound `listener` until Ctrl-C or SIGTERM; each browser tab runs
    `command`. `public_url` is where the page says its WebSocket and scripts are; `middleware`
    (aiohttp's) sees every request first; `banner` is printed once serving."""
    try:
        from aiohttp import web
        from textual_serve.server import Server
    except ImportError:
        raise WebUnavailable(f"needs textual-serve: {install_hint('web')}") from None

    class GuardedServer(Server):
        async def on_startup(self, app: web.Application) -> None:
            print(banner, flush=True)  # instead of textual-serve's logo and its URL

        def initialize_logging(self) -> None:
            # Not textual-serve's: a rich traceback, with its locals, for every bad request.
            handler = logging.StreamHandler(sys.stderr)
            handler.setFormatter(OneLine())
            logging.basicConfig(level=logging.INFO, handlers=[handler], force=True)

        async def make_app(self) -> web.Application:
            # textual-serve has no public hook for middlewares: _make_app builds its routes
            # (the page finds its WebSocket and scripts by their route names).
            app = await self._make_app()
            app.middlewares.append(middleware)
            return app

    server = GuardedServer(command, title="muxtop", public_url=public_url)
    server.initialize_logging()
    loop = asyncio.new_event_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, server.request_exit)
    # Server.serve binds host:port itself; run_app on our socket instead, so that --port 0
    # is bound once and its real port is the one printed.
    web.run_app(server.make_app(), sock=listener, handle_signals=False, loop=loop,
                print=lambda *args: None)
