import ssl
import struct
from types import SimpleNamespace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from websockets import Headers
from websockets.exceptions import InvalidMessage, SecurityError

from chat.transports.handshake import (
    CONTENT_SECURITY_POLICY,
    HTTP2_PREFACE,
    LOCAL_HOSTS,
    MAX_REQUEST_LINE_BYTES,
    Opening,
    Route,
    answer,
    error_response,
    farewell_bytes,
    origin_allowed,
    origin_host,
    page_response,
    refusal,
    request_method,
    route,
    server_names,
    sniff,
)
from chat.web import page_files

BROWSER_REQUEST = (
    b"GET /ws HTTP/1.1\r\nHost: localhost:8080\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"
)

# -- sniff: the first bytes -------------------------------------------------------


def test_a_raw_clients_hello_is_raw_from_its_first_byte():
    assert sniff(b"h") is Opening.RAW
    assert sniff(b"hello\n") is Opening.RAW


def test_a_nick_line_is_raw_from_its_first_byte():
    assert sniff(b"/") is Opening.RAW


def test_nothing_yet_is_undecided():
    assert sniff(b"") is Opening.UNDECIDED


def test_every_beginning_of_a_request_line_is_undecided_and_the_whole_line_is_http():
    line = b"GET /ws HTTP/1.1\r\n"
    for end in range(len(line)):
        assert sniff(line[:end]) is Opening.UNDECIDED, line[:end]
    assert sniff(line) is Opening.HTTP
    assert sniff(BROWSER_REQUEST) is Opening.HTTP


def test_a_request_line_ending_in_a_bare_newline_is_http():
    assert sniff(b"GET / HTTP/1.0\n") is Opening.HTTP


@pytest.mark.parametrize("method", [b"POST", b"HEAD", b"OPTIONS", b"DELETE", b"PRI"])
def test_any_upper_case_method_makes_a_request_line(method):
    assert sniff(method + b" / HTTP/1.1\r\n") is Opening.HTTP


@pytest.mark.parametrize(
    "first_bytes",
    [
        b"GET me a coffee",  # raw at the "a" where "HTTP/" should start
        b"get / HTTP/1.1\r\n",  # methods are upper case
        b"GET  / HTTP/1.1\r\n",  # one space, not two
        b"GET / http/1.1\r\n",
        b"GET / HTTP/1.1x",
        b"GET / HTTP/11\r\n",
        b"GET / HTTP/1.1\r\r",
        b"GET /\x1b[2J HTTP/1.1\r\n",  # a control character in the target
        b"G\xc3\xa9T / HTTP/1.1\r\n",
        b"HELLO\n",
        b"OK\n",
        b"ABCDEFGHIJKLMNOPQRSTU / HTTP/1.1\r\n",  # a 21-letter "method"
        b"\r\nGET / HTTP/1.1\r\n",  # a raw client that pressed Enter first
    ],
)
def test_anything_that_is_not_a_request_line_is_raw(first_bytes):
    assert sniff(first_bytes) is Opening.RAW


def test_raw_is_decided_at_the_first_byte_that_cannot_belong_to_a_request_line():
    assert sniff(b"GET me ") is Opening.UNDECIDED
    assert sniff(b"GET me a") is Opening.RAW
    assert sniff(b"GET / HTTP/1.1") is Opening.UNDECIDED
    assert sniff(b"GET / HTTP/1.1!") is Opening.RAW


def test_a_request_line_too_long_to_wait_for_is_taken_for_http():
    start = b"GET /" + b"a" * (MAX_REQUEST_LINE_BYTES - 6)
    assert sniff(start) is Opening.UNDECIDED
    assert sniff(start + b"a") is Opening.HTTP


@settings(max_examples=50, deadline=None)
@given(st.binary(max_size=40), st.binary(max_size=40))
def test_a_decision_never_changes_when_more_bytes_arrive(start, more):
    first = sniff(start)
    if first is not Opening.UNDECIDED:
        assert sniff(start + more) is first


