"""The socket helpers both ends share."""

import socket
import threading

import pytest

from chat import sockets
from chat.sockets import KEEPALIVE_PROBES, keepalive_interval_s, receive_within, wait_readable


def test_a_line_already_waiting_counts_even_when_no_time_is_left():
    # A reader thread that gets round to looking only after its deadline must
    # still see the "/nick" line that came in time.
    ours, theirs = socket.socketpair()
    with ours, theirs:
        assert not wait_readable(ours, 0)
        theirs.sendall(b"/nick Ann\n")
        assert wait_readable(ours, 0)
        assert wait_readable(ours, -1.0)
        assert wait_readable(ours, 5.0)


def test_keepalive_probes_take_as_long_as_the_silence_before_them():
    assert KEEPALIVE_PROBES == 6
    assert keepalive_interval_s(60) * KEEPALIVE_PROBES == 60
    assert keepalive_interval_s(1) == 1  # the kernel's smallest interval


def test_receive_within_takes_what_is_waiting_without_polling_first(monkeypatch):
    a, b = socket.socketpair()
    with a, b:
        b.sendall(b"hello\n")
        assert wait_readable(a, 1.0)
        monkeypatch.setattr(sockets, "wait_readable", lambda *_: pytest.fail("polled although a line was waiting"))
        assert receive_within(a, 5.0) == b"hello\n"


def test_receive_within_waits_for_input_and_says_none_came_in_time():
    a, b = socket.socketpair()
    with a, b:
        assert receive_within(a, 0.01) is None
        threading.Timer(0.05, b.sendall, [b"late\n"]).start()
        assert receive_within(a, 5.0) == b"late\n"
        b.shutdown(socket.SHUT_WR)
        assert receive_within(a, 5.0) == b""
