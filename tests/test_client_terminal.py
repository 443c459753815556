"""client.py as people run it: in a pseudo-terminal shown on an emulated screen, and through pipes.

The screen tests compare the whole emulated screen with what a person should
see: every line whole (wrapped at the terminal's width), in order, and
below them the prompt, ``You: `` and exactly what was typed, with the cursor
where the user left it. They run at 80×24 and at 40×20.

The servers run in this process (``chat_server``): they start at once, and
wait only 0.1 s for a client's first line. server.py itself is started only
where a test stops it with a signal.
"""

import queue
import re
import socket
import subprocess
import sys
import threading
from dataclasses import replace
from typing import NamedTuple

import pytest
from prompt_toolkit.formatted_text import fragment_list_to_text
from prompt_toolkit.input import create_pipe_input
from prompt_toolkit.output import DummyOutput
from wcwidth import wcwidth

from chat.client.client import KEYS_HELP
from chat.client.completion import Roster
from chat.client.terminal import Interrupted, PromptConsole, ReadingStopped, name_style, wrap
from chat.core import messages
from chat.server import ChatServer
from tests.helpers import FAST, PROGRAM_START_S, PROJECT, TIMEOUT_S, Peer, Program, Terminal, free_port, wait_until

SIZES = [pytest.param((80, 24), id="80x24"), pytest.param((40, 20), id="40x20")]
PROMPT = "You: "
TIMESTAMP = re.compile(r"\[\d\d:\d\d:\d\d\]")


def screen_color(name: str) -> str:
    """The color of ``name`` on the emulated screen: its "#rrggbb" without the "#", a 256-color entry."""
    return name_style(name).split()[0].removeprefix("#")


def wrapped(line: str, columns: int) -> "list[str]":
    """The rows a terminal fills with ``line``, wrapping at ``columns`` as the emulator does (the prompt's lines)."""
    rows, x = [""], 0
    for char in line:
        width = wcwidth(char)
        if width > 0 and x == columns:
            rows.append("")
            x = 0
        rows[-1] += char
        x = min(x + max(width, 0), columns)
    return [row.rstrip() for row in rows]


def rows_of(line: str, columns: int) -> "list[str]":
    """The rows ``line`` takes on a screen ``columns`` wide: the prompt's own lines wrap
    wherever a row ends, lines the client prints are cut at spaces first (terminal.wrap)."""
    if line.startswith(PROMPT):
        return wrapped(line, columns)
    return [row.rstrip() for row in fragment_list_to_text(wrap(line, columns)).split("\n")]


def opening(port: int, name: str, others: int = 0) -> "list[str]":
    """The lines the client shows when it connects to 127.0.0.1:``port`` and joins as ``name``."""
    return [
        f"[HH:MM:SS] 🔄 Connecting to 127.0.0.1:{port}...",
        "[HH:MM:SS] ✅ Connected! Type messages and press Enter. Type 'quit' to exit.",
        "📨 " + messages.welcome(name, others),
    ]


