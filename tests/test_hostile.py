"""Hostile and broken clients: each test checks that well-behaved clients got all
their messages, once, in order, and that the server still answers afterwards."""

import logging
import random
import socket
import ssl

import pytest

from chat.server import SEND_BUFFER_BYTES
from chat.sockets import KEEPALIVE_PROBES
from tests.crowd import Crowd
from tests.helpers import Peer, join_all, wait_until


def still_serving(server) -> None:
    probe = Peer.joined(server.address, "Probe")
    probe.send("/users")
    assert probe.expect(lambda line: line.startswith("[SYSTEM] Online ("))
    probe.send("/quit")
    probe.read_until_closed()


def test_an_over_long_line_is_refused_and_the_connection_stays_open(start_server):
    server = start_server(max_line_bytes=100)
    ann, bob = join_all(server.address, "Ann", "Bob")
    ann.send("x" * 101)
    ann.send("short")
    assert ann.read_line() == "[SYSTEM] Line too long: the limit is 100 bytes. It was not sent."
    assert bob.read_line() == "Ann: short"
    ann.send("y" * 100)
    assert bob.read_line() == "Ann: " + "y" * 100
    still_serving(server)


def test_a_client_that_never_sends_a_newline_cannot_fill_the_servers_memory(start_server):
    server = start_server(max_line_bytes=1000)
    ann, bob = join_all(server.address, "Ann", "Bob")
    for _ in range(2000):  # 2 MB without a newline
        ann.send_raw(b"z" * 1000)
    assert ann.read_line() == "[SYSTEM] Line too long: the limit is 1000 bytes. It was not sent."
    with server._connections_lock:
        connection = next(c for c in server._connections if c.name == "Ann")
    assert len(connection.transport._framer._partial) <= 1000  # what the server holds of the line
    ann.send_raw(b"\nback to normal\n")
    assert bob.read_line() == "Ann: back to normal"


def test_any_bytes_at_all_neither_kill_a_thread_nor_reach_a_terminal(server):
    ann, bob = join_all(server.address, "Ann", "Bob")
    rng = random.Random(1234)
    garbage = bytes(rng.randrange(256) for _ in range(20_000)).replace(b"\n", b"")
    hostile = [
        b"caf\xe9 \xff\xfe invalid utf-8",
        b"\x1b[2J\x1b[Hclear screen",
        b"\x1b]0;owned\x07title",
        b"\x1b]52;c;ZXZpbA==\x07clipboard",
        "\u009b31mC1 CSI".encode(),
        "bidi \u202eevil\u202c".encode(),
        b"nul\x00 bell\x07 del\x7f",
        garbage[:3000],
    ]
    for line in hostile:
        ann.send_raw(line + b"\n")
    received = [bob.read_line() for _ in hostile]
    assert received[:7] == [
        "Ann: caf\ufffd \ufffd\ufffd invalid utf-8",
        "Ann: clear screen",
        "Ann: title",
        "Ann: clipboard",
        "Ann: 31mC1 CSI",
        "Ann: bidi evil",
        "Ann: nul bell del",
    ]
    for line in received:
        assert not any(ord(c) < 32 or 0x7F <= ord(c) <= 0x9F or c in "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069" for c in line)
    ann.send("still here")
    assert bob.read_line() == "Ann: still here"


def test_a_first_nick_line_is_sanitized_like_any_other(server):
    peer = Peer(server.address)
    peer.send_raw(b"/nick \x1b[31mRed\n")
    assert peer.expect(lambda line: line.startswith("[SYSTEM] Welcome, ")).startswith("[SYSTEM] Welcome, Red! ")


def test_escape_sequences_never_reach_a_name(server):
    ann = Peer.joined(server.address, "Ann")
    ann.send_raw(b"/nick \x1b[31mRed\n")
    assert ann.read_line() == "[SYSTEM] Ann is now known as Red"
    ann.send_raw("/nick R\u202eed\x07\n".encode())
    assert ann.read_line() == "[ERROR] You are already Red."
    ann.send_raw("/nick Évil\n".encode())
    assert "ASCII letter" in ann.read_line()


def test_pasting_fifteen_lines_at_once_delivers_them_all(server):
    ann, bob = join_all(server.address, "Ann", "Bob")
    ann.send_raw(b"".join(b"pasted %d\n" % i for i in range(15)))
    assert [bob.read_line() for _ in range(15)] == [f"Ann: pasted {i}" for i in range(15)]
    ann.assert_receives_nothing()


