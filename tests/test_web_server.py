"""The real server on one port for raw, HTTP and WebSocket clients alike.

WebSocket clients here are the ``websockets`` library's own synchronous
client, or, where a test needs a client that misbehaves, a raw socket that
speaks just enough of the protocol.
"""

import base64
import contextlib
import http.client
import logging
import os
import socket
import struct
import time
from dataclasses import replace

import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

from chat.admission import TrustedProxies, address_in
from chat.transports.handshake import Opening
from chat.transports.websocket import text_frames
from tests.helpers import FAST, TIMEOUT_S, Peer, wait_until


def ws_url(server) -> str:
    host, port = server.address
    return f"ws://{host}:{port}/ws"


@pytest.fixture(autouse=True)
def _close_web_clients():
    yield
    _open_clients.close()


_open_clients = contextlib.ExitStack()


def open_web_client(server, **options):
    """A WebSocket client, closed at the end of the test."""
    return _open_clients.enter_context(connect(ws_url(server), open_timeout=TIMEOUT_S, **options))


def web_client(server, name=None, **options):
    """A WebSocket client, joined under ``name`` (its welcome line read)."""
    client = open_web_client(server, **options)
    if name:
        client.send(f"/nick {name}")
    welcome = client.recv(timeout=TIMEOUT_S)
    assert welcome.startswith("[SYSTEM] Welcome, ")
    return client


def receive_until(client, wanted: str) -> "list[str]":
    lines = []
    while not lines or lines[-1] != wanted:
        lines.append(client.recv(timeout=TIMEOUT_S))
    return lines


def http_get(server, path: str, method: str = "GET", headers=None) -> "tuple[int, str, bytes]":
    client = http.client.HTTPConnection(*server.address, timeout=TIMEOUT_S)
    try:
        client.request(method, path, headers=headers or {})
        response = client.getresponse()
        return response.status, response.getheader("Content-Type", ""), response.read()
    finally:
        client.close()


def raw_exchange(server, data: bytes) -> bytes:
    """Send ``data`` on a fresh connection and read everything until the server closes."""
    with socket.create_connection(server.address, timeout=TIMEOUT_S) as sock:
        sock.sendall(data)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
        return b"".join(chunks)


# -- HTTP on the chat port ------------------------------------------------------


def test_the_page_and_its_files_are_served_on_the_chat_port(server):
    status, content_type, body = http_get(server, "/")
    assert status == 200 and content_type.startswith("text/html") and b"<html" in body.lower()
    for path in ("/app.js", "/style.css"):
        status, _, body = http_get(server, path)
        assert status == 200 and body


@pytest.mark.parametrize(
    "path, method, status",
    [("/nothing-here", "GET", 404), ("/", "POST", 405), ("/", "DELETE", 405)],
)
def test_other_requests_get_a_proper_http_error(server, path, method, status):
    assert http_get(server, path, method)[0] == status


def test_a_malformed_or_over_long_head_gets_400_or_431(server):
    assert raw_exchange(server, b"GET / HTTP/1.1\r\nno colon here\r\n\r\n").startswith(b"HTTP/1.1 400 ")
    huge = b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 20_000 + b"\r\n\r\n"
    assert raw_exchange(server, huge).startswith(b"HTTP/1.1 431 ")


def test_a_client_that_starts_an_http_head_and_stalls_is_closed(start_server):
    server = start_server(timings=replace(FAST, opening_wait_s=0.5))
    started = time.monotonic()
    assert raw_exchange(server, b"GET / HTTP/1.1\r\nHost: x\r\n") == b""
    assert time.monotonic() - started < TIMEOUT_S


def test_a_raw_client_is_served_as_before_and_a_silent_one_still_joins(server):
    ann = Peer.joined(server.address, "Ann")
    quiet = Peer(server.address)
    port = quiet.sock.getsockname()[1]
    ann.expect(f"[SYSTEM] User_{port} joined the chat!", timeout=3)


# -- one room for every kind of client --------------------------------------------