def screen_shows(terminal: Terminal, lines, typed: "str | None" = "", cursor: "int | None" = None, tail=False):
    """A condition: the screen shows ``lines`` whole and in order, then the prompt.

    ``typed`` is the text after ``You: `` (None: no prompt on the screen) and
    ``cursor`` the cursor's place in it (default: at its end); the typed text
    is ASCII, one column a character. Timestamps
    read ``[HH:MM:SS]``. The lines must fill the screen from its top (or, if
    they are more than it holds, its last row); with ``tail``, only its
    last rows are compared, for a screen that has changed width since the
    earlier lines were printed.
    """

    def condition() -> bool:
        display = terminal.display
        columns = display.columns
        expected = [row for line in lines for row in rows_of(line, columns)]
        if typed is not None:
            expected += wrapped(PROMPT + typed, columns)
        rows = [TIMESTAMP.sub("[HH:MM:SS]", row).rstrip() for row in display.display]
        shown = [index for index, row in enumerate(rows) if row]
        if not shown:
            return False
        rows = rows[: shown[-1] + 1]
        if tail:
            if rows[-len(expected) :] != expected:
                return False
        elif len(expected) > display.lines:  # the earliest lines have scrolled away
            if len(rows) != display.lines or rows != expected[-display.lines :]:
                return False
        elif rows != expected:
            return False
        if typed is None:
            return True
        prompt_row = len(rows) - len(wrapped(PROMPT + typed, columns))
        offset = len(PROMPT) + (len(typed) if cursor is None else cursor)
        return (display.cursor.y, display.cursor.x) == (prompt_row + offset // columns, offset % columns)

    return condition


class Served(NamedTuple):
    """Where a server started in this process listens: its address, and its port alone, as ServerProgram has them."""

    address: "tuple[str, int]"
    port: int


def served(server: ChatServer) -> Served:
    return Served(server.address, server.address[1])


@pytest.fixture
def chat_server(start_server) -> Served:
    """A server in this process, without history; a client without ``--name`` joins after 0.1 s (helpers.FAST)."""
    return served(start_server())


def joined_terminal(terminals, server: Served, watcher: Peer, name="Bob", size=(80, 24), *args) -> Terminal:
    """A client that has joined as ``name``: ``watcher`` has seen it join, and it has shown its welcome."""
    client = terminals("127.0.0.1", str(server.port), "--name", name, *args, size=size)
    watcher.expect(messages.joined(name), timeout=PROGRAM_START_S)
    client.wait_for(f"Welcome, {name}!")
    return client


def wait_until_joined(watcher: Peer, *names: str) -> None:
    """Wait until ``watcher`` has seen each of ``names`` join, in any order: for clients started together."""
    expected = {messages.joined(name) for name in names}
    assert {watcher.expect(lambda line: line in expected, timeout=PROGRAM_START_S) for _ in names} == expected


def test_the_client_connects_sends_receives_while_typing_and_quits(chat_server, terminals):
    ann = Peer.joined(chat_server.address, "Ann")
    client = terminals("127.0.0.1", str(chat_server.port), "--name", "Bob")
    ann.expect(messages.joined("Bob"), timeout=PROGRAM_START_S)
    start = opening(chat_server.port, "Bob", others=1)
    client.wait_for_display(screen_shows(client, start))

    client.type("Hello everyone!\r")
    assert ann.read_line() == "Bob: Hello everyone!"

    client.type("half-tped")
    client.wait_for_display(screen_shows(client, [*start, PROMPT + "Hello everyone!"], "half-tped"))
    client.type("\x1b[D\x1b[D\x1b[D")  # the cursor goes back three places, after "half-t"
    client.wait_for_display(screen_shows(client, [*start, PROMPT + "Hello everyone!"], "half-tped", cursor=6))
    ann.send("Hi there!")
    client.type("y")
    # The message has a row of its own; the prompt and the typing are intact below it,
    # with the cursor where it was.
    shown = [*start, PROMPT + "Hello everyone!", "📨 Ann: Hi there!"]
    client.wait_for_display(screen_shows(client, shown, "half-typed", cursor=7))
    client.type("\r")
    assert ann.read_line() == "Bob: half-typed"

    client.type("quit\r")
    assert client.wait() == 0
    assert ann.read_line() == messages.left("Bob")


@pytest.mark.parametrize(
    "keys",
    ["\x03", "\x04", "/quit\r", "/QUIT see you later\r", "Quit\r", "SIGTERM"],
    ids=["ctrl-c", "ctrl-d", "slash-quit", "slash-quit-with-words", "quit-in-any-case", "sigterm"],
)
def test_the_client_leaves_cleanly_on_every_way_out(chat_server, terminals, keys):
    ann = Peer.joined(chat_server.address, "Ann")
    client = joined_terminal(terminals, chat_server, ann)
    client.wait_for_display(screen_shows(client, opening(chat_server.port, "Bob", 1)))
    client.leave_with(keys)
    # Exactly as /quit: nothing of the line reaches the others, and the client
    # leaves on its own, rather than seeing the server close the connection.
    assert ann.read_line() == messages.left("Bob")
    client.wait_for("Goodbye!")
    assert "Server closed the connection" not in client.transcript


def test_ctrl_c_with_a_half_typed_line_says_it_was_not_sent(chat_server, terminals):
    ann = Peer.joined(chat_server.address, "Ann")
    client = joined_terminal(terminals, chat_server, ann)
    start = opening(chat_server.port, "Bob", 1)
    client.type("half typed")
    client.wait_for_display(screen_shows(client, start, "half typed"))
    client.leave_with("\x03")
    assert ann.read_line() == messages.left("Bob")  # nothing of the line was sent
    # The prompt is gone: nothing looks as if it had been sent.
    ending = ["[HH:MM:SS] 📝 Not sent: half typed", "📨 [SYSTEM] Goodbye!"]
    client.wait_for_display(screen_shows(client, [*start, *ending], typed=None))


@pytest.mark.parametrize(
    "keys",
    ["one\rtwo\r\x03", "one\rtwo\r" + "\x03" * 3],
    ids=["after-enter", "repeated"],
)
def test_a_ctrl_c_typed_right_after_enter_is_never_lost(chat_server, terminals, keys):
    ann = Peer.joined(chat_server.address, "Ann")
    client = joined_terminal(terminals, chat_server, ann)
    client.wait_for_display(screen_shows(client, opening(chat_server.port, "Bob", 1)))
    # All in one write: the Ctrl+C arrives while the client is between two prompts.
    client.type(keys)
    assert client.wait() == 0
    assert [ann.read_line() for _ in range(3)] == ["Bob: one", "Bob: two", messages.left("Bob")]


def test_a_ctrl_c_is_never_lost_while_connecting_or_while_messages_pour_in(chat_server, terminals):
    ann = Peer.joined(chat_server.address, "Ann")
    early = terminals("127.0.0.1", str(chat_server.port))
    client = terminals("127.0.0.1", str(chat_server.port), "--name", "Bob")  # started meanwhile, to save time
    early.wait_for("Connecting")
    early.type("\x03")  # before any prompt has been drawn
    assert early.wait() == 0

    ann.expect(messages.joined("Bob"))
    client.wait_for("Welcome, Bob!")  # with one other user online, or two if the early one was let in
    client.wait_for_display(lambda: client.rows()[-1] == PROMPT.rstrip())
    for number in range(40):
        ann.send(f"message {number}")
    client.wait_for("message 5")
    client.type("\x03")  # while lines are being printed above the prompt
    assert client.wait() == 0
    ann.expect(messages.left("Bob"))


def test_without_reconnect_the_client_says_so_when_the_server_goes_away_and_gives_back_the_draft(
    server_program, terminals
):
    ann = Peer.joined(server_program.address, "Ann")
    client = joined_terminal(terminals, server_program, ann, "Bob", (80, 24), "--no-reconnect")
    start = opening(server_program.port, "Bob", 1)
    client.type("half typed")
    client.wait_for_display(screen_shows(client, start, "half typed"))
    server_program.terminate()
    assert client.wait() == 0
    ending = [
        "📨 " + messages.SHUTTING_DOWN,
        "[HH:MM:SS] 🔌 Server closed the connection.",
        "[HH:MM:SS] 📝 Not sent: half typed",
    ]
    # The prompt is gone: nothing looks as if it had been sent.
    client.wait_for_display(screen_shows(client, [*start, *ending], typed=None))


def test_a_refused_connection_is_one_line_naming_the_address_and_status_1(terminals):
    port = free_port()
    client = terminals("localhost", str(port))
    assert client.wait() == 1
    lines = [
        f"[HH:MM:SS] 🔄 Connecting to localhost:{port}...",
        f"[HH:MM:SS] ❌ Could not connect to localhost:{port}: connection refused. "
        f"Is the server running? Start it with: python server.py --port {port}",
    ]
    # Printed to standard error, not above a prompt: the terminal wraps it where its rows end.
    rows = [row for line in lines for row in wrapped(line, 80)]
    client.wait_for_display(lambda: [TIMESTAMP.sub("[HH:MM:SS]", row) for row in client.rows()] == rows)


def test_an_ipv6_address_is_shown_in_brackets(terminals):
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
    except OSError:
        pytest.skip("this machine has no IPv6 loopback")
    port = free_port()
    client = terminals(f"[::1]:{port}")
    assert client.wait() == 1
    assert f"Connecting to [::1]:{port}..." in client.transcript
    assert f"Could not connect to [::1]:{port}: connection refused." in client.transcript


def test_a_client_turned_away_by_a_full_server_exits_with_status_1(start_server):
    server = served(start_server(max_clients=1))
    Peer.joined(server.address, "Ann")
    client = Program(["client.py", "127.0.0.1", str(server.port)])
    assert client.wait() == 1
    output = client.all_output()
    assert "📨 [SYSTEM] " in output  # the server's reason, whatever its words
    assert "Traceback" not in output


def test_names_are_colored_on_a_terminal_unless_no_color_is_set(chat_server, terminals):
    ann = Peer.joined(chat_server.address, "Ann")
    colored = terminals("127.0.0.1", str(chat_server.port), "--name", "Bob")
    flag = terminals("127.0.0.1", str(chat_server.port), "--name", "Cid", "--no-color")
    variable = terminals("127.0.0.1", str(chat_server.port), "--name", "Dee", env={"NO_COLOR": "1"})
    wait_until_joined(ann, "Bob", "Cid", "Dee")
    ann.send("colors?")
    for client in (colored, flag, variable):
        client.wait_for("colors?")
        client.wait_for_display(lambda: any(row.startswith("📨 Ann: colors?") for row in client.rows()))

    def cells(client, text):
        """The screen cells of ``text`` in the row that shows the message."""
        y = next(y for y, row in enumerate(client.display.display) if row.startswith("📨 Ann: colors?"))
        row = client.display.buffer[y]
        x = client.display.display[y].index(text) + 1  # "📨" takes two cells
        return [row[x + i] for i in range(len(text))]

    name_color = screen_color("Ann")
    assert all(cell.fg == name_color and cell.bold for cell in cells(colored, "Ann"))
    assert all(cell.fg == "default" and not cell.bold for cell in cells(colored, ": colors?"))
    for plain in (flag, variable):
        assert all(cell.fg == "default" and not cell.bold for cell in cells(plain, "Ann: colors?"))
        assert not re.search(r"\x1b\[[0-9;]*[1-9][0-9;]*m", plain.transcript), "a color or bold code was sent"


def test_the_rooms_history_comes_before_the_welcome_each_line_with_its_time_and_colors(start_server, terminals):
    server = served(start_server(history_lines=50, max_rate=0))
    ann = Peer.joined(server.address, "Ann")
    ann.send("hello")
    ann.send("/me waves")
    ann.send("/nick Anna")
    ann.expect(messages.renamed("Ann", "Anna"))
    client = terminals("127.0.0.1", str(server.port), "--name", "Bob")
    ann.expect(messages.joined("Bob"), timeout=PROGRAM_START_S)
    history = [
        "📨 [SYSTEM] Last 3 messages:",
        "📨 [HH:MM:SS] Ann: hello",
        "📨 [HH:MM:SS] * Ann waves",
        "📨 [HH:MM:SS] " + messages.renamed("Ann", "Anna"),
        "📨 [SYSTEM] End of history.",
    ]
    start = opening(server.port, "Bob", 1)
    client.wait_for_display(screen_shows(client, [*start[:2], *history, start[2]]))
    y = next(y for y, row in enumerate(client.display.display) if row.startswith("📨 [") and "Ann: hello" in row)
    x = client.display.display[y].index("Ann: hello") + 1  # "📨" takes two cells
    cells = [client.display.buffer[y][x + i] for i in range(len("Ann: hello"))]
    name_color = screen_color("Ann")
    assert all(cell.fg == name_color and cell.bold for cell in cells[:3])  # as in a live line
    assert all(cell.fg == "default" and not cell.bold for cell in cells[3:])
    client.type("/quit\r")
    assert client.wait() == 0


def test_the_client_strips_escape_sequences_a_hostile_server_sends(terminals):
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        client = terminals("127.0.0.1", str(listener.getsockname()[1]))
        listener.settimeout(TIMEOUT_S)
        connection, _ = listener.accept()
        with connection:
            connection.sendall("\x1b]0;pwned\x07\x1b[2Jevil \u202eline\x9b\n".encode())
            screen = client.wait_for("evil line")
            connection.sendall(b"[SYSTEM] bye\n")
            client.wait_for("bye")
    assert "pwned" not in screen and "\x1b]" not in screen and "\x1b[2J" not in screen
    assert "\u202e" not in screen


# The screen at 80 and 40 columns.


@pytest.mark.parametrize("size", SIZES)
def test_the_welcome_line_wraps_whole_above_the_prompt(start_server, terminals, size):
    # A server that would wait a minute for a client's name: one without says so at once.
    chat_server = served(start_server(timings=replace(FAST, first_line_wait_s=60)))
    client = terminals("127.0.0.1", str(chat_server.port), size=size)
    welcome = client.wait_for("commands.", PROGRAM_START_S)  # the line's end, after the row it takes at 80 columns
    name = re.search(r"Welcome, ([^!]+)!", welcome).group(1)  # User_<port>: 81 columns and more
    client.wait_for_display(screen_shows(client, opening(chat_server.port, name)))
    client.type("hi")
    client.wait_for_display(screen_shows(client, opening(chat_server.port, name), "hi"))


@pytest.mark.parametrize("size", SIZES)
def test_a_300_character_line_arrives_while_half_a_line_is_typed(chat_server, terminals, size):
    ann = Peer.joined(chat_server.address, "Ann")
    client = joined_terminal(terminals, chat_server, ann, size=size)
    start = opening(chat_server.port, "Bob", 1)
    client.type("half a li\x1b[D\x1b[D")
    client.wait_for_display(screen_shows(client, start, "half a li", cursor=7))
    long_line = " ".join(f"word{number:03}" for number in range(30))[:300]
    ann.send(long_line)
    client.wait_for_display(screen_shows(client, [*start, "📨 Ann: " + long_line], "half a li", cursor=7))
    client.type("X")
    client.wait_for_display(screen_shows(client, [*start, "📨 Ann: " + long_line], "half a Xli", cursor=8))


@pytest.mark.parametrize("size", SIZES)
def test_a_wrapped_half_typed_line_stays_whole_while_three_messages_arrive(chat_server, terminals, size):
    ann = Peer.joined(chat_server.address, "Ann")
    client = joined_terminal(terminals, chat_server, ann, size=size)
    start = opening(chat_server.port, "Bob", 1)
    draft = "a draft that is longer than the terminal is wide, " * 2 + "end"
    client.type(draft + "\x1b[D" * 10)
    cursor = len(draft) - 10
    client.wait_for_display(screen_shows(client, start, draft, cursor))
    incoming = ["first message", "second message, " * 4, "third"]
    for text in incoming:
        ann.send(text)
    shown = [*start, *("📨 Ann: " + text for text in incoming)]
    client.wait_for_display(screen_shows(client, shown, draft, cursor))
    client.type("\r")
    assert ann.read_line() == "Bob: " + draft
    client.wait_for_display(screen_shows(client, [*shown, PROMPT + draft]))


@pytest.mark.parametrize("size", SIZES)
def test_an_emoji_heavy_line_is_shown_whole(chat_server, terminals, size):
    ann = Peer.joined(chat_server.address, "Ann")
    client = joined_terminal(terminals, chat_server, ann, size=size)
    start = opening(chat_server.port, "Bob", 1)
    client.type("typing")
    emoji = "party 🎉🎉 rocket 🚀 " + "😀" * 37 + " 中文字 end"
    ann.send(emoji)
    client.wait_for_display(screen_shows(client, [*start, "📨 Ann: " + emoji], "typing"))


@pytest.mark.parametrize("sizes", [((80, 24), (40, 20)), ((40, 20), (80, 24))], ids=["narrower", "wider"])
def test_a_resize_between_messages_keeps_the_screen_whole(chat_server, terminals, sizes):
    ann = Peer.joined(chat_server.address, "Ann")
    before, after = sizes
    client = joined_terminal(terminals, chat_server, ann, size=before)
    start = opening(chat_server.port, "Bob", 1)
    first = "before the resize " * 4
    ann.send(first)
    client.type("still typing")
    client.wait_for_display(screen_shows(client, [*start, "📨 Ann: " + first], "still typing"))

    client.resize(*after)
    client.wait_for_display(screen_shows(client, [], "still typing", tail=True))
    second = "after the resize " * 4
    ann.send(second)
    client.type(" more")
    client.wait_for_display(screen_shows(client, ["📨 Ann: " + second], "still typing more", tail=True))
    if after[0] > before[0]:  # the earlier rows are still whole (at their old width)
        old_rows = [row for line in [*start, "📨 Ann: " + first] for row in rows_of(line, before[0])]
        shown = [TIMESTAMP.sub("[HH:MM:SS]", row).rstrip() for row in client.display.display]
        assert shown[: len(old_rows)] == old_rows


def test_tab_completes_commands_and_the_names_of_people_online(chat_server, terminals):
    ann = Peer.joined(chat_server.address, "Annabel")
    client = joined_terminal(terminals, chat_server, ann)
    start = opening(chat_server.port, "Bob", 1)
    client.wait_for_display(screen_shows(client, start))
    client.type("Ann\tX")  # nobody of that name is known yet: the welcome names nobody
    client.wait_for_display(screen_shows(client, start, "AnnX"))
    client.type("\x15/us\t")  # Ctrl+U empties the line
    client.wait_for_display(screen_shows(client, start, "/users"))
    client.type("\r")
    client.wait_for("Online (2)")  # the reply tells the client who is online
    client.type("/ms\tAnn\thello\r")
    assert ann.read_line() == "[PM from Bob] hello"

    cid = Peer.joined(chat_server.address, "Cid")
    client.wait_for(messages.joined("Cid"))
    client.type("C\tX")  # at the start of a line, a name is followed by ": "
    client.wait_for_display(lambda: client.rows()[-1] == "You: Cid: X")
    client.type("\x15C\tY")  # Cid is still there
    client.wait_for_display(lambda: client.rows()[-1] == "You: Cid: Y")
    cid.close()
    client.wait_for(messages.left("Cid"))
    client.type("\x15C\tZ")  # Cid left: nothing to complete
    client.wait_for_display(lambda: client.rows()[-1] == "You: CZ")


def test_up_and_down_recall_what_was_sent_and_ctrl_l_clears_the_screen(chat_server, terminals):
    ann = Peer.joined(chat_server.address, "Ann")
    client = joined_terminal(terminals, chat_server, ann)
    start = opening(chat_server.port, "Bob", 1)
    client.type("first\r")
    client.type("second\r")
    assert [ann.read_line(), ann.read_line()] == ["Bob: first", "Bob: second"]
    sent = [PROMPT + "first", PROMPT + "second"]
    client.type("\x1b[A\x1b[A")
    client.wait_for_display(screen_shows(client, [*start, *sent], "first"))
    client.type("\x1b[B")
    client.wait_for_display(screen_shows(client, [*start, *sent], "second"))
    client.type("\x0c")  # Ctrl+L
    client.wait_for_display(screen_shows(client, [], "second"))


def test_help_mentions_the_keys(chat_server, terminals):
    ann = Peer.joined(chat_server.address, "Ann")
    client = joined_terminal(terminals, chat_server, ann)
    client.type("/help\r")
    client.wait_for("Tab completes commands and names")
    client.wait_for("Ctrl+L")


def test_help_is_cut_at_spaces_at_any_width_and_after_a_resize(chat_server, terminals):
    ann = Peer.joined(chat_server.address, "Ann")
    ann.send("/help")
    help_lines = [ann.read_line()]
    while not help_lines[-1].startswith("[SYSTEM] Start a line with //"):
        help_lines.append(ann.read_line())
    shown = ["[HH:MM:SS] " + KEYS_HELP, *("📨 " + line for line in help_lines)]
    client = joined_terminal(terminals, chat_server, ann, size=(60, 40))
    for columns in (60, 40):
        client.resize(columns, 40)
        client.type("/help\r")
        client.wait_for("Start a line with //")
        client.wait_for_display(screen_shows(client, shown, tail=True))
        # Checked apart from terminal.wrap, which screen_shows uses: the words on
        # the screen are the words of the lines, none cut in two, and every row
        # but a line's first is indented.
        count = sum(len(rows_of(line, columns)) for line in shown)
        rows = [TIMESTAMP.sub("[HH:MM:SS]", row) for row in client.rows()[-1 - count : -1]]
        assert [word for row in rows for word in row.split()] == [word for line in shown for word in line.split()]
        assert len(rows) > len(shown)  # some lines took two rows or more
        assert all(row.startswith(("[HH:MM:SS] ", "📨 ", "   ")) for row in rows)


def test_without_color_a_terminal_gets_no_color_and_a_pipe_not_one_escape_byte(chat_server):
    ann = Peer.joined(chat_server.address, "Ann")
    result = subprocess.run(
        [sys.executable, "client.py", "127.0.0.1", str(chat_server.port), "--name", "Pipe"],
        cwd=PROJECT,
        input="hello from a pipe\n/users\n",
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=TIMEOUT_S * 2,
    )
    assert result.returncode == 0
    assert ann.expect(lambda line: line.startswith("Pipe:")) == "Pipe: hello from a pipe"
    assert "\x1b" not in result.stdout + result.stderr
    lines = [TIMESTAMP.sub("[HH:MM:SS]", line) for line in result.stdout.splitlines()]
    assert lines[:3] == [
        f"[HH:MM:SS] 🔄 Connecting to 127.0.0.1:{chat_server.port}...",
        "[HH:MM:SS] ✅ Connected! Type messages and press Enter. Type 'quit' to exit.",
        "📨 " + messages.welcome("Pipe", 1),
    ]
    assert "📨 [SYSTEM] Online (2): Ann, Pipe" in lines
    assert lines[-1] == "📨 [SYSTEM] Goodbye!"


def test_a_dumb_terminal_gets_plain_lines(chat_server, terminals):
    client = terminals("127.0.0.1", str(chat_server.port), "--name", "Bob", env={"TERM": "dumb"})
    client.wait_for(messages.welcome("Bob", 0))
    client.type("/quit\r")
    assert client.wait() == 0
    assert "\x1b" not in client.transcript


# The prompt's end, driven directly: prompt_toolkit reads from a pipe and draws nowhere.


def prompt_in_a_thread(keys: str = "", console_class=PromptConsole):
    """Run PromptConsole.read_line in a thread; return the console and a queue for its outcome."""
    consoles: "queue.Queue[PromptConsole]" = queue.Queue()
    outcome: queue.Queue = queue.Queue()

    def read() -> None:
        with create_pipe_input() as keyboard:
            console = console_class(False, Roster(), input=keyboard, output=DummyOutput())
            keyboard.send_text(keys)
            consoles.put(console)
            try:
                outcome.put(console.read_line())
            except BaseException as error:  # the outcome under test, whatever it is
                outcome.put(error)

    threading.Thread(target=read, daemon=True).start()
    return consoles.get(timeout=TIMEOUT_S), outcome


def test_stop_reading_ends_the_prompt_and_gives_back_the_draft():
    console, outcome = prompt_in_a_thread("half typed")
    assert wait_until(lambda: console.session.app.current_buffer.text == "half typed")
    console.stop_reading()
    stopped = outcome.get(timeout=TIMEOUT_S)
    assert isinstance(stopped, ReadingStopped) and stopped.draft == "half typed"


def test_a_stop_that_comes_just_before_the_prompt_starts_is_not_lost():
    class StoppedAtTheWorstMoment(PromptConsole):
        def _on_prompt_start(self) -> None:
            # read_line() has checked the flag, and the prompt's loop is not known yet.
            self.stop_reading()
            super()._on_prompt_start()

    _, outcome = prompt_in_a_thread(console_class=StoppedAtTheWorstMoment)
    assert isinstance(outcome.get(timeout=TIMEOUT_S), ReadingStopped)


def test_after_a_stop_no_prompt_starts_again():
    console, outcome = prompt_in_a_thread("sent\r")
    assert outcome.get(timeout=TIMEOUT_S) == "sent"
    console.stop_reading()
    with pytest.raises(ReadingStopped):
        console.read_line()


def test_a_ctrl_c_ends_the_prompt_whenever_it_comes():
    class InterruptedAtTheWorstMoment(PromptConsole):
        def _on_prompt_start(self) -> None:
            # read_line() has checked the flag, and the prompt's loop is not known yet.
            self.note_interrupt()
            super()._on_prompt_start()

    _, outcome = prompt_in_a_thread("typing", console_class=InterruptedAtTheWorstMoment)
    assert isinstance(outcome.get(timeout=TIMEOUT_S), KeyboardInterrupt)
    console, outcome = prompt_in_a_thread("typing")  # while the prompt is on screen (SIGTERM)
    assert wait_until(lambda: console.session.app.current_buffer.text == "typing")
    console.note_interrupt()
    interrupted = outcome.get(timeout=TIMEOUT_S)
    assert isinstance(interrupted, Interrupted) and interrupted.draft == "typing"
    with create_pipe_input() as keyboard:
        console = PromptConsole(False, Roster(), input=keyboard, output=DummyOutput())
        console.note_interrupt()  # between two prompts
        with pytest.raises(KeyboardInterrupt):
            console.read_line()


def test_ctrl_c_at_the_prompt_ends_it_and_gives_back_the_draft():
    _, outcome = prompt_in_a_thread("half typed\x03")
    interrupted = outcome.get(timeout=TIMEOUT_S)
    assert isinstance(interrupted, Interrupted) and interrupted.draft == "half typed"


# Over WebSocket: the same client, for a server behind HTTPS (a Codespace's forwarded port).
# Its servers wait long for a first line (conftest.patient_server): a client
# process paused between its connect and its request on a busy machine would
# otherwise be taken for a silent raw client.


def test_the_client_chats_over_websocket_exactly_as_over_tcp(patient_server, terminals):
    chat_server = served(patient_server)
    ann = Peer.joined(chat_server.address, "Ann")
    client = terminals(f"ws://127.0.0.1:{chat_server.port}", "--name", "Wes", env={"NO_COLOR": "1"})
    client.wait_for(f"Connecting to ws://127.0.0.1:{chat_server.port}/ws...")
    client.wait_for(messages.welcome("Wes", 1))
    ann.expect("[SYSTEM] Wes joined the chat!")
    ann.send("Hi Wes!")
    client.wait_for("Ann: Hi Wes!")
    client.type("hello over websocket\r")
    assert ann.read_line() == "Wes: hello over websocket"
    client.type("/quit\r")
    assert client.wait() == 0
    assert ann.read_line() == "[SYSTEM] Wes left the chat."


def test_a_web_address_that_is_not_a_chat_server_gets_one_sentence_and_status_1(patient_server):
    chat_server = served(patient_server)
    client = Program(["client.py", f"ws://127.0.0.1:{chat_server.port}/nothing"])
    assert client.wait() == 1
    output = client.all_output()
    assert f"ws://127.0.0.1:{chat_server.port}/nothing refused the connection (HTTP 404)." in output
    assert "Traceback" not in output


@pytest.fixture
def locked_server(start_server) -> "Served":
    return served(start_server(password="open sesame"))


def test_the_password_is_asked_for_unseen_and_lets_the_client_in(start_server, terminals):
    # Over WebSocket: the server waits long for a first line, as patient_server does.
    locked_server = served(start_server(password="open sesame", timings=replace(FAST, first_line_wait_s=TIMEOUT_S)))
    client = terminals(f"ws://127.0.0.1:{locked_server.port}", "--name", "Pat", "--password")
    client.wait_for("Password: ")
    client.type("open sesame\r")
    client.wait_for("✅ Connected!")  # once the password is taken, not before
    client.wait_for(messages.welcome("Pat", 0))
    assert "open sesame" not in client.transcript  # typed unseen
    client.type("/quit\r")
    assert client.wait() == 0


def test_a_wrong_or_missing_password_is_one_clear_line_and_status_1(locked_server):
    wrong = Program(["client.py", "127.0.0.1", str(locked_server.port), "--password", "guess"])
    missing = Program(["client.py", "127.0.0.1", str(locked_server.port)], env={"CHAT_PASSWORD": ""})
    assert wrong.wait() == 1
    assert "[ERROR] Wrong password." in wrong.all_output()
    assert missing.wait() == 1
    output = missing.all_output()
    assert "This chat needs a password" in output and "--password" in output
    for refused in (wrong, missing):  # connected, but never let in
        assert "Connected!" not in refused.all_output() and "Traceback" not in refused.all_output()


def test_a_name_already_taken_is_explained_below_the_rooms_history_where_it_is_seen(start_server, terminals):
    server = served(start_server(history_lines=50, max_rate=0))
    ann = Peer.joined(server.address, "Ann")
    for number in range(40):  # more than the screen holds
        ann.send(f"line {number}")
    ann.send("/users")
    ann.expect(lambda line: line.startswith("[SYSTEM] Online ("))  # every line said is in the history now
    client = terminals("127.0.0.1", str(server.port), "--name", "Ann")
    client.wait_for("Welcome, User_")
    client.wait_for_display(lambda: any("📨 [ERROR] The name Ann is taken." in row for row in client.rows()[-4:]))
