"""The registry of proxies: what a change keeps and what it restarts, its bounds, and its two
threads (writers on the API's, the pipes reading on the engine's) never tearing a read."""

from __future__ import annotations

import random
import socket
import threading
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from muxtop.proxy import registry as registry_module
from muxtop.proxy.errors import ApiError
from muxtop.proxy.registry import Registry

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def registry():
    made = Registry(rng=random.Random(4))
    yield made
    made.clear()


def test_an_update_of_the_upstream_restarts_the_proxy_and_keeps_its_toxics(registry):
    first = registry.create({"name": "a", "upstream": "127.0.0.1:1"})
    registry.add_toxic("a", {"type": "latency", "attributes": {"latency": 5}})
    moved = registry.update("a", {"upstream": "localhost:2"})
    assert moved.listener is not first.listener and first.listener.retired
    assert moved.toxics is first.toxics and [t.type for t in moved.toxics.all()] == ["latency"]
    assert moved.upstream_address == ("localhost", 2) and moved.upstream_sockaddr is not None
    same = registry.update("a", {"name": "renamed?"})  # a name cannot change: nothing does
    assert same.name == "a" and same.listener is moved.listener


def test_populate_replaces_a_proxy_that_differs_with_a_new_one(registry):
    first = registry.create({"name": "a", "upstream": "127.0.0.1:1"})
    registry.add_toxic("a", {"type": "noop"})
    (kept,), error = registry.populate([{"name": "a", "upstream": "127.0.0.1:1",
                                         "listen": first.listen}])
    assert error is None and kept is registry.get("a") and kept.toxics is first.toxics
    (replaced,), error = registry.populate([{"name": "a", "upstream": "127.0.0.1:9"}])
    assert error is None and replaced.toxics is not first.toxics  # toxiproxy's NewProxy
    assert replaced.toxics.all() == () and first.listener.retired


def test_every_change_bumps_the_version_and_wakes_the_engine(registry):
    woken = []
    registry.on_change = lambda: woken.append(registry.version)
    registry.create({"name": "a", "upstream": "127.0.0.1:1"})
    registry.add_toxic("a", {"type": "noop"})
    registry.update_toxic("a", "noop_downstream", {"toxicity": 0.5})
    registry.remove_toxic("a", "noop_downstream")
    registry.delete("a")
    assert len(woken) >= 5 and woken == sorted(woken) and woken[-1] == registry.version


def test_the_number_of_proxies_and_toxics_is_bounded(registry, monkeypatch):
    monkeypatch.setattr(registry_module, "MAX_PROXIES", 2)
    monkeypatch.setattr(registry_module, "MAX_TOXICS", 1)
    registry.create({"name": "a", "upstream": "127.0.0.1:1", "enabled": False})
    registry.create({"name": "b", "upstream": "127.0.0.1:1", "enabled": False})
    with pytest.raises(ApiError, match="too many proxies"):
        registry.create({"name": "c", "upstream": "127.0.0.1:1", "enabled": False})
    registry.add_toxic("a", {"type": "noop"})
    with pytest.raises(ApiError, match="too many toxics"):
        registry.add_toxic("a", {"type": "latency"})


def test_a_listener_is_closed_by_the_registry_only_if_the_engine_never_adopted_it(registry):
    proxy = registry.create({"name": "a", "upstream": "127.0.0.1:1"})
    listener = proxy.listener
    registry.update("a", {"enabled": False})
    assert listener.retired and listener.socket.fileno() == -1  # closed: never adopted
    assert listener.adopt() is None  # too late for the engine to take it


