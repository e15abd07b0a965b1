"""Step mode: the engine stops before its next wait call and makes exactly one per step."""

from __future__ import annotations

import os
import random
import socket

import pytest
from conftest import MODE_IDS, MODES
from echo_client import stream_echo, wait_for

from muxtop.commands import Continue, Step, Switch
from muxtop.kernel.probes import tx_queue
from muxtop.plain import from_plain, to_plain
from muxtop.snapshot import READ_EAGAIN, READ_NAIVE, READ_ONE, READ_SHORT

pytestmark = pytest.mark.timeout(60)
ANSWER = 10  # seconds a command may take


def step(engine):
    outcome = engine.submit(Step()).result(ANSWER)
    assert outcome.ok, outcome.message
    return engine.snapshot().step


def start_stepping(engine):
    assert engine.submit(Step()).result(ANSWER).ok
    wait_for(lambda: engine.snapshot().step is not None)


@pytest.mark.parametrize(("backend", "trigger"), MODES, ids=MODE_IDS)
def test_each_step_is_one_wait_call_and_no_byte_is_lost(make_engine, backend, trigger):
    """A verified echo through 50 steps, then continue: seq advances by exactly one per step,
    the clients stall while stopped, and every byte comes back."""
    engine = make_engine(backend=backend, trigger=trigger)
    rng = random.Random(f"step-{backend}-{trigger}")
    payloads = [rng.randbytes(rng.randrange(1_000_000, 2_000_000)) for _ in range(5)]
    seqs = []

    def between():
        if len(seqs) == 0:
            start_stepping(engine)
            seqs.append(engine.snapshot().step.seq)
        elif len(seqs) <= 50:
            seqs.append(step(engine).seq)
            if len(seqs) == 51:
                assert engine.submit(Continue()).result(ANSWER).ok

    assert stream_echo(engine.address, payloads, between=between) == payloads
    stepped = seqs[1:]
    assert len(stepped) == 50
    assert [b - a for a, b in zip(stepped, stepped[1:])] == [1] * 49
    assert engine.snapshot().step is None


def test_stopped_engine_serves_nobody_until_a_step(make_engine):
    engine = make_engine()
    with socket.create_connection(engine.address, timeout=5) as client:
        wait_for(lambda: engine.snapshot().open_connections == 1)
        start_stepping(engine)
        client.sendall(b"ping")
        client.settimeout(0.3)
        with pytest.raises(TimeoutError):
            client.recv(10)  # stopped: no wait call, nothing read
        info = step(engine)
        (fd_step,) = [f for f in info.fds if f.role == "connection"]
        assert (fd_step.read, fd_step.sent, fd_step.read_end) == (4, 4, READ_ONE)
        client.settimeout(5)
        assert client.recv(10) == b"ping"
        assert step(engine).count == 0  # nothing ready: a step never sleeps


def read_steps(engine, client_fd_step, total):
    """Step until `total` bytes were read; the FdSteps of the connection, one per step."""
    seen, got = [], 0
    for _ in range(50):
        info = step(engine)
        mine = [f for f in info.fds if f.role == "connection"]
        if mine:
            seen.append(mine[0])
            got += mine[0].read
        if got >= total:
            return seen
    raise AssertionError(f"read {got} of {total} bytes in 50 steps")


@pytest.mark.parametrize("trigger", ["level", "edge"])
def test_a_big_message_read_step_by_step(make_engine, trigger):
    """Level reads one buffer per wait and the fd is reported again while bytes remain; edge
    reads until a short read in one step, leaving nothing queued."""
    engine = make_engine(backend="epoll", trigger=trigger, read_size=65536)
    message = os.urandom(100_000)  # fits the receive queue of a server that reads nothing
    with socket.create_connection(engine.address, timeout=5) as client:
        wait_for(lambda: engine.snapshot().open_connections == 1)
        start_stepping(engine)
        client.sendall(message)
        wait_for(lambda: tx_queue(client.fileno()) == 0)
        steps = read_steps(engine, None, len(message))
        if trigger == "level":
            assert len(steps) >= 2  # 100,000 bytes at 65,536 a read
            assert all(s.read <= 65536 and s.read_end == READ_ONE for s in steps)
            assert steps[0].queued > 0  # left for the next wait, which reports it again
        else:
            assert len(steps) == 1
            assert steps[0].read == len(message) and steps[0].read_end == READ_SHORT
            assert steps[0].queued == 0
        assert engine.submit(Continue()).result(ANSWER).ok
        got = bytearray()
        while len(got) < len(message):
            got += client.recv(1 << 20)
        assert bytes(got) == message