def test_a_flood_is_cut_to_the_burst_and_the_sender_told_how_much_was_lost(server):
    ann, bob = join_all(server.address, "Ann", "Bob")
    ann.send_raw(b"".join(b"flood %d\n" % i for i in range(200)))
    assert ann.read_line() == "[SYSTEM] You are sending too fast (limit: 10 lines per second). Lines are being dropped."
    # Once a line could pass again, the flood is over, and the sender learns what it cost.
    assert ann.read_line() == "[SYSTEM] 180 lines were not sent."
    relayed = [bob.read_line() for _ in range(20)]
    assert relayed == [f"Ann: flood {i}" for i in range(20)]
    bob.assert_receives_nothing()
    ann.send("later")
    assert bob.read_line() == "Ann: later"


def test_the_flood_warning_comes_again_for_a_second_flood(start_server):
    server = start_server(max_rate=20)  # bursts of 40, refilled in 2 seconds
    ann, bob = join_all(server.address, "Ann", "Bob")
    for _ in range(2):
        ann.send_raw(b"".join(b"flood %d\n" % i for i in range(50)))
        assert ann.read_line().startswith("[SYSTEM] You are sending too fast")
        # A calm period (a line could pass again, and none came): the sender learns what it cost.
        assert ann.read_line().endswith("lines were not sent.")


def test_blank_lines_cost_no_flood_allowance(server):
    ann, bob = join_all(server.address, "Ann", "Bob")
    paragraphs = [f"paragraph {i}" for i in range(15)]
    ann.send_raw("\n\n".join(paragraphs).encode() + b"\n")  # 29 lines, 14 of them blank
    assert [bob.read_line() for _ in range(15)] == [f"Ann: {p}" for p in paragraphs]
    ann.assert_receives_nothing()


def test_a_flooder_far_beyond_its_rate_is_disconnected_as_an_excess_flood(server, caplog):
    ann, bob = join_all(server.address, "Ann", "Bob")
    caplog.set_level(logging.WARNING)
    flood = b"".join(b"flood %d\n" % i for i in range(400))  # 20 lines pass, 380 are excess
    lines = []
    try:
        for _ in range(10):
            ann.send_raw(flood)
    except OSError:
        pass  # the server closed the connection while we were still sending
    try:
        lines = ann.read_until_closed()
    except OSError:
        pass
    if lines:
        assert lines[-1] == "[SYSTEM] Disconnected: excess flood."
    assert bob.expect("[SYSTEM] Ann left the chat.")
    assert any("Ann" in r.getMessage() and "excess flood" in r.getMessage() for r in caplog.records)


def test_a_paste_a_little_over_the_burst_is_not_an_excess_flood(server):
    ann, bob = join_all(server.address, "Ann", "Bob")
    ann.send_raw(b"".join(b"paste %d\n" % i for i in range(200)))
    assert ann.expect("[SYSTEM] 180 lines were not sent.")
    ann.send("still here")
    assert bob.expect("Ann: still here")


def test_a_line_at_the_limit_counts_without_its_terminator(start_server):
    server = start_server(max_line_bytes=100)
    ann, bob = join_all(server.address, "Ann", "Bob")
    ann.send_raw(b"y" * 100 + b"\r\n")
    assert bob.read_line() == "Ann: " + "y" * 100
    ann.send_raw(b"z" * 100 + b"\r\r\n")  # one byte over, \r or not
    assert ann.read_line() == "[SYSTEM] Line too long: the limit is 100 bytes. It was not sent."


def test_invalid_utf8_is_relayed_no_longer_than_the_limit(start_server):
    server = start_server(max_line_bytes=100)
    ann, bob = join_all(server.address, "Ann", "Bob")
    ann.send_raw(b"\xff" * 100 + b"\n")  # 100 bytes in, 100 three-byte U+FFFD once decoded
    line = bob.read_line()
    assert line.startswith("Ann: \ufffd")
    assert len(line.removeprefix("Ann: ").encode()) <= 100


def test_flood_control_can_be_turned_off(start_server):
    server = start_server(max_rate=0)
    ann, bob = join_all(server.address, "Ann", "Bob")
    ann.send_raw(b"".join(b"line %d\n" % i for i in range(500)))
    assert [bob.read_line() for _ in range(500)] == [f"Ann: line {i}" for i in range(500)]


