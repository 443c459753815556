"""A raw TCP client: newline-framed lines, served by a reader and a writer thread.

The reader thread reads lines and acts on them, and owns the connection: it
starts the writer and, when the client leaves, removes it from the room,
stops the writer and closes the socket, whatever went wrong. ``recv`` and
``sendall`` can both be woken by shutting the socket down.
"""

import logging
import select
import socket
import threading
import time

from chat.admission import Seat
from chat.core import messages
from chat.core.commands import handle_line, requested_name
from chat.core.flood import FloodControl, Verdict
from chat.core.framing import LineFramer, LineTooLong, decode_line
from chat.core.room import Room
from chat.core.text import sanitize
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
# Private messages may fill at most this fraction (1/N) of a client's queue bound.
PRIVATE_SHARE = 4
# While a client's own output is backed up, how often its reader looks up from waiting.
BEHIND_WAIT_S = 1.0

# TCP keepalive: after Limits.keepalive_idle_s of silence the kernel probes the
# peer every keepalive_interval_s(idle) and gives up after KEEPALIVE_PROBES
# unanswered probes, so at the default 60 s a device that vanished from the
# network (no FIN, no RST) is removed in about two minutes: 60 + 6 × 10 s.
KEEPALIVE_PROBES = 6


def keepalive_interval_s(idle_s: int) -> int:
    """Probe every sixth of the idle time: the probes take as long as the silence before them."""
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
            sock.setsockopt(socket.IPPROTO_TCP, option, value)


