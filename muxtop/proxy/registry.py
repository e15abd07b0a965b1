"""The proxies as toxiproxy models them (name, listen, upstream, enabled, toxics), their
checks and JSON shapes, shared by the API's thread (which writes) and the engine's (which
reads).

The registry binds a proxy's listening socket itself, on the writer's thread, so that the API
answers at once with the real port (listen "127.0.0.1:0") or "address already in use", as
toxiproxy does. The engine adopts the socket; from then on only the engine closes it: when the
registry retires a listener (proxy disabled, deleted, or moved), the engine closes it and every
connection it accepted, then releases it, and the registry waits for that before binding the
same address again.
"""

from __future__ import annotations

import ipaddress
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from muxtop.printable import printable
from muxtop.proxy.errors import ApiError, bad_body, missing
from muxtop.proxy.toxics import Toxic, ToxicSet, check_name

MAX_PROXIES = 256  # each holds a listening socket: an API client must not use up the fds
MAX_TOXICS = 64  # per proxy: every pipe walks its chain
MAX_ADDRESS = 300
RELEASE_WAIT = 2.0  # s: how long a writer waits for the engine to close a retired listener
BACKLOG = 1024
DEFAULT_LISTEN = "127.0.0.1:0"  # toxiproxy's empty listen binds every interface; not here

Bind = Callable[[str, int], socket.socket]


def split_address(text: str, what: str) -> tuple[str, int]:
    """HOST:PORT or [V6]:PORT -> (host, port); ApiError (400) otherwise."""
    host, colon, port = text.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not colon or not port.isdigit() or len(port) > 5 or int(port) > 65535 \
            or len(text) > MAX_ADDRESS or not text.isprintable():
        raise bad_body(f"{what} {printable(text[:MAX_ADDRESS])!r} is not HOST:PORT")
    return host, int(port)


def join_address(host: str, port: int) -> str:
    """As Go writes an address: 127.0.0.1:8080, [::1]:8080."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def resolve(host: str, port: int, passive: bool = False) -> tuple[int, tuple]:
    """(family, sockaddr) of the first address `host` names; OSError if none."""
    flags = socket.AI_PASSIVE if passive else 0
    family, _, _, _, sockaddr = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM,
                                                   flags=flags)[0]
    return family, sockaddr


def is_loopback(sockaddr: tuple) -> bool:
    try:
        address = ipaddress.ip_address(sockaddr[0].partition("%")[0])
    except ValueError:
        return False
    mapped = getattr(address, "ipv4_mapped", None)
    return address.is_loopback or bool(mapped and mapped.is_loopback)


def loops_back(listen: tuple[str, int], upstream: tuple) -> bool:
    """The upstream is the listener's own address: each client's connect would be accepted
    as a new client, which connects again, until the fds run out."""
    host, port = listen[:2]
    if upstream[1] != port:
        return False
    return upstream[0] == host or (host in ("0.0.0.0", "::") and _is_local(upstream[0]))


def _is_local(host: str) -> bool:
    """An address of this machine (a bind to it would work)."""
    try:
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
            probe.bind((host, 0))
    except OSError:
        return False
    return True


def bind_listener(host: str, port: int) -> socket.socket:
    """A non-blocking TCP socket listening on host:port (OSError says why not)."""
    family, sockaddr = resolve(host, port, passive=True)
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(sockaddr)
        sock.listen(BACKLOG)
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


class Listener:
    """A proxy's listening socket, handed from the registry to the engine (see the module's
    docstring): adopt() by the engine, retire() by the registry, release() by the engine."""

    def __init__(self, sock: socket.socket) -> None:
        self.socket = sock
        host, port = sock.getsockname()[:2]
        self.address: tuple[str, int] = (host, port)
        self._lock = threading.Lock()
        self._adopted = False
        self._retired = False
        self._released = threading.Event()
        self._adopter: int | None = None  # the thread that adopted it (the engine's)

    def adopt(self) -> socket.socket | None:
        """The engine takes the socket (and the duty to release it); None if retired."""
        with self._lock:
            if self._retired:
                return None
            self._adopted = True
            self._adopter = threading.get_ident()
            return self.socket

    @property
    def retired(self) -> bool:
        return self._retired

    def release(self) -> None:
        """The engine is done with it: no backend watches it, its connections are closed."""
        self.socket.close()
        self._released.set()

    def retire(self) -> bool:
        """Registry: no longer this proxy's. Closes it now if the engine never adopted it;
        True if the engine must release it (wait with `released`)."""
        with self._lock:
            self._retired = True
            adopted = self._adopted
        if not adopted:
            self.release()
        return adopted

    def released(self, timeout: float) -> bool:
        """Wait for the engine's release; at once on the engine's own thread (a registry
        write made there cannot wait for the loop it holds up: it releases on its next turn)."""
        if self._adopter == threading.get_ident():
            return self._released.is_set()
        return self._released.wait(timeout)


@dataclass(frozen=True)
class Proxy:
    """One proxy. Immutable: a change publishes a new one; `toxics` is the same ToxicSet for
    the proxy's whole life (replaced only by /populate, as toxiproxy does)."""

    name: str
    listen: str  # the bound address once enabled, as toxiproxy shows it
    upstream: str  # HOST:PORT as given
    enabled: bool
    toxics: ToxicSet = field(compare=False, repr=False)
    listener: Listener | None = field(default=None, compare=False, repr=False)
    # Resolved when the proxy was made, so the engine's connect() need not block on DNS;
    # None if it did not resolve then (the engine may try again or refuse the client).
    upstream_sockaddr: tuple[int, tuple] | None = field(default=None, compare=False,
                                                         repr=False)

    @property
    def upstream_address(self) -> tuple[str, int]:
        return split_address(self.upstream, "upstream")

    def plain(self) -> dict[str, object]:
        """toxiproxy's JSON shape of a proxy with its toxics."""
        return {"name": self.name, "listen": self.listen, "upstream": self.upstream,
                "enabled": self.enabled, "toxics": [t.plain() for t in self.toxics.all()]}


