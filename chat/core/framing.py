"""Newline framing: turning a TCP byte stream into lines, and lines into bytes.

TCP delivers a stream of bytes, not messages. One ``recv()`` may return half a
line, or three lines and the start of a fourth. The chat protocol therefore
ends every line with ``\\n`` (a ``\\r`` before it is tolerated, for telnet and
Windows tools), and :class:`LineFramer` reassembles the stream into lines.

This module does no I/O: it is fed bytes and returns values, so the same code
serves the threaded server, the terminal client and the tests.
"""

import codecs
from dataclasses import dataclass

ENCODING = "utf-8"

# A security limit: without it, a peer that never sends b"\n" could make us
# buffer until memory runs out.
DEFAULT_MAX_LINE_BYTES = 4096


@dataclass(frozen=True)
class LineTooLong:
    """Event: the peer sent a line longer than the framer's limit.

    The line is discarded (up to its newline) and is not returned.
    """

    max_line_bytes: int


class LineFramer:
    """Split a byte stream into lines at ``b"\\n"``, never holding more than a limit.

    Feed it whatever ``recv()`` returned; it returns the complete lines found
    so far (as bytes, without the ``\\n``) and keeps the unfinished tail.
    A line longer than ``max_line_bytes`` (not counting its ``\r\n`` or
    ``\n``) produces one :class:`LineTooLong` event, as soon as it is
    detected, and its remaining bytes are dropped without being stored.
    However the stream is split into chunks, the same events come out in the
    same order.
    """

    def __init__(self, max_line_bytes: int = DEFAULT_MAX_LINE_BYTES) -> None:
        if max_line_bytes < 1:
            raise ValueError("max_line_bytes must be at least 1")
        self.max_line_bytes = max_line_bytes
        # Invariant: _partial never contains b"\n" (so it is never searched
        # again) and never exceeds max_line_bytes, plus one b"\r" at its end
        # that may turn out to be half of a b"\r\n".
        self._partial = bytearray()
        # True while skipping the rest of an over-long line.
        self._discarding = False

    def feed(self, data: bytes) -> list:
        """Return the ``bytes`` lines and :class:`LineTooLong` events in ``data``."""
        events: list = []
        start = 0
        while True:
            newline = data.find(b"\n", start)
            end = len(data) if newline == -1 else newline
            self._take(data, start, end, events)
            if newline == -1:
                return events
            if not self._discarding:
                events.append(bytes(self._partial))
            self._partial.clear()
            self._discarding = False
            start = newline + 1

    def _take(self, data: bytes, start: int, end: int, events: list) -> None:
        """Append ``data[start:end]`` (which has no newline) to the current line."""
        if self._discarding:
            return
        excess = len(self._partial) + (end - start) - self.max_line_bytes
        if excess > 0:
            last_byte = data[end - 1 : end] if end > start else self._partial[-1:]
            if excess > 1 or last_byte != b"\r":
                self._partial.clear()
                self._discarding = True
                events.append(LineTooLong(self.max_line_bytes))
                return
        self._partial += data[start:end]


def decode_line(raw: bytes, max_bytes: "int | None" = None) -> str:
    """Decode one framed line: invalid UTF-8 becomes U+FFFD, a final ``\\r`` is dropped.

    Each invalid byte becomes a three-byte U+FFFD, so with ``max_bytes`` the
    text is cut to encode in at most that many bytes again.
    """
    text = raw.decode(ENCODING, errors="replace")
    if text.endswith("\r"):
        text = text[:-1]
    if max_bytes is not None and len(text) * 3 > max_bytes and "\ufffd" in text:
        text = text.encode(ENCODING)[:max_bytes].decode(ENCODING, errors="ignore")
    return text


def encode_line(text: str) -> bytes:
    """Encode ``text`` (which must not contain a newline) as one framed line."""
    return (text + "\n").encode(ENCODING)


def encode_lines(lines: "list[str]") -> bytes:
    """Encode several lines as one block of framed lines (one bytes object to queue)."""
    return "".join(f"{line}\n" for line in lines).encode(ENCODING)


def is_text(first_bytes: bytes) -> bool:
    """Whether the first line in ``first_bytes`` could be text: no NUL, and valid UTF-8.

    A character cut off at the end may be completed by the next read, so it
    counts as text. Whatever sends anything else (a TLS handshake, a binary
    protocol) is no chat client.
    """
    line = first_bytes.partition(b"\n")[0]
    if b"\0" in line:
        return False
    try:
        codecs.getincrementaldecoder(ENCODING)().decode(line, final=False)
    except UnicodeDecodeError:
        return False
    return True
