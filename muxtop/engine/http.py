"""A minimal HTTP/1.x server, enough for wrk, ab and curl: `200 ok` to every request.

What it honours, so that real load tools neither hang nor miscount: keep-alive and
`Connection: close` (HTTP/1.1 keeps the connection unless told to close, HTTP/1.0 closes it
unless told `keep-alive`: `ab` without `-k`), HEAD (the head alone), a request body skipped
by its `Content-Length`, pipelined requests. A malformed head gets `400`, a body in chunked
encoding `501`, a head over MAX_HTTP_HEADER bytes `431` (the blank lines before it count:
a stream of CRLF is a head that never ends); each of those closes the connection. The
answer to a byte stream does not depend on how it was split into reads: every decision is
taken on a whole head (tests/test_http.py checks it).

State between reads lives on the connection: `inbuf`, the start of a head not yet complete,
and `body_left`, bytes of a request body still to skip.
"""

from __future__ import annotations

import re

from muxtop.engine.connection import Connection

MAX_HTTP_HEADER = 16384
_HEAD_END = re.compile(rb"\n\r?\n")  # a blank line ends the head (bare LF tolerated, as nginx)
_BLANKS = re.compile(rb"[\r\n]*")  # blank lines before a head (one class: no backtracking)
# 18 digits hold any body up to an exabyte; more is an attack on int() (over 4,300 digits
# it raises), not a body.
MAX_LENGTH_DIGITS = 18
_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_VERSIONS = {b"HTTP/1.1": True, b"HTTP/1.0": False}  # version: keep-alive unless told
_BODY = b"ok\n"


def _response(status: bytes, keep: bool, body: bytes) -> bytes:
    return (b"HTTP/1.1 " + status + b"\r\nContent-Type: text/plain\r\nContent-Length: "
            + str(len(body)).encode() + b"\r\nConnection: "
            + (b"keep-alive" if keep else b"close") + b"\r\n\r\n" + body)


OK_KEEP = _response(b"200 OK", True, _BODY)
OK_CLOSE = _response(b"200 OK", False, _BODY)
HEAD_KEEP = OK_KEEP[:-len(_BODY)]
HEAD_CLOSE = OK_CLOSE[:-len(_BODY)]
BAD_REQUEST = _response(b"400 Bad Request", False, b"bad request\n")
TOO_LARGE = _response(b"431 Request Header Fields Too Large", False, b"")
NOT_IMPLEMENTED = _response(b"501 Not Implemented", False, b"chunked bodies are not supported\n")
_ENDS = frozenset({BAD_REQUEST, TOO_LARGE, NOT_IMPLEMENTED, OK_CLOSE, HEAD_CLOSE})

# wrk and ab send the same head again and again: its answer, once parsed, is kept (bounded).
_ANSWERS: dict[bytes, tuple[bytes, int]] = {}
_ANSWERS_KEPT = 256


def http(conn: Connection, data: bytes) -> bytes | None:
    """The reply to the bytes of one read (None: nothing yet). Counts a message per request."""
    if conn.closing:
        return None  # answered with a close already: the rest is not read
    buf = conn.inbuf + data if conn.inbuf else data
    pos, end = 0, len(buf)
    replies = []
    while pos < end:
        if conn.body_left:
            skipped = min(conn.body_left, end - pos)
            conn.body_left -= skipped
            pos += skipped
            continue
        # Blank lines between requests are ignored (RFC 9112 §2.2), but they are kept with
        # the head that follows: bounded by its size, and (left in inbuf) a head begun for
        # --header-timeout, as nginx reads them.
        start = pos
        pos = _BLANKS.match(buf, pos).end()
        found = _HEAD_END.search(buf, pos)
        if found is None:
            if end - start > MAX_HTTP_HEADER:
                return _finish(conn, replies, TOO_LARGE)
            pos = start
            break
        head = buf[pos:found.end()]
        pos = found.end()
        if pos - start > MAX_HTTP_HEADER:
            return _finish(conn, replies, TOO_LARGE)
        answer = _ANSWERS.get(head)
        if answer is None:
            answer = _answer(head)
            if len(_ANSWERS) >= _ANSWERS_KEPT:
                _ANSWERS.clear()
            _ANSWERS[head] = answer
        reply, conn.body_left = answer
        conn.read_msgs += 1
        if reply in _ENDS:
            return _finish(conn, replies, reply)
        replies.append(reply)
    conn.inbuf = buf[pos:] if pos < end else b""
    return b"".join(replies) if replies else None


def _finish(conn: Connection, replies: list[bytes], last: bytes) -> bytes:
    """The last reply of this connection: stop reading; the engine closes once it is sent."""
    conn.inbuf = b""
    conn.body_left = 0
    conn.closing = True
    replies.append(last)
    return b"".join(replies)


def _answer(head: bytes) -> tuple[bytes, int]:
    """(reply, body bytes to skip) for one complete head."""
    lines = head.split(b"\n")
    parts = lines[0].rstrip(b"\r").split(b" ")
    if len(parts) != 3 or not _TOKEN.fullmatch(parts[0]) or not parts[1] \
            or parts[2] not in _VERSIONS:
        return BAD_REQUEST, 0
    method, _, version = parts
    keep = _VERSIONS[version]
    length: int | None = None
    for line in lines[1:]:
        line = line.rstrip(b"\r")
        if not line:
            continue
        name, colon, value = line.partition(b":")
        if not colon or not _TOKEN.fullmatch(name):
            return BAD_REQUEST, 0  # also obsolete line folding (a line starting with space)
        name, value = name.lower(), value.strip(b" \t")
        if name == b"content-length":
            if not value.isdigit() or len(value) > MAX_LENGTH_DIGITS \
                    or (length is not None and int(value) != length):
                return BAD_REQUEST, 0
            length = int(value)
        elif name == b"transfer-encoding":
            return NOT_IMPLEMENTED, 0
        elif name == b"connection":
            tokens = {t.strip(b" \t").lower() for t in value.split(b",")}
            if b"close" in tokens:
                keep = False
            elif b"keep-alive" in tokens:
                keep = True
    if method == b"HEAD":
        return (HEAD_KEEP if keep else HEAD_CLOSE), length or 0
    return (OK_KEEP if keep else OK_CLOSE), length or 0


def awaiting_head(conn: Connection) -> bool:
    """The connection owes us a request head: none has come yet, or one has begun. (Between
    keep-alive requests, or inside a body, it owes nothing: that is idleness.)"""
    return not conn.body_left and (bool(conn.inbuf) or conn.msgs_in == 0)
