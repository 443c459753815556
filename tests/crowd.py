"""Many chat clients driven from one thread with non-blocking sockets and a selector.

Threads are fine for a handful of test clients; for hundreds, one selector
loop is lighter and keeps the test process from becoming the bottleneck.
"""

import selectors
import socket
import struct
import time

from chat.core.framing import LineFramer, decode_line, encode_line

CHECK_INTERVAL_S = 0.02


class Member:
    def __init__(self, sock: socket.socket, name: str, reading: bool) -> None:
        self.sock = sock
        self.name = name
        self.reading = reading
        self.framer = LineFramer(1 << 20)
        self.lines: "list[str]" = []
        self.outgoing = bytearray()
        self.closed = False  # by the server (end of stream or reset) or by us
        self.registered = False  # with the selector; a silent non-reader is not

    def has_line(self, line: str) -> bool:
        return line in self.lines


class Crowd:
    def __init__(self, address) -> None:
        self.address = address
        self.members: "list[Member]" = []
        self._selector = selectors.DefaultSelector()

    def connect(self, name: str, reading: bool = True, receive_buffer: "int | None" = None) -> Member:
        """Connect a client that names itself ``name``; a non-reading one never calls recv."""
        sock = socket.socket()
        if receive_buffer:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
        sock.settimeout(5)
        sock.connect(self.address)
        sock.setblocking(False)
        member = Member(sock, name, reading)
        self.members.append(member)
        self.send(member, encode_line(f"/nick {name}"))
        return member

    def send(self, member: Member, data: bytes) -> None:
        if member.closed:
            return
        member.outgoing += data
        self._update(member)

    def say(self, member: Member, text: str) -> None:
        self.send(member, encode_line(text))

    def reset(self, member: Member) -> None:
        """Close abruptly: the server sees a reset, not a goodbye."""
        if member.closed:
            return
        member.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.close(member)

    def close(self, member: Member) -> None:
        if not member.closed:
            member.closed = True
            if member.registered:
                self._selector.unregister(member.sock)
            member.sock.close()

    def close_all(self) -> None:
        for member in self.members:
            self.close(member)
        self._selector.close()

    def pump(self, condition=lambda: False, timeout: float = 5.0) -> bool:
        """Move bytes both ways until ``condition()`` holds or ``timeout`` passes.

        The condition is checked every CHECK_INTERVAL_S, not after every
        event, so that an expensive condition does not slow the crowd down.
        """
        deadline = time.monotonic() + timeout
        while True:
            if condition():
                return True
            next_check = min(deadline, time.monotonic() + CHECK_INTERVAL_S)
            while (remaining := next_check - time.monotonic()) > 0:
                for key, events in self._selector.select(remaining):
                    member = key.data
                    if events & selectors.EVENT_WRITE:
                        self._write(member)
                    if events & selectors.EVENT_READ and not member.closed:
                        self._read(member)
            if time.monotonic() >= deadline:
                return condition()

    def _update(self, member: Member) -> None:
        events = (selectors.EVENT_READ if member.reading else 0) | (selectors.EVENT_WRITE if member.outgoing else 0)
        if events and member.registered:
            self._selector.modify(member.sock, events, member)
        elif events:
            self._selector.register(member.sock, events, member)
        elif member.registered:
            self._selector.unregister(member.sock)
        member.registered = bool(events)

    def _write(self, member: Member) -> None:
        try:
            sent = member.sock.send(member.outgoing)
        except BlockingIOError:
            return
        except OSError:
            member.outgoing.clear()
            return self.close(member)
        del member.outgoing[:sent]
        self._update(member)

    def _read(self, member: Member) -> None:
        try:
            data = member.sock.recv(65536)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            return self.close(member)
        for raw in member.framer.feed(data):
            if isinstance(raw, bytes):
                member.lines.append(decode_line(raw))
