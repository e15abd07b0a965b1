"""The proxy's findings (muxtop --upstream): an upstream that failed or closed first, a side
that does not read what the other sends, a pair that talks one way only. Run with the other
detectors (engine/diagnose.py), at publish time, O(connections)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from muxtop.engine.proxying import CLIENT, UPSTREAM, Leg
from muxtop.findings import CLIENT_NOT_READING, ONE_WAY, UPSTREAM_FAILED, UPSTREAM_NOT_READING
from muxtop.units import size

if TYPE_CHECKING:
    from muxtop.engine.state import EngineState

FAILURE_WINDOW = 10.0  # seconds an upstream failure stays a finding
NOT_READING = {UPSTREAM: UPSTREAM_NOT_READING, CLIENT: CLIENT_NOT_READING}


def upstream_failures(state: EngineState, now: float, found: list) -> None:
    """One finding per upstream and kind of failure (refused, unreachable, connect timeout,
    closed first without answering) seen in the last FAILURE_WINDOW seconds, naming the
    clients it hit: each proxy of the API has an upstream of its own."""
    recent: dict[tuple[str, str], list] = {}
    for when, why, fd, text, upstream in state.proxy.failures:
        if now - when <= FAILURE_WINDOW:
            recent.setdefault((upstream, why), []).append((fd, text))
    for (upstream, why), hits in recent.items():
        fds = tuple(fd for fd, _ in hits if fd >= 0)
        found.append((UPSTREAM_FAILED, None,
                      f"{hits[-1][1]} — {len(hits)} time(s) in the last "
                      f"{FAILURE_WINDOW:g} s",
                      (("upstream", upstream), ("why", why), ("count", len(hits)),
                       ("fds", fds[-8:]))))


def not_reading(leg: Leg, low: int, stalled: float) -> tuple[str, str]:
    """The stuck-write finding of a leg, in the proxy's words: which side does not read."""
    partner = leg.partner
    side = "upstream" if leg.role is UPSTREAM else "client"
    other = "client" if leg.role is UPSTREAM else "upstream"
    held = f"; reading from the {other} (fd {partner.fd}) is paused until it drains" \
        if partner is not None and leg.backpressured else ""
    return NOT_READING[leg.role], (
        f"the {side} is not reading: {size(len(leg.out))} for it wait in the out-buffer, "
        f"none below {size(low)} for {stalled:.1f} s"
        + (" and its kernel send queue is full" if leg.tx_queue else "") + held)


def one_way(state: EngineState, now: float, after: float, found: list) -> None:
    """A pair whose one direction moved bytes lately while the other has been silent for
    `after` s: a request the upstream does not answer (or a client that never replies)."""
    for leg in state.conns.values():
        if not isinstance(leg, Leg) or leg.role is not CLIENT:
            continue
        up = leg.partner
        if up is None or up.connecting or leg.out or up.out:
            continue
        sent, answered = leg.last_read_at, up.last_read_at  # client -> upstream, and back
        if sent > answered and now - sent >= after and leg.bytes_in:
            found.append((ONE_WAY, leg.fd,
                          f"the upstream (fd {up.fd}) has answered nothing for "
                          f"{now - sent:.1f} s since the client (fd {leg.fd}) last sent: "
                          "bytes go one way only",
                          (("client_fd", leg.fd), ("upstream_fd", up.fd),
                           ("seconds_since_sent", round(now - sent, 1)),
                           ("bytes_sent", leg.bytes_in), ("bytes_answered", up.bytes_in))))
