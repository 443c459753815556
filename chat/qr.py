"""QR codes of the chat page's address, so that a phone joins by pointing its camera.

Two places show one:

* the server's terminal at start (:func:`terminal_code`), when the server
  knows an address that other devices can open (:func:`address_to_share`):
  a Codespace's forwarded address, or this machine's address on its local
  network when the server listens on every interface;
* the page's Share button, which shows ``/qr.svg`` (:func:`svg_code`) large,
  for a projector. That code is of the address the browser used
  (:func:`address_used`): the ``Host`` header, or what a trusted proxy says
  in ``X-Forwarded-Host`` and ``X-Forwarded-Proto``. Both come from outside,
  so they are checked strictly (:func:`page_url`): a host name or an IP
  address, with an optional port, and nothing else. The URL only ever
  becomes the code's modules, never text in the SVG.

Pure, but for :func:`lan_address`, which asks the kernel which of this
machine's addresses it would send from (sending nothing). segno, which
draws the codes, is imported only when one is drawn.
"""

import ipaddress
import re
import socket
from typing import Callable, Mapping

from chat.codespaces import forwarded_address

# A terminal this wide shows the code whole; a phone reads it from there.
MAX_TERMINAL_COLUMNS = 80
# The light margin a reader needs around the code (ISO/IEC 18004 asks for 4 modules).
QUIET_ZONE_MODULES = 4
# Error correction "M" (15 % of the code may be unreadable): a screen's glare
# and a camera at an angle cost some. segno raises it when that fits in the same size.
ERROR_LEVEL = "m"
# One character is two modules tall and one wide, which makes square modules
# in a terminal whose cells are twice as tall as they are wide. Indexed by
# (top is light, bottom is light). Light modules are drawn, dark ones are the
# terminal's background: a dark terminal, the most common, shows the code as
# printed on paper. (On a light terminal it is inverted; phone cameras read
# that too, mostly.)
HALF_BLOCKS = {(False, False): " ", (True, False): "▀", (False, True): "▄", (True, True): "█"}

# Where lan_address() pretends to send: documentation addresses (RFC 5737,
# RFC 3849), routed like any other, never reached: a UDP connect() sends nothing.
_PROBE_ADDRESSES = {socket.AF_INET: "192.0.2.1", socket.AF_INET6: "2001:db8::1"}
_ALL_INTERFACES = {"0.0.0.0": (socket.AF_INET,), "::": (socket.AF_INET, socket.AF_INET6), "": (socket.AF_INET,)}

# A Host header: a name or an IPv4 address, or an IPv6 address in brackets,
# then an optional port. What passes is checked again piece by piece.
_HOST_AND_PORT = re.compile(r"(?:\[([0-9A-Fa-f:.]+)\]|([A-Za-z0-9.-]+))(?::([0-9]{1,5}))?")
_LABEL = re.compile(r"[a-z0-9]([a-z0-9-]*[a-z0-9])?")
MAX_HOST_CHARS = 253  # the longest DNS name (RFC 1035), dots included
MAX_LABEL_CHARS = 63
SCHEMES = ("http", "https")


class BadAddress(ValueError):
    """A header that names the page's address does not hold one: the client's fault (400)."""

    def __init__(self, header: str, value: "str | None") -> None:
        self.header = header
        self.value = value
        what = "is missing" if value is None else "is not a host name or an IP address with an optional port"
        if header == "X-Forwarded-Proto":
            what = "is not http or https"
        super().__init__(f"The {header} header {what}.")


def page_url(host: str, scheme: str = "http", header: str = "Host") -> str:
    """``scheme://host/``, from a Host header's value: a name or an IP address, with an optional port.

    The host comes back in lower case, an IPv6 address in brackets in its
    short form. Raises :class:`BadAddress` (naming ``header``) for anything
    else: a path, a user, spaces, a zone, an empty or over-long name, a
    port out of range, a name whose last label is a number but that is no
    IPv4 address (a browser would read it as one).
    """
    if scheme not in SCHEMES:
        raise ValueError(f"{scheme!r} is not one of {SCHEMES}")
    match = _HOST_AND_PORT.fullmatch(host) if len(host) <= MAX_HOST_CHARS + 8 else None
    if match is None:
        raise BadAddress(header, host)
    ipv6, name, port = match.groups()
    try:
        if ipv6 is not None:
            shown = f"[{ipaddress.IPv6Address(ipv6).compressed}]"
        else:
            shown = _host_name(name.lower())
    except ValueError:
        raise BadAddress(header, host) from None
    if port is not None:
        if not 0 < int(port) < 65536:
            raise BadAddress(header, host)
        shown += f":{int(port)}"
    return f"{scheme}://{shown}/"


