"""The real server against clients that misuse the shared port: frame floods, stray requests, TLS.

The WebSocket client here is websockets' sans-I/O ``ClientProtocol`` on a bare
socket, so that a test can send frames faster and stranger than any library
client would, and still read the server's answer with a real parser.
"""

import socket

import pytest
from websockets import ClientProtocol, CloseCode, Frame, Opcode, Response
from websockets.uri import parse_uri

from chat.transports.websocket import EXCESS_FLOOD_REASON
from tests.helpers import TIMEOUT_S, Peer
from tests.test_handshake import client_hello


class RawWebSocket:
    """A WebSocket client on a bare socket: the library's framing, our timing."""

    def __init__(self, address) -> None:
        self.sock = socket.create_connection(address, timeout=TIMEOUT_S)
        self.protocol = ClientProtocol(parse_uri(f"ws://{address[0]}:{address[1]}/ws"))
        self.protocol.send_request(self.protocol.connect())
        self.flush()
        [response] = self.read_events(lambda events: events)
        assert isinstance(response, Response) and response.status_code == 101

    def flush(self) -> None:
        self.sock.sendall(b"".join(self.protocol.data_to_send()))

    def read_events(self, enough) -> list:
        """Read until ``enough(events so far)`` is true or the server closes; return the events."""
        events = []
        while not enough(events):
            data = self.sock.recv(65536)
            if not data:
                self.protocol.receive_eof()
                break
            self.protocol.receive_data(data)
            events += self.protocol.events_received()
        return events

    def read_until_closed(self) -> list:
        return self.read_events(lambda events: False)

    def close(self) -> None:
        self.sock.close()


@pytest.mark.parametrize("kind", ["pings", "empty continuations"])
def test_a_websocket_client_flooding_frames_is_closed_with_1008_and_leaves_the_room(patient_server, kind):
    server = patient_server
    ann = Peer.joined(server.address, "Ann")
    flooder = RawWebSocket(server.address)
    flooder.protocol.send_text(b"/nick Flooder")
    flooder.flush()
    ann.expect("[SYSTEM] Flooder joined the chat!")
    if kind == "pings":
        frame = Frame(Opcode.PING, b"").serialize(mask=True)
    else:
        flooder.protocol.send_text(b"a message that never ends", fin=False)
        flooder.flush()
        frame = Frame(Opcode.CONT, b"", fin=False).serialize(mask=True)
    try:
        flooder.sock.sendall(frame * 2_000)  # 12 kB: a fraction of one recv
    except OSError:  # the server may close before it has all of them
        pass
    flooder.read_until_closed()
    close = flooder.protocol.close_rcvd
    assert (close.code, close.reason) == (CloseCode.POLICY_VIOLATION, EXCESS_FLOOD_REASON)
    ann.expect("[SYSTEM] Flooder left the chat.")
    flooder.close()


def read_until_closed(sock: socket.socket) -> bytes:
    chunks = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


@pytest.mark.parametrize(
    "second",
    [b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", b"\x00\xff\xfe junk that is no frame"],
    ids=["a second request", "junk"],
)
def test_a_page_request_with_more_behind_it_in_the_same_packet_gets_one_answer_and_no_traceback(patient_server, second):
    server = patient_server
    with socket.create_connection(server.address, timeout=TIMEOUT_S) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n" + second)
        answer = read_until_closed(sock)
    assert answer.startswith(b"HTTP/1.1 200 OK\r\n")
    assert answer.count(b"HTTP/1.1 ") == 1
    # A traceback in the server's log fails the test: see conftest.no_thread_dies.


def test_a_tls_handshake_on_the_plain_port_is_closed_and_never_joins(patient_server):
    server = patient_server
    ann = Peer.joined(server.address, "Ann")
    with socket.create_connection(server.address, timeout=TIMEOUT_S) as tls:
        tls.sendall(client_hello())
        read_until_closed(tls)  # whatever the server says first, it closes
    Peer.joined(server.address, "Bob")
    assert ann.read_line() == "[SYSTEM] Bob joined the chat!"  # and no one joined before him
