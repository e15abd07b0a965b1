"""select's FD_SETSIZE: a switch counts every fd it will have to register, paused ones too;
at the limit, accept pauses (clients wait in the backlog, one held) and nothing is lost."""

from __future__ import annotations

import gc
import os
import socket

import pytest
from echo_client import wait_for

from muxtop.engine import PauseReading, Switch
from muxtop.findings import FD_PRESSURE
from muxtop.snapshot import KIND_CONN, KIND_LISTENER, OPEN, READ_PAUSED

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def fill():
    """fill(): take every fd up to past 1024, so the next socket lands beyond select's
    reach (called once the engine runs: its own fds stay low)."""
    opened: list[int] = []

    def take() -> list[int]:
        gc.collect()  # an earlier test's socket closed by the collector later leaves a hole
        opened.extend(os.open("/dev/null", os.O_RDONLY) for _ in range(1030))
        return opened

    yield take
    for fd in opened:
        os.close(fd)


def views(engine, kind=KIND_CONN):
    return [c for c in engine.snapshot().connections if c.kind == kind]


def test_a_paused_connection_counts_for_a_switch_to_select(make_engine, fill):
    engine = make_engine(backend="epoll", publish_interval=0.05)
    fill()
    with socket.create_connection(engine.address, timeout=5) as client:
        client.sendall(b"x")
        assert client.recv(1) == b"x"
        (view,) = wait_for(lambda: views(engine))
        assert view.fd >= 1024
        assert engine.submit(PauseReading(view.fd, True)).result(5).ok  # unregistered now
        wait_for(lambda: [v for v in views(engine) if v.state == READ_PAUSED])
        outcome = engine.submit(Switch(backend="select")).result(5)
        assert not outcome.ok and f"fd {view.fd}" in outcome.message, outcome
        assert "paused" in outcome.message
        # Nothing changed: it resumes and reads (before the fix it stayed paused forever).
        assert engine.submit(PauseReading(view.fd, False)).result(5).ok
        wait_for(lambda: [v for v in views(engine) if v.state == OPEN])
        client.sendall(b"resumed")
        assert client.recv(100) == b"resumed"
        assert engine.snapshot().backend == "epoll"


def test_select_at_its_limit_stops_accepting_and_loses_nobody(make_engine, fill):
    engine = make_engine(backend="select", publish_interval=0.05)
    fillers = fill()
    clients = [socket.create_connection(engine.address, timeout=5) for _ in range(3)]
    try:
        # The first is accepted past FD_SETSIZE and held; the others wait in the backlog.
        wait_for(lambda: any("FD_SETSIZE" in n.text for n in engine.snapshot().notices))
        (listener,) = views(engine, KIND_LISTENER)
        assert "FD_SETSIZE" in listener.note and not listener.interest
        wait_for(lambda: any(d.kind == FD_PRESSURE and "accept is paused" in d.explanation
                             for d in engine.snapshot().diagnoses))
        snapshot = engine.snapshot()
        # One held past the limit; any other accepted took a hole below it (an fd an earlier
        # test's garbage freed after fill()) and is served as usual.
        served = [v for v in views(engine) if v.fd < 1024]
        assert snapshot.totals.accepted == 1 + len(served), (snapshot.totals, served)
        assert snapshot.totals.rejected == 0
        for _ in range(10):  # fds free up below the limit: everyone is served
            os.close(fillers.pop(0))
        for i, client in enumerate(clients):
            client.sendall(b"client %d" % i)
            assert client.recv(100) == b"client %d" % i
        assert engine.snapshot().totals.rejected == 0
        assert all(v.fd < 1024 for v in views(engine) if v.state == OPEN)
    finally:
        for client in clients:
            client.close()


def test_held_client_is_served_at_once_after_a_switch_to_epoll(make_engine, fill):
    engine = make_engine(backend="select", publish_interval=0.05)
    fill()
    with socket.create_connection(engine.address, timeout=5) as client:
        wait_for(lambda: any("FD_SETSIZE" in n.text for n in engine.snapshot().notices))
        assert engine.submit(Switch(backend="epoll")).result(5).ok
        client.sendall(b"now")
        assert client.recv(3) == b"now"
        (view,) = wait_for(lambda: views(engine))
        assert view.fd >= 1024  # epoll watches it where it is
