"""A client's outgoing bytes: a bounded queue, a fast path and a writer thread.

Any thread may :meth:`Outbox.put` bytes; it never blocks, so the room can call
it while holding its lock. Sending happens in two ways:

* :meth:`Outbox.flush`, called right after queueing (without the room lock),
  tries a non-blocking ``send`` of everything queued (and again, once, for
  lines queued meanwhile). A client that keeps up takes its lines this way,
  and its writer thread never wakes.
* The writer thread (:meth:`Outbox.run_writer`) sends whatever the fast path
  could not, with ordinary blocking sends, so a slow client only ever delays
  its own thread.

Either way, whatever is queued goes out together, usually in one system
call, and only one thread sends at a time (the ``_sending`` flag), so lines
leave in the order they were queued.

If more than ``max_bytes`` are waiting to be sent, the client is not keeping
up ("SendQ exceeded" in IRC terms): the outbox stops accepting lines and shuts
the socket down, which ends the connection.
"""

import enum
import socket
import threading
from collections import deque

from chat.sockets import DONTWAIT

# How many times flush() sends again when more lines arrived during its send,
# before it leaves the rest to the writer thread.
FAST_PATH_ROUNDS = 2


class State(enum.Enum):
    OPEN = "open"  # accepting and sending lines
    CLOSING = "closing"  # sending what is queued, then done
    OVERFLOWED = "overflowed"  # the client fell too far behind
    FAILED = "failed"  # a send failed: the connection is broken
    DONE = "done"  # the writer has finished


