"""One port, three kinds of client: telling them apart, and what HTTP gets back.

The server listens on a single port. A raw line client (``nc``, ``client.py``
over TCP) starts by sending a chat line, or nothing at all. A browser starts
with an HTTP request line such as ``GET / HTTP/1.1``: for ``/`` it wants the
chat page, for ``/ws`` with ``Upgrade: websocket`` it wants to join the chat
over WebSocket. What a connection sends first tells which it is:

* :func:`sniff` looks at the first bytes and says HTTP, RAW or "not yet".
  It decides RAW at the first byte that cannot belong to a request line, so a
  raw client's ``hello`` is recognised at once, and HTTP only once a whole
  request line has arrived (browsers send it in one packet). Two more kinds
  are recognised only to be turned away: TLS (``https://`` or ``wss://`` to
  this plain port) and HTTP/2 without TLS; :attr:`Opening.explanation` says
  why for the log and :func:`farewell_bytes` is what they get before the close.
* :func:`route` takes the request that websockets' parser read and says which
  answer it gets: the page, the WebSocket handshake, or an HTTP error;
  :func:`refusal` does the same for a request the parser could not read.
* :func:`origin_allowed` is the check that keeps other web sites' pages from
  opening a WebSocket to this chat in their visitors' browsers; the names it
  accepts are this server's own, from :func:`server_names`.
* :func:`page_response` and :func:`error_response` build the answers;
  :func:`qr_code_response` draws ``/qr.svg``, the page's address as a QR code.

Nothing here does I/O: bytes and request values in, decisions and response
values out. :mod:`chat.transports.websocket` feeds the parser and sends.
"""

import enum
import http
import ipaddress
import re
import socket
import struct
from typing import Container, Iterable, Mapping
from urllib.parse import urlsplit

from websockets import Headers, Request, Response
from websockets.exceptions import SecurityError
from websockets.http11 import MAX_LINE_LENGTH

from chat import qr
from chat.codespaces import forwarded_address

WEBSOCKET_PATH = "/ws"
# A QR code of the page's address, as the browser that asks opened it (see chat.qr).
QR_CODE_PATH = "/qr.svg"

# A request line longer than the parser's own limit (websockets' 8 KiB, the
# common default of HTTP servers) is refused by the parser; the sniffer
# need not wait longer than that to decide.
MAX_REQUEST_LINE_BYTES = MAX_LINE_LENGTH
# Methods are short upper-case words (GET, POST, OPTIONS...).
MAX_METHOD_CHARS = 20


class Opening(enum.Enum):
    """What the first bytes of a connection say about the client."""

    HTTP = "http"  # a request line: a browser, or another HTTP client
    RAW = "raw"  # a raw line client, served as always
    UNDECIDED = "undecided"  # a request line could still be on its way: read more
    TLS = "tls"  # a TLS handshake: https:// or wss:// to this plain port; never joins
    HTTP2 = "http2"  # HTTP/2 without TLS ("prior knowledge"); never joins

    @property
    def explanation(self) -> "str | None":
        """One sentence for the log on why a client of this kind is turned away; None if it is served."""
        return _EXPLANATIONS.get(self)


_EXPLANATIONS = {
    Opening.TLS: "TLS on a plain port: use http:// or ws://, or put a TLS proxy in front",
    Opening.HTTP2: "HTTP/2 without TLS (prior knowledge): use HTTP/1.1",
}

# A TLS connection starts with a record of type 22 (handshake) whose version's
# major byte is 3 (SSL 3.0 to TLS 1.3 alike): no raw client starts a chat line
# with a control character followed by 0x03.
TLS_HANDSHAKE_RECORD = 0x16
TLS_MAJOR_VERSION = 0x03
# RFC 9113, section 3.4: what an HTTP/2 client sends first. It starts like an
# HTTP/1 request line (method PRI), so the sniffer waits for all of it.
HTTP2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

_METHOD = re.compile(rb"[A-Z]{1,%d}" % MAX_METHOD_CHARS)
_TARGET = re.compile(rb"[\x21-\x7e]+")  # visible ASCII: no space, no control character
# After the target: "HTTP/", a digit, ".", a digit, then "\r\n" (or a bare "\n").
_VERSION = b"HTTP/#.#"
_DIGITS = b"0123456789"
_SPACE = 0x20