def test_raw_and_websocket_clients_share_one_room_and_one_order(server):
    ann = Peer.joined(server.address, "Ann")
    web = web_client(server, "Web")
    ann.expect("[SYSTEM] Web joined the chat!")
    bob = Peer.joined(server.address, "Bob")
    ann.expect("[SYSTEM] Bob joined the chat!")
    assert web.recv(timeout=TIMEOUT_S) == "[SYSTEM] Bob joined the chat!"
    for n in range(10):  # within the flood limit
        ann.send(f"ann {n}")
        web.send(f"web {n}")
    web_heard = [web.recv(timeout=TIMEOUT_S) for _ in range(10)]
    bob_heard = [bob.read_line() for _ in range(20)]
    assert web_heard == [f"Ann: ann {n}" for n in range(10)]
    # Bob saw both senders, each in order, and Web's own view agrees with his on Ann's lines.
    assert [line for line in bob_heard if line.startswith("Ann:")] == web_heard
    assert [line for line in bob_heard if line.startswith("Web:")] == [f"Web: web {n}" for n in range(10)]
    web.send("/msg Ann psst")
    assert ann.expect(lambda line: line.startswith("[PM")) == "[PM from Web] psst"
    web.send("/users")
    assert receive_until(web, "[SYSTEM] Online (3): Ann, Bob, Web")
    web.close()
    assert ann.expect("[SYSTEM] Web left the chat.")


def test_a_message_holding_newlines_is_several_lines_each_counted_by_flood_control(server):
    ann = Peer.joined(server.address, "Ann")
    web = web_client(server, "Web")
    ann.expect("[SYSTEM] Web joined the chat!")
    web.send("\n".join(f"pasted {n}" for n in range(25)))
    assert [ann.read_line() for _ in range(20)] == [f"Web: pasted {n}" for n in range(20)]
    assert web.recv(timeout=TIMEOUT_S).startswith("[SYSTEM] You are sending too fast")
    assert web.recv(timeout=TIMEOUT_S) == "[SYSTEM] 5 lines were not sent."


def test_a_websocket_line_over_the_limit_is_refused_like_a_raw_one(start_server):
    server = start_server(max_line_bytes=100)
    web = web_client(server, "Web")
    web.send("x" * 101)
    assert web.recv(timeout=TIMEOUT_S) == "[SYSTEM] Line too long: the limit is 100 bytes. It was not sent."


def test_names_and_text_from_websocket_are_sanitized(server):
    ann = Peer.joined(server.address, "Ann")
    web = web_client(server, "Web")
    ann.expect(lambda line: line.endswith("joined the chat!"))
    web.send("\x1b[2Jhello \u202eworld")
    assert ann.read_line().endswith(": hello world")


def test_a_binary_message_is_closed_with_1003_and_a_huge_one_with_1009(start_server):
    server = start_server(max_line_bytes=100)
    for message, code in ((b"\x00\x01", 1003), ("y\n" * 5000, 1009)):
        web = web_client(server, f"Web{code}", max_size=None)
        web.send(message)
        with pytest.raises(ConnectionClosed) as closed:
            while True:
                web.recv(timeout=TIMEOUT_S)
        assert closed.value.rcvd.code == code


def test_a_full_server_still_serves_the_page_and_tells_each_kind_of_client_in_a_line(start_server):
    server = start_server(max_clients=1)
    Peer.joined(server.address, "Ann")
    status, _, _ = http_get(server, "/")
    assert status == 200  # a file of the page takes no seat
    web = open_web_client(server)
    assert web.recv(timeout=TIMEOUT_S) == "[SYSTEM] Server is full (1 user). Try again later."
    with pytest.raises(ConnectionClosed) as closed:
        web.recv(timeout=TIMEOUT_S)
    assert closed.value.rcvd is not None  # a proper close frame
    assert Peer(server.address).read_until_closed() == ["[SYSTEM] Server is full (1 user). Try again later."]


def test_shutdown_reaches_websocket_clients_with_its_notice_and_a_close_frame(start_server):
    server = start_server()
    web = web_client(server, "Web")
    assert server.shutdown(timeout=5)
    assert receive_until(web, "[SYSTEM] Server is shutting down.")
    with pytest.raises(ConnectionClosed) as closed:
        web.recv(timeout=TIMEOUT_S)
    assert closed.value.rcvd.code == 1001


