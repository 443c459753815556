"""One client's socket and the two threads that serve it, from accept to close.

Every client arrives over TCP, and what it sends first says which kind it is
(:func:`chat.transports.handshake.sniff`):

* a raw line client (``nc``, ``client.py``) sends chat lines, or nothing;
* a browser sends an HTTP request: for a file of the page it gets the file,
  for ``/ws`` it joins the chat over WebSocket.

From there on both are served alike. Three parts share the work, as in the
``websockets`` library, whose protocol objects are kept apart from its
connections:

* a *transport* per wire format (:class:`~chat.transports.lines.LineTransport`,
  :class:`~chat.transports.websocket.WebSocketTransport`) turns bytes into
  lines and lines into bytes;
* the *session* (:class:`chat.core.session.Session`) acts on those lines:
  the password, joining, then chatting; it is the room's member;
* this module's :class:`ClientConnection` is the shell around them: the
  socket, the reader and writer threads, the opening (telling the kinds
  apart, answering HTTP), and the close.

A connection starts with one thread, its reader, and no seat: while it is
*opening* (see :mod:`chat.admission`) it holds only a place among the
connections opening, for at most ``Timings.opening_wait_s``. A request for
a file of the page is answered and closed from there. Only a client that
is about to chat takes a seat and starts its writer thread.

The reader thread owns the connection: it starts the writer and, however the
client leaves, gives back its place and its seat, takes it out of the room,
stops the writer and closes the socket. Every blocking call can be woken:
``poll`` and ``recv`` by shutting the socket down, ``sendall`` likewise.
"""

import logging
import socket
import threading
import time

from chat.admission import Arrival, Seat, address_key
from chat.config import Limits, Timings
from chat.core import messages
from chat.core.flood import FloodControl
from chat.core.moderation import banned_refusal
from chat.core.framing import encode_line, is_text
from chat.core.password import PasswordGate
from chat.core.room import Room
from chat.core.session import Session, Stage
from chat.core.addresses import format_peer
from chat.sockets import LINGER_S, RECV_BYTES, linger_and_close, receive_within, wait_readable
from chat.transports.handshake import Opening, farewell_bytes, server_names, sniff
from chat.transports.lines import LineTransport
from chat.transports.outbox import Outbox, State
from chat.transports.refusals import RefusalLog
from chat.transports.websocket import WebSocketAdapter, WebSocketTransport

log = logging.getLogger(__name__)

THREAD_JOIN_S = 0.5
# Private messages may fill at most this fraction (1/N) of a client's queue bound.
PRIVATE_SHARE = 4


