"""The socket helpers both ends share."""

import socket

from chat.sockets import KEEPALIVE_PROBES, keepalive_interval_s, wait_readable


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