class Outbox:
    def __init__(self, sock: socket.socket, max_bytes: int) -> None:
        self._sock = sock
        self.max_bytes = max_bytes
        # Guards every attribute below. The writer waits on _cond for work;
        # the others take the bare lock, which is cheaper than the condition.
        # A reader whose own client is behind waits on _drained.
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._drained = threading.Condition(self._lock)
        self._drain_waiters = 0  # readers waiting on _drained: nobody, nearly always
        self._chunks: "deque[bytes]" = deque()
        # Bytes accepted by put() and not yet accepted by the kernel,
        # including a batch that is being sent right now.
        self._backlog_bytes = 0
        # True while one thread (fast path or writer) is inside a send call.
        self._sending = False
        self._state = State.OPEN
        self._socket_shut = False
        self.cut_off_by_server = False  # overflow() was called: the server said why already

    @property
    def state(self) -> State:
        with self._lock:
            return self._state

    @property
    def backlog_bytes(self) -> int:
        """Bytes queued and not yet taken by the kernel (read without the lock: a snapshot)."""
        return self._backlog_bytes

    def is_open(self) -> bool:
        """Whether the connection still takes or sends lines (a snapshot, without the lock)."""
        return self._state in (State.OPEN, State.CLOSING)

    def put(self, data: bytes) -> bool:
        """Queue ``data``; return True if the caller must now call flush().

        Never blocks and does no I/O, so it may be called under the room
        lock. If lines are already waiting, whoever queued the first of them
        is about to flush, or a send is under way and will pick these up:
        then no flush is needed, which saves a call per line in a busy room.
        """
        with self._lock:
            if self._state is not State.OPEN:
                return self._state is State.OVERFLOWED
            if self._backlog_bytes + len(data) > self.max_bytes:
                self._state = State.OVERFLOWED
                self._chunks.clear()
                self._cond.notify()
                self._drained.notify_all()
                return True  # flush() shuts the socket down
            self._backlog_bytes += len(data)
            chunks = self._chunks
            chunks.append(data)
            return len(chunks) == 1 and not self._sending

    def offer(self, data: bytes, max_backlog: int) -> "bool | None":
        """Like put(), but refuse (return None) while more than ``max_backlog`` bytes wait.

        For lines that one sender aims at one client, such as private
        messages: others cannot then fill this client's queue on their own.
        """
        with self._lock:
            if self._state is State.OPEN and self._backlog_bytes > max_backlog:
                return None
        return self.put(data)

    def wait_until_below(self, max_backlog: int, timeout: float) -> bool:
        """Wait until at most ``max_backlog`` bytes are waiting, or the outbox is no longer open.

        True if that happened within ``timeout`` seconds.
        """
        with self._lock:
            self._drain_waiters += 1
            try:
                return self._drained.wait_for(
                    lambda: self._backlog_bytes <= max_backlog or self._state is not State.OPEN, timeout
                )
            finally:
                self._drain_waiters -= 1

    def flush(self) -> None:
        """Send what is queued if the socket takes it without blocking; else leave it to the writer."""
        # Called once per recipient of every line: when the socket takes it
        # all and nothing new came meanwhile, it leaves at the first check.
        with self._lock:
            if self._state is State.OVERFLOWED:
                data = None
            elif DONTWAIT is None:  # Windows: the writer sends
                self._cond.notify()
                return
            elif self._sending or not self._chunks:
                return  # nothing to send, or the thread that is sending will see the new lines
            else:
                data = self._take_all_locked()
        chunks = self._chunks
        if data is None:
            # The writer may be blocked in a send to this very client: wake it.
            self.abort()
            return
        rounds_left = FAST_PATH_ROUNDS
        while True:
            try:
                sent = self._sock.send(data, DONTWAIT)
            except (BlockingIOError, InterruptedError):
                sent = 0
            except OSError:
                self._fail()
                return
            rounds_left -= 1
            with self._lock:
                self._sending = False
                self._backlog_bytes -= sent
                if self._drain_waiters:  # a Condition's notify costs more than the send's bookkeeping
                    self._drained.notify_all()
                if sent == len(data) and not chunks and self._state is State.OPEN:
                    return  # all sent, and nothing new: the common case
                if sent < len(data):  # the socket is full
                    chunks.appendleft(data[sent:])
                go_on = sent == len(data) and chunks and self._state is State.OPEN
                if not go_on or not rounds_left:
                    if chunks or self._state is not State.OPEN:
                        self._cond.notify()  # the writer carries on, or must see the new state
                    return
                data = self._take_all_locked()  # lines queued during our send go out too

    def close(self) -> None:
        """Accept nothing more; the writer sends what is queued, then ends the connection."""
        with self._lock:
            if self._state is State.OPEN:
                self._state = State.CLOSING
            self._cond.notify()
            self._drained.notify_all()

    def overflow(self) -> None:
        """Cut the client off as if its queue had overflowed (the server's total is too high)."""
        self.cut_off_by_server = True
        with self._lock:
            if self._state in (State.OPEN, State.CLOSING):
                self._state = State.OVERFLOWED
                self._chunks.clear()
            self._cond.notify()
            self._drained.notify_all()
        self.abort()

    def run_writer(self) -> None:
        """The writer thread's body: send queued bytes until closed, then shut the socket down."""
        while True:
            with self._lock:
                # Never send while another thread is sending: lines would be reordered.
                while self._sending or (self._state is State.OPEN and not self._chunks):
                    self._cond.wait()
                if self._state in (State.OVERFLOWED, State.FAILED) or not self._chunks:
                    break  # the connection is over, or it is closing and all is sent
                data = self._take_all_locked()
            try:
                self._sock.sendall(data)
            except OSError:
                self._fail()
                break
            with self._lock:
                self._sending = False
                self._backlog_bytes -= len(data)
                if self._drain_waiters:
                    self._drained.notify_all()
        with self._lock:
            finished_cleanly = self._state is State.CLOSING
            if finished_cleanly:
                self._state = State.DONE
            self._drained.notify_all()
        if finished_cleanly:
            # Half-close: the peer reads everything we sent, then end-of-file.
            try:
                self._sock.shutdown(socket.SHUT_WR)
            except OSError:
                pass
        else:
            self.abort()

    def _take_all_locked(self) -> bytes:
        data = self._chunks[0] if len(self._chunks) == 1 else b"".join(self._chunks)
        self._chunks.clear()
        self._sending = True
        return data

    def _fail(self) -> None:
        """A send failed, so the connection is broken: drop what is queued."""
        with self._lock:
            self._sending = False
            if self._state is not State.OVERFLOWED:  # keep the reason it was cut off
                self._state = State.FAILED
            self._chunks.clear()
            self._backlog_bytes = 0
            self._cond.notify()
            self._drained.notify_all()

    def abort(self) -> None:
        """Shut the socket down both ways at once, waking any thread blocked on it."""
        with self._lock:
            if self._socket_shut:
                return
            self._socket_shut = True
        try:
            self._sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass  # already disconnected
