"""Each backend against real fds: readiness, modify, unregister, trigger modes, limits."""

from __future__ import annotations

import os
import socket

import pytest

from muxtop.backends import NAMES, BackendError, make_backend
from muxtop.events import READ, WRITE

pytestmark = pytest.mark.timeout(10)


@pytest.fixture
def pair():
    a, b = socket.socketpair()
    yield a, b
    a.close()
    b.close()


@pytest.mark.parametrize("name", NAMES)
def test_read_write_modify_unregister(name, pair):
    a, b = pair
    with make_backend(name) as backend:
        backend.register(a.fileno(), READ)
        assert backend.wait(0) == []
        b.send(b"x")
        assert backend.wait(1) == [(a.fileno(), READ)]
        backend.modify(a.fileno(), READ | WRITE)
        assert backend.wait(1) == [(a.fileno(), READ | WRITE)]
        backend.unregister(a.fileno())
        assert backend.wait(0) == []


@pytest.mark.parametrize("name", NAMES)
def test_names_itself_and_level_is_default(name):
    with make_backend(name) as backend:
        assert backend.name == name
        assert backend.trigger == "level"


@pytest.mark.parametrize("name", ["select", "poll"])
@pytest.mark.parametrize("trigger", ["edge", "oneshot"])
def test_refuses_trigger_it_lacks(name, trigger):
    with pytest.raises(BackendError, match=f"{name} has no {trigger} trigger mode"):
        make_backend(name, trigger)


def test_unknown_backend():
    with pytest.raises(BackendError, match="no backend 'kqueue'"):
        make_backend("kqueue")


@pytest.mark.parametrize("name", ["epoll", "uring"])
def test_edge_reports_once_until_new_data(name, pair):
    a, b = pair
    with make_backend(name, "edge") as backend:
        backend.register(a.fileno(), READ)
        b.send(b"first")
        assert backend.wait(1) == [(a.fileno(), READ)]
        assert backend.wait(0) == []  # bytes still queued, but no new edge
        b.send(b"second")
        assert backend.wait(1) == [(a.fileno(), READ)]


@pytest.mark.parametrize("name", ["epoll", "uring"])
def test_oneshot_disarms_until_rearmed(name, pair):
    a, b = pair
    with make_backend(name, "oneshot") as backend:
        backend.register(a.fileno(), READ)
        b.send(b"x")
        assert backend.wait(1) == [(a.fileno(), READ)]
        b.send(b"y")
        assert backend.wait(0) == []  # disarmed
        backend.modify(a.fileno(), READ)  # re-arm
        assert backend.wait(1) == [(a.fileno(), READ)]


def test_select_refuses_fd_over_fd_setsize(pair):
    a, _ = pair
    high = os.dup2(a.fileno(), 1500)
    try:
        with make_backend("select") as backend:
            with pytest.raises(BackendError, match="cannot watch fd 1500.*FD_SETSIZE"):
                backend.register(high, READ)
        for name in ("poll", "epoll", "uring"):  # no such limit
            with make_backend(name) as backend:
                backend.register(high, READ)
    finally:
        os.close(high)


@pytest.mark.parametrize("name", ["epoll", "uring"])
def test_unregister_tolerates_closed_fd(name):
    a, b = socket.socketpair()
    with make_backend(name) as backend:
        backend.register(a.fileno(), READ)
        fd = a.fileno()
        a.close()
        backend.unregister(fd)  # the kernel dropped it on close; not an error
        b.close()


@pytest.mark.parametrize("name", NAMES)
def test_level_reports_again_while_bytes_remain(name, pair):
    a, b = pair
    with make_backend(name) as backend:
        backend.register(a.fileno(), READ)
        b.send(b"xy")
        assert backend.wait(1) == [(a.fileno(), READ)]
        a.recv(1)
        assert backend.wait(1) == [(a.fileno(), READ)]  # one byte left: ready again
        a.recv(1)
        assert backend.wait(0) == []


def test_uring_drops_news_of_an_fd_closed_and_reused():
    """A poll completion that comes for an fd number after its registration was replaced
    (unregister, close, a new socket on the same number) must not be reported."""
    a, b = socket.socketpair()
    c, d = socket.socketpair()
    with make_backend("uring", "edge") as backend:
        fd = a.fileno()
        backend.register(fd, READ)
        b.send(b"x")  # the old request completes (IN) ...
        backend.unregister(fd)
        a.close()
        os.dup2(c.fileno(), fd)  # ... and the number now names an idle socket
        backend.register(fd, READ)
        try:
            assert backend.wait(0.05) == []
            d.send(b"y")
            assert backend.wait(1) == [(fd, READ)]
        finally:
            backend.unregister(fd)
            os.close(fd)
    for s in (b, c, d):
        s.close()


def test_uring_refused_with_the_reason_when_unavailable(monkeypatch):
    from muxtop.kernel import uring
    monkeypatch.setattr(uring, "_available", uring.explain(1))  # EPERM
    with pytest.raises(BackendError, match="uring is unavailable: .*EPERM|io_uring"):
        make_backend("uring")
    with make_backend("epoll") as other:  # the others work as before
        assert other.name == "epoll"