def sniff(first_bytes: bytes) -> Opening:
    """Decide from the first bytes of a connection whether it is HTTP or a raw client.

    A request line is ``METHOD SP TARGET SP HTTP/d.d`` and a line end, with
    an upper-case METHOD and a TARGET of visible ASCII. Call again with all
    the bytes so far while the answer is UNDECIDED; at most
    MAX_REQUEST_LINE_BYTES are looked at. A raw client whose first line
    happens to be a request line is taken for HTTP: that is the one
    ambiguous case.

    Two openings are told apart only to be turned away: TLS, from its first
    two bytes (a handshake record, version 3.x), and HTTP/2's connection
    preface, once all of its 24 bytes are there (until then it could still be
    an HTTP/1 request with the method PRI).
    """
    if first_bytes[:1] == bytes([TLS_HANDSHAKE_RECORD]):
        if len(first_bytes) == 1:
            return Opening.UNDECIDED
        return Opening.TLS if first_bytes[1] == TLS_MAJOR_VERSION else Opening.RAW
    if first_bytes.startswith(HTTP2_PREFACE):
        return Opening.HTTP2
    if HTTP2_PREFACE.startswith(first_bytes):
        return Opening.UNDECIDED
    data = first_bytes[:MAX_REQUEST_LINE_BYTES]
    position = 0
    for part in (_METHOD, _TARGET):
        match = part.match(data, position)
        if match is None:
            return Opening.UNDECIDED if position == len(data) else Opening.RAW
        position = match.end()
        if position == len(data):
            return _not_yet(first_bytes)
        if data[position] != _SPACE:
            return Opening.RAW
        position += 1
    return _sniff_version(data[position:], first_bytes)


def _sniff_version(rest: bytes, first_bytes: bytes) -> Opening:
    for index, byte in enumerate(rest):
        if index < len(_VERSION):
            expected = _DIGITS if _VERSION[index] == ord("#") else _VERSION[index : index + 1]
            if byte not in expected:
                return Opening.RAW
        elif byte == ord("\n"):
            return Opening.HTTP
        elif byte != ord("\r") or index > len(_VERSION):
            return Opening.RAW
    return _not_yet(first_bytes)


def _not_yet(first_bytes: bytes) -> Opening:
    """A valid beginning of a request line: wait for more, unless it is already too long."""
    return Opening.HTTP if len(first_bytes) >= MAX_REQUEST_LINE_BYTES else Opening.UNDECIDED


# RFC 8446, section 6: a fatal alert (level 2) "protocol_version" (70), in a
# record of type 21 (alert) with the record version TLS 1.2 uses for every
# record. A TLS client stops at once and names it: curl and Python's ssl
# say "tlsv1 alert protocol version".
TLS_PROTOCOL_VERSION_ALERT = bytes([21, 3, 3, 0, 2, 2, 70])


def _http2_frame(frame_type: int, payload: bytes) -> bytes:
    """An HTTP/2 frame on stream 0, without flags (RFC 9113, section 4.1)."""
    return struct.pack("!I", len(payload))[1:] + bytes([frame_type, 0]) + struct.pack("!I", 0) + payload


# RFC 9113: a server's first frame must be SETTINGS (section 3.4); then
# GOAWAY (type 7) for no stream (last stream 0) with the error
# HTTP_1_1_REQUIRED (0xd), which exists to say exactly this. curl shows
# "received GOAWAY, error=13".
HTTP2_GOAWAY = _http2_frame(0x4, b"") + _http2_frame(0x7, struct.pack("!II", 0, 0xD) + b"use HTTP/1.1")


def farewell_bytes(opening: Opening) -> bytes:
    """What a client that is turned away for ``opening`` gets before the close, in its own protocol.

    TLS gets a fatal alert, HTTP/2 a GOAWAY; b"" for the kinds that are served.
    """
    return {Opening.TLS: TLS_PROTOCOL_VERSION_ALERT, Opening.HTTP2: HTTP2_GOAWAY}.get(opening, b"")


