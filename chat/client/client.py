"""The terminal chat client: two threads around one connection at a time.

* The **main thread** reads what the user types and sends it.
* The **receiver thread** reads lines from the server and shows them; when
  the connection is lost, it connects again, waiting longer after each
  failure, until it is back or the user leaves.

Both block (one on the keyboard, one on the socket), which is why they need
a thread each. When the chat ends without the user (the server went away and
the client does not reconnect), the receiver ends the main thread's wait
with ``Console.stop_reading``. When the user leaves, the main thread sets
``ChatClient.leaving``, which the receiver's waits between reconnects watch.
"""

import contextlib
import math
import random
import re
import signal
import socket
import sys
import threading

from chat.client.address import Address, is_local
from chat.client.completion import Roster
from chat.client.link import BANNED, Banned, LinkError, WebSocketLink, open_link
from chat.client.replay import Admitted, AwayNote, Replayed, Transcript
from chat.client.terminal import Interrupted, ReadingStopped, open_console, render, timestamped
from chat.core.commands import parse_command
from chat.core.framing import LineFramer, decode_line, encode_line
from chat.core.messages import PASSWORD_NEEDED, PASSWORD_TOO_MANY_TRIES, PASSWORD_WRONG, SYSTEM_PREFIX
from chat.core.text import sanitize
from chat.sockets import RECV_BYTES

CONNECT_TIMEOUT_S = 10.0
# After /quit, how long to wait for the server's goodbye before closing anyway.
QUIT_WAIT_S = 2.0
# A hostile server must not make us buffer without bound either.
MAX_INCOMING_LINE_BYTES = 64 * 1024
# Between reconnects: about RETRY_FIRST_S after the connection is lost, doubling up to RETRY_MAX_S.
# The first wait is a parameter (run's retry_first_s, client.py --retry-first), so that tests
# of reconnecting need not wait a second for each try.
RETRY_FIRST_S = 1.0
RETRY_MAX_S = 30.0
# A reconnect refused for one of these would be refused again: the client stops trying.
PASSWORD_REFUSALS = (PASSWORD_NEEDED, PASSWORD_WRONG, PASSWORD_TOO_MANY_TRIES)
# An operator's removal ("[SYSTEM] You were removed by Ann: spamming", the last
# line before the server closes the connection) and a banned address's refusal
# ("[SYSTEM] You are banned from this chat for 59 more minutes."): reconnecting
# would be refused, or would undo the operator's kick, so the client stops.
# Names hold only letters, digits, _ and -, so no chat line starts like these.
_REMOVED = re.compile(re.escape(SYSTEM_PREFIX) + r"You were removed by [A-Za-z0-9_-]+( and banned )?")
_BANNED = SYSTEM_PREFIX + BANNED
NOT_RECONNECTING_BANNED = "Not reconnecting: you are banned from this chat."
# Said once the server has let the client in (replay.Admitted).
CONNECTED = "✅ Connected! Type messages and press Enter. Type 'quit' to exit."
RECONNECTED = "✅ Reconnected."
NOT_SENT = "📝 Not sent: "
NOT_SENT_OFFLINE = "📝 Not sent (not connected): "
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