class Registry:
    """Every proxy. Reads (`proxies`, `get`, `version`) take no lock; writes are serialized
    and raise ApiError with toxiproxy's words and status."""

    def __init__(self, *, allow_remote: bool = False, bind: Bind | None = None,
                 on_change: Callable[[], None] | None = None, rng=None) -> None:
        self.allow_remote = allow_remote
        self._bind = bind or bind_listener
        self.on_change = on_change
        self._rng = rng  # a random.Random for every ToxicSet (seeded in tests)
        self._write = threading.RLock()
        self._proxies: tuple[Proxy, ...] = ()
        self.version = 0

    # -- reads

    def proxies(self) -> tuple[Proxy, ...]:
        return self._proxies

    def get(self, name: str) -> Proxy | None:
        return next((p for p in self._proxies if p.name == name), None)

    def find(self, name: str) -> Proxy:
        proxy = self.get(name)
        if proxy is None:
            raise ApiError("proxy not found", 404)
        return proxy

    # -- proxies

    def create(self, plain: object, listening: socket.socket | None = None) -> Proxy:
        """POST /proxies: 400 missing name or upstream, 409 a name taken, 500 cannot bind.

        `listening`: a socket the engine already listens on (`muxtop --upstream`'s own
        --port), made this proxy's listener as if the engine had adopted it: `down` retires
        it like any other, and `up` binds its address anew."""
        name, listen, upstream, enabled = self._fields(plain)
        with self._write:
            if self.get(name) is not None:
                raise ApiError("proxy already exists", 409)
            if len(self._proxies) >= MAX_PROXIES:
                raise ApiError(f"too many proxies (at most {MAX_PROXIES})", 400)
            proxy = self._made(name, listen, upstream, ToxicSet(self._rng))
            if listening is not None:
                listener = Listener(listening)
                listener.adopt()
                proxy = replace(proxy, listen=join_address(*listener.address), enabled=True,
                                listener=listener)
            elif enabled:
                proxy = self._started(proxy)
            self._publish(self._proxies + (proxy,))
            return proxy

    def populate(self, plain: object) -> tuple[list[Proxy], ApiError | None]:
        """POST /populate: every entry checked before any is made; an existing proxy of the
        same listen and upstream is kept as it is, one that differs is replaced. Returns the
        proxies made or kept, and the error that stopped it (they are kept too)."""
        if not isinstance(plain, list):
            raise bad_body("populate takes a JSON array of proxies")
        if len(plain) > MAX_PROXIES:
            raise ApiError(f"too many proxies (at most {MAX_PROXIES})", 400)
        for index, entry in enumerate(plain, 1):  # as toxiproxy: only these before any is made
            if not isinstance(entry, dict):
                raise bad_body(f"proxy {index} is not a JSON object")
            if not entry.get("name"):
                raise missing(f"name at proxy {index}")
            if not entry.get("upstream"):
                raise missing(f"upstream at proxy {index}")
        done: list[Proxy] = []
        with self._write:
            for entry in plain:
                try:
                    done.append(self._add_or_replace(*self._fields(entry)))
                except ApiError as exc:
                    return done, exc
        return done, None

    def _add_or_replace(self, name: str, listen: str, upstream: str, enabled: bool) -> Proxy:
        existing = self.get(name)
        if existing is not None:
            if not self._differs(existing, listen, upstream):
                return existing
            self._stop(existing)
            self._publish(tuple(p for p in self._proxies if p.name != name))
        elif len(self._proxies) >= MAX_PROXIES:
            raise ApiError(f"too many proxies (at most {MAX_PROXIES})", 400)
        proxy = self._made(name, listen, upstream, ToxicSet(self._rng))
        if enabled:
            proxy = self._started(proxy)
        self._publish(self._proxies + (proxy,))
        return proxy

    def update(self, name: str, plain: object) -> Proxy:
        """POST /proxies/{proxy}: fields not given stay; a new listen or upstream restarts
        the proxy (its connections end); enabled false takes it down (toxiproxy's `down`)."""
        with self._write:
            proxy = self.find(name)
            if not isinstance(plain, dict):
                raise bad_body("a proxy is a JSON object")
            given = {"listen": proxy.listen, "upstream": proxy.upstream,
                     "enabled": proxy.enabled, **plain, "name": name}  # a name stays
            _, listen, upstream, enabled = self._fields(given)
            if self._differs(proxy, listen, upstream):
                proxy = self._stop(proxy)
                proxy = self._made(name, listen, upstream, proxy.toxics)
                self._replace(proxy)
            if enabled != proxy.enabled:
                proxy = self._started(proxy) if enabled else self._stop(proxy)
                self._replace(proxy)
            return proxy

    def delete(self, name: str) -> None:
        with self._write:
            proxy = self.find(name)
            self._stop(proxy)
            self._publish(tuple(p for p in self._proxies if p.name != name))

    def reset(self) -> None:
        """POST /reset: every proxy enabled, every toxic removed."""
        with self._write:
            for proxy in self._proxies:
                if not proxy.enabled:
                    self._replace(self._started(proxy))
                proxy.toxics.reset()
            self._changed()

    def clear(self) -> None:
        """Every proxy deleted (muxtop's own shutdown)."""
        with self._write:
            for proxy in self._proxies:
                self._stop(proxy)
            self._publish(())

    # -- toxics

    def add_toxic(self, name: str, plain: object) -> Toxic:
        """POST /proxies/{proxy}/toxics (a Toxic as --toxic made it, or its JSON)."""
        with self._write:
            proxy = self.find(name)
            toxic = plain if isinstance(plain, Toxic) else Toxic.from_plain(plain)
            if len(proxy.toxics.all()) >= MAX_TOXICS:
                raise ApiError(f"too many toxics (at most {MAX_TOXICS} a proxy)", 400)
            proxy.toxics.add(toxic)
            self._changed()
            return toxic

    def update_toxic(self, name: str, toxic: str, plain: object) -> Toxic:
        with self._write:
            updated = self.find(name).toxics.update(toxic, plain)
            self._changed()
            return updated

    def remove_toxic(self, name: str, toxic: str) -> None:
        with self._write:
            self.find(name).toxics.remove(toxic)
            self._changed()

    def get_toxic(self, name: str, toxic: str) -> Toxic:
        found = self.find(name).toxics.get(toxic)
        if found is None:
            raise ApiError("toxic not found", 404)
        return found

    # -- the parts

    def _fields(self, plain: object) -> tuple[str, str, str, bool]:
        """(name, listen, upstream, enabled) of a proxy's JSON, checked."""
        if not isinstance(plain, dict):
            raise bad_body("a proxy is a JSON object")
        values = {}
        for key in ("name", "listen", "upstream"):
            value = plain.get(key, "")
            if not isinstance(value, str):
                raise bad_body(f"{key} must be a string")
            values[key] = value
        if not values["name"]:
            raise missing("name")
        if not values["upstream"]:
            raise missing("upstream")
        check_name(values["name"], "proxy")
        split_address(values["upstream"], "upstream")
        split_address(values["listen"] or DEFAULT_LISTEN, "listen")
        enabled = plain.get("enabled", True)
        if not isinstance(enabled, bool):
            raise bad_body("enabled must be true or false")
        return values["name"], values["listen"] or DEFAULT_LISTEN, values["upstream"], enabled

    def _made(self, name: str, listen: str, upstream: str, toxics: ToxicSet) -> Proxy:
        try:
            sockaddr = resolve(*split_address(upstream, "upstream"))
        except (OSError, UnicodeError):
            sockaddr = None
        return Proxy(name, listen, upstream, False, toxics, None, sockaddr)

    def _differs(self, proxy: Proxy, listen: str, upstream: str) -> bool:
        # As toxiproxy: the listen given, resolved, against the one bound (so :0 differs).
        try:
            host, port = split_address(listen, "listen")
            listen = join_address(resolve(host, port, passive=True)[1][0], port)
        except (OSError, UnicodeError):
            pass
        return listen != proxy.listen or upstream != proxy.upstream

    def _started(self, proxy: Proxy) -> Proxy:
        """The proxy listening (500 with the OS's words if it cannot bind, as toxiproxy)."""
        host, port = split_address(proxy.listen, "listen")
        try:
            family, sockaddr = resolve(host, port, passive=True)
        except (OSError, UnicodeError) as exc:
            raise ApiError(f"listen tcp {printable(proxy.listen)}: {_words(exc)}", 500) from None
        if not self.allow_remote and not is_loopback(sockaddr):
            raise ApiError(f"listen {printable(proxy.listen)}: not a loopback address; muxtop "
                           "serves other machines only with --allow-remote", 403)
        try:
            listener = Listener(self._bind(host, port))
        except (OSError, UnicodeError) as exc:
            where = join_address(sockaddr[0], port)
            raise ApiError(f"listen tcp {where}: bind: {_words(exc)}", 500) from None
        upstream = proxy.upstream_sockaddr
        if upstream is not None and loops_back(listener.address, upstream[1]):
            listener.release()
            raise ApiError(f"upstream {printable(proxy.upstream)} is the proxy's own listen "
                           f"address {join_address(*listener.address)}: every client would "
                           "connect to it again, without end", 400)
        return replace(proxy, listen=join_address(*listener.address), enabled=True,
                       listener=listener)

    def _stop(self, proxy: Proxy) -> Proxy:
        """The proxy down: its listener retired, and closed (with every connection it
        accepted) by the engine before this returns, or after RELEASE_WAIT at the latest."""
        stopped = replace(proxy, enabled=False, listener=None)
        if proxy.listener is not None:
            self._replace(stopped)  # publish first: the engine wakes to a proxy without it
            if proxy.listener.retire():
                self._changed()
                proxy.listener.released(RELEASE_WAIT)
        return stopped

    def _replace(self, proxy: Proxy) -> None:
        self._publish(tuple(proxy if p.name == proxy.name else p for p in self._proxies))

    def _publish(self, proxies: tuple[Proxy, ...]) -> None:
        self._proxies = proxies
        self._changed()

    def _changed(self) -> None:
        self.version += 1
        if self.on_change is not None:
            self.on_change()


def _words(exc: BaseException) -> str:
    """An OSError as Go words it: "address already in use"."""
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror[0].lower() + exc.strerror[1:]
    return printable(str(exc))