def test_toxics_changed_on_one_thread_while_a_pipe_runs_on_another_lose_no_byte(registry):
    proxy = registry.create({"name": "a", "upstream": "127.0.0.1:1", "enabled": False})
    stop = threading.Event()
    changes = [0]

    def api_thread() -> None:
        kinds = [("latency", {"latency": 1}), ("slicer", {"average_size": 7}),
                 ("bandwidth", {"rate": 50}), ("slow_close", {}), ("noop", {})]
        while not stop.is_set():
            kind, attributes = random.choice(kinds)
            toxic = registry.add_toxic("a", {"type": kind, "name": "t",
                                             "toxicity": random.choice([0.5, 1]),
                                             "attributes": attributes})
            registry.update_toxic("a", toxic.name, {"toxicity": random.choice([0, 1])})
            registry.remove_toxic("a", "t")
            changes[0] += 1

    writer = threading.Thread(target=api_thread)
    writer.start()
    try:
        pipe = proxy.toxics.pipe("downstream", 1, now=0.0)
        source = random.Random(8)
        fed, out, now = bytearray(), bytearray(), 0.0
        while changes[0] < 300 or now < 5:
            data = source.randbytes(source.randrange(1, 2000))
            fed += data
            pipe.feed(data, now)
            now += 0.001
            out += pipe.take(now, 1500)
            assert pipe.buffered == len(fed) - len(out)
    finally:
        stop.set()
        writer.join(10)
    registry.reset()
    while data := pipe.take(now + 1, len(fed)):  # a slicer's slices come one a take
        out += data
    assert bytes(out) == bytes(fed)


def test_the_engines_own_listener_becomes_a_proxys_and_is_retired_like_any_other(registry):
    own = socket.create_server(("127.0.0.1", 0))
    released = threading.Event()
    try:
        proxy = registry.create({"name": "muxtop", "upstream": "127.0.0.1:1"}, listening=own)
        assert proxy.listener.socket is own and proxy.enabled
        assert proxy.listen == f"127.0.0.1:{own.getsockname()[1]}"
        assert proxy.listener.adopt() is own  # the engine's already
        old = proxy.listener

        def engine_wakes() -> None:  # as the engine: release its listener once retired
            if old.retired and not released.is_set():
                old.release()
                released.set()

        registry.on_change = engine_wakes
        registry.update("muxtop", {"enabled": False})
        assert released.is_set() and own.fileno() == -1  # released before down returned
        up = registry.update("muxtop", {"enabled": True})
        assert up.listen == proxy.listen and up.listener.socket is not own
    finally:
        own.close()


def test_a_write_on_the_engines_own_thread_does_not_wait_for_itself(registry):
    proxy = registry.create({"name": "a", "upstream": "127.0.0.1:1"})
    assert proxy.listener.adopt() is not None  # this thread plays the engine
    started = time.monotonic()
    registry.update("a", {"enabled": False})
    assert time.monotonic() - started < registry_module.RELEASE_WAIT
    assert proxy.listener.retired
    proxy.listener.release()  # the engine's next turn


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
    max_leaves=8)
ADDRESS = st.one_of(st.text(max_size=30), st.builds(
    lambda host, port: f"{host}:{port}",
    st.sampled_from(["127.0.0.1", "localhost", "[::1]", "0.0.0.0", "", "::1", "a b"]),
    st.integers(-1, 70000)))
PROXY_SHAPED = st.fixed_dictionaries({}, optional={
    "name": JSON | st.text(max_size=250), "listen": JSON | ADDRESS,
    "upstream": JSON | ADDRESS, "enabled": JSON})


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(plain=JSON | PROXY_SHAPED, update=JSON | PROXY_SHAPED)
def test_any_json_is_a_proxy_or_one_api_error(plain, update):
    # Binds a port the system picks, whatever the listen: only the checks are under test.
    registry = Registry(bind=lambda host, port: socket.create_server(("127.0.0.1", 0)))
    try:
        for call in (lambda: registry.create(plain), lambda: registry.populate([plain]),
                     lambda: registry.update(str(plain.get("name")) if isinstance(plain, dict)
                                             else "x", update)):
            try:
                call()
            except ApiError as exc:
                assert exc.status in (400, 403, 404, 409, 500) and "\n" not in exc.message
        for proxy in registry.proxies():
            assert proxy.plain()["name"] == proxy.name
    finally:
        registry.clear()