@settings(max_examples=50, deadline=None)
@given(st.integers(0, len(HTTP2_PREFACE)), st.binary(max_size=30), st.binary(max_size=30))
def test_a_decision_never_changes_when_more_bytes_arrive_after_part_of_the_http2_preface(end, start, more):
    first_bytes = HTTP2_PREFACE[:end] + start
    first = sniff(first_bytes)
    if first is not Opening.UNDECIDED:
        assert sniff(first_bytes + more) is first


@settings(max_examples=50, deadline=None)
@given(st.sampled_from([b"GET", b"POST"]), st.text("/abc?=&%-_.~0123456789", min_size=1, max_size=30))
def test_every_request_line_is_http(method, target):
    line = b"%s %s HTTP/1.1\r\n" % (method, target.encode())
    assert sniff(line) is Opening.HTTP


# -- sniff: openings that are turned away ------------------------------------------


def client_hello() -> bytes:
    """The first flight of a real TLS client (Python's ssl, as curl or a browser would start)."""
    context = ssl.create_default_context()
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = context.wrap_bio(incoming, outgoing, server_hostname="localhost")
    with pytest.raises(ssl.SSLWantReadError):
        tls.do_handshake()
    return outgoing.read()


def test_a_tls_client_hello_is_tls_from_its_second_byte_however_it_is_split():
    hello = client_hello()
    assert hello[0] == 0x16
    assert sniff(hello[:1]) is Opening.UNDECIDED
    for end in range(2, len(hello) + 1):
        assert sniff(hello[:end]) is Opening.TLS, end


@pytest.mark.parametrize("version", [b"\x03\x00", b"\x03\x01", b"\x03\x03"])
def test_every_tls_record_version_is_tls(version):
    assert sniff(b"\x16" + version + b"\x02\x00\x01") is Opening.TLS


def test_a_control_character_not_followed_by_a_tls_version_is_raw():
    assert sniff(b"\x16hello\n") is Opening.RAW


def test_the_http2_preface_is_http2_once_whole_and_undecided_before():
    for end in range(len(HTTP2_PREFACE)):
        assert sniff(HTTP2_PREFACE[:end]) is Opening.UNDECIDED, HTTP2_PREFACE[:end]
    assert sniff(HTTP2_PREFACE) is Opening.HTTP2
    settings = b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"
    assert sniff(HTTP2_PREFACE + settings) is Opening.HTTP2  # as curl --http2-prior-knowledge sends it


def test_an_http1_request_with_the_method_pri_is_still_http():
    assert sniff(b"PRI * HTTP/2.0\r\nHost: x\r\n\r\n") is Opening.HTTP
    assert sniff(b"PRI / HTTP/1.1\r\n") is Opening.HTTP


def test_only_the_kinds_turned_away_have_an_explanation_and_farewell_bytes():
    assert Opening.TLS.explanation == "TLS on a plain port: use http:// or ws://, or put a TLS proxy in front"
    assert Opening.HTTP2.explanation == "HTTP/2 without TLS (prior knowledge): use HTTP/1.1"
    for served in (Opening.HTTP, Opening.RAW, Opening.UNDECIDED):
        assert served.explanation is None and farewell_bytes(served) == b""


def test_a_tls_client_fails_at_once_on_the_farewell_and_names_the_alert():
    context = ssl.create_default_context()
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = context.wrap_bio(incoming, outgoing, server_hostname="localhost")
    with pytest.raises(ssl.SSLWantReadError):
        tls.do_handshake()
    incoming.write(farewell_bytes(Opening.TLS))
    with pytest.raises(ssl.SSLError, match="(?i)alert protocol version"):
        tls.do_handshake()


def test_an_http2_client_gets_settings_then_goaway_asking_for_http1():
    farewell = farewell_bytes(Opening.HTTP2)
    frames = []
    while farewell:
        length, kind, flags, stream = struct.unpack("!3sBBI", farewell[:9])
        length = int.from_bytes(length, "big")
        frames.append((kind, flags, stream, farewell[9 : 9 + length]))
        farewell = farewell[9 + length :]
    assert [(kind, flags, stream) for kind, flags, stream, _ in frames] == [(0x4, 0, 0), (0x7, 0, 0)]
    assert frames[0][3] == b""  # an empty SETTINGS: the server's preface
    last_stream, error = struct.unpack("!II", frames[1][3][:8])
    assert (last_stream, error) == (0, 0xD)  # HTTP_1_1_REQUIRED
    assert frames[1][3][8:] == b"use HTTP/1.1"


