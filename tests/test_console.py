"""The server's terminal as an operator console (chat.console).

First the console's own logic, with a room and no terminal. Then server.py
as an operator starts it: in a pseudo-terminal shown on an emulated screen,
with raw-socket clients in the room, and once with standard input that is
not a terminal, which the server must leave unread.
"""

import contextlib
import fcntl
import os
import re
import shlex
import signal
import struct
import sys
import termios

import pytest
from prompt_toolkit.document import Document

from chat.console import NOT_A_COMMAND, PROMPT, ConsoleOperator, _console_completer, console_commands, obey
from chat.core import messages
from chat.core.room import Room
from tests.helpers import PROGRAM_START_S, TIMEOUT_S, Peer, Terminal, join_all
from tests.test_room_and_commands import join

# -- the console's logic -------------------------------------------------------------------------


@pytest.fixture
def console():
    shown = []
    operator = ConsoleOperator(shown.append)
    operator.shown = shown
    return operator


def test_the_console_is_told_how_to_speak_when_it_types_a_line_that_is_not_a_command(console):
    room = Room()
    ann = join(room, "Ann")
    for line in ("hello", "//hello", "  hi  "):
        assert obey(room, console, line) is False
    assert console.shown == [NOT_A_COMMAND] * 3
    assert ann.take() == []  # nobody heard a thing


def test_blank_lines_do_nothing_and_quit_in_any_case_asks_to_stop(console):
    room = Room()
    assert obey(room, console, "   ") is False
    assert obey(room, console, "/QUIT now") is True
    assert console.shown == []


def test_console_commands_run_as_the_operator_named_server_and_replies_are_shown_line_by_line(console):
    room = Room()
    ann = join(room, "Ann")
    obey(room, console, "/say Lunch \x1b[31mat noon")  # sanitized like any line
    assert ann.take() == ["[SYSTEM] Lunch at noon"]
    obey(room, console, "/users")
    obey(room, console, "/kick Ann bye")
    assert ann.take() == ["[SYSTEM] You were removed by Server: bye"] and ann.quit_called
    obey(room, console, "/msg Ann hi")
    assert console.shown == [
        "[SYSTEM] Online (1): Ann",
        "[ERROR] /msg is for members of the chat, not the console.",
    ]


def test_queue_shows_every_line_and_needs_no_flush(console):
    assert console.queue(b"[SYSTEM] one\n[SYSTEM] two\n") is False
    assert console.queue_private(b"[PM from Ann] hi\n") is False
    assert console.shown == ["[SYSTEM] one", "[SYSTEM] two", "[PM from Ann] hi"]
    assert console.pause(0) is True
    console.stop()
    assert console.pause(TIMEOUT_S) is False  # at once: the console is stopping


def test_tab_offers_the_consoles_commands_and_the_names_online(console):
    room = Room()
    join(room, "Annabel")
    join(room, "anton")
    completer = _console_completer(room, console)

    def words(text):
        return [c.text for c in completer.get_completions(Document(text), None)]

    assert words("/ki") == ["/kick "]
    assert words("/s") == ["/say "]
    assert words("/n") == []  # /nick is not the console's
    assert words("/kick an") == ["Annabel ", "anton "]
    assert words("/mute Bob 5 an") == ["Annabel ", "anton "]
    assert "nick" not in console_commands(console) and "say" in console_commands(console)


# -- server.py at a terminal ---------------------------------------------------------------------


class ServerTerminal(Terminal):
    """server.py in a pseudo-terminal, as Terminal runs client.py, on a free port, waited for.

    ``stdin`` other than None replaces the terminal as its standard input.
    With ``background``, a shell with job control owns the terminal and
    starts the server with ``&``, as a person at an interactive shell would.
    """

    def __init__(self, *options: str, stdin=None, background=False, columns: int = 100, rows: int = 30) -> None:
        command = [sys.executable, "server.py", "--host", "127.0.0.1", "--port", "0", *options]
        if background:
            command = ["bash", "--norc", "-c", f"set -m; {shlex.join(command)} & wait $!"]
        super().__init__((), columns=columns, rows=rows, command=command, stdin=stdin)
        self.wait_for("⏳ Waiting for clients to connect", timeout=PROGRAM_START_S)
        port = int(re.search(r"📍 Listening on 127\.0\.0\.1:(\d+)", self.transcript).group(1))
        self.address = ("127.0.0.1", port)
        self.server_pid = self.process.pid
        if background:  # the shell's one child
            with open(f"/proc/{self.process.pid}/task/{self.process.pid}/children") as children:
                self.server_pid = int(children.read().split()[0])

    def stop_server(self) -> None:
        os.kill(self.server_pid, signal.SIGTERM)

    def close(self) -> None:
        if self.server_pid != self.process.pid:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.server_pid, signal.SIGKILL)
        super().close()

    def wait_for_prompt(self, typed: str = "") -> None:
        """Wait until the screen's last row is the prompt with ``typed`` after it, and the cursor at its end."""
        expected = (PROMPT + typed).rstrip()

        def condition():
            rows = self.rows()
            return bool(rows) and rows[-1] == expected and self.cursor_column() == len(PROMPT + typed)

        self.wait_for_display(condition)

    def terminal_is_sane(self) -> bool:
        """The terminal echoes and edits lines again, as before the server started."""
        return termios.tcgetattr(self.master)[3] & (termios.ECHO | termios.ICANON) == termios.ECHO | termios.ICANON


