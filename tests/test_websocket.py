"""The WebSocket adapter, driven by websockets' own sans-I/O client: no sockets, no server.

The client side is the library's ``ClientProtocol``, an implementation of
RFC 6455 independent of the adapter's, so every byte the adapter writes is
checked by a parser that would reject a malformed frame.
"""

import logging
import socket
import threading

import pytest
from websockets import ClientProtocol, CloseCode, Frame, Opcode, Response
from websockets.sync.client import connect
from websockets.uri import parse_uri

from chat.config import Timings
from chat.core.framing import LineTooLong
from chat.transports.handshake import Opening, server_names, sniff
from chat.transports.websocket import (
    DEFAULT_MAX_FRAME_RATE,
    EXCESS_FLOOD_REASON,
    FEED_SLICE_BYTES,
    WebSocketAdapter,
    WebSocketTransport,
)
from chat.web import page_files
from tests.helpers import TIMEOUT_S


class Browser:
    """A WebSocket client (websockets' ClientProtocol) wired straight to an adapter."""

    def __init__(self, path: str = "/ws", origin: "str | None" = None, write=None, host: str = "localhost:8080", **options) -> None:
        self.written: "list[bytes]" = []  # what the adapter wrote, call by call

        def record(data: bytes):
            self.written.append(data)
            return write(data) if write else None

        self.adapter = WebSocketAdapter(record, **options)
        self.protocol = ClientProtocol(parse_uri(f"ws://{host}{path}"), origin=origin)
        self.protocol.send_request(self.protocol.connect())
        self._read_up_to = 0

    def send(self, data: "bytes | None" = None):
        """Hand the adapter what the client has queued (or ``data``); return what it received."""
        if data is None:
            data = b"".join(self.protocol.data_to_send())
        return self.adapter.receive_data(data)

    def events(self) -> list:
        """Feed the client what the adapter wrote since last time; return the client's events."""
        new = b"".join(self.written[self._read_up_to :])
        self._read_up_to = len(self.written)
        self.protocol.receive_data(new)
        return self.protocol.events_received()

    def open(self) -> "Browser":
        received = self.send()
        assert received.opened and received.status == 101 and not received.closing
        [response] = self.events()
        assert response.status_code == 101
        return self

    def takes_lines(self) -> bool:
        """Whether the adapter would send a chat line now (it is open: after the handshake, before any close)."""
        return self.adapter.send_lines(b"", write=lambda _frames: True) is not None

    def text(self, text: str) -> list:
        """Send one text message; return the lines the adapter got from it."""
        self.protocol.send_text(text.encode())
        return self.send().lines

    def fragments(self, *parts: bytes) -> list:
        """Send one text message in fragments; return the lines the adapter got from it."""
        lines = []
        for index, part in enumerate(parts):
            fin = index == len(parts) - 1
            if index == 0:
                self.protocol.send_text(part, fin=fin)
            else:
                self.protocol.send_continuation(part, fin=fin)
            lines += self.send().lines
        return lines

    def close_code_received(self) -> "int | None":
        self.events()
        return self.protocol.close_rcvd.code if self.protocol.close_rcvd else None


def http_exchange(request: bytes) -> "tuple[object, bytes]":
    written = []
    received = WebSocketAdapter(written.append).receive_data(request)
    return received, b"".join(written)


# -- the handshake -----------------------------------------------------------------


def test_the_handshake_opens_a_websocket_the_client_accepts():
    browser = Browser().open()
    assert browser.takes_lines()
    assert browser.protocol.state.name == "OPEN"


def test_a_handshake_fed_one_byte_at_a_time_opens_all_the_same():
    browser = Browser()
    request = b"".join(browser.protocol.data_to_send())
    results = [browser.send(request[i : i + 1]) for i in range(len(request))]
    assert [r.opened for r in results] == [False] * (len(request) - 1) + [True]
    assert browser.events()[0].status_code == 101


def test_a_handshake_from_our_own_page_is_accepted():
    Browser(origin="http://localhost:8080").open()


def test_a_handshake_from_another_sites_page_is_refused_with_403():
    browser = Browser(origin="https://evil.example")
    received = browser.send()
    assert (received.opened, received.status, received.closing) == (False, 403, True)