def test_the_method_is_read_from_the_start_of_a_request():
    assert request_method(b"POST /upload HTTP/1.1\r\n") == "POST"
    assert request_method(b"GET") is None
    assert request_method(b"hello") is None


# -- route: which answer a request gets --------------------------------------------


def request(path="/", method="GET", **headers) -> SimpleNamespace:
    """A parsed request as websockets hands it over (its 17.x form, with the method)."""
    return SimpleNamespace(
        path=path,
        method=method,
        headers=Headers([(name.replace("_", "-"), value) for name, value in headers.items()]),
    )


PAGES = {"/": ("text/html", b"<p>hi</p>"), "/app.js": ("text/javascript", b"1")}


@pytest.mark.parametrize("path", ["/", "/app.js", "/?name=Alice"])
def test_a_get_of_a_page_file_gets_the_page(path):
    assert route(request(path), PAGES) is Route.PAGE


def test_a_get_of_ws_goes_on_to_the_websocket_handshake():
    assert route(request("/ws", Host="localhost:8080"), PAGES) is Route.WEBSOCKET
    assert route(request("/ws?v=2"), PAGES) is Route.WEBSOCKET


@pytest.mark.parametrize("path", ["/favicon.ico", "/ws/", "/index", "//", "/app.js/x"])
def test_any_other_path_is_not_found(path):
    assert route(request(path), PAGES) is Route.NOT_FOUND


@pytest.mark.parametrize("method", ["POST", "HEAD", "PUT", "DELETE", "OPTIONS"])
def test_other_methods_are_not_allowed(method):
    assert route(request("/", method), PAGES) is Route.METHOD_NOT_ALLOWED
    assert route(request("/ws", method), PAGES) is Route.METHOD_NOT_ALLOWED


def test_a_request_parsed_by_websockets_16_has_no_method_and_is_a_get():
    legacy = SimpleNamespace(path="/", headers=Headers())
    assert route(legacy, PAGES) is Route.PAGE


def test_a_websocket_from_another_sites_page_is_forbidden():
    assert route(request("/ws", Host="localhost:8080", Origin="https://evil.example"), PAGES) is Route.FORBIDDEN


def test_a_websocket_with_two_origins_is_forbidden():
    both = request("/ws", Host="chat.example")
    both.headers["Origin"] = "https://chat.example"
    both.headers["Origin"] = "https://chat.example"
    assert route(both, PAGES) is Route.FORBIDDEN


def test_the_origin_is_not_checked_for_the_page_itself():
    assert route(request("/", Host="chat.example", Origin="https://evil.example"), PAGES) is Route.PAGE


# -- refusal: requests the parser could not read -------------------------------------


def parser_error(cause: Exception) -> InvalidMessage:
    """The exception websockets' parser records for a request it cannot read."""
    error = InvalidMessage("did not receive a valid HTTP request")
    error.__cause__ = cause
    return error


def test_a_request_refused_for_its_size_gets_431():
    assert refusal(parser_error(SecurityError("line too long")), b"GET / HTTP/1.1\r\n") is Route.HEAD_TOO_LARGE
    assert refusal(SecurityError("too many HTTP headers"), b"GET / HTTP/1.1\r\n") is Route.HEAD_TOO_LARGE


def test_a_refused_request_with_another_method_than_get_gets_405():
    refused = parser_error(ValueError("unsupported HTTP method; expected GET; got POST"))
    assert refusal(refused, b"POST / HTTP/1.1\r\n") is Route.METHOD_NOT_ALLOWED


@pytest.mark.parametrize("head", [b"GET / HTTP/1.1\r\nbroken\r\n", b"GET", b"\x16\x03\x01"])
def test_any_other_refused_request_gets_400(head):
    assert refusal(parser_error(ValueError("invalid HTTP header line")), head) is Route.BAD_REQUEST


