"""The plain form: engine and attach Snapshots survive JSON and come back identical, down
to the type of every part; other versions and other data are refused with a reason."""

from __future__ import annotations

import json
import os
import select
import socket
import time
from dataclasses import fields

import pytest
from test_attach_ui import fixed_attach_snapshot

from muxtop.attach.reader import Attacher
from muxtop.bench import synthetic
from muxtop.commands import Step
from muxtop.engine import Engine, EngineConfig, Switch
from muxtop.plain import (
    PLAIN_VERSION,
    PlainFormError,
    from_plain,
    to_plain,
    wait_from_plain,
    wait_to_plain,
)
from muxtop.snapshot import Snapshot

pytestmark = pytest.mark.timeout(30)


def same(a, b, where: str = "snapshot") -> None:
    """a and b are equal and of the same types all the way down (a NamedTuple equals the
    plain tuple of its values, so == alone would not see a part that lost its type)."""
    assert type(a) is type(b), f"{where}: {type(a).__name__} became {type(b).__name__}"
    if isinstance(a, Snapshot):
        for f in fields(Snapshot):
            same(getattr(a, f.name), getattr(b, f.name), f"{where}.{f.name}")
    elif isinstance(a, tuple | list):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            same(x, y, f"{where}[{i}]")
    else:
        assert a == b, where


def round_trip(snapshot: Snapshot) -> Snapshot:
    return from_plain(json.loads(json.dumps(to_plain(snapshot))))


def test_engine_snapshot_round_trips():
    engine = Engine(EngineConfig(port=0, publish_interval=0.05)).start()
    clients = []
    try:
        for _ in range(3):
            client = socket.create_connection(engine.address, timeout=5)
            client.sendall(b"ping" * 100)
            assert client.recv(400)
            clients.append(client)
        engine.submit(Switch(backend="poll")).result(5)  # a notice
        deadline = time.monotonic() + 5
        while True:
            snapshot = engine.snapshot()
            conns = [v for v in snapshot.connections if v.kind == "conn"]
            if len(conns) == 3 and snapshot.notices and any(v.tcp for v in conns) and \
                    snapshot.waits:
                break
            assert time.monotonic() < deadline, "the engine never published its connections"
            time.sleep(0.05)
    finally:
        for client in clients:
            client.close()
        engine.stop()
    same(snapshot, round_trip(snapshot))


def test_a_stepping_engine_snapshot_round_trips():
    engine = Engine(EngineConfig(port=0, publish_interval=0.05)).start()
    try:
        with socket.create_connection(engine.address, timeout=5) as client:
            assert engine.submit(Step()).result(5).ok
            engine.submit(Step()).result(5)  # accepts the client
            client.sendall(b"ping")
            deadline = time.monotonic() + 5
            while not any(f.role == "connection" for f in engine.snapshot().step.fds):
                assert time.monotonic() < deadline, "no step served the connection"
                engine.submit(Step()).result(5)
            snapshot = engine.snapshot()
    finally:
        engine.stop()
    same(snapshot, round_trip(snapshot))


@pytest.mark.parametrize("trigger", ["edge", "completion"])
def test_a_uring_engine_snapshot_with_its_ring_round_trips(trigger):
    engine = Engine(EngineConfig(port=0, backend="uring", trigger=trigger,
                                 publish_interval=0.05)).start()
    try:
        with socket.create_connection(engine.address, timeout=5) as client:
            client.sendall(b"ping")
            assert client.recv(4) == b"ping"
            deadline = time.monotonic() + 5
            while not engine.snapshot().rings or not engine.snapshot().rings[0].completed:
                assert time.monotonic() < deadline, "no ring figures"
                time.sleep(0.02)
            snapshot = engine.snapshot()
    finally:
        engine.stop()
    assert snapshot.rings[0].mode == ("completion" if trigger == "completion" else "readiness")
    same(snapshot, round_trip(snapshot))


def test_synthetic_snapshot_with_findings_and_closed_connections_round_trips():
    snapshot = synthetic.snapshot(50, 3, lab=frozenset({"naive-edge"}), refused="no",
                                  running=False, error="engine stopped: boom")
    assert snapshot.diagnoses and any(v.closed_at for v in snapshot.connections)
    same(snapshot, round_trip(snapshot))


def test_attach_snapshots_round_trip():
    same(fixed_attach_snapshot(), round_trip(fixed_attach_snapshot()))
    a, b = socket.socketpair()
    ep = select.epoll()
    try:
        ep.register(a.fileno(), select.EPOLLIN | select.EPOLLET)
        b.send(b"x" * 10)
        snapshot = Attacher(os.getpid()).read()  # this very process
    finally:
        ep.close()
        a.close()
        b.close()
    assert snapshot.epoll and snapshot.sockets and snapshot.target.pid == os.getpid()
    same(snapshot, round_trip(snapshot))


def test_wait_records_round_trip_alone():
    for w in synthetic.waits(2, 30, 50):
        same(w, wait_from_plain(json.loads(json.dumps(wait_to_plain(w)))), "wait")


def test_other_versions_and_other_data_are_refused_with_a_reason():
    doc = to_plain(synthetic.snapshot(5, 0))
    assert doc["v"] == PLAIN_VERSION
    with pytest.raises(PlainFormError, match="newer than this muxtop reads"):
        from_plain({**doc, "v": PLAIN_VERSION + 1})
    with pytest.raises(PlainFormError, match="no format version"):
        from_plain({k: v for k, v in doc.items() if k != "v"})
    with pytest.raises(PlainFormError, match="not a muxtop snapshot"):
        from_plain({"v": 1, "source": "engine"})
    with pytest.raises(PlainFormError):
        from_plain([1, 2, 3])  # type: ignore[arg-type]
    truncated = dict(doc, connections=[row[:5] for row in doc["connections"]])
    with pytest.raises(PlainFormError):
        from_plain(truncated)
