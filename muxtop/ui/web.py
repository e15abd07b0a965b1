"""The dashboard in a browser: textual-serve's server, one `command` run for each tab."""

from __future__ import annotations


class WebUnavailable(Exception):
    """textual-serve is not installed; the message says how to get it."""


def serve(command: str, host: str, port: int) -> None:
    """Serve the page on host:port until Ctrl-C; each browser tab runs `command`."""
    try:
        from textual_serve.server import Server
    except ImportError:
        raise WebUnavailable("needs textual-serve: pip install 'muxtop[web]'") from None
    Server(command, host=host, port=port, title="muxtop").serve()