# -- origin_allowed and server_names: whose pages may open a WebSocket ---------------------

CODESPACE = {"CODESPACE_NAME": "fluffy-robot-5g9x7qv6", "GITHUB_CODESPACES_PORT_FORWARDING_DOMAIN": "app.github.dev"}
CODESPACE_HOST = "fluffy-robot-5g9x7qv6-8080.app.github.dev"
# A server on the LAN at 192.168.1.20:8080, in a Codespace, on a machine called
# "studio", with one allowed origin: every kind of name at once.
NAMES = server_names(("192.168.1.20", 8080), ["https://chat.example.org"], CODESPACE, hostname="studio")


@pytest.mark.parametrize(
    "origin",
    [
        None,  # not a browser, or a proxy dropped it
        "http://localhost:8080",
        "http://localhost:5173",  # a page opened on this machine, whatever its port
        "http://127.0.0.1:8080",
        "http://[::1]:8080",
        "http://192.168.1.20:8080",  # our own page, opened by the address the browser connected to
        "http://studio:8080",
        "http://studio.local:8080",  # the machine's mDNS name
        "http://Studio.Local:8080",  # host names ignore case
        f"https://{CODESPACE_HOST}",  # the Codespace's forwarded port
        f"https://{CODESPACE_HOST}:443",
        "https://chat.example.org",  # --allowed-origin
        "http://chat.example.org:8080",  # ports and schemes are not compared
    ],
)
def test_origins_naming_this_server_are_allowed(origin):
    assert origin_allowed(origin, NAMES)


@pytest.mark.parametrize(
    "origin",
    [
        "http://evil.example:8080",  # DNS rebinding: the Host header says the same
        "https://evil.example",
        "https://localhost.evil.example",
        "https://app.github.dev",  # a parent domain is not the host
        "https://other-robot-8080.app.github.dev",  # another Codespace
        "https://fluffy-robot-5g9x7qv6-3000.app.github.dev",  # another port of this one, served by something else
        "https://example.org",
        "http://192.168.1.21:8080",  # another machine on the LAN
        "null",  # a page opened from a file
        "http://[::1",  # not a URL at all
        "",
    ],
)
def test_any_other_origin_is_refused(origin):
    assert not origin_allowed(origin, NAMES)


def test_a_dns_rebinding_page_is_refused_although_the_host_header_names_it_too():
    rebound = request("/ws", Host="evil.example:8080", Origin="http://evil.example:8080")
    assert route(rebound, PAGES, NAMES) is Route.FORBIDDEN
    assert route(rebound, PAGES) is Route.FORBIDDEN  # the names known without a connection
    forwarded = request("/ws", Host="evil.example:8080", X_Forwarded_Host="evil.example", Origin="http://evil.example")
    assert route(forwarded, PAGES, NAMES) is Route.FORBIDDEN


@pytest.mark.parametrize("origin", ["http://127.0.0.1:41234", "http://localhost:41234", "http://[::1]:41234"])
def test_without_a_connections_address_the_localhost_names_are_still_ours(origin):
    """The page tests' Chromium opens http://127.0.0.1:PORT/ or http://localhost:PORT/."""
    assert route(request("/ws", Host="127.0.0.1:41234", Origin=origin), PAGES) is Route.WEBSOCKET
    assert "localhost" in server_names(hostname="studio")


def test_a_lan_address_is_ours_only_as_the_address_the_connection_arrived_at():
    lan_page = request("/ws", Host="192.168.1.20:8080", Origin="http://192.168.1.20:8080")
    assert route(lan_page, PAGES, server_names(("192.168.1.20", 8080), hostname="studio")) is Route.WEBSOCKET
    assert route(lan_page, PAGES, server_names(("10.0.0.5", 8080), hostname="studio")) is Route.FORBIDDEN


@pytest.mark.parametrize(
    "local_address, name",
    [
        (("192.168.1.20", 8080), "192.168.1.20"),
        (("::ffff:192.168.1.20", 8080, 0, 0), "192.168.1.20"),  # IPv4 through a dual-stack socket
        (("2001:db8::20", 8080, 0, 0), "2001:db8::20"),
        (("fe80::1%eth0", 8080, 0, 2), "fe80::1"),  # a link-local address without its zone
    ],
)
def test_the_local_address_is_named_as_an_origin_shows_it(local_address, name):
    assert name in server_names(local_address, hostname="studio")


