"""The terminal chat client: two threads around one TCP connection.

* The **main thread** reads what the user types and sends it.
* The **receiver thread** reads lines from the server and shows them.

Both block (one on the keyboard, one on the socket), which is why they need
a thread each. When the server goes away, the receiver ends the main
thread's wait with ``Console.stop_reading``.
"""

import contextlib
import signal
import socket
import sys
import threading

from chat.client.address import Address, is_local
from chat.client.completion import Roster
from chat.client.link import LinkError, open_link
from chat.client.terminal import ReadingStopped, open_console, render, timestamped
from chat.core.commands import parse_command
from chat.core.password import PASSWORD_NEEDED
from chat.core.framing import LineFramer, decode_line, encode_line
from chat.core.text import sanitize

CONNECT_TIMEOUT_S = 10.0
# After /quit, how long to wait for the server's goodbye before closing anyway.
QUIT_WAIT_S = 2.0
# A hostile server must not make us buffer without bound either.
MAX_INCOMING_LINE_BYTES = 64 * 1024
RECV_BYTES = 64 * 1024
PASSWORD_HINT = "🔒 Start the client with --password to be asked for it (or set CHAT_PASSWORD)."
KEYS_HELP = (
    "💡 Keys: Tab completes commands and names, Up and Down recall what you sent, "
    "Ctrl+L clears the screen, Ctrl+D leaves."
)


def is_quit(text: str) -> bool:
    """True for a line that means "leave": ``quit`` alone, or ``/quit`` with or without words after it."""
    text = sanitize(text).strip()  # as the server reads it: a tab is a space
    if text.lower() == "quit":
        return True
    return text.startswith("/") and not text.startswith("//") and parse_command(text)[0] == "quit"


def is_help(text: str) -> bool:
    text = sanitize(text).strip()
    return text.startswith("/") and not text.startswith("//") and parse_command(text)[0] == "help"


def describe_connect_error(error: OSError, address: Address) -> str:
    if isinstance(error, LinkError):  # a WebSocket address that answered, but not as a chat server
        return str(error)
    host, port = address.host, address.port
    where = str(address)
    if isinstance(error, ConnectionRefusedError):
        message = f"Could not connect to {where}: connection refused. "
        if is_local(host):
            start = "python server.py" if port == 8080 else f"python server.py --port {port}"
            message += f"Is the server running? Start it with: {start}"
        else:
            message += "Is the server running there, and on that port?"
    elif isinstance(error, socket.gaierror):
        message = f"Could not find the host {host!r}. Check the spelling."
    elif isinstance(error, TimeoutError):
        message = f"Timed out connecting to {where}. Check the address, and that a firewall lets the port through."
    else:
        message = f"Could not connect to {where}: {error.strerror or error}."
    if host.endswith(".app.github.dev") and address.scheme == "tcp":
        message += f" (Codespaces forwards HTTPS only: connect with wss://{host} instead.)"
    return message


class Interrupts:
    """What Ctrl+C (SIGINT) and `kill` (SIGTERM) do: the client leaves, cleanly.

    Python raises KeyboardInterrupt wherever the main thread happens to be,
    which can be halfway through building one of prompt_toolkit's or asyncio's
    objects: the half-built object then reports an error when it is collected,
    or the exception is dropped because it was raised inside a finalizer. So
    the handler only notes the interrupt (``Console.note_interrupt``), and the
    console ends its wait from a safe place: the prompt ends with
    KeyboardInterrupt, or LineConsole's select() wakes. Only around calls that
    wait for the network (connecting, sending) is KeyboardInterrupt raised at
    once. At the prompt itself, prompt_toolkit reads Ctrl+C as a key.
    """

    def __init__(self, console) -> None:
        self.console = console
        self._raise_at_once = False  # set and read by the main thread only
        # Installed even where a parent process set SIGINT to be ignored.
        signal.signal(signal.SIGINT, self._handle)
        signal.signal(signal.SIGTERM, self._handle)
        # A KeyboardInterrupt that Python had to drop is not an error to show.
        sys.unraisablehook = _quiet_about_interrupts(sys.unraisablehook)

    def _handle(self, signum, frame) -> None:
        self.console.note_interrupt()
        if self._raise_at_once:
            raise KeyboardInterrupt

    @contextlib.contextmanager
    def raised_at_once(self):
        """Within this block, Ctrl+C raises KeyboardInterrupt at once (also for one already noted)."""
        self._raise_at_once = True
        try:
            if self.console.interrupted:
                raise KeyboardInterrupt
            yield
        finally:
            self._raise_at_once = False

    def ignore(self) -> None:
        """From here on the client is leaving: a second Ctrl+C must not interrupt that."""
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)