def request_method(head: bytes) -> "str | None":
    """The METHOD of the request line at the start of ``head``, if it starts with one."""
    match = _METHOD.match(head)
    if match is None or head[match.end() : match.end() + 1] != b" ":
        return None
    return match.group().decode("ascii")


class Route(enum.Enum):
    """The answer to an HTTP request; the value is the status it gets."""

    PAGE = http.HTTPStatus.OK  # a file of the chat page
    WEBSOCKET = http.HTTPStatus.SWITCHING_PROTOCOLS  # the WebSocket handshake: join the chat
    BAD_REQUEST = http.HTTPStatus.BAD_REQUEST  # not an HTTP request we can read
    FORBIDDEN = http.HTTPStatus.FORBIDDEN  # a WebSocket opened by another site's page
    NOT_FOUND = http.HTTPStatus.NOT_FOUND
    METHOD_NOT_ALLOWED = http.HTTPStatus.METHOD_NOT_ALLOWED
    HEAD_TOO_LARGE = http.HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE


def route(request: Request, pages: Container[str], names: "Container[str] | None" = None) -> Route:
    """Which answer ``request`` gets; ``pages`` holds the paths of the page's files.

    ``GET /ws`` goes on to the WebSocket handshake (websockets' ``accept``
    then checks the Upgrade headers and answers 426 without them), if its
    ``Origin`` is one of ``names`` (see :func:`origin_allowed`; by default
    :func:`server_names` without a connection). A query string is ignored.
    ``/qr.svg`` is a PAGE too. Only GET is served.
    """
    # websockets 16 only ever parses GET requests; 17 parses any method.
    method = getattr(request, "method", "GET")
    path = request.path.partition("?")[0]
    if path not in (WEBSOCKET_PATH, QR_CODE_PATH) and path not in pages:
        return Route.NOT_FOUND
    if method != "GET":
        return Route.METHOD_NOT_ALLOWED
    if path == WEBSOCKET_PATH and not _origin_allowed_in(request.headers, names):
        return Route.FORBIDDEN
    return Route.WEBSOCKET if path == WEBSOCKET_PATH else Route.PAGE


def refusal(exception: BaseException, head: bytes) -> Route:
    """The answer to a request that websockets' parser refused before handing it over.

    ``exception`` is the parser's ``handshake_exc``; ``head`` is the start of
    what the client sent. (The parser answers some requests itself, such as
    an over-long request line in websockets 17: then this is not needed.)
    """
    cause: "BaseException | None" = exception
    while cause is not None:
        if isinstance(cause, SecurityError):  # a line too long, too many headers
            return Route.HEAD_TOO_LARGE
        cause = cause.__cause__
    method = request_method(head)
    if method is not None and method != "GET":
        # websockets 16 reads only GET requests, and 17 none with a body.
        return Route.METHOD_NOT_ALLOWED
    return Route.BAD_REQUEST


def _origin_allowed_in(headers: Headers, names: "Container[str] | None") -> bool:
    origins = headers.get_all("Origin")
    if len(origins) > 1:  # a browser sends one at most (RFC 6454, section 7.3)
        return False
    return origin_allowed(origins[0] if origins else None, server_names() if names is None else names)


LOCAL_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})
MDNS_DOMAIN = "local"  # a machine's name on its LAN without DNS (Bonjour, Avahi)


def origin_allowed(origin: "str | None", names: Container[str]) -> bool:
    """True if a WebSocket handshake with this ``Origin`` may join the chat.

    A browser lets any page open a WebSocket to any address, and names the
    page's site in ``Origin``, which a page cannot forge: without this check,
    another site could make its visitors' browsers post here in their names.
    Accepted: no ``Origin`` (not a browser), and an origin whose host is one
    of ``names``, the names of this server (:func:`server_names`).

    The request's ``Host`` proves nothing: after DNS rebinding, a page of
    ``http://evil.example:8080`` reaches this server with ``Host:
    evil.example:8080``, its own name. Neither does ``X-Forwarded-Host``,
    which a proxy fills in from ``Host``.

    Only the host is compared, not the scheme or the port: proxies and
    forwarded ports change both (a Codespace serves port 8080 as
    ``https://NAME-8080.app.github.dev``, port 443), and a page on another
    port of one of this server's own names runs on this machine, or on one
    its operator named. Anything else, ``null`` included, gets 403.
    """
    if origin is None:
        return True
    origin_host = _hostname(origin)
    return origin_host is not None and origin_host in names


