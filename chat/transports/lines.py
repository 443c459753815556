"""The raw wire format: newline-ended UTF-8 lines both ways (``nc``, ``client.py``).

A transport turns the bytes a client sends into lines, and the room's lines
into bytes for its outbox. This one has nothing to add on the way out: the
room's bytes are already lines, so its ``queue`` is the outbox's own ``put``.
:class:`chat.transports.websocket.WebSocketTransport` has the same face.
"""

from chat.core.framing import LineFramer
from chat.transports.outbox import Outbox


class LineTransport:
    """Raw lines over one connection's outbox."""

    def __init__(self, outbox: Outbox, max_line_bytes: int, private_share_bytes: int) -> None:
        self.outbox = outbox
        self._framer = LineFramer(max_line_bytes)
        self._private_share_bytes = private_share_bytes
        # The room calls these once per recipient of every line: nothing in between.
        self.queue = outbox.put
        self.flush = outbox.flush
        self.wait_until_below = outbox.wait_until_below

    @property
    def backlog_bytes(self) -> int:
        return self.outbox.backlog_bytes

    def feed(self, data: bytes, now: float) -> "tuple[list, bool]":
        """The lines in ``data`` (see LineFramer.feed), and whether the client is closing (never)."""
        return self._framer.feed(data), False

    def feed_eof(self) -> None:
        """The client closed its end: nothing to answer."""

    def queue_private(self, data: bytes) -> "bool | None":
        return self.outbox.offer(data, self._private_share_bytes)

    def close(self) -> None:
        self.outbox.close()

    def seconds_until_due(self, now: float) -> "float | None":
        """A raw client has no timer of its own (TCP keepalive watches the line)."""
        return None

    def on_due(self, now: float) -> bool:
        return True
