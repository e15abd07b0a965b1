"""The address the server listens on: resolved once, the same way for the engine's bind and
for the command line's question "would this serve other machines?"."""

from __future__ import annotations

import ipaddress
import socket


class AddressError(ValueError):
    """A host that cannot be listened on; the message is one plain line."""


def resolve(host: str, port: int) -> tuple[int, int, int, tuple]:
    """(family, type, proto, sockaddr) to bind for `host`: the first answer, as bind takes it.
    An empty host is every address (AI_PASSIVE)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise AddressError(f"cannot use host {host!r}: {exc.strerror}") from None
    except UnicodeError:  # idna: a label over 63 characters, or not encodable at all
        raise AddressError(f"cannot use host {host!r}: not a valid host name") from None
    except ValueError as exc:  # an embedded NUL
        raise AddressError(f"cannot use host {host!r}: {exc}") from None
    family, kind, proto, _, sockaddr = infos[0]
    return family, kind, proto, sockaddr


def is_loopback(sockaddr: tuple) -> bool:
    """Only this machine can reach it: 127.0.0.0/8 or ::1 (not 0.0.0.0, ::, a LAN address)."""
    return ipaddress.ip_address(sockaddr[0].split("%")[0]).is_loopback


def peer_name(addr: tuple) -> str:
    """host:port of a socket address, IPv6 hosts in brackets (as ss shows them)."""
    host, port = addr[0], addr[1]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