def server_names(
    local_address: "tuple | None" = None,
    allowed_origins: Iterable[str] = (),
    environ: "Mapping[str, str] | None" = None,
    hostname: "str | None" = None,
) -> "frozenset[str]":
    """The host names an ``Origin`` may carry: this server's own, in lower case.

    * the localhost names (``localhost``, ``127.0.0.1``, ``::1``);
    * ``local_address``, the connection's own end (``sock.getsockname()``):
      its IP address, the one the browser connected to (an IPv4 address
      seen through an IPv6 socket counts as itself), and with its port, in
      a Codespace, that port's forwarded host (``NAME-PORT.DOMAIN``, see
      :mod:`chat.codespaces`);
    * this machine's name (``hostname``, by default ``socket.gethostname()``)
      and its mDNS form, ``NAME.local``;
    * the hosts of ``allowed_origins``, each a full origin
      (``https://chat.example.org``) or a host (``chat.example.org``, with
      or without a port): see :func:`origin_host`.

    No DNS lookup: a name is this server's because it is configured or
    local, never because of what it resolves to. Pure but for the hostname.
    """
    names = set(LOCAL_HOSTS)
    if local_address:
        names.add(_ip_text(local_address[0]))
        forwarded = forwarded_address(local_address[1], environ) if len(local_address) > 1 else None
        if forwarded is not None:
            names.add(forwarded.host.lower())
    machine = (socket.gethostname() if hostname is None else hostname).strip().rstrip(".").lower()
    if machine:
        names.add(machine)
        names.add(f"{machine.split('.')[0]}.{MDNS_DOMAIN}")
    names.update(origin_host(origin) for origin in allowed_origins)
    return frozenset(names)


_HOST_NAME = re.compile(r"[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*")


def origin_host(text: str) -> str:
    """The host of an origin given as ``https://chat.example.org``, or as a host with or without a port.

    Lower case, an IPv6 address without brackets, an international name in
    its ASCII form (as browsers send it). ValueError for anything else: a
    path, a user, a port that is not a number, an empty or malformed host.
    (For ``--allowed-origin``: check each when the server starts.)
    """
    value = text.strip()
    try:
        parts = urlsplit(value if "://" in value else "//" + value)
        parts.port  # raises ValueError for a port that is not a number
        host = parts.hostname
    except ValueError:
        host = None
    if value == "null":  # the origin of a page with none (a file, a sandbox): never one of ours
        host = None
    if not host or parts.path not in ("", "/") or parts.query or parts.fragment or parts.username is not None:
        raise ValueError(f"{text!r} is not an origin (https://host[:port]) or a host name")
    try:
        return _ip_text(host)
    except ValueError:
        pass
    try:
        host = host.encode("idna").decode("ascii")
    except UnicodeError:
        raise ValueError(f"{text!r} is not an origin (https://host[:port]) or a host name") from None
    if not _HOST_NAME.fullmatch(host):
        raise ValueError(f"{text!r} is not an origin (https://host[:port]) or a host name")
    return host


def _ip_text(address: str) -> str:
    """An IP address as an Origin shows it (without brackets or zone); ValueError if it is none."""
    ip = ipaddress.ip_address(address.partition("%")[0])
    mapped = getattr(ip, "ipv4_mapped", None)  # ::ffff:192.168.1.20, from a dual-stack socket
    return str(mapped or ip)


def _hostname(url: str) -> "str | None":
    try:
        return urlsplit(url).hostname  # lower case, IPv6 without its brackets
    except ValueError:  # such as an unclosed "[" in an IPv6 address
        return None


# What the page may do, for browsers: load its own files only, and connect
# only back to this server. (A WebSocket to the same host counts as 'self'.)
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)