def _host_name(name: str) -> str:
    """A host name or an IPv4 address, as given; ValueError for anything else."""
    labels = name.split(".")
    if labels[-1].isdigit():  # a browser takes it for an IPv4 address: it must be one
        return str(ipaddress.IPv4Address(name))
    if len(name) > MAX_HOST_CHARS or not all(len(label) <= MAX_LABEL_CHARS and _LABEL.fullmatch(label) for label in labels):
        raise ValueError(name)
    return name


def address_used(headers, from_trusted_proxy: bool = False) -> str:
    """The page's address as the browser that sent ``headers`` opened it: ``http://HOST/``.

    ``headers`` has ``get_all(name)`` (websockets' ``Headers``). The host is
    the one ``Host`` header; from a trusted proxy (see
    :class:`chat.admission.TrustedProxies`), the last ``X-Forwarded-Host``
    and ``X-Forwarded-Proto`` if it sends them, the ones that proxy added:
    a proxy behind another adds its own at the end. From anyone else they
    are ignored, as a client could send any. This server speaks plain HTTP,
    so the scheme is ``http`` unless a trusted proxy says ``https``.
    Raises :class:`BadAddress`.
    """
    scheme, header, values = "http", "Host", headers.get_all("Host")
    if len(values) > 1:  # RFC 9112, section 3.2: a request with several is refused
        raise BadAddress("Host", ", ".join(values))
    if from_trusted_proxy:
        protos = _last_entry(headers.get_all("X-Forwarded-Proto"))
        if protos is not None:
            scheme = protos.lower()
            if scheme not in SCHEMES:
                raise BadAddress("X-Forwarded-Proto", protos)
        forwarded_host = _last_entry(headers.get_all("X-Forwarded-Host"))
        if forwarded_host is not None:
            header, values = "X-Forwarded-Host", [forwarded_host]
    if not values:
        raise BadAddress(header, None)
    return page_url(values[0], scheme, header)


def _last_entry(values: "list[str]") -> "str | None":
    """The last entry of a header that may be repeated and hold a comma-separated list."""
    return ",".join(values).split(",")[-1].strip() if values else None


def lan_address(family: int = socket.AF_INET) -> "str | None":
    """This machine's address on its network, as other devices there reach it; None without one.

    The address the kernel would send from toward the rest of the world
    (a UDP socket's connect() picks it and sends nothing), unless that is
    loopback or link-local, which no other device could use.
    """
    try:
        with socket.socket(family, socket.SOCK_DGRAM) as probe:
            probe.connect((_PROBE_ADDRESSES[family], 9))
            address = ipaddress.ip_address(probe.getsockname()[0].partition("%")[0])
    except (OSError, ValueError):  # no route: no network, or none of this family
        return None
    if address.is_loopback or address.is_link_local or address.is_unspecified:
        return None
    return str(address)


def address_to_share(
    listen_host: str,
    port: int,
    environ: "Mapping[str, str] | None" = None,
    find_lan_address: Callable[[int], "str | None"] = lan_address,
) -> "str | None":
    """The page's address that other devices can open, if the server knows one; else None.

    In a Codespace, its forwarded address (:mod:`chat.codespaces`). Else,
    when the server listens on every interface (``0.0.0.0`` or ``::``),
    ``http://`` and this machine's address on its network
    (``find_lan_address``, :func:`lan_address` by default), IPv4 first.
    """
    forwarded = forwarded_address(port, environ)
    if forwarded is not None:
        return forwarded.page_url
    for family in _ALL_INTERFACES.get(listen_host, ()):
        address = find_lan_address(family)
        if address is not None:
            return page_url(f"[{address}]:{port}" if ":" in address else f"{address}:{port}")
    return None


def _code(url: str):
    import segno  # only when a code is drawn: a server that never draws one does not need it

    return segno.make(url, error=ERROR_LEVEL, micro=False)


def terminal_code(url: str) -> "str | None":
    """``url`` as a QR code in half-block characters, quiet zone included; None if wider than a terminal.

    Lines end with a newline; every line is as wide as the code.
    """
    modules = [[not dark for dark in row] for row in _code(url).matrix_iter(scale=1, border=QUIET_ZONE_MODULES)]
    if len(modules[0]) > MAX_TERMINAL_COLUMNS:
        return None
    if len(modules) % 2:
        modules.append([True] * len(modules[0]))  # one more row of quiet zone makes the last pair
    return "".join(
        "".join(HALF_BLOCKS[top, bottom] for top, bottom in zip(modules[row], modules[row + 1])) + "\n"
        for row in range(0, len(modules), 2)
    )


def svg_code(url: str) -> bytes:
    """``url`` as a QR code in SVG: paths only, black on a white square, quiet zone included.

    No text, no script, no size: the page scales it to the screen.
    """
    import io

    output = io.BytesIO()
    _code(url).save(
        output, kind="svg", border=QUIET_ZONE_MODULES, xmldecl=False, omitsize=True, dark="#000", light="#fff", nl=False
    )
    return output.getvalue()