def test_the_machines_name_counts_with_and_without_local():
    assert {"studio.lan", "studio.local"} <= server_names(hostname="Studio.lan.")
    assert {"studio", "studio.local"} <= server_names(hostname="studio")
    assert server_names(hostname="studio") == LOCAL_HOSTS | {"studio", "studio.local"}


def test_the_codespaces_forwarded_host_is_ours_for_the_port_the_connection_arrived_at():
    assert CODESPACE_HOST in server_names(("127.0.0.1", 8080), environ=CODESPACE, hostname="studio")
    assert CODESPACE_HOST not in server_names(("127.0.0.1", 9000), environ=CODESPACE, hostname="studio")
    assert CODESPACE_HOST not in server_names(("127.0.0.1", 8080), environ={}, hostname="studio")


@pytest.mark.parametrize(
    "allowed, host",
    [
        ("https://chat.example.org", "chat.example.org"),
        ("https://Chat.Example.org:8443/", "chat.example.org"),
        ("chat.example.org", "chat.example.org"),
        ("chat.example.org:8080", "chat.example.org"),
        ("  chat.example.org ", "chat.example.org"),
        ("http://[2001:db8::1]:8080", "2001:db8::1"),
        ("[2001:db8::1]", "2001:db8::1"),
        ("203.0.113.5", "203.0.113.5"),
        ("https://bücher.example", "xn--bcher-kva.example"),  # as a browser sends it
    ],
)
def test_an_allowed_origin_may_be_a_full_origin_or_a_host(allowed, host):
    assert origin_host(allowed) == host
    assert host in server_names(allowed_origins=[allowed], hostname="studio")


@pytest.mark.parametrize(
    "allowed",
    ["", "null", "https://", "https://chat.example.org/chat", "chat.example.org:http", "user@chat.example.org",
     "*.example.org", "http://[::1", "chat example", "https://chat.example.org?x=1"],
)
def test_an_allowed_origin_that_names_no_host_is_refused_with_a_reason(allowed):
    with pytest.raises(ValueError, match="is not an origin"):
        origin_host(allowed)


# -- the responses -----------------------------------------------------------------------


def test_the_page_response_carries_the_file_and_a_strict_content_security_policy():
    response = page_response("text/html; charset=utf-8", b"<p>hi</p>")
    assert (response.status_code, response.body) == (200, b"<p>hi</p>")
    assert response.headers["Content-Type"] == "text/html; charset=utf-8"
    assert response.headers["Content-Length"] == "9"
    assert response.headers["Content-Security-Policy"] == CONTENT_SECURITY_POLICY
    assert "connect-src 'self'" in CONTENT_SECURITY_POLICY
    assert response.headers["X-Content-Type-Options"] == "nosniff"


@pytest.mark.parametrize(
    "decision, status",
    [
        (Route.BAD_REQUEST, 400),
        (Route.FORBIDDEN, 403),
        (Route.NOT_FOUND, 404),
        (Route.METHOD_NOT_ALLOWED, 405),
        (Route.HEAD_TOO_LARGE, 431),
    ],
)
def test_each_error_has_its_status_a_plain_text_reason_and_closes(decision, status):
    response = error_response(decision)
    assert response.status_code == status
    assert response.body.startswith(f"{status} ".encode())
    assert response.headers["Content-Type"] == "text/plain; charset=utf-8"
    assert response.headers["Content-Length"] == str(len(response.body))
    assert response.headers["Connection"] == "close"


def test_method_not_allowed_says_which_method_is():
    assert error_response(Route.METHOD_NOT_ALLOWED).headers["Allow"] == "GET"


def test_answer_gives_the_page_an_error_or_nothing_for_a_websocket():
    assert answer(request("/"), page_files()).body == page_files()["/"].body
    assert answer(request("/nope"), page_files()).status_code == 404
    assert answer(request("/ws"), page_files()) is None