def why_not_reconnecting(line: str) -> "str | None":
    """The sentence to end with if ``line`` (as the server sent it) means the client must not reconnect.

    None for every other line, chat lines that quote such a notice included.
    """
    if match := _REMOVED.match(line):
        banned = " and banned" if match.group(1) else ""
        return f"Not reconnecting: you were removed from the chat{banned}."
    if line.startswith(_BANNED):
        return NOT_RECONNECTING_BANNED
    return None


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
    """The chat over one connection at a time: typed lines out, the server's lines in.

    ``rejoin(name)`` opens a new connection and sends its first lines, as
    the first connect did but asking for ``name``. With it, a connection that
    is lost after the client joined is replaced: the receiver thread waits,
    longer after each failure (:func:`retry_delay`), and tries again until it
    is back or the user leaves. Without it (``--no-reconnect``) the chat ends
    with its connection. ``retry_first_s`` is the first of those waits.
    Either way, a connection that ends after an operator removed or banned
    us (:func:`why_not_reconnecting`) ends the chat, with a sentence saying so.
    """

    def __init__(
        self,
        link,
        console,
        color: bool,
        roster: Roster,
        interrupts: Interrupts,
        rejoin=None,
        retry_first_s: float = RETRY_FIRST_S,
    ) -> None:
        self.console = console
        self.interrupts = interrupts
        self.color = color
        self.roster = roster  # who is online, for Tab; also tells whether we were let in
        self.rejoin = rejoin
        self.retry_first_s = retry_first_s
        self.transcript = Transcript()  # what to show of each line; the receiver thread's only
        # Guards _link. Setting `leaving` and publishing a new link both happen
        # under it, so either _leave() finds the new link and says /quit on it,
        # or the receiver finds `leaving` set and closes the link unused.
        self._lock = threading.Lock()
        self._link = link  # the open connection; None while there is none
        self.leaving = threading.Event()  # set once the user chose to leave
        self.server_gone = threading.Event()  # set once the receiver has ended: no connection, none to come
        self.connection_lost = False  # the chat ended with an error, not a close
        self.refused = False  # the server refused our password: trying again cannot help
        # Why an operator's removal or ban ended the chat (see why_not_reconnecting); receiver thread only.
        self.removal: "str | None" = None
        self._retries = 0  # reconnects tried since the last welcome (receiver thread only)
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
            except (ReadingStopped, Interrupted) as ended:  # the server went away, or Ctrl+C
                if ended.draft.strip():  # given back, not lost without a word
                    self.console.show(timestamped(NOT_SENT + ended.draft))
                return
            if is_quit(text):
                return
            if is_help(text) and self.console.interactive:
                self.console.show(timestamped(KEYS_HELP))
            if text.strip() and not self._send(text):
                if self.rejoin is None:
                    # The receiver sees the broken connection too, and says so.
                    self.server_gone.wait(QUIT_WAIT_S)
                    return
                # Not kept for later: sent after a reconnect, it could answer
                # a conversation that has moved on.
                self.console.show(timestamped(NOT_SENT_OFFLINE + text))

    def _send(self, text: str) -> bool:
        """Send a typed line; False if there is no connection, or it broke."""
        with self._lock:
            link = self._link
        if link is None:
            return False
        try:
            with self.interrupts.raised_at_once():  # a server that stopped reading can block us
                link.sendall(encode_line(text))
        except OSError:
            return False
        return True

    def _leave(self) -> None:
        """Say goodbye to the server, wait briefly for its reply, then close; or stop reconnecting."""
        with self._lock:
            self.leaving.set()  # wakes the receiver if it is waiting to reconnect
            link = self._link
        if link is not None and not self.server_gone.is_set():
            try:
                link.settimeout(QUIT_WAIT_S)  # a server that stopped reading cannot hold us
                link.sendall(encode_line("/quit"))
            except OSError:
                pass  # the server closed it meanwhile, and the receiver may have closed our end already
            self.server_gone.wait(QUIT_WAIT_S)
        link = self._take_link(link)
        if link is not None:
            try:
                link.shutdown(socket.SHUT_RDWR)  # wakes the receiver if still waiting
            except OSError:
                pass
        # A receiver in the middle of connecting cannot be woken: it is not
        # waited for longer than this, and finds `leaving` set when it is done.
        self.receiver.join(QUIT_WAIT_S)
        if link is not None:
            link.close()

    def _take_link(self, link) -> "socket.socket | WebSocketLink | None":
        """Make ``link`` no longer the connection in use; return it if it was (whoever takes it closes it)."""
        with self._lock:
            if link is None or self._link is not link:
                return None
            self._link = None
            return link

    def _receive(self) -> None:
        """The receiver thread: show each line from the server; reconnect when the connection is lost."""
        ending = None  # how the last connection ended, to say so if the chat ends with it
        try:
            link = self._link
            while link is not None:
                ending, broken = self._show_lines_from(link)
                self.roster.connection_ended()
                if self._take_link(link) is not None:
                    _close(link)
                if self.transcript.welcomed:
                    self._retries = 0
                if self.leaving.is_set():
                    return
                if self.removal is not None:  # with or without --no-reconnect: say why the chat ended
                    ending = None
                    self._end_removed()
                    return
                if self.rejoin is None or not self.transcript.joined:
                    self.connection_lost = broken
                    return
                if self.refused:
                    self.connection_lost = True
                    return
                link = self._reconnect(ending)
                ending = None
                if link is None and self.removal is not None:  # turned away at the door: banned
                    self._end_removed()
        finally:  # whatever ended the loop, the main thread must not wait for us
            self.server_gone.set()
            if not self.leaving.is_set():
                if ending:
                    self.console.show(timestamped("🔌 " + ending))
                self.console.stop_reading()

    def _end_removed(self) -> None:
        """An operator removed or banned us: the chat ends with an error, saying why."""
        self.connection_lost = True
        self.console.show(timestamped("🚫 " + self.removal))

    def _show_lines_from(self, link) -> "tuple[str, bool]":
        """Show the lines from ``link`` until the connection ends; say how it ended, and whether it broke."""
        framer = LineFramer(MAX_INCOMING_LINE_BYTES)
        self.transcript.new_connection()
        try:
            while data := link.recv(RECV_BYTES):
                for event in framer.feed(data):
                    if isinstance(event, bytes):
                        self._show(sanitize(decode_line(event)))
        except OSError as error:
            return f"Lost the connection to the server ({error.strerror or error}).", not self.leaving.is_set()
        return "Server closed the connection.", False

    def _show(self, line: str) -> None:
        for shown in self.transcript.feed(line):
            if isinstance(shown, Admitted):  # not before: until then the server may still refuse us
                self.console.show(timestamped(RECONNECTED if shown.again else CONNECTED))
                continue
            if isinstance(shown, AwayNote):
                if shown.gap:
                    self.roster.forget_others()
                self.console.show(timestamped(away_note(shown)))
                continue
            # A replayed line also tells who came, went or spoke, in order.
            self.roster.update(shown.line)
            stamp = shown.stamp if isinstance(shown, Replayed) else None
            self.console.show(render(shown.line, self.color, stamp))
        if line == PASSWORD_NEEDED:
            self.console.show(timestamped(PASSWORD_HINT))
        if line in PASSWORD_REFUSALS and not self.transcript.welcomed:
            # After the welcome such a line answers /op, whose password shares
            # the room's limit on guessing: it says nothing about getting in.
            self.refused = True
        self.removal = self.removal or why_not_reconnecting(line)

    def _reconnect(self, reason: str) -> "socket.socket | WebSocketLink | None":
        """Connect again, waiting longer after each failure; the new link, or None once the user leaves."""
        while True:
            delay = retry_delay(self._retries, self.retry_first_s)
            self._retries += 1
            self.console.show(timestamped(f"🔌 {reason} Reconnecting in {math.ceil(delay)} s…"))
            if self.leaving.wait(delay):
                return None
            try:
                link = self.rejoin(self.transcript.name)
            except Banned as ban:  # over WebSocket the refusal is an HTTP 403, not a line
                self.console.show(timestamped(f"🚫 {ban}"))
                self.removal = NOT_RECONNECTING_BANNED
                return None
            except OSError as error:
                reason = describe_retry_error(error)
                continue
            with self._lock:
                leaving = self.leaving.is_set()
                if not leaving:
                    self._link = link
            if leaving:
                _close(link)
                return None
            return link


