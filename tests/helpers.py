"""Tools shared by the tests: raw-socket chat peers, the programs as subprocesses, a network to cut.

Every wait here has a deadline, so a broken server fails a test instead of
hanging the suite.
"""

import codecs
import enum
import fcntl
import os
import queue
import re
import signal
import socket
import struct
import subprocess
import sys
import termios
import threading
import time
from collections import deque
from pathlib import Path

import pyte

from chat.config import Timings
from chat.core.framing import LineFramer, decode_line, encode_line

PROJECT = Path(__file__).resolve().parent.parent
TIMEOUT_S = 5.0
# How long a program started by a test may take to say its first words:
# Python and its imports take 2 to 3 seconds on a busy two-core machine, and
# a test may start several at once.
PROGRAM_START_S = 15.0
# Proving that something does NOT arrive needs a wait: this is the one place
# the tests sleep, and it is long enough for a loopback delivery many times over.
QUIET_PERIOD_S = 0.3
# The servers the tests start wait a quarter of a second for a first "/nick"
# line, not the default second: many tests connect clients that never name
# themselves, and a test's own "/nick", sent at once, arrives well within it
# even on a busy machine.
# The tests of that wait itself ask for Timings() by name. Leaves are
# announced at once, not after the rejoin grace, which its own tests try.
FAST = Timings(first_line_wait_s=0.25, rejoin_grace_s=0)


class Peer:
    """A chat client made of a raw socket, for driving the server line by line.

    Every peer is remembered in ``Peer.open``, so that a fixture can close
    them all before it stops the server.
    """

    open: "list[Peer]" = []

    def __init__(self, address, name: "str | None" = None) -> None:
        self.sock = socket.create_connection(address, timeout=TIMEOUT_S)
        Peer.open.append(self)
        self._framer = LineFramer(1 << 20)
        self._lines: "deque[str]" = deque()
        self.name = name
        if name:
            self.send(f"/nick {name}")

    @classmethod
    def joined(cls, address, name: "str | None" = None) -> "Peer":
        """Connect and wait until the server has let this peer into the room."""
        peer = cls(address, name)
        welcome = peer.expect(lambda line: line.startswith("[SYSTEM] Welcome, "), timeout=TIMEOUT_S + 2)
        peer.name = re.match(r"\[SYSTEM\] Welcome, ([^!]+)!", welcome).group(1)
        return peer

    def send(self, text: str) -> None:
        self.sock.sendall(encode_line(text))

    def send_raw(self, data: bytes) -> None:
        self.sock.sendall(data)

    def read_line(self, timeout: float = TIMEOUT_S) -> str:
        """The next line from the server; AssertionError on timeout, EOFError when it closed."""
        deadline = time.monotonic() + timeout
        while not self._lines:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError("timed out waiting for a line")
            self.sock.settimeout(remaining)
            try:
                data = self.sock.recv(65536)
            except socket.timeout:
                continue
            if not data:
                raise EOFError("the server closed the connection")
            self._lines.extend(decode_line(raw) for raw in self._framer.feed(data) if isinstance(raw, bytes))
        return self._lines.popleft()

    def expect(self, wanted, timeout: float = TIMEOUT_S) -> str:
        """Skip lines until one equals ``wanted`` (or satisfies it, if callable); return it."""
        matches = wanted if callable(wanted) else (lambda line: line == wanted)
        deadline = time.monotonic() + timeout
        seen = []
        while True:
            try:
                line = self.read_line(max(0.0, deadline - time.monotonic()))
            except AssertionError:
                raise AssertionError(f"never received {wanted!r}; got {seen!r}") from None
            if matches(line):
                return line
            seen.append(line)

    def read_until_closed(self, timeout: float = TIMEOUT_S) -> "list[str]":
        """Read every line until the server closes the connection, then close ours."""
        lines = []
        deadline = time.monotonic() + timeout
        try:
            while True:
                lines.append(self.read_line(max(0.0, deadline - time.monotonic())))
        except EOFError:
            self.close()
            return lines

    def assert_receives_nothing(self) -> None:
        try:
            line = self.read_line(QUIET_PERIOD_S)
        except AssertionError:
            return
        raise AssertionError(f"expected silence, received {line!r}")

    def close(self) -> None:
        self.sock.close()

    @classmethod
    def close_all(cls) -> None:
        for peer in cls.open:
            peer.close()
        cls.open.clear()


