"""The terminal chat client: two threads around one TCP connection.

* The **main thread** reads what the user types and sends it.
* The **receiver thread** reads lines from the server and prints them.

Both block (one on the keyboard, one on the socket), which is why they need
a thread each. When the server goes away, the receiver ends the main
thread's wait with ``Console.stop_reading``, which sends it SIGINT: nothing
else interrupts a blocking ``input()``.
"""

import signal
import socket
import sys
import threading

from chat.core.framing import LineFramer, decode_line, encode_line
from chat.client.terminal import Console, render, timestamped
from chat.core.text import sanitize

DEFAULT_HOST = "localhost"
DEFAULT_PORT = 8080
CONNECT_TIMEOUT_S = 10.0
# After /quit, how long to wait for the server's goodbye before closing anyway.
QUIT_WAIT_S = 2.0
# A hostile server must not make us buffer without bound either.
MAX_INCOMING_LINE_BYTES = 64 * 1024
RECV_BYTES = 64 * 1024
QUIT_WORDS = ("quit", "/quit")


def parse_address(host: "str | None", port: "str | None") -> "tuple[str, int]":
    """Turn the HOST and PORT arguments into an address; raise ValueError if they are bad.

    HOST may be ``name``, ``name:port``, ``[IPv6]`` or ``[IPv6]:port``.
    """
    host = host or DEFAULT_HOST
    if host.startswith("["):
        inside, bracket, rest = host[1:].partition("]")
        if not bracket or (rest and not rest.startswith(":")):
            raise ValueError(f"cannot read the address {host!r}")
        host, port_in_host = inside, rest[1:] or None
    elif host.count(":") == 1:
        host, port_in_host = host.split(":")
    else:
        port_in_host = None
    if port_in_host is not None and port is not None:
        raise ValueError("give the port once: either HOST:PORT or HOST PORT")
    port = port_in_host or port
    if port is None:
        return host, DEFAULT_PORT
    if not port.isdigit() or not 1 <= int(port) <= 65535:
        raise ValueError(f"the port must be a number from 1 to 65535, not {port!r}")
    return host, int(port)


def format_address(host: str, port: int) -> str:
    """``host:port``, with an IPv6 address in brackets: ``[::1]:8080``."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def describe_connect_error(error: OSError, host: str, port: int) -> str:
    where = format_address(host, port)
    if isinstance(error, ConnectionRefusedError):
        start = "python server.py" if port == DEFAULT_PORT else f"python server.py --port {port}"
        message = f"Could not connect to {where}: connection refused. Is the server running? Start it with: {start}"
    elif isinstance(error, socket.gaierror):
        message = f"Could not find the host {host!r}. Check the spelling."
    elif isinstance(error, TimeoutError):
        message = f"Timed out connecting to {where}. Check the address, and that a firewall lets the port through."
    else:
        message = f"Could not connect to {where}: {error.strerror or error}."
    if host.endswith(".app.github.dev"):
        message += " (Codespaces forwards HTTPS only, not raw TCP: see the README.)"
    return message


class ChatClient:
    def __init__(self, sock: socket.socket, console: Console, color: bool) -> None:
        self.sock = sock
        self.console = console
        self.color = color
        self.leaving = threading.Event()  # set once the user chose to leave
        self.server_gone = threading.Event()  # set once the connection has ended
        self.connection_lost = False  # the connection ended with an error, not a close
        self.receiver = threading.Thread(target=self._receive, name="receiver", daemon=True)

    def run(self) -> int:
        """Chat until the user leaves or the server goes away; return the exit status."""
        # stop_reading() interrupts input() with SIGINT, so SIGINT must raise
        # KeyboardInterrupt even where a parent process set it to be ignored.
        signal.signal(signal.SIGINT, signal.default_int_handler)
        self.receiver.start()
        try:
            self._send_typed_lines()
        except KeyboardInterrupt:
            if self.server_gone.is_set():
                self.console.clear_line()  # the prompt is of no use any more
            else:
                self.console.show("")  # end the line that shows ^C
        # From here on we are leaving: a second Ctrl+C must not interrupt it.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        self._leave()
        return 1 if self.connection_lost else 0

    def _send_typed_lines(self) -> None:
        while not self.server_gone.is_set():
            try:
                text = self.console.read_line()
            except EOFError:  # Ctrl+D, or the end of piped input
                if self.console.interactive:
                    self.console.show("")  # end the prompt's line
                return
            if text.strip().lower() in QUIT_WORDS:
                return
            if text.strip():
                try:
                    self.sock.sendall(encode_line(text))
                except OSError:
                    # The receiver sees the broken connection too, and says so.
                    self.server_gone.wait(QUIT_WAIT_S)
                    return

    def _leave(self) -> None:
        """Say goodbye to the server, wait briefly for its reply, then close."""
        if not self.server_gone.is_set():
            self.leaving.set()
            self.sock.settimeout(QUIT_WAIT_S)  # a server that stopped reading cannot hold us
            try:
                self.sock.sendall(encode_line("/quit"))
            except OSError:
                pass
            self.server_gone.wait(QUIT_WAIT_S)
        try:
            self.sock.shutdown(socket.SHUT_RDWR)  # wakes the receiver if still waiting
        except OSError:
            pass
        self.receiver.join(QUIT_WAIT_S)
        self.sock.close()

    def _receive(self) -> None:
        """The receiver thread: print each line from the server until the connection ends."""
        framer = LineFramer(MAX_INCOMING_LINE_BYTES)
        farewell = "Server closed the connection."
        try:
            while data := self.sock.recv(RECV_BYTES):
                for event in framer.feed(data):
                    if isinstance(event, bytes):
                        self.console.show(render(sanitize(decode_line(event)), self.color))
        except OSError as error:
            self.connection_lost = not self.leaving.is_set()
            farewell = f"Lost the connection to the server ({error.strerror or error})."
        finally:  # whatever ended the loop, the main thread must not wait for us
            self.server_gone.set()
            if not self.leaving.is_set():
                self.console.show(timestamped("🔌 " + farewell), keep_prompt=False)
                self.console.stop_reading()


def run(host: str, port: int, name: "str | None", color: bool) -> int:
    """Connect, chat, and return the process exit status."""
    console = Console(interactive=sys.stdin.isatty() and sys.stdout.isatty())
    console.show(timestamped(f"🔄 Connecting to {format_address(host, port)}..."))
    try:
        sock = socket.create_connection((host, port), timeout=CONNECT_TIMEOUT_S)
        if name:
            sock.sendall(encode_line(f"/nick {name}"))
    except OSError as error:
        print(timestamped("❌ " + describe_connect_error(error, host, port)), file=sys.stderr)
        return 1
    sock.settimeout(None)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    console.show(timestamped("✅ Connected! Type messages and press Enter. Type 'quit' to exit."))
    return ChatClient(sock, console, color).run()
