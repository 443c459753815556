"""A browser's connection, sans I/O: HTTP requests, and chat lines over WebSocket.

:class:`WebSocketAdapter` wraps the public sans-I/O layer of the
``websockets`` library, ``ServerProtocol``, which parses the HTTP request
and speaks RFC 6455 (framing, masking, ping and pong, the closing
handshake). The adapter adds what the chat needs on top:

* the answer to the request: the page's files, the WebSocket handshake, or
  an HTTP error (see :mod:`chat.transports.handshake`);
* chat lines: one text message is one line, and a message holding newlines
  is several, each limited to ``max_line_bytes`` like a line typed over raw
  TCP (:class:`chat.core.framing.LineFramer` does the splitting, so the same
  bytes lines and :class:`~chat.core.framing.LineTooLong` events come out);
* the close codes RFC 6455 gives: 1003 for a binary message (the chat has
  no use for one), 1007 for a text message that is not UTF-8, 1009 for a
  message over ``max_message_bytes`` (websockets sends that one itself);
* keepalive: :meth:`WebSocketAdapter.ping` sends a ping and says when the
  previous one went unanswered;
* a budget for every frame the client sends, control frames and empty ones
  included, which the chat's flood control never sees: a client far beyond
  ``max_frame_rate`` is an excess flood, closed with 1008 (see
  :class:`WebSocketAdapter`);
* one request per connection: bytes after the head of the request wait
  until it is answered, so that a second request in the same packet is
  never parsed as the answer goes out (after a page or an error they are
  dropped, after the handshake they are read as frames).

Driving it: :class:`WebSocketTransport` wraps an adapter whose handshake
is done for the connection's reader thread (``feed``) and the room's
broadcasts (``queue``); :class:`chat.transports.connection.ClientConnection`
feeds the request to the adapter before that.

There is no socket here, and no thread: only bytes in and bytes out.

The protocol object is not thread-safe, and bytes must leave in the order it
made them (a text frame must never follow the close frame), so one lock,
:attr:`WebSocketAdapter.lock`, guards the protocol object and is held while
its output is handed to ``write``. ``write`` must therefore not block: an
outbox's ``put`` is right, a socket's ``sendall`` is not.
"""

import codecs
import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Container, Mapping

from websockets import CloseCode, Frame, Opcode, Request, ServerProtocol
from websockets.http11 import MAX_LINE_LENGTH
from websockets.protocol import CLOSED, OPEN

from chat.core.framing import DEFAULT_MAX_LINE_BYTES, LineFramer
from chat.core.ratelimit import ExcessMeter, TokenBucket
from chat.transports import handshake
from chat.web import PageFile, page_files

log = logging.getLogger(__name__)

# A message may hold several lines (a paste, say); one longer than this many
# lines' worth is refused with close code 1009.
MESSAGE_LINES = 16
# Frames per second a client may send, bursts of twice that. A browser sends
# one text frame per chat line, which flood control holds to 10 a second,
# and a pong now and then: fifty is far more than any client of the chat needs.
DEFAULT_MAX_FRAME_RATE = 50.0
# An excess flood: more than this many bursts of frames beyond the rate, net
# of what the rate forgives. With the default, the 301st frame sent at once:
# more than the 221 lines at once after which the chat's flood control
# disconnects a client (chat.core.flood), so a paste sent one frame a line is
# still the flood control's to judge, line by line.
EXCESS_FRAME_BURSTS = 2
EXCESS_FLOOD_REASON = "Excess flood"
# websockets parses all the bytes it is given in one go, and has no public way
# to stop after a frame; so the bytes of one recv are fed this many at a time,
# and feeding stops once the budget is spent. A client's frame is at least 6
# bytes (a header and the mask), so past the budget at most 170 more frames are
# parsed, not the ten thousand of a 64 KiB recv.
FEED_SLICE_BYTES = 1024
# The end of a request's head: websockets reads only lines ending in CRLF.
_HEAD_END = b"\r\n\r\n"

# websockets logs every connection's opening and closing at INFO; the chat's
# own log says that, with the user's name. Warnings and errors still show.
_protocol_log = logging.getLogger(__name__ + ".protocol")
_protocol_log.setLevel(logging.WARNING)


@dataclass
class Received:
    """What one call of receive_data() or receive_eof() produced."""

    # Chat lines in order, as LineFramer.feed returns them: ``bytes`` without
    # the newline (decode each with chat.core.framing.decode_line), and
    # LineTooLong events for lines over the limit.
    lines: list = field(default_factory=list)
    # The WebSocket handshake has just completed: the client may join the room.
    opened: bool = False
    # The status of the HTTP answer sent just now, if one was (101 for a WebSocket).
    status: "int | None" = None
    # No more lines will come: leave the room, let the outbox send what is
    # queued and half-close, then close the socket once the peer has closed
    # its end (or after a short wait).
    closing: bool = False
    # The client went far beyond its frame budget just now: it was closed
    # with 1008, and the adapter logged it (once; no need to again).
    excess_flood: bool = False


