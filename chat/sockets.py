"""Socket settings and waits that the server and the terminal client share.

Only small functions on a socket that is already connected: how much to read
at once, TCP keepalive, waiting for input with a deadline (and reading it),
and the linger before a close.
"""

import select
import socket
import time

# The most one recv() takes: many lines at once in a busy room.
RECV_BYTES = 64 * 1024
# Before closing, how long to wait for the peer to close its end, so that it
# reads our last lines before the connection goes away (see linger_and_close).
LINGER_S = 1.0

# TCP keepalive: after ``idle_s`` of silence the kernel probes the peer every
# keepalive_interval_s(idle_s) and gives up after KEEPALIVE_PROBES unanswered
# probes, so the probes take as long as the silence before them: at the
# server's default 60 s, a device that vanished from the network (no FIN, no
# RST) is noticed in about two minutes, 60 + 6 × 10 s.
KEEPALIVE_PROBES = 6
# The flag that makes one send or recv not wait (socket.MSG_DONTWAIT). Windows
# has none: there every read waits with a poll, and the outbox's writer sends.
DONTWAIT = getattr(socket, "MSG_DONTWAIT", None)


def keepalive_interval_s(idle_s: int) -> int:
    """Probe every sixth of the idle time."""
    return max(1, idle_s // KEEPALIVE_PROBES)


def enable_keepalive(sock: socket.socket, idle_s: int) -> None:
    """Turn on TCP keepalive, with our timings where the platform lets us set them."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    idle_option = getattr(socket, "TCP_KEEPIDLE", getattr(socket, "TCP_KEEPALIVE", None))  # Linux, macOS
    for option, value in (
        (idle_option, idle_s),
        (getattr(socket, "TCP_KEEPINTVL", None), keepalive_interval_s(idle_s)),
        (getattr(socket, "TCP_KEEPCNT", None), KEEPALIVE_PROBES),
    ):
        if option is not None:
            try:
                sock.setsockopt(socket.IPPROTO_TCP, option, value)
            except OSError:  # an older system without this one: its default stays
                pass


def wait_readable(sock: socket.socket, timeout: float) -> bool:
    """Wait up to ``timeout`` seconds for ``sock`` to have input (or an end); True if it has.

    With no time left it still looks once: a line that is already waiting
    counts, however late the thread got round to asking.
    """
    timeout = max(0.0, timeout)
    if hasattr(select, "poll"):  # no limit on descriptor numbers, unlike select()
        poller = select.poll()
        poller.register(sock, select.POLLIN)
        return bool(poller.poll(timeout * 1000))
    return bool(select.select([sock], [], [], timeout)[0])


def receive_within(sock: socket.socket, timeout: "float | None") -> "bytes | None":
    """Up to RECV_BYTES from ``sock``, waiting at most ``timeout`` seconds (None: as long as it takes).

    Returns None if nothing came in time, and ``b""`` at the end of the
    stream. What is waiting already is taken at once, without a poll
    first: in a busy room it usually is, and the poll would cost a second
    system call per read, and with it a second hand-over of the GIL.
    """
    if timeout is None:
        return sock.recv(RECV_BYTES)
    if DONTWAIT is not None:
        try:
            return sock.recv(RECV_BYTES, DONTWAIT)
        except BlockingIOError:
            pass  # nothing yet: wait for it
    if not wait_readable(sock, timeout):
        return None
    return sock.recv(RECV_BYTES)


def linger_and_close(sock: socket.socket, linger_s: float = LINGER_S) -> None:
    """Read (and ignore) until the peer closes its end or ``linger_s`` passes, then close.

    Closing a socket with unread input makes the kernel reset the
    connection, which can destroy our last lines before the peer reads
    them. Call this once nothing more will be sent on ``sock``: its timeout
    is changed.
    """
    deadline = time.monotonic() + linger_s
    try:
        while (remaining := deadline - time.monotonic()) > 0:
            sock.settimeout(remaining)
            if not sock.recv(RECV_BYTES):
                break
    except OSError:
        pass
    sock.close()