class ClientConnection:
    """One client: its socket, its outbox, and the reader and writer threads that serve it.

    It is a :class:`chat.core.room.Member`: the room calls queue/flush/quit on it.
    It is handed what it needs: the room, the limits, its seat (see
    :mod:`chat.admission`) and a function to call once its socket is closed.
    """

    def __init__(self, sock: socket.socket, address, room: Room, limits: Limits, seat: Seat, on_close) -> None:
        self.room = room
        self.limits = limits
        self.seat = seat
        self._on_close = on_close  # called with this connection once its socket is closed
        self.sock = sock
        self.address = address
        self.name = f"User_{address[1]}"
        self.outbox = Outbox(sock, limits.max_queue_bytes)
        # The room calls these once per recipient of every line: no wrapper in between.
        self.queue = self.outbox.put
        self.flush = self.outbox.flush
        self.framer = LineFramer(limits.max_line_bytes)
        self.flood = FloodControl(limits.max_rate, seat.address_budget)
        self._quitting = threading.Event()
        self.reader = threading.Thread(target=self._run, name=f"reader-{self.name}", daemon=True)
        self.writer = threading.Thread(target=self.outbox.run_writer, name=f"writer-{self.name}", daemon=True)

    def start(self) -> None:
        """Start serving: the reader thread starts, and owns, the writer thread."""
        self.reader.start()

    # -- the Member interface (queue and flush are the outbox's own, set in __init__) --

    def queue_private(self, data: bytes) -> "bool | None":
        return self.outbox.offer(data, self.limits.max_queue_bytes // PRIVATE_SHARE)

    def quit(self) -> None:
        self._quitting.set()
        self.outbox.close()

    # -- the reader thread -----------------------------------------------------

    def _run(self) -> None:
        try:
            self.writer.start()
        except RuntimeError:  # no thread could be started: nothing to clean up but the socket
            log.error("⚠️  Could not start a thread for %s: too many threads", self.name)
            self.seat.release()
            self.sock.close()
            self._on_close(self)
            return
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
            self.seat.release()  # the seat is free while we linger below
            self._close()

    def _wait_for_first_line(self) -> "list | None":
        """Read until the first complete line or FIRST_LINE_WAIT_S; None if the client left."""
        events: list = []
        deadline = time.monotonic() + FIRST_LINE_WAIT_S
        try:
            while not events and not self._quitting.is_set():
                if not wait_readable(self.sock, deadline - time.monotonic()):
                    break
                data = self.sock.recv(RECV_BYTES)
                if not data:
                    return None
                events = self.framer.feed(data)
        except OSError:
            return None
        return events

    def _join(self, first_events: list) -> bool:
        """Join the room, under the name asked for by a first "/nick NAME" line if any."""
        wanted_name = None
        if first_events and isinstance(first_events[0], bytes):
            wanted_name = requested_name(sanitize(decode_line(first_events[0])))
            if wanted_name is not None:
                first_events = first_events[1:]
        name, _ = self.room.join(self, self.name, wanted_name)
        if name is None:
            return False  # the server is shutting down
        self.reader.name = f"reader-{name}"
        self.writer.name = f"writer-{name}"
        with self.room.deferred_flushes():
            return self._handle(first_events)

    def _read_lines(self) -> None:
        while not self._quitting.is_set():
            try:
                if self.flood.dropped and not wait_readable(self.sock, self.flood.seconds_until_calm()):
                    self._report_dropped_lines()  # the flood is over, and nothing more came
                    continue
                data = self.sock.recv(RECV_BYTES)
            except OSError:
                return  # reset by the peer, or shut down by us
            if not data:
                return  # the client closed the connection
            with self.room.deferred_flushes():
                if not self._handle(self.framer.feed(data)):
                    return

    def _handle(self, events: list) -> bool:
        """Act on the lines of one read; False if the client must be disconnected."""
        for event in events:
            if self._quitting.is_set():
                return False
            if isinstance(event, LineTooLong):
                text = None
            else:
                text = sanitize(decode_line(event, self.limits.max_line_bytes))
                if not text.strip():
                    continue  # blank lines are ignored, so they cost no flood allowance
            verdict = self.flood.check()
            if verdict is Verdict.EXCESS_FLOOD:
                log.warning("⛔ Disconnecting %s (%s): excess flood", self.name, self.address[0])
                self.room.send_to(self, messages.system("Disconnected: excess flood."))
                self.quit()
                return False
            if verdict is not Verdict.ALLOWED:
                if verdict is not Verdict.DROPPED_AGAIN:
                    self.room.send_to(self, messages.system(flood_notice(verdict, self.limits)))
                continue
            if self.flood.dropped:
                self._report_dropped_lines()
            if text is None:
                self.room.send_to(
                    self,
                    messages.system(f"Line too long: the limit is {event.max_line_bytes} bytes. It was not sent."),
                )
            else:
                handle_line(self.room, self, text)
            self._wait_while_behind()
        return True

    def _report_dropped_lines(self) -> None:
        count = self.flood.take_dropped()
        lines = "1 line was" if count == 1 else f"{count} lines were"
        self.room.send_to(self, messages.system(f"{lines} not sent."))

    def _wait_while_behind(self) -> None:
        """Stop reading this client's input while its own output is backed up.

        A client that pipelines many commands (say fifty "/users") would
        otherwise queue more replies than its bound before any is sent, and
        be dropped although it reads.
        """
        threshold = self.limits.max_queue_bytes // 2
        if self.outbox.backlog_bytes <= threshold:
            return
        self.room.flush_deferred()  # what is queued for the others goes out now, not after our wait
        while not self._quitting.is_set() and not self.outbox.wait_until_below(threshold, BEHIND_WAIT_S):
            pass

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


def flood_notice(verdict: "Verdict", limits: Limits) -> str:
    if verdict is Verdict.ADDRESS_TOO_FAST:
        return (
            f"Your address is sending too fast (limit: {limits.max_address_rate:g} lines per second "
            "from one address, all its connections together). Lines are being dropped."
        )
    return f"You are sending too fast (limit: {limits.max_rate:g} lines per second). Lines are being dropped."


def wait_readable(sock: socket.socket, timeout: float) -> bool:
    """Wait up to ``timeout`` seconds for ``sock`` to have input (or an end); True if it has."""
    if timeout <= 0:
        return False
    if hasattr(select, "poll"):  # no limit on descriptor numbers, unlike select()
        poller = select.poll()
        poller.register(sock, select.POLLIN)
        return bool(poller.poll(timeout * 1000))
    return bool(select.select([sock], [], [], timeout)[0])
