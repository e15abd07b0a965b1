"""A toxiproxy client no one here wrote, toxiproxy-python from PyPI (the Python client
toxiproxy's README lists), driving muxtop's API as it drives toxiproxy: a proxy made, a
toxic added and read back, the proxy taken down and up, reset, populated, destroyed."""

from __future__ import annotations

import random
import socket

import pytest
from toxiproxy import Toxiproxy
from toxiproxy.exceptions import NotFound, ProxyExists

from muxtop.proxy.api import ApiServer
from muxtop.proxy.registry import Registry

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def toxiproxy():
    registry = Registry(rng=random.Random(1))
    server = ApiServer(registry, ("127.0.0.1", 0), poll_interval=0.05).start()
    client = Toxiproxy()
    client.update_api_consumer(*server.address)  # a class attribute: every call goes there
    yield client, registry
    server.stop()
    registry.clear()


def listening(address: str) -> bool:
    host, _, port = address.rpartition(":")
    with socket.socket() as sock:
        sock.settimeout(5)
        return sock.connect_ex((host, int(port))) == 0


def test_the_python_client_makes_a_proxy_and_a_toxic(toxiproxy):
    client, registry = toxiproxy
    assert client.running() and b"toxiproxy" in client.version()
    proxy = client.create(upstream="127.0.0.1:6379", name="redis")  # listen 127.0.0.1:0
    assert proxy.enabled and listening(proxy.listen)
    with pytest.raises(ProxyExists):
        client.create(upstream="127.0.0.1:6379", name="redis")

    proxy.add_toxic(type="latency", attributes={"latency": 100, "jitter": 10})
    proxy.add_toxic(name="cut", type="limit_data", stream="upstream", toxicity=0.5,
                    attributes={"bytes": 1000})
    toxics = proxy.toxics()
    assert set(toxics) == {"latency_downstream", "cut"}
    assert toxics["latency_downstream"].attributes == {"latency": 100, "jitter": 10}
    assert (toxics["cut"].stream, toxics["cut"].toxicity) == ("upstream", 0.5)
    # What the client made is what the engine's pipes will apply.
    made = registry.get("redis").toxics
    assert [t.name for t in made.all()] == ["cut", "latency_downstream"]
    pipe = made.pipe("downstream", 1, now=0.0)
    pipe.feed(b"PONG", 0.0)
    assert pipe.take(0.05, 100) == b"" and pipe.due(0.0) is not None

    assert proxy.destroy_toxic("cut") and set(proxy.toxics()) == {"latency_downstream"}
    with pytest.raises(NotFound):
        proxy.destroy_toxic("cut")

    with proxy.down():
        assert not listening(proxy.listen)
        assert client.get_proxy("redis").enabled is False
    assert listening(proxy.listen) and client.get_proxy("redis").enabled

    assert client.reset() and client.get_proxy("redis").toxics() == {}
    assert client.destroy(proxy) and client.proxies() == {}


def test_the_python_client_populates(toxiproxy):
    client, _ = toxiproxy
    made = client.populate([{"name": "one", "upstream": "127.0.0.1:1", "listen": "127.0.0.1:0"},
                            {"name": "two", "upstream": "127.0.0.1:2", "listen": "127.0.0.1:0"}])
    assert sorted(p.name for p in made) == ["one", "two"]
    assert set(client.proxies()) == {"one", "two"}
    client.destroy_all()
    assert client.proxies() == {}
