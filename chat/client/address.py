"""Reading the server address that the user gave: pure functions, no I/O.

The client accepts ``HOST``, ``HOST:PORT``, ``[IPv6]``, ``[IPv6]:PORT`` and a
bare IPv6 address, plus a separate PORT. Anything else is refused with a
message that says what was wrong, rather than guessed at: ``host:8080:junk``
is not an IPv6 address, and ``https://host`` is not a host called ``https``
with the port ``//host``.
"""

import ipaddress
from typing import NamedTuple

DEFAULT_HOST = "localhost"
DEFAULT_PORT = 8080
# Web addresses name a protocol this client does not speak yet.
WEB_SCHEMES = ("http", "https", "ws", "wss")


class Address(NamedTuple):
    """Where to connect. (A scheme may join host and port when other transports arrive.)"""

    host: str
    port: int


def parse_address(host: "str | None", port: "str | None") -> Address:
    """Turn the HOST and PORT arguments into an Address; raise ValueError saying what is wrong."""
    given = host = host or DEFAULT_HOST
    scheme, separator, _ = host.partition("://")
    if separator:
        if scheme.lower() in WEB_SCHEMES:
            raise ValueError(
                f"{scheme.lower()}:// addresses are not supported yet: this client speaks plain TCP. "
                "Give HOST, HOST:PORT or HOST PORT, for example: localhost 8080"
            )
        raise ValueError(f"cannot read the address {host!r}: give HOST, HOST:PORT or HOST PORT")
    if host.startswith("["):
        inside, bracket, rest = host[1:].partition("]")
        if not bracket or not is_ipv6(inside) or (rest and not rest.startswith(":")):
            raise ValueError(f"cannot read the address {host!r}: write an IPv6 address as [::1] or [::1]:8080")
        host, port_in_host = inside, (rest[1:] if rest else None)
    elif host.count(":") == 1:
        host, port_in_host = host.split(":")
    elif ":" in host and not is_ipv6(host):
        raise ValueError(
            f"cannot read the address {host!r}: write HOST:PORT, or an IPv6 address in brackets: [::1]:8080"
        )
    else:
        port_in_host = None
    if not host:
        raise ValueError(f"cannot read the address {given!r}: the host is missing")
    if port_in_host is not None and port is not None:
        raise ValueError("give the port once: either HOST:PORT or HOST PORT")
    if port_in_host is not None:
        port = port_in_host
    if port is None:
        return Address(host, DEFAULT_PORT)
    if not (port.isascii() and port.isdigit()) or not 1 <= int(port) <= 65535:
        raise ValueError(f"the port must be a number from 1 to 65535, not {port!r}")
    return Address(host, int(port))


def is_ipv6(text: str) -> bool:
    try:
        ipaddress.IPv6Address(text)
    except ValueError:
        return False
    return True


def format_address(host: str, port: int) -> str:
    """``host:port``, with an IPv6 address in brackets: ``[::1]:8080``."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def is_local(host: str) -> bool:
    """True for a name or address of this machine's loopback interface."""
    if host.lower() == "localhost" or host.lower().endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host.partition("%")[0]).is_loopback
    except ValueError:
        return False