def wait_until(condition, timeout: float = TIMEOUT_S, interval: float = 0.01) -> bool:
    """Poll ``condition`` until it is true or the timeout passes; return its last value."""
    deadline = time.monotonic() + timeout
    while not (result := condition()) and time.monotonic() < deadline:
        time.sleep(interval)
    return bool(result)


class FakeClock:
    """A clock that moves only when the test says so (for code that takes ``clock=``)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def serving_threads() -> "list[str]":
    """The names of the threads serving clients in this process (each connection's reader and writer)."""
    return [t.name for t in threading.enumerate() if t.name.startswith(("reader-", "writer-"))]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Program:
    """One of the two programs, run as a subprocess with its output collected by a thread."""

    def __init__(self, args, env=None, netns: "str | None" = None) -> None:
        environment = dict(os.environ, PYTHONUNBUFFERED="1", PYTHONIOENCODING="utf-8")
        environment.update(env or {})
        in_namespace = ["ip", "netns", "exec", netns] if netns else []  # ip execs the program itself
        self.process = subprocess.Popen(
            [*in_namespace, sys.executable, *args],
            cwd=PROJECT,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=environment,
            text=True,
            encoding="utf-8",
        )
        self.lines: "queue.Queue[str]" = queue.Queue()
        self.output: "list[str]" = []
        self._collector = threading.Thread(target=self._collect, daemon=True)
        self._collector.start()

    def _collect(self) -> None:
        for line in self.process.stdout:
            self.lines.put(line.rstrip("\n"))

    def expect(self, pattern: str, timeout: float = TIMEOUT_S) -> "re.Match":
        """Wait for an output line matching the regular expression ``pattern``."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self.lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(f"no line matching {pattern!r} in {self.output!r}") from None
            self.output.append(line)
            match = re.search(pattern, line)
            if match:
                return match

    def wait(self, timeout: float = TIMEOUT_S) -> int:
        return self.process.wait(timeout)

    def all_output(self) -> str:
        """Everything the program printed so far; all of it, once the program has exited."""
        if self.process.poll() is not None:
            self._collector.join(TIMEOUT_S)  # it may not have read the last lines yet
        while not self.lines.empty():
            self.output.append(self.lines.get())
        return "\n".join(self.output)

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(TIMEOUT_S)


class ServerProgram(Program):
    """``server.py`` on a free port, started and waited for."""

    def __init__(self, port: int = 0, *options: str, env=None) -> None:
        super().__init__(["server.py", "--host", "127.0.0.1", "--port", str(port), *options], env=env)
        self.port = int(self.expect(r"📍 Listening on [\d.]+:(\d+)").group(1))
        self.expect("⏳ Waiting for clients to connect")
        self.address = ("127.0.0.1", self.port)

    def terminate(self) -> None:
        self.process.send_signal(signal.SIGTERM)

    def resources(self) -> "tuple[int, int]":
        """The server's thread count and open file descriptors, read from /proc."""
        with open(f"/proc/{self.process.pid}/status") as status:
            threads = int(next(line for line in status if line.startswith("Threads:")).split()[1])
        return threads, len(os.listdir(f"/proc/{self.process.pid}/fd"))

    def online(self) -> "list[str]":
        """Who the server says is online, asked through a fresh connection."""
        probe = Peer.joined(self.address, "Probe")
        probe.send("/users")
        line = probe.expect(lambda l: l.startswith("[SYSTEM] Online ("))
        probe.send("/quit")
        probe.read_until_closed()
        return [name for name in line.partition("): ")[2].split(", ") if name != "Probe"]


class _AnsweringScreen(pyte.Screen):
    """A pyte screen that answers the program's questions (cursor position) as a terminal does."""

    def __init__(self, columns: int, lines: int, answer) -> None:
        super().__init__(columns, lines)
        self._answer = answer

    def write_process_input(self, data: str) -> None:
        self._answer(data)


class Terminal:
    """``client.py`` in a pseudo-terminal of a given size, shown on an emulated screen.

    A thread reads everything the program prints, as a terminal would, and
    feeds it to a pyte screen, which answers cursor position requests. The
    tests wait for conditions on that screen or on the printed text.
    """

    def __init__(self, args, env=None, columns: int = 80, rows: int = 24, command=None, stdin=None) -> None:
        """Run ``client.py args`` (or ``command``, a whole command line); ``stdin`` other than None replaces the terminal as its input."""
        import pty

        self.master, slave = pty.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, columns, 0, 0))
        environment = dict(os.environ, PYTHONIOENCODING="utf-8", TERM="xterm")
        for name in ("COLUMNS", "LINES", "NO_COLOR"):  # the terminal's own size, and colors by default
            environment.pop(name, None)
        environment.update(env or {})
        self.process = subprocess.Popen(
            command or [sys.executable, "client.py", *args],
            cwd=PROJECT,
            stdin=slave if stdin is None else stdin,
            stdout=slave,
            stderr=slave,
            env=environment,
            start_new_session=True,
            # Make the pseudo-terminal (its standard output) the controlling one, so Ctrl+C sends SIGINT.
            preexec_fn=lambda: fcntl.ioctl(1, termios.TIOCSCTTY, 0),
        )
        os.close(slave)
        # Guards transcript, screen, display and _ended; notified on every change.
        self._changed = threading.Condition()
        self.transcript = ""  # everything the program printed
        self.screen = ""  # printed text not yet matched by wait_for()
        self.display = _AnsweringScreen(columns, rows, self._answer)
        self._display_feed = pyte.ByteStream(self.display)
        self._decoder = codecs.getincrementaldecoder("utf-8")("replace")
        self._ended = False  # the program closed the terminal (it exited)
        self._reader = threading.Thread(target=self._read_output, name="terminal-reader", daemon=True)
        self._reader.start()

    def _read_output(self) -> None:
        while True:
            try:
                chunk = os.read(self.master, 65536)
            except OSError:  # EIO once the program has exited, EBADF once closed
                chunk = b""
            with self._changed:
                if chunk:
                    self._display_feed.feed(chunk)
                    text = self._decoder.decode(chunk)
                    self.transcript += text
                    self.screen += text
                else:
                    self._ended = True
                self._changed.notify_all()
            if not chunk:
                return

    def _answer(self, data: str) -> None:
        try:
            os.write(self.master, data.encode())
        except OSError:
            pass

    def type(self, keys: str) -> None:
        os.write(self.master, keys.encode())

    def wait_for(self, text: str, timeout: float = TIMEOUT_S) -> str:
        """Wait until ``text`` was printed since the last call; return what came up to its end."""
        with self._changed:
            if not self._changed.wait_for(lambda: text in self.screen or self._ended, timeout):
                raise AssertionError(f"{text!r} never appeared; output was {self.screen!r}")
            if text not in self.screen:
                raise AssertionError(f"{text!r} never appeared before the program exited; output was {self.screen!r}")
            before, _, self.screen = self.screen.partition(text)
            return before + text

    def wait_for_display(self, condition, timeout: float = TIMEOUT_S) -> None:
        """Wait until ``condition()`` holds for the emulated screen."""
        with self._changed:
            if not self._changed.wait_for(condition, timeout):
                raise AssertionError(f"the screen never got there; it shows {self.rows()!r}")

    def resize(self, columns: int, rows: int) -> None:
        """Change the terminal's size, as dragging the window's edge does.

        Setting the size on the pseudo-terminal makes the kernel send SIGWINCH
        to the program.
        """
        with self._changed:
            self.display.resize(rows, columns)
            # A real terminal keeps the cursor on the screen.
            self.display.cursor.x = min(self.display.cursor.x, columns - 1)
            self.display.cursor.y = min(self.display.cursor.y, rows - 1)
        fcntl.ioctl(self.master, termios.TIOCSWINSZ, struct.pack("HHHH", rows, columns, 0, 0))

    def rows(self) -> "list[str]":
        """The emulated screen's non-blank rows, without trailing spaces."""
        return [row.rstrip() for row in self.display.display if row.strip()]

    def cursor_column(self) -> int:
        return self.display.cursor.x

    def wait(self, timeout: float = TIMEOUT_S) -> int:
        """Wait for the program to exit and for the last of its output; return its status."""
        status = self.process.wait(timeout)
        with self._changed:
            self._changed.wait_for(lambda: self._ended, timeout)
        return status

    def leave_with(self, keys: str) -> None:
        """Leave by typing ``keys`` (or by SIGTERM, for "SIGTERM"): exit status 0, and the terminal as it was."""
        if keys == "SIGTERM":
            self.process.send_signal(signal.SIGTERM)
        else:
            self.type(keys)
        assert self.wait() == 0
        # The terminal echoes and edits lines again, as before the client started.
        assert termios.tcgetattr(self.master)[3] & (termios.ECHO | termios.ICANON) == termios.ECHO | termios.ICANON

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(TIMEOUT_S)
        self._reader.join(TIMEOUT_S)  # it ends when the terminal closes, as the program exits
        os.close(self.master)


