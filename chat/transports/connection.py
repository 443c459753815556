"""A raw TCP client: newline-framed lines, served by a reader and a writer thread.

The reader thread reads lines and acts on them, and owns the connection: it
starts the writer and, when the client leaves, removes it from the room,
stops the writer and closes the socket, whatever went wrong. ``recv`` and
``sendall`` can both be woken by shutting the socket down.
"""

import ipaddress
import logging
import select
import socket
import threading
import time

from chat.admission import Seat, address_key, is_loopback
from chat.core import messages
from chat.core.commands import chat_text, handle_line, parse_command, requested_name
from chat.core.flood import FloodControl, Verdict
from chat.core.framing import LineFramer, LineTooLong, decode_line
from chat.core.messages import PASSWORD_NEEDED, PASSWORD_TOO_MANY_TRIES, PASSWORD_WRONG
from chat.core.password import password_matches
from chat.core.room import Room
from chat.core.text import sanitize
from chat.config import Limits, Timings
from chat.transports.handshake import Opening, sniff
from chat.transports.outbox import Outbox, State
from chat.sockets import RECV_BYTES, LINGER_S, wait_readable
from chat.transports.websocket import PING_INTERVAL_S, Received, WebSocketAdapter

log = logging.getLogger(__name__)

THREAD_JOIN_S = 0.5
# Private messages may fill at most this fraction (1/N) of a client's queue bound.
PRIVATE_SHARE = 4
# While a client's own output is backed up, how often its reader looks up from waiting.
BEHIND_WAIT_S = 1.0
# An HTTP client must send its whole request head within this long.
HTTP_HEAD_WAIT_S = 10.0