@pytest.fixture
def server_terminals():
    """Start server.py in pseudo-terminals; each is killed and closed afterwards, and showed no traceback."""
    started = []

    def start(*options, stdin=None, background=False) -> ServerTerminal:
        # No QR code: in a Codespace, one would push the log off these 30 rows.
        terminal = ServerTerminal("--history", "0", "--no-qr", *options, stdin=stdin, background=background)
        started.append(terminal)
        return terminal

    yield start
    Peer.close_all()
    for terminal in started:
        terminal.close()
    for terminal in started:
        assert "Traceback" not in terminal.transcript, terminal.transcript


def test_the_console_prints_the_log_above_its_prompt_and_obeys_the_operator(server_terminals):
    server = server_terminals()
    server.wait_for_prompt()
    rows = server.rows()
    assert any("📍 Listening on 127.0.0.1:" in row for row in rows[:-1])  # the log, above the prompt
    # The console says it is there after the server's start lines.
    assert rows.index(next(row for row in rows if "an operator console" in row)) > rows.index(next(row for row in rows if "Waiting for clients" in row))

    annabel, bob = join_all(server.address, "Annabel", "Bob")
    server.wait_for("Bob joined the chat")  # logged above the prompt
    server.type("/users\r")
    server.wait_for("[SYSTEM] Online (2): Annabel, Bob")
    server.wait_for_prompt()

    server.type("hello\r")
    server.wait_for(NOT_A_COMMAND)
    server.wait_for_prompt()

    server.type("/ki\t")
    server.wait_for_prompt("/kick ")
    server.type("Ann\t")
    server.wait_for_prompt("/kick Annabel ")
    server.type("spamming\r")
    assert annabel.read_until_closed() == ["[SYSTEM] You were removed by Server: spamming"]
    assert bob.read_line() == "[SYSTEM] Annabel was removed by Server: spamming"

    server.type("/mute Bob 5\r")
    assert bob.read_line() == "[SYSTEM] Bob was muted by Server for 5 minutes."
    bob.send("can I speak?")
    assert bob.read_line() == "[ERROR] You are muted for 5 more minutes."
    server.type("/topic Homework first\r/say hello\r")
    assert bob.read_line() == "[SYSTEM] Server set the topic: Homework first"
    assert bob.read_line() == "[SYSTEM] hello"

    server.type("/quit\r")
    assert bob.read_until_closed() == [messages.SHUTTING_DOWN]
    assert server.wait() == 0
    assert server.terminal_is_sane()
    assert server.rows()[-1].endswith("👋 Server stopped.")


@pytest.mark.parametrize("keys", ["\x03", "\x04", "SIGTERM"], ids=["ctrl-c", "ctrl-d", "sigterm"])
def test_ctrl_c_ctrl_d_and_sigterm_stop_the_server_as_before_and_give_the_terminal_back(server_terminals, keys):
    server = server_terminals()
    server.type("/say half-typ")  # never sent
    server.wait_for_prompt("/say half-typ")
    ann = Peer.joined(server.address, "Ann")
    server.wait_for("Ann joined the chat")  # logged above the prompt, and the typing kept below
    server.wait_for_prompt("/say half-typ")
    if keys == "SIGTERM":
        server.stop_server()
    else:
        server.type("\x15" + keys)  # Ctrl+U first: Ctrl+D ends only an empty line
    assert ann.read_until_closed() == [messages.SHUTTING_DOWN]
    assert server.wait() == 0
    assert server.terminal_is_sane()
    assert server.rows()[-1].endswith("👋 Server stopped.")


@pytest.mark.parametrize("how", ["pipe", "background"], ids=["stdin-from-a-pipe", "started-with-ampersand"])
def test_without_a_person_at_the_terminal_the_server_shows_no_prompt_and_never_reads_it(server_terminals, how):
    reading_end, writing_end = os.pipe()
    try:
        if how == "pipe":  # output to a terminal, input from a pipe: `python server.py < file`
            os.write(writing_end, b"/quit\n")
            server = server_terminals(stdin=reading_end)
        else:  # `python server.py &` at an interactive shell: a background job reading would be stopped
            server = server_terminals(background=True)
            server.type("/quit\r")
        ann = Peer.joined(server.address, "Ann")
        server.wait_for("Ann joined the chat")
        # The log is on a terminal: coloured, joins in green.
        assert re.search(r"\x1b\[32m\[\d\d:\d\d:\d\d\] \[SYSTEM\] Ann joined the chat!\x1b\[0m", server.transcript)
        ann.send("/users")
        assert ann.read_line() == "[SYSTEM] Online (1): Ann"  # still serving: nothing read the /quit
        assert PROMPT.strip() not in server.transcript
        if how == "pipe":
            unread = struct.unpack("i", fcntl.ioctl(reading_end, termios.FIONREAD, b"\0\0\0\0"))[0]
            assert unread == len(b"/quit\n")
        server.stop_server()
        assert ann.read_until_closed() == [messages.SHUTTING_DOWN]
        assert server.wait() == 0
        server.wait_for("👋 Server stopped.")
    finally:
        os.close(reading_end)
        os.close(writing_end)