def test_a_handshake_from_a_dns_rebinding_page_is_refused_with_403():
    browser = Browser(origin="http://evil.example:8080", host="evil.example:8080")
    assert browser.send().status == 403


def test_a_page_opened_by_the_servers_lan_address_may_connect_when_the_adapter_knows_that_address():
    lan = {"origin": "http://192.168.1.20:8080", "host": "192.168.1.20:8080"}
    Browser(**lan, server_names=server_names(("192.168.1.20", 8080))).open()
    assert Browser(**lan).send().status == 403  # by default, only the names known without a connection


def test_a_get_of_ws_without_upgrade_gets_426():
    received, response = http_exchange(b"GET /ws HTTP/1.1\r\nHost: localhost\r\n\r\n")
    assert received.status == 426 and received.closing
    assert response.startswith(b"HTTP/1.1 426 ")


# -- plain HTTP: the page and the errors ---------------------------------------------


@pytest.mark.parametrize("path", ["/", "/app.js", "/style.css"])
def test_get_of_a_page_file_sends_it_whole_and_ends_the_connection(path):
    received, response = http_exchange(b"GET %s HTTP/1.1\r\nHost: localhost:8080\r\n\r\n" % path.encode())
    head, _, body = response.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK\r\n")
    assert b"\r\nContent-Type: " + page_files()[path].content_type.encode() in head
    assert body == page_files()[path].body
    assert (received.status, received.closing, received.opened) == (200, True, False)


@pytest.mark.parametrize(
    "request_bytes, status",
    [
        (b"GET /favicon.ico HTTP/1.1\r\n\r\n", 404),
        (b"POST / HTTP/1.1\r\nHost: x\r\n\r\n", 405),
        (b"POST /ws HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello", 405),
        (b"DELETE /ws HTTP/1.1\r\n\r\n", 405),
        (b"GET / HTTP/1.1\r\nthis is no header\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", 400),
        (b"GET / HTTP/2.0\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nX-Long: " + b"a" * 9000 + b"\r\n\r\n", 431),
        (b"GET / HTTP/1.1\r\n" + b"X-Many: 1\r\n" * 200 + b"\r\n", 431),
    ],
)
def test_requests_that_are_not_served_get_their_http_error_and_the_connection_ends(request_bytes, status):
    received, response = http_exchange(request_bytes)
    assert response.startswith(b"HTTP/1.1 %d " % status)
    assert (received.status, received.closing) == (status, True)


