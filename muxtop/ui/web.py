"""The dashboard in a browser: textual-serve's server, one `command` run for each tab."""

from __future__ import annotations

import asyncio
import signal
import socket
from collections.abc import Callable

from muxtop.extras import install_hint


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
