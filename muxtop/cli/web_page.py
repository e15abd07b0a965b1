"""The page `muxtop web` serves, with nothing fetched from another machine.

textual-serve's page loads its font from fonts.googleapis.com: each tab opened would tell
Google's servers about a tool that otherwise keeps to loopback, and a machine with no way out
waits for that request. textual-serve ships the same font (Roboto Mono) among its static
files, so the page's links to other origins are taken out and the font is declared from
there, under the page's own origin (its requests carry the page's cookie, as its scripts do).
"""

from __future__ import annotations

import re

from aiohttp import web

from muxtop.cli.web_guard import Handler

PAGE_PATH = "/"  # textual-serve's page; every other path is a script, a file or the websocket
STATIC = "/static/fonts/"  # textual-serve's own copy of Roboto Mono
# A <link> whose href names a scheme or starts with //: another origin's stylesheet or font.
FOREIGN_LINK = re.compile(r"<link\b[^>]*\bhref\s*=\s*[\"']?(?:[a-z][a-z0-9+.-]*:)?//[^>]*>",
                          re.I | re.S)
LOCAL_FONT = f"""<style>
@font-face {{ font-family: "Roboto Mono"; font-style: normal; font-weight: 100 700;
  src: url("{STATIC}RobotoMono-VariableFont_wght.ttf") format("truetype"); }}
@font-face {{ font-family: "Roboto Mono"; font-style: italic; font-weight: 100 700;
  src: url("{STATIC}RobotoMono-Italic-VariableFont_wght.ttf") format("truetype"); }}
</style>
"""


def local_page(html: str) -> str:
    """The page without links to other origins, with the font from its own static files."""
    html = FOREIGN_LINK.sub("", html)
    head = html.lower().find("</head>")
    return html if head < 0 else html[:head] + LOCAL_FONT + html[head:]


def keeping_the_page_local(guard) -> Handler:
    """aiohttp middleware: `guard` (the token and origin checks) first, then the page's HTML
    made local."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        response = await guard(request, handler)
        if request.path == PAGE_PATH and isinstance(response, web.Response) \
                and response.status == 200 and response.content_type == "text/html" \
                and response.text is not None:
            response.text = local_page(response.text)
        return response

    return middleware