def test_an_over_long_request_line_is_refused_by_the_parser_itself():
    received, response = http_exchange(b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\n\r\n")
    assert received.status in (414, 431)  # websockets 17 says 414, 16 says nothing and we say 431
    assert response.startswith(b"HTTP/1.1 %d " % received.status)


def test_a_head_cut_short_by_the_peer_ends_the_connection():
    written = []
    adapter = WebSocketAdapter(written.append)
    assert not adapter.receive_data(b"GET / HTTP/1.1\r\nHost: x\r\n").closing
    assert written == []
    assert adapter.receive_eof().closing


def test_bytes_after_an_answer_are_ignored():
    written = []
    adapter = WebSocketAdapter(written.append)
    adapter.receive_data(b"GET /nope HTTP/1.1\r\n\r\n")
    before = list(written)
    assert adapter.receive_data(b"GET / HTTP/1.1\r\n\r\n").lines == []
    assert written == before


TWO_REQUESTS = b"GET / HTTP/1.1\r\nHost: x\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n"


def test_two_requests_in_one_packet_get_one_answer_and_the_connection_ends():
    received, response = http_exchange(TWO_REQUESTS)
    assert (received.status, received.closing) == (200, True)
    assert response.count(b"HTTP/1.1 ") == 1
    assert response.endswith(page_files()["/"].body)


def test_two_requests_split_anywhere_get_one_answer():
    for cut in range(len(TWO_REQUESTS) + 1):
        written = []
        adapter = WebSocketAdapter(written.append)
        statuses = [adapter.receive_data(part).status for part in (TWO_REQUESTS[:cut], TWO_REQUESTS[cut:])]
        assert 200 in statuses, cut
        assert b"".join(written).count(b"HTTP/1.1 ") == 1, cut


@pytest.mark.parametrize("junk", [b"\x00\xff\xfe junk", b"\x81\x05hello", b"hello\r\n\r\n"])
def test_a_page_request_followed_by_junk_gets_its_page_and_the_end(junk):
    received, response = http_exchange(b"GET /app.js HTTP/1.1\r\nHost: x\r\n\r\n" + junk)
    assert (received.status, received.closing) == (200, True)
    assert response.count(b"HTTP/1.1 ") == 1 and response.endswith(page_files()["/app.js"].body)


def test_a_websocket_handshake_followed_by_another_request_opens_then_fails_with_1002():
    browser = Browser()
    received = browser.send(b"".join(browser.protocol.data_to_send()) + b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert (received.status, received.opened, received.closing) == (101, True, True)
    assert browser.close_code_received() == CloseCode.PROTOCOL_ERROR  # a request is no frame


def test_frames_sent_right_behind_the_handshake_are_read_as_lines():
    browser = Browser()
    handshake = b"".join(browser.protocol.data_to_send())
    received = browser.send(handshake + Frame(Opcode.TEXT, b"hello").serialize(mask=True))
    assert received.opened and received.lines == [b"hello"]


# -- lines in, from text messages ------------------------------------------------------


def test_one_text_message_is_one_line():
    assert Browser().open().text("hello") == [b"hello"]


def test_a_message_holding_newlines_is_several_lines():
    assert Browser().open().text("one\ntwo\r\nthree") == [b"one", b"two\r", b"three"]


def test_a_final_newline_ends_the_last_line_and_starts_no_other():
    assert Browser().open().text("one\n") == [b"one"]


def test_an_empty_message_is_a_blank_line():
    assert Browser().open().text("") == [b""]


def test_consecutive_messages_never_run_together():
    browser = Browser().open()
    assert browser.text("ab") + browser.text("cd") == [b"ab", b"cd"]


def test_a_message_in_fragments_is_one_line_even_with_a_character_split_between_them():
    encoded = "caf\u00e9 \U0001f680\nnext".encode()
    browser = Browser().open()
    assert browser.fragments(encoded[:4], encoded[4:9], encoded[9:]) == [
        "caf\u00e9 \U0001f680".encode(),
        b"next",
    ]


def test_a_line_longer_than_the_limit_becomes_a_line_too_long_event_and_the_others_survive():
    browser = Browser(max_line_bytes=10).open()
    assert browser.text("short\n" + "x" * 11 + "\nafter") == [b"short", LineTooLong(10), b"after"]
    assert browser.text("y" * 11) == [LineTooLong(10)]
    assert browser.text("z" * 10) == [b"z" * 10]


def test_a_message_over_the_size_limit_closes_with_1009():
    browser = Browser(max_line_bytes=10, max_message_bytes=100).open()
    browser.protocol.send_text(b"a\n" * 51)
    received = browser.send()
    assert received.closing and received.lines == []
    assert browser.close_code_received() == CloseCode.MESSAGE_TOO_BIG
    assert not browser.takes_lines()


def test_the_default_size_limit_holds_sixteen_full_lines():
    browser = Browser(max_line_bytes=10).open()
    assert browser.text("\n".join(["x" * 10] * 16)) == [b"x" * 10] * 16
    browser.protocol.send_text(b"x" * 200)
    assert browser.send().closing
    assert browser.close_code_received() == CloseCode.MESSAGE_TOO_BIG


def test_a_binary_message_closes_with_1003():
    browser = Browser().open()
    browser.protocol.send_binary(b"\x00\x01")
    assert browser.send().closing
    assert browser.close_code_received() == CloseCode.UNSUPPORTED_DATA


def test_lines_that_came_before_a_binary_message_are_kept_and_nothing_after_it():
    browser = Browser().open()
    browser.protocol.send_text(b"first")
    browser.protocol.send_binary(b"\x00")
    browser.protocol.send_text(b"never")
    received = browser.send()
    assert received.lines == [b"first"] and received.closing


@pytest.mark.parametrize(
    "parts",
    [
        [b"caf\xe9"],  # Latin-1, not UTF-8
        [b"ok", b"\xff"],
        [b"half a rocket \xf0\x9f"],  # cut short at the end of the message
        [b"\xed\xa0\x80"],  # a surrogate, which UTF-8 may not encode
    ],
)
def test_a_text_message_that_is_not_utf8_closes_with_1007(parts):
    browser = Browser().open()
    browser.fragments(*parts)
    assert browser.close_code_received() == CloseCode.INVALID_DATA
    assert not browser.takes_lines()


# -- the protocol's own frames -----------------------------------------------------------


def test_a_ping_from_the_client_is_answered_with_a_pong():
    browser = Browser().open()
    browser.protocol.send_ping(b"are you there")
    assert browser.send().lines == []
    [pong] = browser.events()
    assert (pong.opcode, pong.data) == (Opcode.PONG, b"are you there")


def test_the_clients_close_is_answered_and_the_connection_ends():
    browser = Browser().open()
    browser.protocol.send_close(CloseCode.NORMAL_CLOSURE, "bye")
    received = browser.send()
    assert received.closing
    assert browser.close_code_received() == CloseCode.NORMAL_CLOSURE
    assert not browser.takes_lines()


def test_a_peer_that_vanishes_ends_the_connection():
    browser = Browser().open()
    assert browser.adapter.receive_eof().closing


# -- the frame budget: every frame counts, control frames and empty ones included --------------

FRAMES_AT_ONCE = int(6 * DEFAULT_MAX_FRAME_RATE)  # a burst, and two more before it is a flood
PING = Frame(Opcode.PING, b"").serialize(mask=True)
EMPTY_CONTINUATION = Frame(Opcode.CONT, b"", fin=False).serialize(mask=True)


def frames_of(browser: Browser, opcode: Opcode) -> int:
    return sum(1 for event in browser.events() if isinstance(event, Frame) and event.opcode is opcode)


def excess_flood_logs(caplog) -> int:
    return sum("excess flood" in record.getMessage() for record in caplog.records)


@pytest.mark.parametrize("kind", ["pings", "empty continuations"])
def test_frames_sent_without_pause_are_an_excess_flood_closed_with_1008_and_logged_once(kind, clock, caplog):
    browser = Browser(clock=clock).open()
    if kind == "pings":
        flood = PING * 10_000
    else:
        browser.protocol.send_text(b"a message that never ends", fin=False)
        flood = b"".join(browser.protocol.data_to_send()) + EMPTY_CONTINUATION * 10_000
    with caplog.at_level(logging.WARNING, logger="chat.transports.websocket"):
        received = browser.send(flood)
        assert (received.closing, received.excess_flood, received.lines) == (True, True, [])
        assert browser.close_code_received() == CloseCode.POLICY_VIOLATION
        assert browser.protocol.close_rcvd.reason == EXCESS_FLOOD_REASON
        assert not browser.takes_lines()
        assert not browser.send(PING * 1000).excess_flood  # nothing more is read
    assert excess_flood_logs(caplog) == 1


def test_parsing_stops_soon_after_the_budget_is_spent_not_at_the_end_of_the_read():
    browser = Browser().open()
    browser.send(PING * 10_000)  # 60 kB: one recv's worth
    pongs = frames_of(browser, Opcode.PONG)
    assert FRAMES_AT_ONCE <= pongs <= FRAMES_AT_ONCE + FEED_SLICE_BYTES // len(PING) + 1
    assert pongs < 2 * FRAMES_AT_ONCE  # the slices are small: parsing stops near the budget, not at 10 000
    assert browser.protocol.close_rcvd.code == CloseCode.POLICY_VIOLATION


def test_a_paste_sent_one_frame_a_line_is_no_flood_up_to_six_times_the_rate_at_once(clock):
    browser = Browser(clock=clock).open()
    line = Frame(Opcode.TEXT, b"pasted").serialize(mask=True)
    received = browser.send(line * FRAMES_AT_ONCE)
    assert received.lines == [b"pasted"] * FRAMES_AT_ONCE  # the chat's flood control judges them
    assert not received.closing
    assert browser.send(PING).excess_flood


def test_the_budget_comes_back_with_time(clock):
    browser = Browser(clock=clock).open()
    assert not browser.send(PING * FRAMES_AT_ONCE).closing
    clock.advance(6.0)  # a burst back in two seconds, two bursts forgiven in four
    assert not browser.send(PING * FRAMES_AT_ONCE).closing


def test_a_client_within_the_rate_is_never_closed(clock):
    browser = Browser(clock=clock).open()
    for _ in range(300):  # a minute at the rate, in steps of a fifth of a second
        clock.advance(0.2)
        assert not browser.send(PING * int(DEFAULT_MAX_FRAME_RATE / 5)).closing


def test_a_client_at_ten_times_the_rate_is_closed_within_a_second(clock):
    browser = Browser(clock=clock).open()
    step, sent_for = 0.05, 0.0
    while not browser.send(PING * int(10 * DEFAULT_MAX_FRAME_RATE * step)).closing:
        clock.advance(step)
        sent_for += step
        assert sent_for < 1.0
    assert sent_for > 0.2  # a burst first, as for anyone


def test_a_frame_rate_of_zero_is_no_limit():
    browser = Browser(max_frame_rate=0).open()
    assert not browser.send(PING * 3 * FRAMES_AT_ONCE).closing
    assert frames_of(browser, Opcode.PONG) == 3 * FRAMES_AT_ONCE


# -- lines out -----------------------------------------------------------------------------


def text_frames(browser: Browser) -> "list[str]":
    return [event.data.decode() for event in browser.events() if isinstance(event, Frame) and event.opcode is Opcode.TEXT]


def test_a_line_from_the_room_becomes_one_text_frame_without_its_newline():
    browser = Browser().open()
    browser.adapter.send_lines("Alice: héllo 🚀\n".encode())
    browser.adapter.send_lines(b"[SYSTEM] Bob joined the chat!\nCat: two at once\n")
    assert text_frames(browser) == ["Alice: héllo 🚀", "[SYSTEM] Bob joined the chat!", "Cat: two at once"]


def test_send_lines_returns_what_write_returned_and_may_use_another_writer():
    browser = Browser(write=lambda data: "flush needed").open()
    assert browser.adapter.send_lines(b"a\n") == "flush needed"
    elsewhere = []
    assert browser.adapter.send_lines(b"b\n", write=lambda data: elsewhere.append(data) or "offered") == "offered"
    assert len(elsewhere) == 1 and elsewhere[0].endswith(b"b")


def test_no_line_is_sent_before_the_handshake_or_after_the_close():
    browser = Browser()
    assert browser.adapter.send_lines(b"too early\n") is None
    assert browser.written == []
    browser.open()
    browser.protocol.send_close(CloseCode.NORMAL_CLOSURE)
    browser.send()
    count = len(browser.written)
    assert browser.adapter.send_lines(b"too late\n") is None
    assert len(browser.written) == count


def test_a_ping_goes_out_and_a_second_one_reports_the_peer_gone_unless_it_answered():
    browser = Browser().open()
    assert browser.adapter.ping()
    [ping] = browser.events()
    assert ping.opcode is Opcode.PING
    assert not browser.adapter.ping()  # no word since the last ping
    browser.send()  # the client's automatic pong
    assert browser.adapter.ping()


def test_any_message_from_the_peer_counts_as_an_answer_to_a_ping():
    browser = Browser().open()
    assert browser.adapter.ping()
    browser.text("still here")
    assert browser.adapter.ping()


def test_no_ping_before_the_handshake():
    assert not Browser().adapter.ping()


def test_closing_from_our_side_sends_a_close_frame_after_the_lines_before_it():
    browser = Browser().open()
    browser.adapter.send_lines(b"last words\n")
    assert browser.adapter.close(CloseCode.GOING_AWAY, "server shutting down")
    assert not browser.adapter.close()  # only once
    assert text_frames(browser) == ["last words"]
    assert browser.protocol.close_rcvd.code == CloseCode.GOING_AWAY
    received = browser.send()  # the client's close frame, in reply
    assert received.closing


def test_a_text_frame_never_follows_the_close_frame_whatever_the_threads_do():
    browser = Browser().open()
    writes = browser.written
    start = threading.Barrier(5)

    def broadcast() -> None:
        start.wait(TIMEOUT_S)
        for i in range(300):
            browser.adapter.send_lines(b"line %d\n" % i)

    threads = [threading.Thread(target=broadcast) for _ in range(4)]
    for thread in threads:
        thread.start()
    start.wait(TIMEOUT_S)
    browser.protocol.send_close(CloseCode.NORMAL_CLOSURE)
    browser.send()
    for thread in threads:
        thread.join(TIMEOUT_S)
    # Each write is whole frames; 0x88 starts a close frame, 0x81 a text frame.
    close_at = next(i for i, chunk in enumerate(writes) if chunk[0] == 0x88)
    assert not [chunk for chunk in writes[close_at + 1 :] if chunk[0] == 0x81]


# -- over a real socket, with websockets' threaded client ---------------------------------


def serve_one_echo(listener: socket.socket) -> None:
    """Serve one connection with the adapter, upper-casing each line back: a minimal reader thread."""
    sock, _ = listener.accept()
    with sock:
        first = sock.recv(65536)
        assert sniff(first) is Opening.HTTP
        adapter = WebSocketAdapter(sock.sendall)  # one thread only: a blocking write is fine here
        received = adapter.receive_data(first)
        while not received.closing:
            data = sock.recv(65536)
            received = adapter.receive_data(data) if data else adapter.receive_eof()
            for line in received.lines:
                adapter.send_lines(line.upper() + b"\n")
        sock.shutdown(socket.SHUT_WR)
        sock.settimeout(TIMEOUT_S)
        while sock.recv(65536):
            pass


def test_websockets_own_client_chats_with_the_adapter_over_a_socket_and_closes_cleanly():
    with socket.create_server(("127.0.0.1", 0)) as listener:
        server = threading.Thread(target=serve_one_echo, args=(listener,))
        server.start()
        port = listener.getsockname()[1]
        with connect(f"ws://127.0.0.1:{port}/ws", open_timeout=TIMEOUT_S) as ws:
            ws.send("hello\nthere")
            assert [ws.recv(TIMEOUT_S), ws.recv(TIMEOUT_S)] == ["HELLO", "THERE"]
        server.join(TIMEOUT_S)
        assert not server.is_alive()
        assert ws.protocol.close_code == CloseCode.NORMAL_CLOSURE
        assert isinstance(ws.response, Response) and ws.response.status_code == 101


# -- the transport: pings at the stated cadence -------------------------------------------


class FakeOutbox:
    def flush(self) -> None:
        pass

    def wait_until_below(self, max_backlog: int, timeout: float) -> bool:
        return True


def pings(browser: Browser) -> int:
    return sum(1 for event in browser.events() if isinstance(event, Frame) and event.opcode is Opcode.PING)


def test_a_silent_client_is_pinged_after_twenty_seconds_and_is_gone_if_it_never_answers():
    browser = Browser().open()
    interval = Timings().ping_interval_s
    transport = WebSocketTransport(browser.adapter, FakeOutbox(), 1 << 20, interval, now=0.0)
    assert interval == 20.0  # proxies drop connections idle for about a minute
    assert transport.seconds_until_due(19.9) > 0
    assert transport.seconds_until_due(20.0) == 0
    assert transport.on_due(20.0) and pings(browser) == 1
    assert transport.seconds_until_due(39.9) > 0
    assert not transport.on_due(40.0)  # no word since the ping: gone


def test_a_client_that_answers_its_pings_is_pinged_again_and_stays():
    browser = Browser().open()
    transport = WebSocketTransport(browser.adapter, FakeOutbox(), 1 << 20, Timings().ping_interval_s, now=0.0)
    assert transport.on_due(20.0) and pings(browser) == 1  # the client's protocol queues its pong
    transport.feed(b"".join(browser.protocol.data_to_send()), now=21.0)
    assert transport.seconds_until_due(40.9) > 0  # twenty seconds from its last word
    assert transport.on_due(41.0) and pings(browser) == 1


def test_the_transport_counts_frames_at_the_time_it_is_given(clock):
    browser = Browser(clock=clock).open()  # the adapter's own clock stands still
    transport = WebSocketTransport(browser.adapter, FakeOutbox(), 1 << 20, Timings().ping_interval_s, now=clock.now)
    assert not transport.feed(PING * FRAMES_AT_ONCE, now=clock.now)[1]
    assert not transport.feed(PING * FRAMES_AT_ONCE, now=clock.now + 60.0)[1]  # a minute later: all forgiven
    assert transport.feed(PING, now=clock.now + 60.0)[1]  # one more at that moment is one too many
