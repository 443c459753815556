"""Reading the server address that the user gave: pure functions, no I/O.

The client accepts ``HOST``, ``HOST:PORT``, ``[IPv6]``, ``[IPv6]:PORT`` and a
bare IPv6 address, plus a separate PORT: all raw TCP. It also accepts web
addresses, for a server behind HTTPS such as a GitHub Codespace's forwarded
port, and speaks WebSocket to them:

* ``ws://HOST:PORT`` and ``wss://HOST[:PORT]`` (the path defaults to ``/ws``);
* ``http://…`` and ``https://…``, as pasted from a browser or the Codespaces
  Ports panel: the same as ``ws://…`` and ``wss://…``;
* a bare ``NAME-8080.app.github.dev``, a Codespace's forwarded host: ``wss://`` on port 443.

Anything else is refused with a message that says what was wrong, rather
than guessed at: ``host:8080:junk`` is not an IPv6 address, and
``ftp://host`` is not a host called ``ftp`` with the port ``//host``.
"""

import ipaddress
from typing import NamedTuple
from urllib.parse import urlsplit

DEFAULT_HOST = "localhost"
DEFAULT_PORT = 8080
# The WebSocket scheme for each web scheme, and its default port.
WEB_SCHEMES = {"ws": ("ws", 80), "http": ("ws", 80), "wss": ("wss", 443), "https": ("wss", 443)}
WEBSOCKET_PATH = "/ws"
CODESPACES_DOMAIN = ".app.github.dev"


class Address(NamedTuple):
    """Where to connect: raw TCP (``scheme`` "tcp"), or a WebSocket URL ("ws", "wss")."""

    host: str
    port: int
    scheme: str = "tcp"
    path: str = WEBSOCKET_PATH

    @property
    def url(self) -> str:
        """The WebSocket URL of a web address."""
        default_port = 443 if self.scheme == "wss" else 80
        port = "" if self.port == default_port else f":{self.port}"
        return f"{self.scheme}://{format_host(self.host)}{port}{self.path}"

    def __str__(self) -> str:
        return format_address(self.host, self.port) if self.scheme == "tcp" else self.url


def parse_address(host: "str | None", port: "str | None") -> Address:
    """Turn the HOST and PORT arguments into an Address; raise ValueError saying what is wrong."""
    given = host = host or DEFAULT_HOST
    scheme, separator, _ = host.partition("://")
    if separator:
        if scheme.lower() not in WEB_SCHEMES:
            raise ValueError(
                f"cannot read the address {host!r}: give HOST, HOST:PORT or HOST PORT, "
                "or a ws://, wss://, http:// or https:// address"
            )
        if port is not None:
            raise ValueError("give the port once: inside the address, as in wss://HOST:PORT")
        return parse_web_address(host)
    if host.lower().endswith(CODESPACES_DOMAIN) and port is None and ":" not in host:
        return Address(host, 443, "wss")  # a Codespace's forwarded host speaks HTTPS only
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


def parse_web_address(url: str) -> Address:
    """A ws://, wss://, http:// or https:// address; raise ValueError saying what is wrong."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as error:  # such as a port that is not a number
        raise ValueError(f"cannot read the address {url!r}: {error}") from None
    if not parts.hostname:
        raise ValueError(f"cannot read the address {url!r}: the host is missing")
    scheme, default_port = WEB_SCHEMES[parts.scheme.lower()]
    path = parts.path if parts.path not in ("", "/") else WEBSOCKET_PATH
    return Address(parts.hostname, port or default_port, scheme, path)


def format_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


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