def _close(link) -> None:
    """Shut down (which wakes a send blocked in the other thread), then close."""
    try:
        link.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    link.close()


def retry_delay(retries: int, first_s: float = RETRY_FIRST_S, random_fraction=random.random) -> float:
    """Seconds to wait before a reconnect, after ``retries`` failed ones.

    Doubling from ``first_s`` up to RETRY_MAX_S, less a random part of up
    to half, so that a room full of clients does not come back all at once
    after a server restart. (The chat page waits the same way.)
    """
    ceiling = min(RETRY_MAX_S, first_s * 2**retries)
    return ceiling * (1 - random_fraction() / 2)


def describe_retry_error(error: OSError) -> str:
    """One short sentence for a reconnect that failed."""
    if isinstance(error, LinkError):  # already a sentence
        return str(error)
    if isinstance(error, ConnectionRefusedError):
        reason = "connection refused"
    elif isinstance(error, socket.gaierror):
        reason = "the host was not found"
    elif isinstance(error, TimeoutError):
        reason = "timed out"
    else:
        reason = error.strerror or str(error)
    return f"Could not reconnect ({reason})."


def away_note(note: AwayNote) -> str:
    text = f"📜 {note.count} message{'' if note.count == 1 else 's'} while you were away"
    return text + (" (earlier ones may be missing):" if note.gap else ":")


def open_and_join(address: Address, token: "str | None", password: "str | None", name: "str | None"):
    """Connect, and send the lines a client starts with: the password, and the name it asks for."""
    link = open_link(address, token, CONNECT_TIMEOUT_S)
    try:
        if password is not None:
            link.sendall(encode_line(f"/pass {password}"))
        # Without a name to ask for, a blank line, which the server skips: it
        # then knows that no /nick is coming and lets us in at once, instead
        # of waiting a second for one, as it does for someone typing by hand.
        link.sendall(encode_line(f"/nick {name}" if name else ""))
    except BaseException:  # a failed send, or Ctrl+C
        link.close()
        raise
    return link


def run(
    address: Address,
    name: "str | None",
    color: bool,
    password: "str | None" = None,
    token: "str | None" = None,
    reconnect: bool = True,
    retry_first_s: float = RETRY_FIRST_S,
) -> int:
    """Connect, chat, and return the process exit status.

    With ``reconnect``, a lost connection is replaced, the first try about
    ``retry_first_s`` after the loss (see :func:`retry_delay`).
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
                link = open_and_join(address, token, password, name)
        except OSError as error:
            print(timestamped("❌ " + describe_connect_error(error, address)), file=sys.stderr)
            return 1

        def rejoin(current_name: "str | None"):
            return open_and_join(address, token, password, current_name)

        chat = ChatClient(link, console, color, roster, interrupts, rejoin if reconnect else None, retry_first_s)
        return chat.run()
    finally:
        console.close()