class ClientConnection:
    """One client: its socket, its outbox, and the reader and writer threads that serve it.

    Every client arrives over TCP; what it sends first says which kind it is
    (:func:`chat.transports.handshake.sniff`). A raw line client (``nc``,
    ``client.py``) sends chat lines, or nothing. A browser sends an HTTP
    request: for a file of the page it gets the file, for ``/ws`` it joins
    the chat over WebSocket (:class:`~chat.transports.websocket.WebSocketAdapter`
    turns messages into lines and lines into frames). From there on both
    kinds are served alike: the same room, commands and limits.

    It is a :class:`chat.core.room.Member`: the room calls queue/flush/quit on it.
    It is handed what it needs: the room, the limits, its seat (see
    :mod:`chat.admission`) and a function to call once its socket is closed.
    """

    def __init__(self, sock: socket.socket, address, room: Room, limits: Limits, timings: Timings, seat: Seat, on_close) -> None:
        self.timings = timings
        self.room = room
        self.limits = limits
        self.seat = seat
        self._on_close = on_close  # called with this connection once its socket is closed
        self.sock = sock
        self.address = address
        self.name = f"User_{address[1]}"
        self.outbox = Outbox(sock, limits.max_queue_bytes)
        # The room calls these once per recipient of every line: no wrapper in
        # between for a raw client. A WebSocket client's queue frames the line.
        self.queue = self.outbox.put
        self.flush = self.outbox.flush
        self.framer = LineFramer(limits.max_line_bytes)
        self.web: "WebSocketAdapter | None" = None  # set once the client turns out to be a browser
        self._first_web_lines: list = []  # lines that came with the WebSocket handshake
        self.flood = FloodControl(limits.max_rate, seat.address_budget)
        self._quitting = threading.Event()
        self.reader = threading.Thread(target=self._run, name=f"reader-{self.name}", daemon=True)
        self.writer = threading.Thread(target=self.outbox.run_writer, name=f"writer-{self.name}", daemon=True)

    def start(self) -> None:
        """Start serving: the reader thread starts, and owns, the writer thread."""
        self.reader.start()

    # -- the Member interface (a raw client's queue and flush are the outbox's own) --

    def queue_private(self, data: bytes) -> "bool | None":
        share = self.limits.max_queue_bytes // PRIVATE_SHARE
        if self.web is None:
            return self.outbox.offer(data, share)
        return self.web.send_lines(data, write=lambda frames: self.outbox.offer(frames, share))

    def quit(self) -> None:
        self._quitting.set()
        if self.web is not None:
            self.web.close()  # the close frame follows what is queued
        self.outbox.close()

    def _queue_web(self, data: bytes) -> bool:
        return bool(self.web.send_lines(data))

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
            opening = self._wait_for_opening()
            if opening is None:
                pass  # gone before it said anything
            elif opening[0] is Opening.HTTP:
                if self._answer_http(opening[1]):
                    self._join_and_chat()
            else:
                self._join_and_chat(opening[1])
        except Exception:  # a bug of ours: log it, and still clean up below
            log.exception("Unexpected error while serving %s", self.name)
        finally:
            if self.outbox.state is State.OVERFLOWED and not self.outbox.cut_off_by_server:
                log.warning(
                    "⚠️  Dropping %s: it stopped reading, and over %d bytes were waiting for it",
                    self.name,
                    self.outbox.max_bytes,
                )
            # The seat is free before the others hear that this client left,
            # and while it lingers below.
            self.seat.release()
            self.room.leave(self)  # harmless if it never joined
            self._close()

    def _wait_for_opening(self) -> "tuple[Opening, object] | None":
        """Read until the client shows what it is; None if it left first.

        Returns ``(Opening.HTTP, bytes so far)`` for an HTTP client, and
        ``(Opening.RAW, events)`` for a line client, with its first line if
        one came within FIRST_LINE_WAIT_S (a client that sends nothing joins
        under its default name after that).
        """
        undecided = b""  # what came while the kind was still open (one request line at most)
        events: list = []
        deadline = time.monotonic() + self.timings.first_line_wait_s
        try:
            while not events and not self._quitting.is_set():
                if not wait_readable(self.sock, deadline - time.monotonic()):
                    break
                data = self.sock.recv(RECV_BYTES)
                if not data:
                    return None
                if undecided is not None:
                    undecided += data
                    kind = sniff(undecided)
                    if kind is Opening.HTTP:
                        return kind, undecided
                    if kind is Opening.UNDECIDED:
                        continue
                    data, undecided = undecided, None
                events = self.framer.feed(data)
        except OSError:
            return None
        if undecided:  # the deadline came in the middle of what might have been a request line
            events = self.framer.feed(undecided)
        return Opening.RAW, events

    def _answer_http(self, data: bytes) -> bool:
        """Serve an HTTP client: a file, or an error; True if it opened a WebSocket to chat."""
        self.web = WebSocketAdapter(self.outbox.put, max_line_bytes=self.limits.max_line_bytes)
        self.queue = self._queue_web  # lines only as frames, and none before the WebSocket is open
        deadline = time.monotonic() + HTTP_HEAD_WAIT_S
        received = self._web_receive(data)
        while received.status is None:  # the request's head is not complete yet
            try:
                if not wait_readable(self.sock, deadline - time.monotonic()):
                    log.info("⌛ %s started an HTTP request and stalled: closing", self.name)
                    return False
                data = self.sock.recv(RECV_BYTES)
            except OSError:
                return False
            if not data:
                return False
            received = self._web_receive(data)
        request = self.web.request
        target = f"{request.path} " if request is not None else ""
        log.info("🌐 %s: HTTP %sanswered %d", self.name, target, received.status)
        if not received.opened:
            return False
        self._first_web_lines = received.lines
        return self._count_by_forwarded_address()

    def _count_by_forwarded_address(self) -> bool:
        """Behind a proxy on this machine, count the client by the address the proxy saw.

        The proxy connects from loopback, which the per-address limits do not
        count; it names its own peer last in X-Forwarded-For (entries before
        that come from the client and could be forged). False if that
        address has no seat left.
        """
        forwarded = self.web.request.headers.get_all("X-Forwarded-For")
        if not forwarded or not is_loopback(address_key(self.address[0])):
            return True
        client = forwarded_client(",".join(forwarded).split(",")[-1])
        if client is None:
            return True  # not an address we can count by: count the connection as it came
        self.seat.release()
        seat = self.seat.admission.admit(client)
        if isinstance(seat, str):
            log.warning("⛔ Refused %s (for %s): %s", self.name, client, seat)
            self.room.send_to(self, messages.system(seat))
            return False
        self.seat = seat
        self.flood = FloodControl(self.limits.max_rate, seat.address_budget)
        return True

    def _join_and_chat(self, first_events: "list | None" = None) -> None:
        if first_events is None:  # a WebSocket: its first lines may still be on their way
            first_events = self._first_web_lines or self._wait_for_lines()
        if first_events is None:
            return
        if self.seat.admission.password is not None:
            first_events = self._check_password(first_events)
            if first_events is None:
                return
        if self._join(first_events):
            self._read_lines()

    def _wait_for_lines(self) -> "list | None":
        """Events from the next read that has any, or [] after FIRST_LINE_WAIT_S; None if the client left."""
        deadline = time.monotonic() + self.timings.first_line_wait_s
        try:
            while not self._quitting.is_set():
                if not wait_readable(self.sock, deadline - time.monotonic()):
                    return []
                data = self.sock.recv(RECV_BYTES)
                if not data:
                    return None
                events, closing = self._events_in(data)
                if closing:
                    return None
                if events:
                    return events
        except OSError:
            return None
        return None

    def _check_password(self, events: list) -> "list | None":
        """Let the client in if its first line is ``/pass`` with the room's password.

        Returns the lines after it (waiting briefly for a ``/nick`` line to
        follow), or None if the client may not join: it was told why.
        """
        given = None
        if events and isinstance(events[0], bytes):
            command, argument = parse_command(decode_line(events[0])) if events[0].startswith(b"/") else ("", "")
            given = argument if command == "pass" else None
        key = self.seat.key or address_key(self.address[0])  # behind a proxy: the client's own
        if given is None:
            self.room.send_to(self, PASSWORD_NEEDED)
            return None
        failures = self.seat.admission.password_failures
        wait = failures.wait_before_check(key)
        if wait is None:
            self.room.send_to(self, PASSWORD_TOO_MANY_TRIES)
            return None
        if wait and self._quitting.wait(wait):
            return None
        if not password_matches(given, self.seat.admission.password):
            failures.failed(key)
            log.warning("🔒 %s gave a wrong password", self.name)
            self.room.send_to(self, PASSWORD_WRONG)
            return None
        failures.succeeded(key)
        rest = events[1:]
        return rest if rest else (self._wait_for_lines() or [])

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
        heard = time.monotonic()  # when the client last sent anything
        while not self._quitting.is_set():
            try:
                wait = self._seconds_until_timer(heard)
                if wait is not None and not wait_readable(self.sock, wait):
                    if not self._on_timer():
                        return
                    heard = time.monotonic() if self.web is not None else heard
                    continue
                data = self.sock.recv(RECV_BYTES)
            except OSError:
                return  # reset by the peer, or shut down by us
            if not data:
                if self.web is not None:
                    self.web.receive_eof()
                return  # the client closed the connection
            heard = time.monotonic()
            events, closing = self._events_in(data)
            with self.room.deferred_flushes():
                if not self._handle(events):
                    return
            if closing:
                return

    def _seconds_until_timer(self, heard: float) -> "float | None":
        """How long the next read may wait before a timer is due: a flood report or a ping."""
        waits = []
        if self.flood.dropped:
            waits.append(self.flood.seconds_until_calm())
        if self.web is not None:
            waits.append(heard + self.timings.ping_interval_s - time.monotonic())
        return max(0.0, min(waits)) if waits else None  # a raw client with nothing due: just read

    def _on_timer(self) -> bool:
        """Do what is due; False if the client has vanished."""
        if self.flood.dropped and self.flood.seconds_until_calm() <= 0:
            self._report_dropped_lines()  # the flood is over, and nothing more came
            return True
        if self.web is not None:
            if not self.web.ping():
                log.info("🔌 %s answered no ping: gone", self.name)
                return False
            self.outbox.flush()
        return True

    def _events_in(self, data: bytes) -> "tuple[list, bool]":
        """The chat lines in ``data``, and whether the client is closing."""
        if self.web is None:
            return self.framer.feed(data), False
        received = self._web_receive(data)
        return received.lines, received.closing

    def _web_receive(self, data: bytes) -> Received:
        received = self.web.receive_data(data)
        self.outbox.flush()  # handshake answers, pongs and close frames go out now
        return received

    def _handle(self, events: list) -> bool:
        """Act on the lines of one read; False if the client must be disconnected.

        Consecutive chat lines are broadcast together (Room.say_all); anything
        else (a command, a notice) first sends those, so the order holds.
        """
        said: "list[str]" = []
        try:
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
                if verdict is Verdict.ALLOWED and text is not None and not self.flood.dropped:
                    message = chat_text(text)
                    if message is not None:
                        said.append(messages.chat(self.name, message))
                        continue
                self._say(said)
                if not self._act_on(event, text, verdict):
                    return False
                self._wait_while_behind()
        finally:
            self._say(said)
        return True

    def _say(self, said: "list[str]") -> None:
        if said:
            self.room.say_all(self, said)
            said.clear()

    def _act_on(self, event, text: "str | None", verdict: Verdict) -> bool:
        """Anything but a plain chat line: a command, a line too long, a flood verdict."""
        if verdict is Verdict.EXCESS_FLOOD:
            log.warning("⛔ Disconnecting %s (%s): excess flood", self.name, self.address[0])
            self.room.send_to(self, messages.system("Disconnected: excess flood."))
            self.quit()
            return False
        if verdict is not Verdict.ALLOWED:
            if verdict is not Verdict.DROPPED_AGAIN:
                self.room.send_to(self, messages.system(flood_notice(verdict, self.limits)))
            return True
        if self.flood.dropped:
            self._report_dropped_lines()
        if text is None:
            self.room.send_to(
                self,
                messages.system(f"Line too long: the limit is {event.max_line_bytes} bytes. It was not sent."),
            )
        else:
            handle_line(self.room, self, text)
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
        if self.web is not None:
            self.web.close()  # a WebSocket ends with a close frame, whatever ended it (if not sent yet)
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


def forwarded_client(entry: str) -> "str | None":
    """The IP address in one X-Forwarded-For entry (``1.2.3.4``, ``1.2.3.4:5678``, ``[::1]:80``), or None."""
    entry = entry.strip()
    if entry.startswith("["):
        entry = entry[1:].partition("]")[0]
    elif entry.count(":") == 1:
        entry = entry.partition(":")[0]
    try:
        return str(ipaddress.ip_address(entry))
    except ValueError:
        return None

