"""A raw TCP client: newline-framed lines, served by a reader and a writer thread.

The reader thread reads lines and acts on them, and owns the connection: it
starts the writer and, when the client leaves, removes it from the room,
stops the writer and closes the socket, whatever went wrong. ``recv`` and
``sendall`` can both be woken by shutting the socket down.
"""

import logging
import socket
import threading
import time

from chat.core import messages
from chat.core.commands import handle_line, requested_name
from chat.core.framing import LineFramer, LineTooLong, decode_line
from chat.core.ratelimit import TokenBucket
from chat.core.room import Room
from chat.limits import Limits
from chat.transports.outbox import Outbox, State

log = logging.getLogger(__name__)

RECV_BYTES = 64 * 1024
# A client may name itself with "/nick NAME" as its first line; one that sends
# nothing joins under its default name after this long.
FIRST_LINE_WAIT_S = 1.0
# After /quit, how long to wait for the client to close its end, so that it
# reads our last lines before the connection goes away.
LINGER_S = 1.0
THREAD_JOIN_S = 0.5

# TCP keepalive: after Limits.keepalive_idle_s of silence the kernel probes the
# peer every KEEPALIVE_INTERVAL_S and gives up after KEEPALIVE_PROBES unanswered
# probes, so a device that vanished from the network (no FIN, no RST) is
# removed in about two minutes.
KEEPALIVE_INTERVAL_S = 10
KEEPALIVE_PROBES = 6


def enable_keepalive(sock: socket.socket, idle_s: int) -> None:
    """Turn on TCP keepalive, with our timings where the platform lets us set them."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    idle_option = getattr(socket, "TCP_KEEPIDLE", getattr(socket, "TCP_KEEPALIVE", None))  # Linux, macOS
    for option, value in (
        (idle_option, idle_s),
        (getattr(socket, "TCP_KEEPINTVL", None), KEEPALIVE_INTERVAL_S),
        (getattr(socket, "TCP_KEEPCNT", None), KEEPALIVE_PROBES),
    ):
        if option is not None:
            sock.setsockopt(socket.IPPROTO_TCP, option, value)


class ClientConnection:
    """One client: its socket, its outbox, and the reader and writer threads that serve it.

    It is a :class:`chat.core.room.Member`: the room calls queue/flush/quit on it.
    """

    def __init__(self, sock: socket.socket, address, room: Room, limits: Limits, on_close) -> None:
        self.room = room
        self.limits = limits
        self._on_close = on_close  # called with this connection once its socket is closed
        self.sock = sock
        self.address = address
        self.name = f"User_{address[1]}"
        self.outbox = Outbox(sock, limits.max_queue_bytes)
        # The room calls these once per recipient of every line: no wrapper in between.
        self.queue = self.outbox.put
        self.flush = self.outbox.flush
        self.framer = LineFramer(limits.max_line_bytes)
        rate = limits.max_rate
        self.flood_control = TokenBucket(rate, max(1, 2 * rate)) if rate > 0 else None
        self._warned_of_flood = False
        self._quitting = threading.Event()
        self.reader = threading.Thread(target=self._run, name=f"reader-{self.name}", daemon=True)
        self.writer = threading.Thread(target=self.outbox.run_writer, name=f"writer-{self.name}", daemon=True)

    def start(self) -> None:
        self.writer.start()
        self.reader.start()

    # -- the Member interface (queue and flush are the outbox's own, set in __init__) --

    def quit(self) -> None:
        self._quitting.set()
        self.outbox.close()

    # -- the reader thread -----------------------------------------------------

    def _run(self) -> None:
        try:
            first_events = self._wait_for_first_line()
            if first_events is not None and self._join(first_events):
                self._read_lines()
        except Exception:  # a bug of ours: log it, and still clean up below
            log.exception("Unexpected error while serving %s", self.name)
        finally:
            if self.outbox.state is State.OVERFLOWED:
                log.warning(
                    "⚠️  Dropping %s: it stopped reading, and over %d bytes were waiting for it",
                    self.name,
                    self.outbox.max_bytes,
                )
            self.room.leave(self)  # harmless if it never joined
            self._close()

    def _wait_for_first_line(self) -> "list | None":
        """Read until the first complete line or FIRST_LINE_WAIT_S; None if the client left."""
        events: list = []
        deadline = time.monotonic() + FIRST_LINE_WAIT_S
        try:
            while not events:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self.sock.settimeout(remaining)
                data = self.sock.recv(RECV_BYTES)
                if not data:
                    return None
                events = self.framer.feed(data)
        except socket.timeout:
            pass
        except OSError:
            return None
        finally:
            self.sock.settimeout(None)
        return events

    def _join(self, first_events: list) -> bool:
        """Join the room, under the name asked for by a first "/nick NAME" line if any."""
        wanted_name = None
        if first_events and isinstance(first_events[0], bytes):
            wanted_name = requested_name(decode_line(first_events[0]))
            if wanted_name is not None:
                first_events = first_events[1:]
        name, _ = self.room.join(self, self.name, wanted_name)
        if name is None:
            return False  # the server is shutting down
        self.reader.name = f"reader-{name}"
        self.writer.name = f"writer-{name}"
        self._handle(first_events)
        return True

    def _read_lines(self) -> None:
        while not self._quitting.is_set():
            try:
                data = self.sock.recv(RECV_BYTES)
            except OSError:
                return  # reset by the peer, or shut down by us
            if not data:
                return  # the client closed the connection
            with self.room.deferred_flushes():
                self._handle(self.framer.feed(data))

    def _handle(self, events: list) -> None:
        for event in events:
            if self._quitting.is_set():
                return
            if not self._within_rate():
                continue
            if isinstance(event, LineTooLong):
                self.room.send_to(
                    self,
                    messages.system(
                        f"Line too long: the limit is {event.max_line_bytes} bytes. It was not sent."
                    ),
                )
            else:
                handle_line(self.room, self, decode_line(event))

    def _within_rate(self) -> bool:
        """Apply flood control to one line; warn once each time the client starts flooding."""
        if self.flood_control is None or self.flood_control.allow():
            self._warned_of_flood = False
            return True
        if not self._warned_of_flood:
            self._warned_of_flood = True
            rate = self.limits.max_rate
            self.room.send_to(
                self,
                messages.system(f"You are sending too fast (limit: {rate:g} lines per second). Lines are being dropped."),
            )
        return False

    def _close(self) -> None:
        """Send what is queued, give the client LINGER_S to close its end, then close ours."""
        self.outbox.close()
        self.writer.join(LINGER_S)
        if self.writer.is_alive():  # stuck sending to a client that does not read
            self.outbox.abort()
            self.writer.join(THREAD_JOIN_S)
        # Closing a socket with unread input makes the kernel reset the
        # connection, which can destroy our last lines before the client
        # reads them: so read (and ignore) until the client closes. (Only now,
        # with the writer done: a socket timeout would apply to its sends too.)
        deadline = time.monotonic() + LINGER_S
        try:
            while (remaining := deadline - time.monotonic()) > 0:
                self.sock.settimeout(remaining)
                if not self.sock.recv(RECV_BYTES):
                    break
        except OSError:
            pass
        self.sock.close()
        self._on_close(self)
        log.info("🔌 %s disconnected", self.name)
