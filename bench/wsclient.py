"""A minimal WebSocket client for the load generator, without I/O.

The load generator's WebSocket clients speak just enough of RFC 6455 to
chat: the opening handshake (``GET /ws`` with ``Upgrade: websocket``, and
the check of the server's ``Sec-WebSocket-Accept``), masked text frames
out, unmasked text frames in, a pong for every ping and a close frame to
answer a close frame. No extensions are offered, so no compression.

Why not the ``websockets`` library's sans-I/O ``ClientProtocol``, which the
server's tests use? Cost. This process drives every client of a scenario
and shares the machine with the server, so its CPU per delivery must stay
well below the server's. The library's frame parser is a generator that
yields for every field of every frame: about 7 µs per small frame received
and 4 µs per frame sent, against 0.4 µs and 2.5 µs here. Measured in
fan-out-200-ws, the generator spent about 4.5 µs of CPU per delivery with
the library and 2.5 µs with this client (2.1 µs with raw lines): at the
quarter of a million deliveries a second that the raw room reaches, the
library would need more than a whole core. The library still checks this
client: ``tests/test_bench.py`` runs it against websockets' ``ServerProtocol``.

Like the library's protocol objects, a :class:`WebSocketClient` is fed the
bytes the socket received (:meth:`~WebSocketClient.receive_data`, which
returns the text messages in them) and asked for the bytes to send
(:meth:`~WebSocketClient.data_to_send`); the caller owns the socket.

Errors are the server's fault (:class:`HandshakeFailed` for a refused or
malformed answer, :class:`ProtocolError` for a frame that breaks the
protocol); both are :class:`ServerError`, which carries what was wrong.
"""

import base64
import enum
import hashlib
import os

# RFC 6455, section 1.3: the server proves it read our key by hashing it with this.
ACCEPT_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
# A security limit: the longest response head we buffer while waiting for its end.
MAX_HEAD_BYTES = 8192
# A security limit: the longest frame or message we buffer. Chat lines are
# at most a few KiB; a frame claiming more is refused before it is read.
MAX_MESSAGE_BYTES = 1 << 20

TEXT, BINARY, CONTINUATION = 0x1, 0x2, 0x0
CLOSE, PING, PONG = 0x8, 0x9, 0xA


class State(enum.Enum):
    CONNECTING = "connecting"  # request sent, waiting for the 101 response
    OPEN = "open"  # messages flow both ways
    CLOSED = "closed"  # the server sent a close frame; we answered it


class ServerError(Exception):
    """The server broke the protocol: its fault, not ours."""


class HandshakeFailed(ServerError):
    """The server did not switch to WebSocket as it should have."""

    def __init__(self, reason: str, head: bytes) -> None:
        self.reason = reason
        self.head = head  # the response head as received (at most MAX_HEAD_BYTES)
        status = head.split(b"\r\n", 1)[0].decode("latin-1")
        super().__init__(f"WebSocket handshake failed: {reason} (got {status!r})")


class ProtocolError(ServerError):
    """A frame from the server that RFC 6455 forbids."""

    def __init__(self, reason: str, header: bytes) -> None:
        self.reason = reason
        self.header = header  # the frame's first bytes
        super().__init__(f"WebSocket protocol error: {reason} (frame header {header.hex()})")


def accept_key(key: bytes) -> bytes:
    """The ``Sec-WebSocket-Accept`` a server must answer to ``Sec-WebSocket-Key: key``."""
    return base64.b64encode(hashlib.sha1(key + ACCEPT_GUID).digest())


