"""The outbox over a real socket pair: ordering, the writer, the bound, closing."""

import socket
import threading

import pytest

from chat.transports.outbox import Outbox, State
from tests.helpers import TIMEOUT_S, wait_until


@pytest.fixture
def pair():
    ours, theirs = socket.socketpair()
    theirs.settimeout(TIMEOUT_S)
    yield ours, theirs
    ours.close()
    theirs.close()


def start_writer(outbox: Outbox) -> threading.Thread:
    thread = threading.Thread(target=outbox.run_writer, daemon=True)
    thread.start()
    return thread


def receive_exactly(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        assert chunk, "connection closed early"
        data += chunk
    return data


def test_queued_lines_arrive_in_order(pair):
    ours, theirs = pair
    outbox = Outbox(ours, max_bytes=1024 * 1024)
    writer = start_writer(outbox)
    expected = b"".join(b"line %d\n" % i for i in range(1000))
    for i in range(1000):
        outbox.put(b"line %d\n" % i)
        if i % 7 == 0:
            outbox.flush()
    outbox.flush()
    assert receive_exactly(theirs, len(expected)) == expected
    outbox.close()
    writer.join(TIMEOUT_S)
    assert not writer.is_alive()


def test_the_writer_sends_what_the_fast_path_could_not(pair):
    ours, theirs = pair
    outbox = Outbox(ours, max_bytes=10_000_000)
    writer = start_writer(outbox)
    big = bytes(range(256)) * 20_000  # far more than a socket buffer holds
    outbox.put(big)
    outbox.flush()
    assert receive_exactly(theirs, len(big)) == big
    outbox.close()
    writer.join(TIMEOUT_S)
    assert outbox.state is State.DONE


def test_closing_sends_what_is_queued_then_ends_the_stream(pair):
    ours, theirs = pair
    outbox = Outbox(ours, max_bytes=1024 * 1024)
    outbox.put(b"last words\n")
    outbox.close()
    outbox.put(b"too late\n")
    writer = start_writer(outbox)
    writer.join(TIMEOUT_S)
    assert receive_exactly(theirs, 11) == b"last words\n"
    assert theirs.recv(100) == b""  # end of stream


def test_a_peer_that_stops_reading_overflows_the_bound_and_is_cut_off(pair):
    ours, theirs = pair
    outbox = Outbox(ours, max_bytes=100_000)
    writer = start_writer(outbox)
    chunk = b"x" * 1000 + b"\n"
    for _ in range(10_000):  # ten times the bound: the kernel buffers cannot take it all
        outbox.put(chunk)
        outbox.flush()
        if outbox.state is State.OVERFLOWED:
            break
    assert outbox.state is State.OVERFLOWED
    writer.join(TIMEOUT_S)
    assert not writer.is_alive(), "the writer stayed blocked on the stuck peer"
    assert wait_until(lambda: reads_end_of_stream(ours))  # shut down


def test_exactly_max_bytes_waiting_is_accepted(pair):
    ours, theirs = pair
    outbox = Outbox(ours, max_bytes=10)
    assert outbox.put(b"1234")
    assert not outbox.put(b"567890")  # the first put's flush is still to come
    assert (outbox.state, outbox.backlog_bytes) == (State.OPEN, 10)


def test_one_byte_over_max_bytes_overflows_and_drops_what_was_queued(pair):
    ours, theirs = pair
    outbox = Outbox(ours, max_bytes=10)
    outbox.put(b"1234567890")
    assert outbox.put(b"!")  # the caller must flush, which shuts the socket down
    assert outbox.state is State.OVERFLOWED
    outbox.flush()
    assert theirs.recv(100) == b""  # nothing of what was queued, then end of stream


def test_a_single_line_longer_than_max_bytes_overflows_an_empty_outbox(pair):
    ours, theirs = pair
    outbox = Outbox(ours, max_bytes=10)
    outbox.put(b"12345678901")
    assert outbox.state is State.OVERFLOWED


def test_bytes_the_socket_took_make_room_under_the_bound(pair):
    ours, theirs = pair
    outbox = Outbox(ours, max_bytes=10)
    outbox.put(b"1234567890")
    outbox.flush()
    assert receive_exactly(theirs, 10) == b"1234567890"
    assert outbox.backlog_bytes == 0
    outbox.put(b"abcdefghij")
    assert (outbox.state, outbox.backlog_bytes) == (State.OPEN, 10)


def reads_end_of_stream(sock: socket.socket) -> bool:
    try:
        return sock.recv(1, socket.MSG_DONTWAIT) == b""
    except BlockingIOError:  # nothing yet: not shut down (so far)
        return False


def test_a_send_to_a_vanished_peer_fails_quietly(pair):
    ours, theirs = pair
    outbox = Outbox(ours, max_bytes=1024 * 1024)
    writer = start_writer(outbox)
    theirs.close()
    for _ in range(100):
        outbox.put(b"anyone there?\n")
        outbox.flush()
    writer.join(TIMEOUT_S)
    assert outbox.state is State.FAILED


class SlowSocket:
    """A socket stand-in whose first send blocks until released, then takes only 3 bytes."""

    def __init__(self):
        self.wire = b""
        self.first_send_started = threading.Event()
        self.release_first_send = threading.Event()
        self.sends = 0

    def send(self, data, flags=0):
        self.sends += 1
        if self.sends == 1:
            self.first_send_started.set()
            assert self.release_first_send.wait(TIMEOUT_S)
            data = data[:3]
        self.wire += data
        return len(data)

    def sendall(self, data):
        self.wire += data

    def shutdown(self, how):
        pass


def test_closing_during_a_fast_path_send_loses_and_reorders_nothing():
    sock = SlowSocket()
    outbox = Outbox(sock, max_bytes=1024 * 1024)
    assert outbox.put(b"line1\n")
    fast_path = threading.Thread(target=outbox.flush)
    fast_path.start()
    assert sock.first_send_started.wait(TIMEOUT_S)
    assert not outbox.put(b"line2\n")  # a send is under way: no flush needed
    outbox.close()
    writer = start_writer(outbox)
    sock.release_first_send.set()
    fast_path.join(TIMEOUT_S)
    writer.join(TIMEOUT_S)
    assert sock.wire == b"line1\nline2\n"
    assert outbox.state is State.DONE
