"""The HTTP protocol: keep-alive and close as the client asks, HEAD, request bodies skipped by
Content-Length, 400/431/501 with a close; the same answer however the bytes are split into
reads (hypothesis), and over the engine's real sockets."""

from __future__ import annotations

import socket

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from muxtop.engine.connection import Connection
from muxtop.engine.http import MAX_HTTP_HEADER, TOO_LARGE, awaiting_head, http

pytestmark = pytest.mark.timeout(60)

GET = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"


@pytest.fixture(scope="module")
def pair():
    a, b = socket.socketpair()
    yield a
    a.close()
    b.close()


def feed(sock: socket.socket, chunks: list[bytes]) -> tuple[bytes, bool, int]:
    """What the protocol answers to these reads, as the engine calls it: it stops reading once
    the protocol said goodbye. (replies, closing, requests counted)."""
    conn = Connection(1, sock, "test", 0.0)
    replies = []
    for chunk in chunks:
        if conn.closing:
            break
        reply = http(conn, chunk)
        if reply:
            replies.append(reply)
    return b"".join(replies), conn.closing, conn.msgs_in


def answer(sock, data: bytes) -> bytes:
    return feed(sock, [data])[0]


def test_keep_alive_by_default_close_when_asked(pair):
    assert answer(pair, GET * 2).count(b"Connection: keep-alive") == 2
    reply, closing, count = feed(pair, [b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n" + GET])
    assert reply.count(b"200 OK") == 1 and b"Connection: close" in reply
    assert closing and count == 1  # the request after the close is not answered


def test_http_1_0_closes_unless_keep_alive(pair):
    reply, closing, _ = feed(pair, [b"GET / HTTP/1.0\r\n\r\n"])  # ab without -k
    assert b"Connection: close" in reply and closing
    reply, closing, _ = feed(pair, [b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n"])
    assert b"Connection: keep-alive" in reply and not closing


def test_head_has_no_body(pair):
    reply = answer(pair, b"HEAD / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert reply.endswith(b"\r\n\r\n") and b"Content-Length: 3" in reply


def test_a_body_is_skipped_by_its_length(pair):
    body = b"a=1\r\n\r\nGET / HTTP/1.1\r\n\r\n"  # looks like a blank line and a request
    post = b"POST / HTTP/1.1\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
    reply, _, count = feed(pair, [post + GET])
    assert reply.count(b"200 OK") == 2 and count == 2  # the POST and the GET, no more


@pytest.mark.parametrize("head", [
    b"GARBAGE\r\n\r\n", b"GET /\r\n\r\n", b"GET / HTTP/9.9\r\n\r\n", b"GET  / HTTP/1.1\r\n\r\n",
    b"GET / HTTP/1.1\r\nno colon here\r\n\r\n", b"GET / HTTP/1.1\r\nHost: x\r\n folded\r\n\r\n",
    b"POST / HTTP/1.1\r\nContent-Length: -5\r\n\r\n",
    b"POST / HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n",
    b"\x00\xff\r\n\r\n",
])
def test_malformed_gets_400_and_a_close(pair, head):
    reply, closing, _ = feed(pair, [head + GET])
    assert reply.startswith(b"HTTP/1.1 400 Bad Request\r\n") and reply.count(b"HTTP/1.1") == 1
    assert closing


def test_chunked_gets_501(pair):
    reply, closing, _ = feed(pair, [b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"])
    assert reply.startswith(b"HTTP/1.1 501 ") and closing


def test_oversized_head_gets_431(pair):
    big = b"GET / HTTP/1.1\r\nX: " + b"a" * MAX_HTTP_HEADER
    reply, closing, _ = feed(pair, [big[:1000], big[1000:]])
    assert reply.startswith(b"HTTP/1.1 431 ") and closing
    whole = feed(pair, [big + b"\r\n\r\n"])
    assert whole[0].startswith(b"HTTP/1.1 431 ")  # complete but too long: the same answer


def test_a_content_length_of_thousands_of_digits_gets_400(pair):
    # Was: ValueError from int() (over 4,300 digits), a traceback per request.
    for digits in (b"9" * 5000, b"0" * 19 + b"5", b"1" * 19):
        reply, closing, _ = feed(pair, [b"POST / HTTP/1.1\r\nContent-Length: " + digits
                                        + b"\r\n\r\n"])
        assert reply.startswith(b"HTTP/1.1 400 ") and closing, digits[:20]
    reply, closing, _ = feed(pair, [b"POST / HTTP/1.1\r\nContent-Length: 000000000000000003"
                                    b"\r\n\r\nabc" + GET])
    assert reply.count(b"200 OK") == 2 and not closing  # 18 digits still read as a length


def test_blank_lines_before_a_head_count_as_the_head(pair):
    # Was: skipped a byte at a time and forgotten, however many: a stream of CRLF was never
    # answered nor bounded, and a client sending one each second was never "in a head".
    blanks = b"\r\n" * (MAX_HTTP_HEADER // 2 + 1)
    reply, closing, _ = feed(pair, [GET + blanks[:1000], blanks[1000:]])
    assert reply.count(b"HTTP/1.1 ") == 2 and reply.endswith(TOO_LARGE) and closing
    reply, closing, count = feed(pair, [GET, b"\r\n" * 100, GET])  # a few are allowed
    assert reply.count(b"200 OK") == 2 and count == 2 and not closing
    conn = Connection(1, pair, "test", 0.0)
    http(conn, GET)
    assert not awaiting_head(conn)  # between keep-alive requests: idle, not a head
    http(conn, b"\r\n")
    assert awaiting_head(conn)  # a blank line begins the next head: --header-timeout runs


# ---- any stream, any split ----------------------------------------------------------------

_header = st.sampled_from([
    b"Host: x", b"Connection: close", b"Connection: keep-alive", b"connection: Close",
    b"Content-Length: 0", b"Content-Length: 5", b"Transfer-Encoding: chunked", b"X-A: b",
    b"bad header", b" folded", b"Content-Length: x"])
_request = st.builds(
    lambda method, version, headers, body, eol: (
        method + b" / " + version + eol + b"".join(h + eol for h in headers) + eol + body),
    st.sampled_from([b"GET", b"HEAD", b"POST", b"G@T"]),
    st.sampled_from([b"HTTP/1.1", b"HTTP/1.0", b"HTTP/2"]),
    st.lists(_header, max_size=4), st.binary(max_size=8), st.sampled_from([b"\r\n", b"\n"]))
_stream = st.lists(st.one_of(_request, st.binary(max_size=40), st.just(b"\r\n")),
                   max_size=8).map(b"".join)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(stream=_stream, cuts=st.lists(st.integers(min_value=0), max_size=12))
def test_any_split_gets_the_answer_of_the_whole(pair, stream, cuts):
    points = sorted({cut % (len(stream) + 1) for cut in cuts})
    chunks = [stream[a:b] for a, b in zip([0, *points], [*points, len(stream)]) if b > a]
    assert feed(pair, chunks) == feed(pair, [stream])


@settings(max_examples=200, deadline=None)
@given(stream=st.binary(max_size=MAX_HTTP_HEADER + 100), size=st.integers(1, 5000))
def test_any_bytes_never_raise(pair, stream, size):
    chunks = [stream[i:i + size] for i in range(0, len(stream), size)]
    assert feed(pair, chunks) == feed(pair, [stream])


# ---- over the engine's sockets ------------------------------------------------------------

def exchange(address, request: bytes) -> tuple[bytes, bool]:
    """Send a request; (everything answered within a moment, whether the server closed)."""
    with socket.create_connection(address, timeout=5) as client:
        client.sendall(request)
        client.settimeout(0.5)
        got = b""
        try:
            while chunk := client.recv(4096):
                got += chunk
            return got, True
        except TimeoutError:
            return got, False


@pytest.mark.parametrize(("backend", "trigger"), [("epoll", "level"), ("epoll", "edge"),
                                                  ("select", "level")])
def test_engine_closes_when_http_says_so(make_engine, backend, trigger):
    engine = make_engine(protocol="http", backend=backend, trigger=trigger)
    # ab without -k: HTTP/1.0 and no keep-alive. Before: kept open, so ab timed out.
    reply, closed = exchange(engine.address, b"GET / HTTP/1.0\r\nHost: x\r\n\r\n")
    assert reply.startswith(b"HTTP/1.1 200 OK") and reply.endswith(b"ok\n") and closed
    reply, closed = exchange(engine.address, b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n")
    assert b"Connection: close" in reply and closed
    reply, closed = exchange(engine.address, b"GET / HTTP/1.1\r\n\r\n")
    assert b"Connection: keep-alive" in reply and not closed
    reply, closed = exchange(engine.address, b"BROKEN\r\n\r\n")
    assert reply.startswith(b"HTTP/1.1 400 ") and closed
    body = b"x=1\r\n\r\n"
    reply, closed = exchange(engine.address, b"POST / HTTP/1.1\r\nContent-Length: 7\r\n\r\n"
                             + body + b"HEAD / HTTP/1.1\r\n\r\n")
    assert reply.count(b"HTTP/1.1 200 OK") == 2 and reply.count(b"ok\n") == 1 and not closed


def test_header_timeout_closes_a_client_that_sends_only_blank_lines(make_engine):
    engine = make_engine(protocol="http", header_timeout=0.3, publish_interval=0.05)
    with socket.create_connection(engine.address, timeout=5) as client:
        client.sendall(GET)
        assert client.recv(1000).startswith(b"HTTP/1.1 200 OK")
        client.settimeout(0.1)
        closed = False
        for _ in range(30):  # a CRLF every 0.1 s, for 3 s at most: never idle, never a head
            try:
                client.sendall(b"\r\n")
                closed = client.recv(1) == b""
            except TimeoutError:
                continue
            except OSError:
                closed = True  # reset: the server closed it while we were sending
            if closed:
                break
        assert closed
    assert engine.snapshot().totals.closed_header == 1