_ERROR_TEXTS = {
    Route.BAD_REQUEST: (
        "This is a chat server. Open / in a browser, or connect with "
        "client.py or nc and type a line.\n"
    ),
    Route.FORBIDDEN: "This chat accepts WebSocket connections only from its own page.\n",
    Route.NOT_FOUND: "Nothing here. The chat page is at /.\n",
    Route.METHOD_NOT_ALLOWED: "Only GET is served here.\n",
    Route.HEAD_TOO_LARGE: "The request's head is too large.\n",
}


def error_response(answer: Route) -> Response:
    """A short plain-text answer for an HTTP error; the connection closes after it."""
    status = answer.value
    body = f"{status.value} {status.phrase}. {_ERROR_TEXTS[answer]}".encode()
    headers = Headers(
        [
            ("Content-Type", "text/plain; charset=utf-8"),
            ("Content-Length", str(len(body))),
            ("Connection", "close"),
        ]
    )
    if answer is Route.METHOD_NOT_ALLOWED:
        headers["Allow"] = "GET"
    return Response(status.value, status.phrase, headers, body)


def unavailable_response(reason: str) -> Response:
    """503: the server cannot take this client now (it is full, say); ``reason`` says why."""
    return _refusal_response(http.HTTPStatus.SERVICE_UNAVAILABLE, reason, [("Retry-After", "30")])


def forbidden_response(reason: str) -> Response:
    """403: this client is banned; ``reason`` says why and for how long."""
    return _refusal_response(http.HTTPStatus.FORBIDDEN, reason)


def _refusal_response(status: http.HTTPStatus, reason: str, extra_headers=()) -> Response:
    body = f"{status.value} {status.phrase}. {reason}\n".encode()
    headers = Headers(
        [
            ("Content-Type", "text/plain; charset=utf-8"),
            ("Content-Length", str(len(body))),
            *extra_headers,
            ("Connection", "close"),
        ]
    )
    return Response(status.value, status.phrase, headers, body)


def page_response(content_type: str, body: bytes) -> Response:
    """The answer carrying one file of the chat page."""
    headers = Headers(
        [
            ("Content-Type", content_type),
            ("Content-Length", str(len(body))),
            # The page is tiny: always ask, so that a changed server is seen.
            ("Cache-Control", "no-cache"),
            ("X-Content-Type-Options", "nosniff"),
            ("Content-Security-Policy", CONTENT_SECURITY_POLICY),
            ("Referrer-Policy", "no-referrer"),
            ("Connection", "close"),
        ]
    )
    return Response(http.HTTPStatus.OK.value, http.HTTPStatus.OK.phrase, headers, body)


def qr_code_response(request: Request, from_trusted_proxy: bool = False) -> Response:
    """The QR code of the page's address that ``request`` used (see :func:`chat.qr.address_used`), as SVG.

    400 if the request names no such address; its Host is the client's to get right.
    """
    try:
        url = qr.address_used(request.headers, from_trusted_proxy)
    except qr.BadAddress as error:
        return _refusal_response(http.HTTPStatus.BAD_REQUEST, str(error))
    try:
        return page_response("image/svg+xml", qr.svg_code(url))
    except ImportError:  # segno is missing: the page shows the address in words
        return _refusal_response(http.HTTPStatus.NOT_IMPLEMENTED, "This server cannot draw QR codes: segno is not installed.")


def answer(
    request: Request,
    pages: "Mapping[str, tuple[str, bytes]]",
    names: "Container[str] | None" = None,
    from_trusted_proxy: bool = False,
) -> "Response | None":
    """The whole answer to ``request`` when it is not a WebSocket handshake, else None.

    ``pages`` maps each path of the page to its (content type, body);
    ``names`` are the hosts a WebSocket's ``Origin`` may name (see :func:`route`);
    ``from_trusted_proxy`` says whether the peer is a trusted proxy, whose
    forwarded host the QR code is of (see :func:`qr_code_response`).
    """
    decision = route(request, pages, names)
    if decision is Route.WEBSOCKET:
        return None
    if decision is Route.PAGE:
        path = request.path.partition("?")[0]
        if path == QR_CODE_PATH:
            return qr_code_response(request, from_trusted_proxy)
        return page_response(*pages[path])
    return error_response(decision)
