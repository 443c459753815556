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
from websockets.sync.server import serve

from chat.transports.handshake import Opening, answer, sniff
from chat.transports.websocket import WebSocketAdapter
from chat.web import page_files
from tests.helpers import TIMEOUT_S

CLOSED = "<closed>"  # what expect() sees when the page's connection ends
# Chromium opens spare connections ahead of need that may never send a
# request; websockets' server waits this long for one before giving up, and
# its shutdown waits for that.
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

    def start(self) -> "LibraryPageServer":
        self._server = serve(
            self._serve,
            "127.0.0.1",
            self.port,
            process_request=self._process_request,
            open_timeout=OPEN_TIMEOUT_S,
        )
        self.port = self._server.socket.getsockname()[1]
        self._thread = threading.Thread(target=self._server.serve_forever, name="page-server")
        self._thread.start()
        return self

    def _process_request(self, connection, request):
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
        self.close_connections()
        self._server.shutdown()
        self._thread.join(TIMEOUT_S)
        assert not self._thread.is_alive(), "the page server did not stop"


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
        connection = Connection(adapter.send_line, adapter.close)
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
        self.close_connections()
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


class Relay:
    """The network between the page and a chat server: a TCP relay that a test can hold and cut.

    The page is loaded from the relay's address, so its WebSocket goes
    through it. :meth:`cut` ends every relayed connection at both ends, as a
    dropped network does (the page and the server each see the connection
    close). While the relay is held (:meth:`hold`), a new connection is
    accepted and its first bytes are read, but it reaches the server only
    once :meth:`release` is called: a test can make the page's reconnect
    wait until the room has moved on.

    A connection is relayed once the browser has sent something, so a spare
    connection that Chromium opens ahead of need never reaches the chat
    server (where a client that stays silent joins as a raw client).
    """

    def __init__(self, upstream_port: int) -> None:
        self.upstream = ("127.0.0.1", upstream_port)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.address = self._listener.getsockname()
        # Guards _threads, _sockets, _relayed and _stopping.
        self._lock = threading.Lock()
        self._threads: "list[threading.Thread]" = []
        self._sockets: "set[socket.socket]" = set()  # every socket open, on either side
        self._relayed: "list[tuple[socket.socket, socket.socket]]" = []  # (browser's, server's)
        self._stopping = False
        self._released = threading.Event()  # set: connections go through; clear: they wait
        self._released.set()
        self._accepting = threading.Thread(target=self._accept, name="relay")

    def start(self) -> "Relay":
        self._accepting.start()
        return self

    def hold(self) -> None:
        """Make new connections wait at the relay until :meth:`release`."""
        self._released.clear()

    def release(self) -> None:
        """Let the held connections, and every one after them, through to the server."""
        self._released.set()

    def cut(self) -> None:
        """End every relayed connection at both ends; held ones are left waiting."""
        with self._lock:
            relayed = list(self._relayed)
        for pair in relayed:
            for sock in pair:
                _shut(sock)

    def stop(self) -> None:
        with self._lock:
            self._stopping = True
            sockets = list(self._sockets)
        self._released.set()
        _shut(self._listener)  # wakes the accept() (closing would not)
        self._listener.close()
        for sock in sockets:
            _shut(sock)
        self._accepting.join(TIMEOUT_S)
        with self._lock:
            threads = list(self._threads)
        for thread in threads:
            thread.join(TIMEOUT_S)
        assert not any(t.is_alive() for t in [self._accepting, *threads]), "the relay did not stop"

    def _start_thread(self, target, *args) -> "threading.Thread | None":
        """Start a thread of the relay's, recorded first; None if the relay is stopping."""
        thread = threading.Thread(target=target, args=args, name="relay-connection")
        with self._lock:
            if self._stopping:
                return None
            self._threads.append(thread)
        thread.start()
        return thread

    def _accept(self) -> None:
        while True:
            try:
                browser, _ = self._listener.accept()
            except OSError:  # the listener was shut down: stop
                return
            with self._lock:
                self._sockets.add(browser)
            if self._start_thread(self._relay, browser) is None:
                self._forget(browser)

    def _relay(self, browser: socket.socket) -> None:
        server = None
        try:
            first = browser.recv(65536)
            if not first:
                return
            self._released.wait()
            server = socket.create_connection(self.upstream, timeout=TIMEOUT_S)
            server.settimeout(None)
            with self._lock:
                if self._stopping:
                    return
                self._sockets.add(server)
                self._relayed.append((browser, server))
            server.sendall(first)
            answers = self._start_thread(_pump, server, browser)
            if answers is not None:
                _pump(browser, server)
                answers.join(TIMEOUT_S)  # it ends as the server's socket is shut: then both can close
        except OSError:
            pass  # the server is not there, or one side went away
        finally:
            with self._lock:
                if server is not None and (browser, server) in self._relayed:
                    self._relayed.remove((browser, server))
            self._forget(browser, server)

    def _forget(self, *sockets) -> None:
        for sock in sockets:
            if sock is None:
                continue
            with self._lock:
                self._sockets.discard(sock)
            _shut(sock)
            sock.close()


def _pump(source: socket.socket, target: socket.socket) -> None:
    """Copy bytes from ``source`` to ``target`` until ``source`` ends, then end ``target``."""
    try:
        while data := source.recv(65536):
            target.sendall(data)
    except OSError:
        pass
    _shut(target)


def _shut(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
