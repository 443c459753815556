"""Throwaway servers for the page's tests: they serve the page and play the chat server's part.

Neither is the chat server. A test scripts the conversation: it waits for
the lines the page sends (:meth:`expect`) and sends lines back
(:meth:`send`), which tests the page alone, line by line.

* :class:`LibraryPageServer` is websockets' own threaded server, answering
  plain HTTP requests with :func:`chat.transports.handshake.answer`.
* :class:`AdapterPageServer` is a minimal server of our own around
  :class:`chat.transports.websocket.WebSocketAdapter`, one thread per
  connection: it checks the adapter against a real browser.

Both listen on 127.0.0.1, on a free port, and can be restarted on the same
port, as a chat server would be.
"""

import queue
import socket
import threading
from typing import NamedTuple

from websockets.exceptions import ConnectionClosed
from websockets.protocol import State
from websockets.sync.server import ServerConnection, serve

from chat.core.framing import encode_line
from chat.transports.handshake import Opening, answer, forbidden_response, sniff
from chat.transports.websocket import WebSocketAdapter
from chat.web import page_files
from tests.helpers import TIMEOUT_S

CLOSED = "<closed>"  # what expect() sees when the page's connection ends
# Chromium opens spare connections ahead of need that may never send a
# request; websockets' server waits this long for one before giving up.
# stop() ends those at once instead of waiting.
OPEN_TIMEOUT_S = 2.0


class Connection(NamedTuple):
    """One open WebSocket connection, as the tests drive it."""

    send: "callable"  # send(line)
    close: "callable"  # close(code): start the closing handshake


class PageServer:
    """What both servers share: the lines received, the open connections, and waiting."""

    def __init__(self) -> None:
        self.port = 0
        self.received: "queue.Queue[str]" = queue.Queue()
        # Guards _connections, the open WebSocket connections, oldest first.
        self._lock = threading.Lock()
        self._connections: list = []
        self._connected = threading.Condition(self._lock)
        self.connections_opened = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def expect(self, wanted: str, timeout: float = TIMEOUT_S) -> None:
        """Wait for the page to send ``wanted``, skipping nothing: it must be the next line."""
        try:
            line = self.received.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"the page never sent {wanted!r}") from None
        assert line == wanted, f"expected {wanted!r}, the page sent {line!r}"

    def expect_nothing(self, timeout: float) -> None:
        try:
            line = self.received.get(timeout=timeout)
        except queue.Empty:
            return
        raise AssertionError(f"expected silence, the page sent {line!r}")

    def wait_until_connected(self, count: int = 1, timeout: float = TIMEOUT_S) -> None:
        """Wait until ``count`` WebSocket connections have been opened since the server started."""
        with self._connected:
            if not self._connected.wait_for(lambda: self.connections_opened >= count, timeout):
                raise AssertionError(f"{self.connections_opened} connection(s), expected {count}")

    def send(self, *lines: str) -> None:
        """Send lines to the newest connection."""
        with self._lock:
            connection = self._connections[-1]
        for line in lines:
            connection.send(line)

    def close_connections(self) -> None:
        """Close every open connection, as a server does when it stops (code 1001, going away)."""
        with self._lock:
            connections = list(self._connections)
        for connection in connections:
            connection.close(1001)

    def _opened(self, connection: Connection) -> None:
        with self._connected:
            self._connections.append(connection)
            self.connections_opened += 1
            self._connected.notify_all()

    def _closed(self, connection: Connection) -> None:
        with self._lock:
            self._connections.remove(connection)
        self.received.put(CLOSED)