class ClientConnection:
    """One client: its socket, its outbox, and the reader and writer threads that serve it.

    It is handed what it needs: the room, the limits and timings, its place
    among the connections opening (see :mod:`chat.admission`), a function
    to call once its socket is closed, and the names its page may be
    served under besides this machine's own (``--allowed-origin``). Once the client has shown its kind
    and taken a seat, :attr:`session` is the room's member for it.
    """

    def __init__(
        self,
        sock: socket.socket,
        address,
        room: Room,
        limits: Limits,
        timings: Timings,
        arrival: Arrival,
        on_close,
        allowed_origins: "tuple[str, ...]" = (),
        refusal_log: "RefusalLog | None" = None,
    ) -> None:
        self.sock = sock
        self.address = address
        self.room = room
        self.limits = limits
        self.timings = timings
        self.arrival = arrival
        arrival.on_evict = self._close_while_opening
        self.seat: "Seat | None" = None  # once it is about to chat
        self._on_close = on_close  # called with this connection once its socket is closed
        self._allowed_origins = allowed_origins  # other names of this server, for the Origin check
        self._refusal_log = refusal_log or RefusalLog()  # shared with the server's accept loop
        self.default_name = f"User_{address[1]}"
        self.outbox = Outbox(sock, limits.max_queue_bytes)
        self._private_share_bytes = limits.max_queue_bytes // PRIVATE_SHARE
        self.opening: "Opening | None" = None  # what the client turned out to be
        self._client_behind: "str | None" = None  # the client's own address, when a trusted proxy names it
        self.transport: "LineTransport | WebSocketTransport | None" = None  # once it may chat
        self.session: "Session | None" = None  # the room's member for it, once it may chat
        self._stopping = threading.Event()  # set by stop(), from another thread
        self._connected_at = time.monotonic()
        self.reader = threading.Thread(target=self._run, name=f"reader-{self.default_name}", daemon=True)
        self.writer = threading.Thread(target=self.outbox.run_writer, name=f"writer-{self.default_name}", daemon=True)

    @property
    def name(self) -> str:
        session = self.session
        return session.name if session is not None else self.default_name

    def start(self) -> None:
        """Start serving: the reader thread, which starts (and owns) the writer once the client takes a seat."""
        self.reader.start()

    def stop(self, farewell: str) -> None:
        """End a connection that is not in the room (yet), from another thread: the server is stopping.

        A client that is not in the middle of an HTTP request gets
        ``farewell`` as its last line. Never blocks.
        """
        self._stopping.set()
        session = self.session
        if session is not None:
            session.tell(farewell)
            session.quit()
            return
        if self.opening in (None, Opening.RAW):  # one that speaks chat lines
            if self.outbox.put(encode_line(farewell)):
                self.outbox.flush()
        self.outbox.close()

    def _close_while_opening(self) -> None:
        """Close a connection that is still opening, from another thread: a newcomer needs its place.

        Shutting the socket down wakes the reader, whichever wait it is in;
        its arrival may take no seat now (see Admission.arrive).
        """
        self._stopping.set()
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    # -- the reader thread -----------------------------------------------------

    def _run(self) -> None:
        try:
            self._serve()
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
            self.arrival.release()
            if self.seat is not None:
                self.seat.release()
            if self.session is not None:
                self.room.leave(self.session)  # harmless if it never joined
            self._close()

    def _serve(self) -> None:
        """Tell what the client is, open its transport, take a seat, and converse until it leaves."""
        opening, data = self._wait_for_opening()
        self.opening = opening
        client = None  # the client's own address, when a trusted proxy names it
        connected_at = None  # a WebSocket client's first line is awaited from its handshake on
        if opening is Opening.HTTP:
            transport, events = self._open_websocket(data)
            if transport is None:
                return  # a file of the page, an error, or gone
            forwarded_for = transport.adapter.request.headers.get_all("X-Forwarded-For")
            client = self._client_behind = self.arrival.admission.proxies.client_behind(self.address[0], forwarded_for)
        elif opening is Opening.RAW:
            if not is_text(data):
                log.warning("⛔ %s sent bytes that are not text: no chat client, closing", self._peer())
                return
            transport = LineTransport(self.outbox, self.limits.max_line_bytes, self._private_share_bytes)
            events, _ = transport.feed(data, time.monotonic())
            connected_at = self._connected_at  # its first line's wait began then, not now
        elif opening is not None:  # another protocol than ours (TLS, HTTP/2): it never joins
            log.warning("⛔ %s: %s", self._peer(), opening.explanation)
            if self.outbox.put(farewell_bytes(opening)):
                self.outbox.flush()
            return
        else:
            return  # it left before saying what it is
        self.transport = transport
        if self._take_seat(transport, client) and self._start_writer():
            self._converse(transport, events, connected_at)

    def _refuse_if_banned(self, request) -> "str | None":
        """Why an HTTP client is refused, if the client a trusted proxy names in ``request`` is banned.

        A client that connects itself was checked as it connected (see ChatServer).
        """
        forwarded_for = request.headers.get_all("X-Forwarded-For")
        client = self.arrival.admission.proxies.client_behind(self.address[0], forwarded_for)
        return None if client is None else self._ban_refusal(client)

    def _ban_refusal(self, host: str) -> "str | None":
        moderation = self.room.moderation
        ban = moderation.ban_on(address_key(host))
        return None if ban is None else banned_refusal(ban, moderation.clock())

    def _take_seat(self, transport: "LineTransport | WebSocketTransport", client: "str | None") -> bool:
        """Take a seat in the room, counted by ``client`` if a proxy named it; False if refused (it was told)."""
        banned = self._ban_refusal(client or self.address[0])  # banned while it was opening
        seat = banned or self.arrival.admission.seat(self.arrival, client)
        if isinstance(seat, str):
            behind = f" (for {client})" if client is not None else ""
            self._refusal_log.refused(f"{self.name}{behind}", client or self.address[0], seat)
            if transport.queue(encode_line(messages.system(seat))):
                transport.flush()
            return False
        self.seat = seat
        return True

    def _start_writer(self) -> bool:
        try:
            self.writer.start()
        except RuntimeError:  # the system has no thread left to give: this client only
            log.error("⚠️  Could not start a thread for %s: too many threads", self.name)
            return False
        return True

    def _wait_for_opening(self) -> "tuple[Opening | None, bytes]":
        """Read until the client shows what it is: HTTP or RAW, with the bytes so far; None if it left first.

        A client that says nothing within the first-line wait is a raw client.
        """
        received = b""
        deadline = self._connected_at + self.timings.first_line_wait_s
        try:
            while not self._stopping.is_set():
                if not wait_readable(self.sock, deadline - time.monotonic()):
                    return Opening.RAW, received
                data = self.sock.recv(RECV_BYTES)
                if not data:
                    return None, b""
                received += data
                kind = sniff(received)
                if kind is not Opening.UNDECIDED:
                    return kind, received
        except OSError:
            pass
        return None, b""

    def _open_websocket(self, data: bytes) -> "tuple[WebSocketTransport | None, list]":
        """Answer an HTTP client: a file, or an error; a transport and its first lines if it opened a WebSocket."""
        adapter = WebSocketAdapter(
            self.outbox.put,
            max_line_bytes=self.limits.max_line_bytes,
            server_names=server_names(self.sock.getsockname(), self._allowed_origins),
            max_frame_rate=self.limits.max_frame_rate,
            name=lambda: self.name,
            refuse=self._refuse_if_banned,
            from_trusted_proxy=self.address[0] in self.arrival.admission.proxies,
        )
        deadline = self._connected_at + self.timings.opening_wait_s
        received = adapter.receive_data(data)
        self.outbox.flush()
        while received.status is None:  # the request's head is not complete yet
            try:
                if not wait_readable(self.sock, deadline - time.monotonic()):
                    log.info("⌛ %s started an HTTP request and stalled: closing", self._peer())
                    return None, []
                data = self.sock.recv(RECV_BYTES)
            except OSError:
                return None, []
            if not data or self._stopping.is_set():
                return None, []
            received = adapter.receive_data(data)
            self.outbox.flush()
        target = f"{adapter.request.path} " if adapter.request is not None else ""
        log.info("🌐 %s: HTTP %sanswered %d", self._peer(), target, received.status)
        if not received.opened or received.closing:  # a file, an error, or a flood with the handshake
            return None, []
        transport = WebSocketTransport(
            adapter, self.outbox, self._private_share_bytes, self.timings.ping_interval_s, time.monotonic()
        )
        return transport, received.lines

    def _converse(self, transport: "LineTransport | WebSocketTransport", first_events: list, connected_at: "float | None") -> None:
        """Hand everything the client sends to its session, and the timers' turns, until it ends."""
        address = self.seat.key or address_key(self.address[0])  # behind a proxy: the client's own
        session = self.session = Session(
            self.room,
            transport,
            self.default_name,
            FloodControl(self.limits.max_rate, self.seat.address_budget),
            self.timings.first_line_wait_s,
            self.limits.max_line_bytes,
            self.limits.max_queue_bytes,
            self._password_gate(address),
            connected_at=connected_at,
            may_announce=self.seat.may_announce,
            address=address,
            peer=self._peer(),
        )
        going_on = session.receive(first_events)
        while going_on and not self._stopping.is_set():
            self._name_threads_after(session)
            try:
                data = receive_within(self.sock, self._seconds_until_due(session, transport))
            except OSError:
                return  # reset by the peer, or shut down by us
            if data is None:  # a timer is due
                going_on = session.on_due() and self._transport_on_due(transport)
                continue
            if not data:
                transport.feed_eof()
                return  # the client closed the connection
            events, closing = transport.feed(data, time.monotonic())
            going_on = session.receive(events) and not closing

    def _seconds_until_due(self, session: Session, transport) -> "float | None":
        """How long the next read may wait before a timer is due; None if none is (just read)."""
        # Asked before every recv: plain comparisons, no list to build.
        session_wait = session.seconds_until_due()
        transport_wait = transport.seconds_until_due(time.monotonic())
        if session_wait is None or transport_wait is None:
            return transport_wait if session_wait is None else session_wait
        return min(session_wait, transport_wait)

    def _transport_on_due(self, transport) -> bool:
        now = time.monotonic()
        due = transport.seconds_until_due(now)
        if due is None or due > 0 or transport.on_due(now):
            return True
        log.info("🔌 %s answered no ping: gone", self.name)
        return False

    def _password_gate(self, address: str) -> "PasswordGate | None":
        """The room's password as this client meets it, its failures counted by ``address``; None if there is none."""
        admission = self.seat.admission
        if admission.password is None:
            return None
        return PasswordGate(admission.password, admission.password_failures, address)

    def _peer(self) -> str:
        """Where the client connects from, for the log: ``('127.0.0.1', 5000)``, or ``1.2.3.4 through`` its proxy."""
        return (f"{self._client_behind} through " if self._client_behind else "") + format_peer(self.address)

    def _name_threads_after(self, session: Session) -> None:
        """Once the client is in the room, its threads carry its name (for the log and debugging)."""
        if session.stage is Stage.CHATTING and self.reader.name == f"reader-{self.default_name}":
            self.reader.name = f"reader-{session.name}"
            self.writer.name = f"writer-{session.name}"

    def _close(self) -> None:
        """Send what is queued, give the client LINGER_S to close its end, then close ours."""
        if self.transport is not None:
            self.transport.close()  # a WebSocket ends with a close frame, whatever ended it
        self.outbox.close()
        if self.writer.ident is None:  # it never took a seat: this thread sends the rest itself
            self.sock.settimeout(LINGER_S)  # a client that does not read gets no longer
            self.outbox.run_writer()
        else:
            self.writer.join(LINGER_S)
            if self.writer.is_alive():  # stuck sending to a client that does not read
                self.outbox.abort()
                self.writer.join(THREAD_JOIN_S)
        # Only now, with the writer done: the linger's socket timeout would apply to its sends too.
        linger_and_close(self.sock)
        self._on_close(self)
        if self.session is not None and self.session.member_id:  # it joined: "connected" was logged then
            log.info("🔌 %s disconnected", self.name)
        elif self.session is not None or self.opening is not Opening.HTTP:  # a page's file has its HTTP line
            log.info("🔌 %s disconnected before joining", self._peer())
