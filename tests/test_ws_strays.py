"""The real server against clients that misuse the shared port: stray requests."""

import socket

import pytest

from tests.helpers import TIMEOUT_S


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
def test_a_page_request_with_more_behind_it_in_the_same_packet_gets_one_answer_and_no_traceback(server, second):
    with socket.create_connection(server.address, timeout=TIMEOUT_S) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n" + second)
        answer = read_until_closed(sock)
    assert answer.startswith(b"HTTP/1.1 200 OK\r\n")
    assert answer.count(b"HTTP/1.1 ") == 1
    # A traceback in the server's log fails the test: see conftest.no_thread_dies.