class LibraryPageServer(PageServer):
    """The page and a scripted chat, served by websockets' threaded server."""

    # While set, every request (the page's and its WebSocket's) is refused with
    # 403 and this text, as the chat server refuses a banned address.
    forbidden: "str | None" = None

    def start(self) -> "LibraryPageServer":
        self._accepted: "list[ServerConnection]" = []  # every connection accepted, guarded by _lock
        self._server = serve(
            self._serve,
            "127.0.0.1",
            self.port,
            process_request=self._process_request,
            open_timeout=OPEN_TIMEOUT_S,
            create_connection=self._create_connection,
        )
        self.port = self._server.socket.getsockname()[1]
        self._thread = threading.Thread(target=self._server.serve_forever, name="page-server")
        self._thread.start()
        return self

    def _create_connection(self, *args, **kwargs) -> ServerConnection:
        connection = ServerConnection(*args, **kwargs)
        with self._lock:
            self._accepted.append(connection)
        return connection

    def _process_request(self, connection, request):
        if self.forbidden is not None:
            return forbidden_response(self.forbidden)
        return answer(request, page_files())  # None for /ws: go on with the handshake

    def _serve(self, websocket) -> None:
        connection = Connection(websocket.send, websocket.close)
        self._opened(connection)
        try:
            for message in websocket:
                self.received.put(message)
        except ConnectionClosed:
            pass
        finally:
            self._closed(connection)

    def stop(self) -> None:
        """Close every connection and stop, without waiting for spare connections to time out.

        websockets' shutdown() waits for every connection's thread, and the
        thread of a spare connection waits for a request until OPEN_TIMEOUT_S.
        Once the server accepts no more connections, the ones still waiting
        for their opening request are ended, which unblocks their threads.
        """
        self.close_connections()
        shutdown = threading.Thread(target=self._server.shutdown, name="page-server-shutdown")
        shutdown.start()
        assert self._server.socket_closed.wait(TIMEOUT_S), "the page server went on accepting"
        with self._lock:
            waiting = [c for c in self._accepted if c.protocol.state is State.CONNECTING]
        for connection in waiting:
            try:
                connection.socket.shutdown(socket.SHUT_RDWR)
            except OSError:  # closed meanwhile
                pass
        for thread in (shutdown, self._thread):
            thread.join(TIMEOUT_S)
            assert not thread.is_alive(), "the page server did not stop"


class AdapterPageServer(PageServer):
    """The page and a scripted chat, served through WebSocketAdapter by a thread per connection."""

    def start(self) -> "AdapterPageServer":
        self._listener = socket.create_server(("127.0.0.1", self.port))
        self.port = self._listener.getsockname()[1]
        self._threads: "list[threading.Thread]" = []
        self._sockets: "set[socket.socket]" = set()  # guarded by _lock
        self._accepting = threading.Thread(target=self._accept, name="adapter-page-server")
        self._accepting.start()
        return self

    def _accept(self) -> None:
        while True:
            try:
                sock, _ = self._listener.accept()
            except OSError:  # the listener was closed: stop
                return
            with self._lock:
                self._sockets.add(sock)
            thread = threading.Thread(target=self._serve, args=(sock,), name="adapter-connection")
            self._threads.append(thread)
            thread.start()

    def _serve(self, sock: socket.socket) -> None:
        # The tests' lines are small, so a blocking sendall under the adapter's
        # lock is harmless here; the chat server uses its outbox instead.
        adapter = WebSocketAdapter(sock.sendall)
        connection = Connection(lambda line: adapter.send_lines(encode_line(line)), adapter.close)
        opened = False
        try:
            first = sock.recv(65536)
            if not first or sniff(first) is not Opening.HTTP:
                return
            received = adapter.receive_data(first)
            while True:
                if received.opened:
                    opened = True
                    self._opened(connection)
                for line in received.lines:
                    self.received.put(line.decode())
                if received.closing:
                    return
                data = sock.recv(65536)
                received = adapter.receive_data(data) if data else adapter.receive_eof()
        except OSError:
            pass  # the browser went away, or stop() shut the socket down
        finally:
            if opened:
                self._closed(connection)
            with self._lock:
                self._sockets.discard(sock)
            try:
                sock.shutdown(socket.SHUT_WR)
            except OSError:
                pass
            sock.close()

    def stop(self) -> None:
        try:
            self.close_connections()
        finally:  # whatever happened, the accepting thread must end, or the test run never would
            try:
                self._listener.shutdown(socket.SHUT_RDWR)  # wakes the accept() (closing would not)
            except OSError:
                pass
            self._listener.close()
        self._accepting.join(TIMEOUT_S)
        with self._lock:
            for sock in self._sockets:
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
        for thread in self._threads:
            thread.join(TIMEOUT_S)
        assert not any(t.is_alive() for t in [self._accepting, *self._threads]), "the page server did not stop"