def test_naive_edge_leaves_bytes_behind(make_engine):
    engine = make_engine(backend="epoll", trigger="edge", lab=frozenset({"naive-edge"}))
    with socket.create_connection(engine.address, timeout=5) as client:
        wait_for(lambda: engine.snapshot().open_connections == 1)
        start_stepping(engine)
        client.sendall(os.urandom(100_000))
        wait_for(lambda: tx_queue(client.fileno()) == 0)  # all of it queued at the server
        (first,) = read_steps(engine, None, 1)
        assert first.read_end == READ_NAIVE and first.queued > 0
        for _ in range(3):  # no new edge: no wait reports it again
            assert not [f for f in step(engine).fds if f.role == "connection"]


def test_edge_read_to_eagain_when_the_total_is_a_whole_buffer(make_engine):
    engine = make_engine(backend="epoll", trigger="edge", read_size=1024)
    with socket.create_connection(engine.address, timeout=5) as client:
        wait_for(lambda: engine.snapshot().open_connections == 1)
        start_stepping(engine)
        client.sendall(b"x" * 2048)
        (only,) = read_steps(engine, None, 2048)
        assert only.read == 2048 and only.read_end == READ_EAGAIN


def test_accepts_oneshot_rearm_switch_and_plain_form(make_engine):
    engine = make_engine(backend="epoll", trigger="oneshot")
    start_stepping(engine)
    with socket.create_connection(engine.address, timeout=5) as client:
        listener = [f for f in step(engine).fds if f.role == "listener"]
        assert listener and len(listener[0].accepted) == 1
        client.sendall(b"hello")
        info = wait_for(lambda: [f for f in step(engine).fds if f.role == "connection"])
        assert info[0].rearmed and info[0].sent == 5
        # Commands still run while stopped: a switch, and stepping goes on over poll.
        assert engine.submit(Switch("poll", "level")).result(ANSWER).ok
        snapshot = wait_for(lambda: engine.snapshot().backend == "poll" and engine.snapshot())
        assert snapshot.step is not None
        before = snapshot.step.seq
        assert step(engine).seq == before + 1
        assert from_plain(to_plain(engine.snapshot())).step == engine.snapshot().step


def test_a_stepping_engine_stops(make_engine):
    engine = make_engine()
    start_stepping(engine)
    engine.stop()
    assert not engine.running
    assert not engine.submit(Step()).result(ANSWER).ok


def test_a_steps_wait_is_counted_with_the_loops_waits_not_as_a_probe(make_engine):
    """The header's 'waits' (the loop's calls, the CPU probes aside) stood still while stepping:
    the time held made every stepped wait a probe."""
    engine = make_engine(publish_interval=0.05)
    start_stepping(engine)
    before = engine.snapshot().totals
    seqs = []
    for _ in range(5):
        # Held as a person holds it between two keys: a Snapshot or more goes by (every
        # 50 ms), longer than the loop's spacing of probes (2 ms).
        held = engine.snapshot().taken_at
        wait_for(lambda: engine.snapshot().taken_at > held)  # noqa: B023 - read at once
        seqs.append(step(engine).seq)
    after = wait_for(lambda: (s := engine.snapshot()).totals.waits >= seqs[-1] and s.totals)
    assert after.waits - after.probes == before.waits - before.probes + 5
    stepped = [w for w in engine.snapshot().waits if w.seq in seqs]
    assert len(stepped) == 5 and all(w.cpu is None for w in stepped), stepped
    assert engine.submit(Continue()).result(ANSWER).ok
