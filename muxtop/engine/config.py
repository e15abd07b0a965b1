"""Settings of one engine, fixed at start."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

LABS = ("naive-edge", "busy-writable", "no-backpressure", "emfile-spin", "no-rearm")


class Lab:
    """The bug-lab switches that are on, as one boolean each: the hot loop tests an attribute,
    not a string in a set, and only SetLab changes them (`switch`)."""

    __slots__ = ("naive_edge", "busy_writable", "no_backpressure", "emfile_spin", "no_rearm")

    def __init__(self, names: frozenset[str] = frozenset()) -> None:
        for name in LABS:
            setattr(self, name.replace("-", "_"), name in names)

    def switch(self, name: str, on: bool) -> None:
        setattr(self, name.replace("-", "_"), on)  # name: one of LABS (checked by the caller)

    def names(self) -> frozenset[str]:
        """The switches on, by their names (what Snapshots and recordings carry)."""
        return frozenset(name for name in LABS if getattr(self, name.replace("-", "_")))


@dataclass(frozen=True)
class EngineConfig:
    host: str = "127.0.0.1"
    port: int = 8080
    backend: str = "epoll"
    trigger: str = "level"
    protocol: str = "echo"
    max_conns: int | None = None  # stop accepting at this many open connections
    backlog: int = 1024
    read_size: int = 65536  # bytes asked of one recv
    high_water: int = 256 * 1024  # stop reading a connection whose out-buffer passes this...
    low_water: int = 64 * 1024  # ...until it drains below this
    sndbuf: int | None = None  # SO_SNDBUF of accepted sockets; small makes queues visible
    edge_budget: int = 16  # recvs per edge-triggered event before yielding to other fds
    publish_interval: float = 0.25  # seconds between Snapshots
    ring_size: int = 4096  # wait records kept
    closed_linger: float = 5.0  # seconds a closed connection stays visible
    probe_budget: int = 128  # sockets probed (FIONREAD, SIOCOUTQ, TCP_INFO) per Snapshot
    diagnose: bool = True  # run the detectors (off only to measure what they cost)
    stuck_after: float = 2.0  # seconds before a detector calls a connection stuck
    lab: frozenset[str] = field(default_factory=frozenset)
    # Protections (engine/guards.py), None: off.
    idle_timeout: float | None = None  # close a connection with no bytes either way this long
    header_timeout: float | None = None  # http: close one whose request head takes this long
    max_out_buffer: int | None = None  # close a connection whose out-buffer passes this
    # Proxy mode (engine/proxying.py): each client gets a connection to this (host, port).
    upstream: tuple[str, int] | None = None
    connect_timeout: float = 5.0  # seconds a connect to the upstream may take
    # (stream, connection id) -> the pipe of one direction of a pair (the toxics), or None
    pipes: Callable | None = field(default=None, compare=False)
    # muxtop/proxy/registry.py's Registry: more proxies, each its own listener and upstream,
    # and the toxics of each (--api, --toxic); the --upstream one is named PROXY_NAME there.
    registry: object | None = field(default=None, compare=False)