class FrameBudget:
    """Every frame one client sends, against ``rate`` frames a second, bursts of twice that.

    The rule of the chat's flood control (:mod:`chat.core.flood`), for
    frames: a frame beyond the rate is still read (a ping is answered, a
    line goes on to the flood control), and counted; a client that keeps
    going far beyond the rate, EXCESS_FRAME_BURSTS bursts net of what the
    rate forgives, is an excess flood.
    """

    def __init__(self, rate: float, clock: Callable[[], float]) -> None:
        burst = max(1.0, 2 * rate)
        self._bucket = TokenBucket(rate, burst, clock)
        self._excess = ExcessMeter(rate, EXCESS_FRAME_BURSTS * burst, clock)

    def take(self) -> bool:
        """Count one frame; False once the client is an excess flood."""
        return self._bucket.allow() or not self._excess.add()


class WebSocketAdapter:
    """One connection that began with an HTTP request line, without I/O.

    Feed it every byte received, starting with the request line, through
    :meth:`receive_data`; what it must send goes to ``write``. The request
    is answered as soon as its head is complete. Options, all keywords:

    * ``server_names``: the hosts a WebSocket's ``Origin`` may name, from
      :func:`chat.transports.handshake.server_names` with the connection's
      local address and the allowed origins; by default the names known
      without a connection (the localhost names and this machine's name).
    * ``max_frame_rate``: frames per second, bursts of twice that; 0 for no
      limit. Every frame counts, pings, pongs, close frames and empty
      continuations included (see :class:`FrameBudget`). A client far beyond
      it is an excess flood: it gets a close frame with 1008 and "Excess
      flood", the adapter logs it once, and nothing more it sent is read.
    * ``name``: says who the client is, for the log line of an excess flood.
    * ``refuse``: given the request, why this client is refused (it is
      banned), or None; a refused request is answered ``403 Forbidden``.
    * ``from_trusted_proxy``: the peer is a trusted proxy, whose
      ``X-Forwarded-Host`` names the address ``/qr.svg`` is drawn for.
    * ``clock``: the time when :meth:`receive_data` is not given ``now``.
    """

    def __init__(
        self,
        write: Callable[[bytes], object],
        *,
        max_line_bytes: int = DEFAULT_MAX_LINE_BYTES,
        max_message_bytes: "int | None" = None,
        pages: "Mapping[str, PageFile] | None" = None,
        server_names: "Container[str] | None" = None,
        max_frame_rate: float = DEFAULT_MAX_FRAME_RATE,
        name: "Callable[[], str] | None" = None,
        refuse: "Callable[[Request], str | None]" = lambda request: None,
        from_trusted_proxy: bool = False,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._write = write
        self.max_line_bytes = max_line_bytes
        self.max_message_bytes = max_message_bytes or MESSAGE_LINES * (max_line_bytes + 1)
        self._pages = page_files() if pages is None else pages
        self._server_names = handshake.server_names() if server_names is None else server_names
        self.max_frame_rate = max_frame_rate
        self._name = name or (lambda: "a WebSocket client")
        self._refuse = refuse
        self._from_trusted_proxy = from_trusted_proxy
        self._clock = clock
        # Guards everything below, and is held while output goes to _write,
        # so that bytes leave in the order the protocol made them.
        self.lock = threading.Lock()
        self._protocol = ServerProtocol(max_size=self.max_message_bytes, logger=_protocol_log)
        self._framer = LineFramer(max_line_bytes)
        # The start of the request, kept to read its method when the parser
        # refuses the request before handing it over.
        self._head = bytearray()
        self._head_tail = b""  # the last bytes of the head searched for its end, at most 3
        self._answered = False
        # The time as last given: every frame's token is counted against it.
        self._now = clock()
        self._frames: "FrameBudget | None" = None  # from the handshake on, unless there is no limit
        self.request: "Request | None" = None  # the request, once parsed
        # The text message being received: its UTF-8 check, and whether its
        # bytes so far end a line. None between messages.
        self._utf8: "codecs.IncrementalDecoder | None" = None
        self._ends_line = False
        self._pings_sent = 0
        self._awaiting_pong = False

    # -- receiving -----------------------------------------------------------

    def receive_data(self, data: bytes, *, now: "float | None" = None) -> Received:
        """Take bytes from the network; return the chat lines in them and what happened.

        ``now`` is the time they arrived (``time.monotonic()``, as the
        transport's ``feed`` is given it); by default the adapter's clock.
        """
        with self.lock:
            # Time as given never runs backwards here, so that a reading from
            # another clock cannot refill the budget or overdraw it.
            self._now = max(self._now, self._clock() if now is None else now)
            received = Received()
            if data:
                self._awaiting_pong = False  # any word from the peer shows it is there
            if not self._answered:
                data = self._receive_head(data, received)
            for start in range(0, len(data), FEED_SLICE_BYTES):
                self._protocol.receive_data(data[start : start + FEED_SLICE_BYTES])
                if not self._take_events(received):
                    break
            return self._send_output(received)

    def _receive_head(self, data: bytes, received: Received) -> bytes:
        """Feed the parser the bytes up to the end of the request's head; return the rest.

        The rest waits until the request is answered: websockets would
        otherwise go on to parse it (as frames, the only thing it reads after
        a request) and, failing, end the stream before the answer is sent.
        """
        if len(self._head) < MAX_LINE_LENGTH:
            self._head += data[: MAX_LINE_LENGTH - len(self._head)]
        searched = self._head_tail + data
        found = searched.find(_HEAD_END)
        self._head_tail = searched[-(len(_HEAD_END) - 1) :]
        end = len(data) if found < 0 else found + len(_HEAD_END) - (len(searched) - len(data))
        self._protocol.receive_data(data[:end])
        self._take_events(received)
        return data[end:]

    def _take_events(self, received: Received) -> bool:
        """Act on what the parser read; False once nothing more should be fed to it."""
        for event in self._protocol.events_received():
            if isinstance(event, Request):
                self._answer(event, received)
                continue
            if self._frames is not None and not self._frames.take():
                log.warning(
                    "⛔ Disconnecting %s: excess flood (WebSocket frames far beyond %g a second)",
                    self._name(),
                    self.max_frame_rate,
                )
                self._protocol.fail(CloseCode.POLICY_VIOLATION, EXCESS_FLOOD_REASON)
                received.excess_flood = True
                return False
            if self._protocol.state is OPEN:
                self._take_frame(event, received.lines)
        # Once the end of the stream is queued (after an answer other than
        # 101, a failure, or the closing handshake) the parser only discards.
        return not self._protocol.eof_sent

    def receive_eof(self) -> Received:
        """The peer closed its end (``recv`` returned ``b""``)."""
        with self.lock:
            self._protocol.receive_eof()
            return self._send_output(Received())

    def _answer(self, request: Request, received: Received) -> None:
        self.request = request
        self._answered = True
        refusal = self._refuse(request)
        if refusal is not None:
            response = handshake.forbidden_response(refusal)
        else:
            response = handshake.answer(request, self._pages, self._server_names, self._from_trusted_proxy)
        if response is None:
            response = self._protocol.accept(request)
        self._protocol.send_response(response)
        received.status = response.status_code
        received.opened = response.status_code == 101
        if received.opened and self.max_frame_rate > 0:
            self._frames = FrameBudget(self.max_frame_rate, clock=lambda: self._now)

    def _take_frame(self, frame: Frame, lines: list) -> None:
        if frame.opcode is Opcode.TEXT:
            self._utf8 = codecs.getincrementaldecoder("utf-8")()
            self._ends_line = False  # an empty message is a blank line
            self._take_text(frame, lines)
        elif frame.opcode is Opcode.CONT and self._utf8 is not None:
            self._take_text(frame, lines)
        elif frame.opcode is Opcode.BINARY:
            self._protocol.fail(CloseCode.UNSUPPORTED_DATA, "only text messages carry chat lines")
        # Pings are answered by the protocol itself; a pong, or any frame,
        # has already cleared _awaiting_pong; a close frame was answered.

    def _take_text(self, frame: Frame, lines: list) -> None:
        try:
            self._utf8.decode(frame.data, final=frame.fin)
        except UnicodeDecodeError:
            self._protocol.fail(CloseCode.INVALID_DATA, "text messages must be UTF-8")
            return
        if frame.data:
            lines += self._framer.feed(frame.data)
            self._ends_line = frame.data.endswith(b"\n")
        if frame.fin:
            if not self._ends_line:  # the end of a message ends its last line
                lines += self._framer.feed(b"\n")
            self._utf8 = None

    def _send_output(self, received: Received) -> Received:
        """Hand the protocol's output to write(); note whether the connection is ending."""
        chunks = self._protocol.data_to_send()
        if not self._answered and self._protocol.handshake_exc is not None:
            # The parser refused the request before handing it over, and
            # either answered it itself or (a malformed request) only queued
            # the end of the stream: then the answer is ours to give.
            self._answered = True
            if not any(chunks):
                refused = handshake.refusal(self._protocol.handshake_exc, bytes(self._head))
                response = handshake.error_response(refused)
                chunks.insert(0, response.serialize())
            received.status = int(next(chunk for chunk in chunks if chunk)[9:12])
        data = b"".join(chunks)
        if data:
            self._write(data)
        received.closing = (
            b"" in chunks or self._protocol.close_expected() or self._protocol.state is CLOSED
        )
        return received

    # -- sending ---------------------------------------------------------------

    def send_lines(self, data: bytes, write: "Callable[[bytes], object] | None" = None):
        """Send the newline-ended lines in ``data`` (as the room hands them out), a text frame each.

        Returns what ``write`` returned; ``write`` replaces the adapter's own
        for these frames (an outbox's ``offer``, say). Returns None, sending
        nothing, once the connection no longer takes lines. The frames come
        from :func:`text_frames`, which frames a broadcast once for all its
        WebSocket recipients.
        """
        frames = text_frames(data)
        with self.lock:
            if self._protocol.state is not OPEN:
                return None
            return (write or self._write)(frames)

    def ping(self) -> bool:
        """Send a ping; False instead if the last one is still unanswered, or the connection is not open.

        Call it after ``Timings.ping_interval_s`` without a word from the peer. False
        means the peer has said nothing since the last ping, so it is gone:
        close the connection.
        """
        with self.lock:
            if self._protocol.state is not OPEN or self._awaiting_pong:
                return False
            self._pings_sent += 1
            self._protocol.send_ping(str(self._pings_sent).encode())
            self._awaiting_pong = True
            self._write(b"".join(self._protocol.data_to_send()))
            return True

    def close(self, code: int = CloseCode.GOING_AWAY, reason: str = "") -> bool:
        """Start the closing handshake; False if it had started already.

        Lines sent before this still arrive before the close frame. Then wait
        for the peer's close frame (receive_data says ``closing``) or for a
        short while, and close the connection.
        """
        with self.lock:
            if self._protocol.state is not OPEN:
                return False
            self._protocol.send_close(code, reason)
            self._write(b"".join(self._protocol.data_to_send()))
            return True


class WebSocketTransport:
    """Chat lines over WebSocket, once the handshake is done: the same face as LineTransport.

    Lines go out as text frames; what the client sends comes back as lines.
    The client is pinged after ``ping_interval_s`` without a word from it,
    and is gone if it then answers nothing until the next ping is due.
    """

    def __init__(self, adapter: WebSocketAdapter, outbox, private_share_bytes: int, ping_interval_s: float, now: float) -> None:
        self.adapter = adapter
        self.outbox = outbox
        self._private_share_bytes = private_share_bytes
        self._ping_interval_s = ping_interval_s
        self._heard = now  # when the client last said anything, or we pinged it
        self.flush = outbox.flush
        self.wait_until_below = outbox.wait_until_below

    @property
    def backlog_bytes(self) -> int:
        return self.outbox.backlog_bytes

    def queue(self, data: bytes) -> bool:
        return bool(self.adapter.send_lines(data))

    def queue_private(self, data: bytes) -> "bool | None":
        return self.adapter.send_lines(data, write=lambda frames: self.outbox.offer(frames, self._private_share_bytes))

    def feed(self, data: bytes, now: float) -> "tuple[list, bool]":
        """The lines in ``data``, and whether the client is closing. Pongs and close frames go out at once."""
        self._heard = now
        received = self.adapter.receive_data(data, now=now)
        self.outbox.flush()
        return received.lines, received.closing

    def feed_eof(self) -> None:
        self.adapter.receive_eof()
        self.outbox.flush()

    def close(self) -> None:
        """A close frame after what is queued (if not sent yet), then the end of the connection."""
        self.adapter.close()
        self.outbox.close()

    def seconds_until_due(self, now: float) -> float:
        """How long until the next ping is due."""
        return max(0.0, self._heard + self._ping_interval_s - now)

    def on_due(self, now: float) -> bool:
        """Ping the client; False if it answered nothing since the last ping: it is gone."""
        if not self.adapter.ping():
            return False
        self._heard = now
        self.outbox.flush()
        return True


# The last lines framed, and their frames: a broadcast queues the same bytes
# object for every member in turn, under the room lock. One entry in all, so
# it holds on to one block of lines at most; a tuple, replaced whole, so
# threads that frame other lines at the same moment only miss the cache.
_last_framed: "tuple[bytes, bytes]" = (b"", b"")


def text_frames(data: bytes) -> bytes:
    """One unmasked text frame per newline-ended line of ``data``.

    A server's frames are not masked and, without compression, the same for
    every recipient: so a broadcast is framed once, however many WebSocket
    members it reaches, not once per member. (Frames go out without the
    protocol object's send_text, which would frame them again for each; the
    adapter still checks, under its lock, that the connection is open.)
    """
    global _last_framed
    last_data, last_frames = _last_framed
    if last_data is data:
        return last_frames
    lines = data.split(b"\n")
    lines.pop()  # what follows the last newline: nothing
    frames = b"".join(Frame(Opcode.TEXT, line).serialize(mask=False) for line in lines)
    _last_framed = (data, frames)
    return frames
