"""Who may use `muxtop web`: an aiohttp middleware in front of textual-serve's pages.

textual-serve answers any request and starts a muxtop for every WebSocket, whatever page opened
it. A page on another site (or a DNS-rebound name) could drive the dashboard and fork muxtops
until memory runs out. So, as Jupyter does: every request must carry the token of the URL
muxtop printed (in the query the first time, then in a cookie the page sets), name the address
muxtop serves in `Host`, and come from that origin; and only so many sessions run at once.
"""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Awaitable, Callable

from aiohttp import web

WEBSOCKET_PATH = "/ws"  # where textual-serve's page opens its WebSocket

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

FULL_PAGE = """<!DOCTYPE html>
<html><head><title>muxtop: all sessions in use</title></head>
<body style="background:#0c181f;color:#eee;font-family:monospace;padding:2em">
<h1>muxtop: all {max_sessions} sessions are in use</h1>
<p>Each browser tab runs a muxtop of its own, and <code>muxtop web --max-sessions
{max_sessions}</code> allows that many at once. Close another muxtop tab, then reload this one.</p>
</body></html>
"""


class WebGuard:
    """The checks every request to `muxtop web` passes, and the count of open sessions.

    `netloc` is the address muxtop serves, as a browser writes it in `Host` (`127.0.0.1:8000`,
    `[::1]:8000`, `localhost:8000`)."""

    def __init__(self, netloc: str, max_sessions: int, token: str | None = None) -> None:
        self.netloc = netloc.lower()
        self.origin = f"http://{self.netloc}"
        host, _, port = self.netloc.rpartition(":")
        # At port 80 a browser leaves the port out of Host and Origin.
        self.hosts = {self.netloc, host} if port == "80" else {self.netloc}
        self.origins = {f"http://{name}" for name in self.hosts}
        self.max_sessions = max_sessions
        self.token = token or secrets.token_urlsafe(32)
        # Cookies ignore the port: two `muxtop web` on one host need a cookie each.
        self.cookie = f"muxtop-web-{netloc.rpartition(':')[2]}"
        self.sessions = 0

    @property
    def url(self) -> str:
        """The URL to open: the only one that lets a browser in."""
        return f"{self.origin}/?token={self.token}"

    def _holds_token(self, given: str | None) -> bool:
        # compare_digest takes ASCII str only; bytes also take whatever a client sends.
        return given is not None and hmac.compare_digest(given.encode(), self.token.encode())

    def refusal(self, request: web.Request) -> str | None:
        """Why this request is refused, as one line for the client; None if it may go on."""
        if request.headers.get("Host", "").lower() not in self.hosts:
            # A DNS-rebound name reaches this socket with its own name in Host.
            return f"muxtop web answers only at {self.origin}/"
        origin = request.headers.get("Origin")
        # Browsers send Origin with every WebSocket; a page on another site cannot forge it.
        if origin is not None and origin.lower() not in self.origins:
            return f"muxtop web takes no requests from pages outside {self.origin}/"
        if not (self._holds_token(request.query.get("token"))
                or self._holds_token(request.cookies.get(self.cookie))):
            return "muxtop web needs its token: open the URL `muxtop web` printed"
        return None

    def full(self) -> bool:
        return self.sessions >= self.max_sessions

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        why = self.refusal(request)
        if why is not None:
            return web.Response(status=403, text=why + "\n")
        if request.path == WEBSOCKET_PATH:
            if not web.WebSocketResponse().can_prepare(request).ok:
                # Not a whole handshake (no Upgrade, no key, no version): textual-serve would
                # fail in the middle of it, with no answer and a traceback.
                return web.Response(status=400, text="muxtop web: /ws takes a WebSocket\n")
            if self.full():
                return web.Response(status=503, text=f"muxtop web: all {self.max_sessions} "
                                    "sessions are in use (--max-sessions); close one\n")
            # No await between the check and the count: no other request runs in between.
            self.sessions += 1
            try:
                return await handler(request)  # returns when the session's muxtop has ended
            finally:
                self.sessions -= 1
        if request.path == "/" and self.full():
            return web.Response(status=503, content_type="text/html",
                                text=FULL_PAGE.format(max_sessions=self.max_sessions))
        response = await handler(request)
        if self._holds_token(request.query.get("token")) and not response.prepared:
            # The page's own requests (scripts, its WebSocket) then carry the token.
            response.set_cookie(self.cookie, self.token, httponly=True, samesite="Strict",
                                path="/")
        return response