def _quiet_about_interrupts(hook):
    def unraisable(report) -> None:
        if not isinstance(report.exc_value, KeyboardInterrupt):
            hook(report)

    return unraisable


class ChatClient:
    def __init__(self, sock: socket.socket, console, color: bool, roster: Roster, interrupts: Interrupts) -> None:
        self.sock = sock
        self.console = console
        self.interrupts = interrupts
        self.color = color
        self.roster = roster  # who is online, for Tab; also tells whether we were let in
        self.leaving = threading.Event()  # set once the user chose to leave
        self.server_gone = threading.Event()  # set once the connection has ended
        self.connection_lost = False  # the connection ended with an error, not a close
        self.receiver = threading.Thread(target=self._receive, name="receiver", daemon=True)

    def run(self) -> int:
        """Chat until the user leaves or the server goes away; return the exit status."""
        self.receiver.start()
        try:
            self._send_typed_lines()
        except KeyboardInterrupt:
            pass
        finally:
            self.interrupts.ignore()
            self._leave()
        # Turned away before joining (a full server, say) counts as a failure.
        return 1 if self.connection_lost or self.roster.me is None else 0

    def _send_typed_lines(self) -> None:
        while True:
            try:
                text = self.console.read_line()
            except EOFError:  # Ctrl+D, or the end of piped input
                return
            except ReadingStopped as stopped:  # the server went away
                if stopped.draft.strip():
                    self.console.show(timestamped("📝 Not sent: " + stopped.draft))
                return
            if is_quit(text):
                return
            if is_help(text) and self.console.interactive:
                self.console.show(timestamped(KEYS_HELP))
            if text.strip():
                try:
                    with self.interrupts.raised_at_once():  # a server that stopped reading can block us
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
        """The receiver thread: show each line from the server until the connection ends."""
        framer = LineFramer(MAX_INCOMING_LINE_BYTES)
        farewell = "Server closed the connection."
        try:
            while data := self.sock.recv(RECV_BYTES):
                for event in framer.feed(data):
                    if isinstance(event, bytes):
                        line = sanitize(decode_line(event))
                        self.roster.update(line)
                        self.console.show(render(line, self.color))
                        if line == PASSWORD_NEEDED:
                            self.console.show(timestamped(PASSWORD_HINT))
        except OSError as error:
            self.connection_lost = not self.leaving.is_set()
            farewell = f"Lost the connection to the server ({error.strerror or error})."
        finally:  # whatever ended the loop, the main thread must not wait for us
            self.server_gone.set()
            if not self.leaving.is_set():
                self.console.show(timestamped("🔌 " + farewell))
                self.console.stop_reading()


def run(
    address: Address, name: "str | None", color: bool, password: "str | None" = None, token: "str | None" = None
) -> int:
    """Connect, chat, and return the process exit status.

    Raises KeyboardInterrupt if Ctrl+C comes before the chat has begun.
    """
    roster = Roster()
    console = open_console(color, roster)
    interrupts = Interrupts(console)
    console.start()
    try:
        console.show(timestamped(f"🔄 Connecting to {address}..."))
        try:
            with interrupts.raised_at_once():
                sock = open_link(address, token, CONNECT_TIMEOUT_S)
                if password is not None:
                    sock.sendall(encode_line(f"/pass {password}"))
                if name:
                    sock.sendall(encode_line(f"/nick {name}"))
        except OSError as error:
            print(timestamped("❌ " + describe_connect_error(error, address)), file=sys.stderr)
            return 1
        console.show(timestamped("✅ Connected! Type messages and press Enter. Type 'quit' to exit."))
        return ChatClient(sock, console, color, roster, interrupts).run()
    finally:
        console.close()