def join_all(address, *names: str) -> "list[Peer]":
    """Join peers one after another, consuming the join notices they see of each other."""
    peers: "list[Peer]" = []
    for name in names:
        peer = Peer.joined(address, name)
        for earlier in peers:
            earlier.expect(f"[SYSTEM] {peer.name} joined the chat!")
        peers.append(peer)
    return peers


class Admission(enum.Enum):
    """What a :class:`Relay` does with a new connection."""

    RELAY = "relay"  # join it to the server at once
    HOLD = "hold"  # keep it waiting, accepted but not joined, until release()
    REFUSE = "refuse"  # close it at once


class Relay:
    """A TCP relay in front of a server, which a test can cut, hold and refuse, as a failing network does.

    Each connection made to ``address`` is joined to a new connection to
    ``target``, and two threads copy the bytes across, each passing on the
    end of its direction (a half-close) when it comes.

    * :meth:`cut` ends every connection relayed so far: closed, or reset;
      on both sides, or only on the client's, as when the server has not yet
      noticed that the network failed.
    * :meth:`hold` makes new connections wait at the relay, accepted but not
      joined to the server, until :meth:`release`: a client's reconnect
      waits there while the test does what should happen in its absence.
    * :meth:`refuse` closes new connections as soon as they come, until
      :meth:`release`: a client learns at once that reconnecting failed,
      instead of waiting on a held connection until its own timeout.

    With ``connect_on_first_bytes``, a connection is joined to the server
    (or held, or refused) only once the client has sent something: a spare
    connection that Chromium opens ahead of need then never reaches the chat
    server, where a client that stays silent joins as a raw client.

    :meth:`close` ends every connection and joins every thread the relay
    started.
    """

    def __init__(self, target, connect_on_first_bytes: bool = False) -> None:
        self.target = target
        self.connect_on_first_bytes = connect_on_first_bytes
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.address = self._listener.getsockname()
        self.port = self.address[1]
        # Guards the fields below; notified when a connection is accepted.
        # Reentrant, so that a thread can be started under it (see _start).
        self._changed = threading.Condition(threading.RLock())
        self._admission = Admission.RELAY
        self.accepted = 0  # connections accepted so far
        self._sockets: "list[socket.socket]" = []  # every socket opened, on either side, for close()
        self._pairs: "list[tuple[socket.socket, socket.socket]]" = []  # (client side, server side), relayed
        self._cut: "set[socket.socket]" = set()  # the sockets cut() ended, whose ends are not passed on
        self._held: "list[tuple[socket.socket, bytes]]" = []  # (client side, its first bytes), until release()
        self._threads: "list[threading.Thread]" = []
        self._closed = False
        self._start(self._accept)

    def wait_until_accepted(self, count: int, timeout: float = TIMEOUT_S) -> None:
        """Wait until ``count`` connections have reached the relay, held and refused ones included."""
        with self._changed:
            if not self._changed.wait_for(lambda: self.accepted >= count, timeout):
                raise AssertionError(f"only {self.accepted} connection(s) reached the relay, not {count}")

    def hold(self) -> None:
        """Keep new connections waiting, accepted but not joined, until release()."""
        with self._changed:
            self._admission = Admission.HOLD

    def refuse(self) -> None:
        """Close new connections at once; those already held stay held."""
        with self._changed:
            self._admission = Admission.REFUSE

    def release(self) -> None:
        """Join the held connections to the server, and relay new ones again."""
        with self._changed:
            self._admission = Admission.RELAY
            held, self._held = self._held, []
            for client, first in held:
                self._start(self._join, client, first)

    def cut(self, reset: bool = False, server_side: bool = True) -> None:
        """End every relayed connection: closed, or with ``reset`` reset (RST).

        Without ``server_side``, only the client's side ends: the server's
        stays open, as when the server has not yet noticed a network failure.
        Held connections are left waiting.
        """
        with self._changed:
            pairs, self._pairs = self._pairs, []
            sockets = [sock for pair in pairs for sock in (pair if server_side else pair[:1])]
            self._cut.update(sockets)
        for sock in sockets:
            if reset:  # closed with nothing left to send: a reset
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            # Wakes the copying thread's recv (a close alone would not, and
            # the connection would stay open while that recv holds it); only
            # SHUT_RD for a reset, as SHUT_WR would send a close before it.
            _shutdown(sock, socket.SHUT_RD if reset else socket.SHUT_RDWR)
            sock.close()

    def close(self) -> None:
        """Stop accepting, end every connection, and join every thread; idempotent."""
        with self._changed:
            self._closed = True  # from now on no thread starts
            sockets = [self._listener, *self._sockets]
        for sock in sockets:
            _shutdown(sock, socket.SHUT_RDWR)  # wakes the accept() or recv() waiting on it
            sock.close()
        for thread in self._threads:
            thread.join(TIMEOUT_S)
        assert not any(thread.is_alive() for thread in self._threads), "the relay's threads did not end"

    def _start(self, target, *args) -> None:
        """Run ``target`` in a thread of the relay's, recorded first; none once closed."""
        with self._changed:  # started under the lock, so that close() never joins a thread not yet started
            if not self._closed:
                thread = threading.Thread(target=target, args=args, name="relay", daemon=True)
                self._threads.append(thread)
                thread.start()

    def _keep(self, sock: socket.socket) -> bool:
        """Record ``sock`` for close() to end; False (and closed) if the relay is closed already."""
        with self._changed:
            if not self._closed:
                self._sockets.append(sock)
                return True
        sock.close()
        return False

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:  # closed by close()
                return
            with self._changed:
                self.accepted += 1
                self._changed.notify_all()
                if self._keep(client):
                    self._start(self._admit, client)

    def _admit(self, client: socket.socket) -> None:
        first = b""
        if self.connect_on_first_bytes:
            try:
                first = client.recv(65536)
            except OSError:
                pass
            if not first:  # the client, or close(), ended it before it said anything
                client.close()
                return
        with self._changed:
            admission = self._admission
            if admission is Admission.HOLD:
                self._held.append((client, first))
        if admission is Admission.RELAY:
            self._join(client, first)
        elif admission is Admission.REFUSE:
            _shutdown(client, socket.SHUT_RDWR)
            client.close()

    def _join(self, client: socket.socket, first: bytes) -> None:
        try:
            server = socket.create_connection(self.target, timeout=TIMEOUT_S)
        except OSError:  # the server is not there: the client sees its connection close
            client.close()
            return
        server.settimeout(None)
        if self._keep(server):
            with self._changed:
                self._pairs.append((client, server))
                self._start(self._copy, server, client)
            self._copy(client, server, first)

    def _copy(self, source: socket.socket, destination: socket.socket, first: bytes = b"") -> None:
        """Copy ``first``, then what ``source`` sends, to ``destination``; then pass on the end."""
        try:
            destination.sendall(first)
            while data := source.recv(65536):
                destination.sendall(data)
        except OSError:  # cut, closed, or the other side went away
            pass
        with self._changed:
            # An end made by cut() is not passed on: a reset must not follow a
            # close, and a server side left open must not learn of it.
            if source in self._cut:
                return
        _shutdown(destination, socket.SHUT_WR)


def _shutdown(sock: socket.socket, how: int) -> None:
    try:
        sock.shutdown(how)
    except OSError:  # not connected, or closed already
        pass
