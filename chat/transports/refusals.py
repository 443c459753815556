"""Clients the server turns away (it is full, their address has too many connections, or it is banned).

They get no threads: the accept loop watches their sockets with its
selector and does everything here without blocking. A refused client still
gets one clear answer, in its own language: a browser's HTTP request gets
``503 Service Unavailable`` with the reason (``403 Forbidden`` if banned), a raw client the reason as a
``[SYSTEM]`` line, and another protocol (TLS, HTTP/2) its own farewell. So the answer waits for the client's first bytes, or for
ANSWER_WAIT_S if it sends nothing (a raw client may stay silent).

The socket is only closed once the client has closed its end, or after
LINGER_S: closing it with the client's request or "/nick" line unread would
make the kernel reset the connection, which could destroy the answer before
the client reads it.
"""

import logging
import math
import selectors
import socket
import threading
import time
from dataclasses import dataclass

from chat.core import messages
from chat.core.framing import encode_line
from chat.sockets import LINGER_S, RECV_BYTES
from chat.transports.handshake import Opening, farewell_bytes, forbidden_response, sniff, unavailable_response

log = logging.getLogger(__name__)

# How long to wait for a refused client's first bytes before answering it as a raw client.
ANSWER_WAIT_S = 0.25
# Refused clients being answered at once, at most: past this (a flood of
# connections), a refused client is closed without an answer, so that the
# refused cannot use up the server's file descriptors.
MAX_REFUSED = 256
# A refused address, refused again for the same reason, is logged again only after this long.
REFUSAL_LOG_EVERY_S = 10.0


@dataclass
class _Refused:
    refusal: str
    forbidden: bool  # banned (HTTP 403), rather than unable to take it now (503)
    deadline: float  # when to answer (not yet answered) or to close (answered)
    received: bytes = b""
    answered: bool = False


class Refusals:
    """The refused clients that the accept loop is answering and closing."""

    def __init__(self, selector: selectors.BaseSelector) -> None:
        self._selector = selector
        self._refused: "dict[socket.socket, _Refused]" = {}

    def __contains__(self, sock) -> bool:
        return sock in self._refused

    def add(self, sock: socket.socket, refusal: str, forbidden: bool = False) -> None:
        if len(self._refused) >= MAX_REFUSED:
            sock.close()
            return
        sock.setblocking(False)
        self._refused[sock] = _Refused(refusal, forbidden, time.monotonic() + ANSWER_WAIT_S)
        self._selector.register(sock, selectors.EVENT_READ)

    def on_readable(self, sock: socket.socket) -> None:
        refused = self._refused[sock]
        try:
            data = sock.recv(RECV_BYTES)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            self._close(sock)
        elif not refused.answered:
            refused.received += data
            kind = sniff(refused.received)
            if kind is not Opening.UNDECIDED:
                self._answer(sock, refused, kind)

    def seconds_until_due(self) -> float:
        """How long select() may wait before one of them needs an answer or closing."""
        if not self._refused:
            return math.inf
        return max(0.0, min(r.deadline for r in self._refused.values()) - time.monotonic())

    def handle_due(self) -> None:
        now = time.monotonic()
        for sock, refused in list(self._refused.items()):
            if refused.deadline > now:
                continue
            if refused.answered:
                self._close(sock)
            else:
                self._answer(sock, refused, Opening.RAW)  # silent, or still undecided: a raw client

    def close_all(self) -> None:
        for sock in list(self._refused):
            self._close(sock)

    def _answer(self, sock: socket.socket, refused: _Refused, kind: Opening) -> None:
        if kind is Opening.HTTP:
            respond = forbidden_response if refused.forbidden else unavailable_response
            answer = respond(refused.refusal).serialize()
        elif kind is Opening.RAW:
            answer = encode_line(messages.system(refused.refusal))
        else:  # another protocol (TLS, HTTP/2): its own farewell
            answer = farewell_bytes(kind)
        refused.answered = True
        refused.deadline = time.monotonic() + LINGER_S
        try:
            sock.send(answer)  # a new socket's buffer always has room for it
            sock.shutdown(socket.SHUT_WR)
        except OSError:
            self._close(sock)

    def _close(self, sock: socket.socket) -> None:
        self._selector.unregister(sock)
        del self._refused[sock]
        sock.close()


class RefusalLog:
    """Logs refused clients, once per address and reason every REFUSAL_LOG_EVERY_S at most.

    A flood of connections from one address is refused a thousand times a
    second; the log says so once, then how many more there were. The accept
    loop and the connections (refused a seat) share one.
    """

    def __init__(self, clock=time.monotonic) -> None:
        self._clock = clock
        # Guards _logged: (host, refusal) -> [when last logged, refused since]; oldest first.
        self._lock = threading.Lock()
        self._logged: "dict[tuple[str, str], list]" = {}

    def refused(self, peer: str, host: str, refusal: str) -> None:
        """``peer`` (as the log names it), from ``host``, was refused for ``refusal``."""
        with self._lock:
            now = self._clock()
            key = (host, refusal)
            record = self._logged.get(key)
            if record is not None and now - record[0] < REFUSAL_LOG_EVERY_S:
                record[1] += 1
                return
            more = f" ({record[1]} more from there since)" if record is not None and record[1] else ""
            self._logged.pop(key, None)
            self._logged[key] = [now, 0]
            if len(self._logged) > MAX_REFUSED:
                del self._logged[next(iter(self._logged))]
        log.warning("⛔ Refused %s: %s%s", peer, refusal, more)
