"""Client addresses as the server counts them, bans them and logs them.

Pure functions on text: the admission's limits per address
(:mod:`chat.admission`) and the operators' bans (:mod:`chat.core.operators`)
count and name a client by the same key: an IPv4 address, or an IPv6 /64.
"""

import ipaddress

# The network an IPv6 client is counted by.
IPV6_PREFIX_BITS = 64


def address_key(host: str) -> str:
    """What limits count ``host`` by: an IPv4-mapped IPv6 address as IPv4, other IPv6 by its /64."""
    address = ip_of(host)
    if address is None:
        return host
    if address.version == 6 and not address.is_loopback:
        return str(ipaddress.ip_network(f"{address}/{IPV6_PREFIX_BITS}", strict=False))
    return str(address)


def ip_of(host: str) -> "ipaddress.IPv4Address | ipaddress.IPv6Address | None":
    """``host`` as an IP address (without its zone; an IPv4-mapped IPv6 one as IPv4), or None."""
    try:
        address = ipaddress.ip_address(host.partition("%")[0])
    except ValueError:
        return None
    return getattr(address, "ipv4_mapped", None) or address


def is_loopback(key: str) -> bool:
    try:
        return ipaddress.ip_address(key).is_loopback
    except ValueError:
        return False


def canonical(text: str) -> "str | None":
    """``text`` (an address or an IPv6 /64, as an operator may type it) as the key bans are kept under, or None."""
    try:
        return address_key(str(ipaddress.ip_network(text.strip(), strict=False).network_address))
    except ValueError:
        return None


def unmapped(address: tuple) -> tuple:
    """A socket address as a client sees its own: an IPv4 client of a dual-stack
    listener (``::ffff:127.0.0.1``) as the IPv4 ``('127.0.0.1', 5000)``."""
    host, port = address[:2]
    mapped = ip_of(host) if host.startswith("::ffff:") else None
    return (str(mapped), port) if mapped is not None and mapped.version == 4 else (host, port)


def format_address(address) -> str:
    """``host:port`` for a socket address, with an IPv6 host in brackets: ``[::]:8080``."""
    host, port = address[:2]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def format_peer(address) -> str:
    """A client's address for the log: IPv4 as a Python tuple, ``('127.0.0.1', 5000)``, IPv6 as ``[::1]:5000``."""
    host, port = address[:2]
    return format_address(address) if ":" in host else repr((host, port))