# -- keeping WebSocket connections alive, and noticing when they are gone -----------


class SilentWebSocket:
    """A WebSocket client on a bare socket that never answers a ping: a vanished browser."""

    def __init__(self, address, name: str) -> None:
        self.sock = socket.create_connection(address, timeout=TIMEOUT_S)
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall(
            (
                "GET /ws HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
        )
        self.send_text(f"/nick {name}")

    def send_text(self, text: str) -> None:
        payload, mask = text.encode(), os.urandom(4)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        self.sock.sendall(struct.pack("!BB", 0x81, 0x80 | len(payload)) + mask + masked)

    def read_until_closed(self) -> bytes:
        data = b""
        while chunk := self.sock.recv(65536):
            data += chunk
        return data


def test_the_server_pings_and_drops_a_websocket_peer_that_never_answers(start_server):
    server = start_server(timings=replace(FAST, ping_interval_s=0.3))
    ann = Peer.joined(server.address, "Ann")
    silent = SilentWebSocket(server.address, "Silent")
    ann.expect("[SYSTEM] Silent joined the chat!")
    started = time.monotonic()
    ann.expect("[SYSTEM] Silent left the chat.", timeout=TIMEOUT_S)
    assert time.monotonic() - started >= 0.5  # one ping went unanswered before it was dropped
    assert b"\x89" in silent.read_until_closed()  # a ping frame was sent (opcode 0x9, unmasked)


def test_a_websocket_peer_that_answers_pings_stays(start_server):
    server = start_server(timings=replace(FAST, ping_interval_s=0.1))
    web = web_client(server, "Web")  # the websockets client answers pings by itself
    ann = Peer.joined(server.address, "Ann")
    assert web.recv(timeout=TIMEOUT_S) == "[SYSTEM] Ann joined the chat!"
    ann.assert_receives_nothing()  # three ping intervals and more
    ann.send("still there?")
    assert web.recv(timeout=TIMEOUT_S) == "Ann: still there?"


# -- behind a trusted proxy --------------------------------------------------


def test_clients_forwarded_by_a_trusted_proxy_count_by_their_own_address(start_server):
    server = start_server(max_per_address=1, trusted_proxies=("127.0.0.1",))
    forwarded_for = {"X-Forwarded-For": "203.0.113.7, 10.1.2.3"}
    web_client(server, "First", additional_headers=forwarded_for)
    second = open_web_client(server, additional_headers=forwarded_for)
    assert second.recv(timeout=TIMEOUT_S) == (
        "[SYSTEM] Too many connections from your address (limit: 1). Close one, or try again later."
    )
    with pytest.raises(ConnectionClosed) as closed:
        second.recv(timeout=TIMEOUT_S)
    assert closed.value.rcvd is not None  # a proper close frame, not a dropped connection
    web_client(server, "Other", additional_headers={"X-Forwarded-For": "10.9.9.9"})


def test_x_forwarded_for_from_a_peer_that_is_no_trusted_proxy_changes_nothing(start_server):
    # Before --trusted-proxy, any loopback peer was believed: 30 connections
    # claiming one address joined against a limit of 5 (each claim is ignored now,
    # and this machine's own connections are not counted per address).
    server = start_server(max_per_address=1, exempt_loopback=False)
    web_client(server, "First", additional_headers={"X-Forwarded-For": "203.0.113.7"})
    second = open_web_client(server, additional_headers={"X-Forwarded-For": "198.51.100.9"})
    assert second.recv(timeout=TIMEOUT_S) == (
        "[SYSTEM] Too many connections from your address (limit: 1). Close one, or try again later."
    )


# -- the room password -----------------------------------------------------------------


@pytest.fixture
def locked_server(start_server):
    # A wrong password makes the next check from its address wait PASSWORD_DELAY_S, then twice that...
    return start_server(
        password="open sesame", timings=replace(FAST, password_delay_s=PASSWORD_DELAY_S), trusted_proxies=("127.0.0.1",)
    )


PASSWORD_DELAY_S = 0.2


def test_with_the_right_password_every_kind_of_client_joins(locked_server, caplog):
    caplog.set_level(logging.INFO)
    peer = Peer(locked_server.address)
    peer.send("/pass open sesame")
    peer.send("/nick Ann")
    assert peer.read_line() == "[SYSTEM] Welcome, Ann! 0 other user(s) online. Type /help for commands."
    web = open_web_client(locked_server)
    web.send("/pass open sesame")
    web.send("/nick Web")
    assert web.recv(timeout=TIMEOUT_S).startswith("[SYSTEM] Welcome, Web! ")
    assert "open sesame" not in caplog.text


@pytest.mark.parametrize(
    "first_lines, reply",
    [
        (["/nick Ann"], "[SYSTEM] This chat needs a password: send /pass PASSWORD first."),
        ([], "[SYSTEM] This chat needs a password: send /pass PASSWORD first."),
        (["/pass guess"], "[ERROR] Wrong password."),
    ],
)
def test_a_missing_or_wrong_password_gets_one_line_and_the_door(locked_server, first_lines, reply, caplog):
    caplog.set_level(logging.INFO)
    peer = Peer(locked_server.address)
    for line in first_lines:
        peer.send(line)
    assert peer.read_until_closed() == [reply]
    assert locked_server.room.names() == []
    assert "guess" not in caplog.text


def test_guessing_passwords_is_slowed_down(locked_server):
    for _ in range(2):
        peer = Peer(locked_server.address)
        peer.send("/pass guess")
        assert peer.read_until_closed() == ["[ERROR] Wrong password."]
    started = time.monotonic()
    peer = Peer(locked_server.address)
    peer.send("/pass still guessing")
    assert peer.read_until_closed() == ["[ERROR] Wrong password."]
    # Two failures: the next check comes twice the first delay after the second, which was
    # before the clock started here; at least the first delay is certain to be left.
    assert time.monotonic() - started >= PASSWORD_DELAY_S


def test_lines_a_raw_client_sends_together_reach_a_websocket_client_one_message_each(server):
    web = web_client(server, "Web")
    ann = Peer.joined(server.address, "Ann")
    assert web.recv(timeout=TIMEOUT_S) == "[SYSTEM] Ann joined the chat!"
    ann.send_raw(b"one\ntwo\n/me waves\nthree\n")
    assert [web.recv(timeout=TIMEOUT_S) for _ in range(4)] == ["Ann: one", "Ann: two", "* Ann waves", "Ann: three"]


def test_a_broadcast_is_framed_once_for_every_websocket_member():
    data = b"Ann: one\nAnn: two\n"
    frames = text_frames(data)
    assert text_frames(data) is frames  # the same bytes object: framed once
    assert frames == b"\x81\x08Ann: one\x81\x08Ann: two"


def test_a_websocket_client_that_stops_reading_is_dropped_and_the_others_lose_nothing(start_server):
    server = start_server(max_rate=0, max_queue_bytes=64 * 1024)
    ann = Peer.joined(server.address, "Ann")
    stuck = SilentWebSocket(server.address, "Stuck")  # never reads a byte
    stuck.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    web = web_client(server, "Web")
    ann.expect("[SYSTEM] Web joined the chat!")
    line = "p" * 3000
    heard = []
    for n in range(300):  # 900 KB: past the kernel's buffers and the 64 KB bound
        ann.send(f"{n:03d} {line}")
        heard += receive_until(web, f"Ann: {n:03d} {line}")
    heard += [] if "[SYSTEM] Stuck left the chat." in heard else receive_until(web, "[SYSTEM] Stuck left the chat.")
    assert [h for h in heard if h.startswith("Ann: ")] == [f"Ann: {n:03d} {line}" for n in range(300)]


@pytest.mark.parametrize(
    "entry, address",
    [("203.0.113.7", "203.0.113.7"), (" 203.0.113.7:5678", "203.0.113.7"), ("[2001:db8::1]:80", "2001:db8::1"),
     ("2001:db8::1", "2001:db8::1"), ("unknown", None), ("_hidden", None), ("", None)],
)
def test_a_forwarded_entry_counts_only_if_it_is_an_address(entry, address):
    assert address_in(entry) == address


def test_x_forwarded_for_is_believed_only_from_a_trusted_proxy():
    # Anyone else could write any address there, and so get around every per-address limit.
    proxies = TrustedProxies(["127.0.0.1", "::1"])
    assert proxies.client_behind("203.0.113.9", ["198.51.100.1"]) is None
    assert proxies.client_behind("::ffff:203.0.113.9", ["198.51.100.1"]) is None
    assert proxies.client_behind("127.0.0.1", ["198.51.100.1"]) == "198.51.100.1"
    assert proxies.client_behind("::1", ["198.51.100.1"]) == "198.51.100.1"
    assert proxies.client_behind("127.0.0.1", []) is None


def test_without_a_trusted_proxy_x_forwarded_for_is_ignored_even_from_this_machine():
    assert TrustedProxies().client_behind("127.0.0.1", ["198.51.100.1"]) is None


def test_a_trusted_proxy_may_be_given_as_a_network():
    proxies = TrustedProxies(["10.0.0.0/8"])
    assert proxies.client_behind("10.1.2.3", ["198.51.100.1"]) == "198.51.100.1"
    assert proxies.client_behind("11.1.2.3", ["198.51.100.1"]) is None


def test_only_the_entry_the_proxy_added_counts_not_those_the_client_forged():
    # The proxy appends its own peer last: what comes before it came from the client.
    proxies = TrustedProxies(["127.0.0.1"])
    assert proxies.client_behind("127.0.0.1", ["10.9.9.9, 198.51.100.1"]) == "198.51.100.1"
    assert proxies.client_behind("127.0.0.1", ["10.9.9.9", "198.51.100.1"]) == "198.51.100.1"
    assert proxies.client_behind("127.0.0.1", ["198.51.100.1, garbage"]) is None


def test_behind_a_chain_of_trusted_proxies_the_first_entry_that_is_no_proxy_counts():
    proxies = TrustedProxies(["127.0.0.1", "10.0.0.0/8"])
    assert proxies.client_behind("127.0.0.1", ["203.0.113.5, 198.51.100.1, 10.0.0.7"]) == "198.51.100.1"


def test_behind_a_proxy_wrong_passwords_slow_down_that_client_only(locked_server):
    guesser = open_web_client(locked_server, additional_headers={"X-Forwarded-For": "203.0.113.7"})
    guesser.send("/pass guess")
    assert guesser.recv(timeout=TIMEOUT_S) == "[ERROR] Wrong password."
    started = time.monotonic()
    member = open_web_client(locked_server, additional_headers={"X-Forwarded-For": "198.51.100.2"})
    member.send("/pass open sesame")
    member.send("/nick Member")
    assert member.recv(timeout=TIMEOUT_S).startswith("[SYSTEM] Welcome, Member! ")
    assert time.monotonic() - started < 1.0  # not made to wait for the guesser's failure


def speaks_http(server) -> bool:
    with server._connections_lock:
        return any(connection.opening is Opening.HTTP for connection in server._connections)


def test_a_client_in_the_middle_of_an_http_request_gets_no_chat_line_at_shutdown(start_server):
    server = start_server()
    with socket.create_connection(server.address, timeout=TIMEOUT_S) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")  # the head is not finished
        # Once the server has read the request line, it knows the client speaks HTTP.
        assert wait_until(lambda: speaks_http(server))
        assert server.shutdown(timeout=5)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    assert b"[SYSTEM]" not in data


# -- which pages may connect ------------------------------------------------------------


def test_a_page_of_a_name_rebound_to_this_server_may_not_join_though_host_agrees(server):
    # DNS rebinding: evil.example now points here, so the browser sends Host and Origin alike.
    # Before: 101, and the other site's page was in the chat.
    with pytest.raises(InvalidStatus) as refused:
        open_web_client(server, origin="http://evil.example:8080", additional_headers={"Host": "evil.example:8080"})
    assert refused.value.response.status_code == 403


def test_a_page_served_under_an_allowed_origin_may_join(start_server):
    server = start_server(allowed_origins=("https://chat.example.org",))
    web_client(server, "Proxied", origin="https://chat.example.org")
    with pytest.raises(InvalidStatus):
        open_web_client(server, origin="https://other.example.org")