def test_a_client_that_stops_reading_is_dropped_and_the_others_lose_nothing(start_server):
    server = start_server(max_queue_bytes=256 * 1024, max_rate=0)
    crowd = Crowd(server.address)
    try:
        talker = crowd.connect("Talker")
        readers = [crowd.connect(f"Reader{i}") for i in range(3)]
        # Everyone is in before Stuck comes, so that everyone sees it join.
        assert crowd.pump(lambda: all(any(line.startswith("[SYSTEM] Welcome") for line in m.lines) for m in [talker, *readers]))
        crowd.connect("Stuck", reading=False, receive_buffer=4096)
        assert crowd.pump(lambda: all("[SYSTEM] Stuck joined the chat!" in m.lines for m in [talker, *readers]))
        expected = []
        for batch in range(40):  # 4 MB in all, far past the bound and the socket buffers
            for n in range(100):
                line = f"{batch:02d}.{n:02d} " + "p" * 1000
                crowd.say(talker, line)
                expected.append(f"Talker: {line}")
            # The readers keep up: wait for each batch, as a person's client would.
            assert crowd.pump(lambda: all(expected[-1] in m.lines[-3:] for m in readers))
        assert crowd.pump(lambda: all("[SYSTEM] Stuck left the chat." in m.lines for m in readers))
        for reader in readers:
            assert [line for line in reader.lines if line.startswith("Talker: ")] == expected
        assert "Stuck" not in server.room.names()
    finally:
        crowd.close_all()
    still_serving(server)


def test_every_client_socket_has_tcp_keepalive(server):
    Peer.joined(server.address, "Ann")
    with server._connections_lock:
        (connection,) = server._connections
    sock = connection.sock
    assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1
    if hasattr(socket, "TCP_KEEPIDLE"):
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE) == 60
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL) == 10
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT) == KEEPALIVE_PROBES
    # A fixed send buffer: Linux would otherwise grow it to megabytes for a client that stops reading.
    assert SEND_BUFFER_BYTES <= sock.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF) <= 2 * SEND_BUFFER_BYTES


def test_a_full_server_turns_the_next_client_away_and_keeps_serving(start_server):
    server = start_server(max_clients=3)
    ann, bob, cat = join_all(server.address, "Ann", "Bob", "Cat")
    extra = Peer(server.address, "Extra")
    assert extra.read_until_closed() == ["[SYSTEM] Server is full (3 users). Try again later."]
    ann.send("still fine?")
    assert bob.expect(lambda line: not line.startswith("[SYSTEM]")) == "Ann: still fine?"
    cat.send("/quit")
    ann.expect("[SYSTEM] Cat left the chat.")  # Cat's seat is free from then on
    Peer.joined(server.address, "Dan")


def test_a_fractional_rate_limit_still_lets_clients_in(start_server):
    server = start_server(max_rate=0.3)
    ann, bob = join_all(server.address, "Ann", "Bob")
    ann.send("slow but fine")
    assert bob.read_line() == "Ann: slow but fine"


def test_stopping_while_a_refused_client_lingers_still_stops_cleanly(start_server):
    server = start_server(max_clients=1)
    ann = Peer.joined(server.address, "Ann")
    extra = Peer(server.address, "Extra")
    assert extra.read_line() == "[SYSTEM] Server is full (1 user). Try again later."
    assert server.shutdown(timeout=5)  # while the refused socket is still open on our side
    assert ann.read_until_closed()[-1] == "[SYSTEM] Server is shutting down."


def test_https_on_the_plain_port_fails_at_once_with_a_tls_alert_and_the_log_says_what_to_do(patient_server, caplog):
    server = patient_server
    # Before: the ClientHello joined the chat as User_NNNNN and its bytes were said to everyone.
    ann = Peer.joined(server.address, "Ann")
    context = ssl.create_default_context()
    with socket.create_connection(server.address, timeout=5) as sock:
        with pytest.raises(ssl.SSLError, match="PROTOCOL_VERSION|protocol version"):
            context.wrap_socket(sock, server_hostname="localhost")
    assert wait_until(lambda: "TLS on a plain port" in caplog.text)
    Peer.joined(server.address, "Bob")
    assert ann.read_line() == "[SYSTEM] Bob joined the chat!"  # and nobody before him


@pytest.mark.parametrize("first_bytes", [b"\x00\x01binary\n", b"SSH-2.0\xff\xfe\n", b"\x05\x01\x00"])
def test_a_first_line_that_is_not_text_never_joins(patient_server, first_bytes, caplog):
    server = patient_server
    ann = Peer.joined(server.address, "Ann")
    with socket.create_connection(server.address, timeout=5) as sock:
        sock.sendall(first_bytes)
        assert sock.recv(4096) == b""  # closed, without a word of the chat
    assert "not text" in caplog.text
    Peer.joined(server.address, "Bob")
    assert ann.read_line() == "[SYSTEM] Bob joined the chat!"
