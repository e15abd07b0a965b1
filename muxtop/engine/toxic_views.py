"""A proxy's proxies and their toxics as the Snapshot shows them (Snapshot.proxies): read from
the registry (muxtop/proxy/registry.py) at each publish, with the legs each toxic applies to."""

from __future__ import annotations

from muxtop.engine.proxying import PROXY_NAME
from muxtop.engine.state import EngineState
from muxtop.printable import printable
from muxtop.proxy.registry import MAX_ADDRESS
from muxtop.proxy.toxics import ATTRIBUTES
from muxtop.snapshot import FLAG_TOXIC, LEGS_KEPT, ConnView, ProxyView, ToxicView

_FLAGS = ConnView._fields.index("flags")


def proxy_views(state: EngineState, address: str) -> tuple[ProxyView, ...]:
    """Every proxy the engine serves; () when it is no proxy. `address`: its own listener's,
    which the --upstream proxy listens on when there is no registry (no --toxic, no --api)."""
    registry = state.config.registry
    if registry is None:
        if state.proxy is None:
            return ()
        # As the user typed it (the registry checks its own): printable, as recordings want.
        upstream = printable(state.proxy.upstream)[:MAX_ADDRESS]
        return (ProxyView(PROXY_NAME, address, upstream, True, ()),)
    proxies = registry.proxies()  # lock-free: the registry swaps a tuple
    if not proxies:
        return ()
    legs = _legs(state)
    return tuple(
        ProxyView(p.name, p.listen, p.upstream, p.enabled, tuple(
            _toxic_view(t, legs.get((p.name, t.name), ())) for t in p.toxics.all()))
        for p in proxies)


def _toxic_view(toxic, fds: list[int] | tuple) -> ToxicView:
    kinds = ATTRIBUTES.get(toxic.type, ())
    return ToxicView(toxic.name, toxic.type, toxic.stream, toxic.toxicity,
                     tuple((key, toxic.attr(key)) for key in kinds),
                     tuple(fds[:LEGS_KEPT]), len(fds))


def _legs(state: EngineState) -> dict[tuple[str, str], list[int]]:
    """(proxy name, toxic name) -> the fds of the open legs whose reading it applies to (the
    toxic's stream is the direction of what that leg reads), by fd. Only the legs flagged `~`
    (their views are this publish's) are asked which toxics apply."""
    by_chain: dict[tuple[str, tuple[str, ...]], list[int]] = {}
    for fd, conn in state.conns.items():
        view = conn.view
        if view is None or FLAG_TOXIC not in view[_FLAGS]:
            continue
        route = conn.route
        key = (route.proxy.name if route is not None else PROXY_NAME, conn.pipe.applied)
        fds = by_chain.get(key)
        if fds is None:
            by_chain[key] = [fd]
        else:
            fds.append(fd)
    legs: dict[tuple[str, str], list[int]] = {}
    for (proxy, names), fds in by_chain.items():  # a few chains, however many legs
        for name in names:
            legs.setdefault((proxy, name), []).extend(fds)
    for fds in legs.values():
        fds.sort()
    return legs
