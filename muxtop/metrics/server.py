"""`--metrics HOST:PORT`: prometheus_client's own HTTP server on a daemon thread, serving
`/metrics` from a SnapshotCollector. It negotiates the format as Prometheus does (OpenMetrics
when the Accept header asks for it, the classic text format otherwise). The engine thread
never serves HTTP: a scrape reads the latest published Snapshot, on the server's thread."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Iterable
from typing import Any

from muxtop.arguments import port_number, remote_refused
from muxtop.engine.address import AddressError, is_loopback, resolve
from muxtop.extras import install_hint
from muxtop.printable import printable
from muxtop.snapshot import Snapshot


class MetricsError(Exception):
    """Why metrics cannot be served, in one plain line."""


def metrics_address(text: str) -> tuple[str, int]:
    """argparse type: HOST:PORT ([::1]:PORT for IPv6; port 0 picks one)."""
    host, colon, port = text.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not colon or not host:
        raise argparse.ArgumentTypeError(f"{text!r} is not HOST:PORT (e.g. 127.0.0.1:9100)")
    return host, port_number(port)


def check_reach(address: tuple[str, int], allow_remote: bool) -> str | None:
    """Like the server's own --host: an address other machines can reach needs
    --allow-remote. Raises MetricsError when refused; a warning line when allowed."""
    host, port = address
    try:
        _, _, _, sockaddr = resolve(host, port)
    except AddressError as exc:
        raise MetricsError(f"--metrics: {exc}") from None
    if is_loopback(sockaddr):
        return None
    where = f"{sockaddr[0]} (--metrics {printable(host)})"
    if not allow_remote:
        raise MetricsError(remote_refused("serve metrics", sockaddr[0], "--metrics", host))
    return (f"warning: serving metrics on {where}, reachable from other machines, with no "
            "authentication (--allow-remote)")


class MetricsServer:
    """/metrics over `latest()`; start() binds (MetricsError says why it cannot)."""

    def __init__(self, address: tuple[str, int], latest: Callable[[], Snapshot | None], *,
                 recording: Callable[[], int | None] | None = None,
                 floods: Callable[[], Iterable[Any]] | None = None,
                 targets: Callable[[], Iterable[tuple[int, Snapshot]] | None] | None = None,
                 refused: Callable[[], int] = lambda: 0) -> None:
        """`targets`: instead of `latest`, the processes `attach` watches, as (key, Snapshot)
        pairs (muxtop.metrics.collector.TargetsCollector); `refused`: how many it cannot read."""
        self.address = address
        self._latest = latest
        self._targets = targets
        self._refused = refused
        self._recording = recording
        self.floods = floods
        self._httpd = None
        self._thread = None
        self.collector = None

    def start(self) -> MetricsServer:
        try:
            from prometheus_client import CollectorRegistry, start_http_server

            from muxtop.metrics.collector import SnapshotCollector, TargetsCollector
        except ImportError:
            raise MetricsError("--metrics needs prometheus_client: "
                               + install_hint("metrics")) from None
        # Its own registry: only muxtop's figures, not this Python process's (an attached
        # process's figures are the target's, and a muxtop_ name says whose they are).
        registry = CollectorRegistry(auto_describe=False)
        if self._targets is not None:
            self.collector = TargetsCollector(self._targets, self._refused)
        else:
            self.collector = SnapshotCollector(
                self._latest, recording=self._recording,
                floods=lambda: self.floods() if self.floods else ())
        registry.register(self.collector)
        host, port = self.address
        try:
            self._httpd, self._thread = start_http_server(port, addr=host, registry=registry)
        except OSError as exc:
            reason = exc.strerror or str(exc)
            raise MetricsError(f"cannot serve metrics on {printable(host)}:{port}: "
                               f"{reason}") from None
        return self

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{f'[{host}]' if ':' in host else host}:{port}/metrics"

    @property
    def port(self) -> int:
        return self._httpd.server_address[1]

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None