def mask(payload: bytes, key: bytes) -> bytes:
    """XOR ``payload`` with the 4-byte ``key`` repeated (RFC 6455, section 5.3)."""
    n = len(payload)
    repeated = (key * (n // 4 + 1))[:n]
    # One big-integer XOR does all the bytes at C speed.
    return (int.from_bytes(payload, "little") ^ int.from_bytes(repeated, "little")).to_bytes(n, "little")


def client_frame(opcode: int, payload: bytes) -> bytes:
    """One final frame from a client: masked with a fresh random key, as RFC 6455 requires."""
    n = len(payload)
    if n < 126:
        header = bytes((0x80 | opcode, 0x80 | n))
    elif n < 1 << 16:
        header = bytes((0x80 | opcode, 0x80 | 126)) + n.to_bytes(2, "big")
    else:
        header = bytes((0x80 | opcode, 0x80 | 127)) + n.to_bytes(8, "big")
    key = os.urandom(4)
    return header + key + mask(payload, key)


class WebSocketClient:
    """One client's side of a WebSocket connection, without a socket.

    Text sent before the handshake has completed waits, in order, and leaves
    right after it (so a first ``/nick`` line comes first, as the server
    expects).
    """

    def __init__(self, host: str, path: str = "/ws") -> None:
        self.state = State.CONNECTING
        self.key = base64.b64encode(os.urandom(16))
        self._output = bytearray(
            b"GET %s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n" % (path.encode(), host.encode(), self.key)
        )
        self._waiting: "list[bytes]" = []  # text to send once open
        self._buffer = b""  # received bytes not yet parsed: a partial head or frame
        self._searched = 0  # how far the head has been searched for its end
        self._fragments: "list[bytes] | None" = None  # a fragmented text message's parts so far
        self._fragments_bytes = 0

    # -- sending -------------------------------------------------------------

    def send_text(self, payload: bytes) -> None:
        """Send one text message (``payload`` is its UTF-8 bytes); nothing once closed."""
        if self.state is State.OPEN:
            self._output += client_frame(TEXT, payload)
        elif self.state is State.CONNECTING:
            self._waiting.append(payload)

    def data_to_send(self) -> bytes:
        """The bytes to write to the socket now (b"" if none)."""
        if not self._output:
            return b""
        data = bytes(self._output)
        self._output.clear()
        return data

    # -- receiving -----------------------------------------------------------

    def receive_data(self, data: bytes) -> "list[bytes]":
        """Take bytes from the socket; return the payloads of the text messages completed by them."""
        buffer = self._buffer + data if self._buffer else data
        if self.state is State.CONNECTING:
            buffer = self._take_head(buffer)
            if self.state is State.CONNECTING:
                self._buffer = buffer
                return []
        messages: "list[bytes]" = []
        position, end = 0, len(buffer)
        while self.state is State.OPEN and end - position >= 2:
            first, second = buffer[position], buffer[position + 1]
            if second & 0x80:
                raise ProtocolError("a server must not mask its frames", buffer[position : position + 2])
            if first & 0x70:
                raise ProtocolError("reserved bits set, but no extension was agreed", buffer[position : position + 2])
            length, start = second & 0x7F, position + 2
            if length == 126:
                length, start = int.from_bytes(buffer[start : start + 2], "big"), start + 2
            elif length == 127:
                length, start = int.from_bytes(buffer[start : start + 8], "big"), start + 8
            if start > end:  # the extended length is not all here yet
                break
            if length > MAX_MESSAGE_BYTES:
                reason = f"a frame of {length} bytes, over the limit of {MAX_MESSAGE_BYTES}"
                raise ProtocolError(reason, buffer[position:start])
            if end - start < length:
                break
            payload = buffer[start : start + length]
            if first == 0x80 | TEXT and self._fragments is None:
                messages.append(payload)  # the usual case: a whole message in one frame
            else:
                self._take_other(first, payload, messages, buffer[position:start])
            position = start + length
        self._buffer = buffer[position:]
        return messages

    def _take_head(self, buffer: bytes) -> bytes:
        """Read the response head once it is whole; return the bytes after it."""
        end = buffer.find(b"\r\n\r\n", max(0, self._searched - 3))
        if end < 0 or end > MAX_HEAD_BYTES:
            if end > MAX_HEAD_BYTES or len(buffer) > MAX_HEAD_BYTES:
                raise HandshakeFailed(f"a response head over {MAX_HEAD_BYTES} bytes", buffer[:MAX_HEAD_BYTES])
            self._searched = len(buffer)
            return buffer
        head, rest = buffer[:end], buffer[end + 4 :]
        status_line, *header_lines = head.split(b"\r\n")
        if not status_line.startswith(b"HTTP/1.1 101 "):
            raise HandshakeFailed("the status is not 101 Switching Protocols", head)
        headers = {}
        for line in header_lines:
            name, colon, value = line.partition(b":")
            if not colon:
                raise HandshakeFailed(f"a header line without a colon: {line[:80]!r}", head)
            headers[name.strip().lower()] = value.strip()
        if headers.get(b"upgrade", b"").lower() != b"websocket":
            raise HandshakeFailed("no Upgrade: websocket", head)
        if b"upgrade" not in (token.strip().lower() for token in headers.get(b"connection", b"").split(b",")):
            raise HandshakeFailed("no Connection: Upgrade", head)
        if headers.get(b"sec-websocket-accept") != accept_key(self.key):
            raise HandshakeFailed("a wrong Sec-WebSocket-Accept", head)
        if b"sec-websocket-extensions" in headers:
            raise HandshakeFailed("an extension we did not offer", head)
        self.state = State.OPEN
        for payload in self._waiting:
            self._output += client_frame(TEXT, payload)
        self._waiting = []
        return rest

    def _take_other(self, first: int, payload: bytes, messages: "list[bytes]", header: bytes) -> None:
        """Any frame but a whole text message (``header`` is the frame's, for errors)."""
        final, opcode = first & 0x80, first & 0x0F
        if opcode >= CLOSE:
            if not final or len(payload) > 125:
                raise ProtocolError("a control frame must be final and at most 125 bytes", header)
            if opcode == PING:
                self._output += client_frame(PONG, payload)
            elif opcode == CLOSE:
                self._output += client_frame(CLOSE, payload[:2])  # echo the code (RFC 6455, 5.5.1)
                self.state = State.CLOSED
            elif opcode != PONG:
                raise ProtocolError(f"unknown control opcode {opcode:#x}", header)
            return
        if opcode == TEXT:
            if self._fragments is not None:
                raise ProtocolError("a new message before the last one ended", header)
            self._fragments, self._fragments_bytes = [], 0
        elif opcode != CONTINUATION or self._fragments is None:
            raise ProtocolError(f"unexpected opcode {opcode:#x} (the chat sends text only)", header)
        self._fragments_bytes += len(payload)
        if self._fragments_bytes > MAX_MESSAGE_BYTES:
            raise ProtocolError(f"a message over the limit of {MAX_MESSAGE_BYTES} bytes", header)
        self._fragments.append(payload)
        if final:
            messages.append(b"".join(self._fragments))
            self._fragments = None
