"""The terminal client and the room's operators.

A client removed by an operator (kicked or banned) does not reconnect: it
shows the server's line, one sentence saying why it stopped, and exits with
status 1; a chat line that only quotes such a notice changes nothing. Tab
offers the operators' commands only after the server said "You are now an
operator", and ``/users`` names operators as ``@Ann``.

The pure parts are tested directly; ChatClient over a socketpair, with a
console that records what it is shown; and client.py itself, in a
pseudo-terminal, against a scripted server that plays the chat server's part.
"""

import contextlib
import queue
import socket
import threading
from types import SimpleNamespace

import pytest

from chat.client.client import ChatClient, why_not_reconnecting
from chat.client.completion import Roster, complete, offered_commands
from chat.client.link import Banned, banned_sentence
from chat.client.terminal import ReadingStopped
from chat.core import messages
from chat.core.commands import COMMANDS
from chat.core.framing import LineFramer, decode_line, encode_line
from chat.core.messages import PASSWORD_TOO_MANY_TRIES
from tests.helpers import PROGRAM_START_S, TIMEOUT_S, Peer
from tests.test_client_terminal import screen_shows

KICKED = messages.system("You were removed by Ann: spamming")
NOW_OPERATOR = messages.system("You are now an operator. Type /help to see the operator commands.")
NO_LONGER_OPERATOR = messages.system("You are no longer an operator.")
# Forgeries: chat lines whose text imitates a notice. Names cannot hold "[", so none can start a line with "[SYSTEM]".
FORGED = [
    "Mallory: [SYSTEM] You were removed by Ann: spamming",
    "Mallory: [SYSTEM] You are banned from this chat for 59 more minutes.",
    "* Mallory [SYSTEM] You were removed by Ann.",
    "[PM from Mallory] [SYSTEM] You were removed by Ann.",
]

# -- which lines end the chat -------------------------------------------------------------


@pytest.mark.parametrize(
    "line, sentence",
    [
        (KICKED, "Not reconnecting: you were removed from the chat."),
        (messages.system("You were removed by Server."), "Not reconnecting: you were removed from the chat."),
        (
            messages.system("You were removed by Ann and banned for 60 minutes: spamming"),
            "Not reconnecting: you were removed from the chat and banned.",
        ),
        (
            messages.system("You were removed by Ann and banned until an operator lifts it."),
            "Not reconnecting: you were removed from the chat and banned.",
        ),
        (
            messages.system("You are banned from this chat for 59 more minutes: spamming"),
            "Not reconnecting: you are banned from this chat.",
        ),
        (
            messages.system("You are banned from this chat until an operator lifts it."),
            "Not reconnecting: you are banned from this chat.",
        ),
    ],
)
def test_a_removal_or_a_ban_means_not_reconnecting_and_says_which(line, sentence):
    assert why_not_reconnecting(line) == sentence


@pytest.mark.parametrize(
    "line",
    [
        *FORGED,
        messages.system("Bob was removed by Ann: spamming"),  # someone else
        messages.system("Bob was removed by Ann and banned for 60 minutes."),
        messages.system("The ban on Bob was lifted by Ann."),
        "[10:00:00] " + KICKED,  # as a history line would come (it never does)
        messages.error("You are muted for 9 more minutes."),
        messages.SHUTTING_DOWN,
    ],
)
def test_no_other_line_stops_the_client(line):
    assert why_not_reconnecting(line) is None


@pytest.mark.parametrize(
    "body, sentence",
    [
        (
            b"403 Forbidden. You are banned from this chat for 59 more minutes: spamming\n",
            "You are banned from this chat for 59 more minutes: spamming",
        ),
        (b"403 Forbidden. You are banned from this chat until an operator lifts it.\n", "You are banned from this chat until an operator lifts it."),
        (b"403 Forbidden. You are banned from this chat: \x1b[2Jcleared\n", "You are banned from this chat: cleared"),
        (b"403 Forbidden. This page may not open a WebSocket here.\n", None),
        (b"", None),
        (None, None),
    ],
    ids=["for-minutes", "until-lifted", "escapes-removed", "another-403", "empty", "no-body"],
)
def test_a_websocket_refused_with_403_is_banned_only_if_the_text_says_so(body, sentence):
    assert banned_sentence(body) == sentence


# -- Tab: names without their mark, operator commands for operators ------------------------


def test_the_roster_takes_names_from_users_without_the_operator_mark():
    roster = Roster()
    roster.update(messages.welcome("Bob", 2))
    roster.update(messages.system("Online (3): @Ann, Bob, @carol-2"))
    assert roster.others() == ["Ann", "carol-2"]
    assert complete("@", roster.others(), {}) == []
    assert complete("A", roster.others(), {}) == ["Ann: "]


def test_a_member_removed_by_an_operator_is_no_longer_offered():
    roster = Roster()
    roster.update(messages.welcome("Bob", 2))
    roster.update(messages.system("Online (3): Ann, Bob, Cid"))
    roster.update(messages.system("Cid was removed by Ann and banned for 60 minutes: spamming"))
    roster.update(FORGED[0])  # Mallory is online (she spoke), and no one was removed by her line
    assert roster.others() == ["Ann", "Mallory"]


def test_operator_status_comes_from_the_servers_answers_and_ends_with_its_connection():
    roster = Roster()
    roster.update(messages.welcome("Bob", 0))
    assert not roster.operator
    roster.update("Mallory: " + NOW_OPERATOR)  # a chat line, not the server's answer
    assert not roster.operator
    roster.update(NOW_OPERATOR)
    assert roster.operator
    roster.update(NO_LONGER_OPERATOR)
    assert not roster.operator
    roster.update(NOW_OPERATOR)
    roster.connection_ended()  # the server forgets it with the connection
    assert not roster.operator
    roster.update(NOW_OPERATOR)
    roster.update(messages.welcome("Bob", 0))  # a new connection's welcome
    assert not roster.operator


def test_operator_commands_are_offered_to_operators_only():
    table = {
        "msg": SimpleNamespace(args="NAME TEXT", operator=False),
        "op": SimpleNamespace(args="PASSWORD", operator=False),
        "kick": SimpleNamespace(args="NAME [reason]", operator=True),
        "topic": SimpleNamespace(args="[TEXT]", operator=True),
        "users": SimpleNamespace(args=""),  # a table without the mark: offered to everyone
    }
    everyone = offered_commands(table, operator=False)
    assert everyone == {"msg": "NAME TEXT", "op": "PASSWORD", "users": ""}
    assert complete("/k", [], everyone) == []
    operators = offered_commands(table, operator=True)
    assert complete("/k", [], operators) == ["/kick "]
    assert complete("/", [], operators) == ["/kick ", "/msg ", "/op ", "/topic ", "/users"]


def test_from_the_real_command_table_everyone_gets_every_command_but_the_operators_own():
    marked = {name for name, command in COMMANDS.items() if getattr(command, "operator", False)}
    assert set(offered_commands(COMMANDS, operator=False)) == set(COMMANDS) - marked
    assert set(offered_commands(COMMANDS, operator=True)) == set(COMMANDS)


# -- ChatClient: the chat ends at a removal, whatever the reconnect settings ------------------


class RecordingConsole:
    """A console without a keyboard: read_line waits until stop_reading; shown lines are kept as text."""

    interactive = False

    def __init__(self) -> None:
        self.shown: "list[str]" = []
        self._stopped = threading.Event()

    def read_line(self) -> str:
        assert self._stopped.wait(TIMEOUT_S), "the chat never ended"
        raise ReadingStopped()

    def show(self, text) -> None:
        self.shown.append(text if isinstance(text, str) else "".join(fragment[1] for fragment in text))

    def stop_reading(self) -> None:
        self._stopped.set()


class NoInterrupts:
    """What ChatClient asks of Interrupts, without touching the test process's signal handlers."""

    def ignore(self) -> None:
        pass

    @contextlib.contextmanager
    def raised_at_once(self):
        yield


class ScriptedServer:
    """The server's ends of the client's connections: each rejoin gets a new socketpair."""

    def __init__(self) -> None:
        self.ends: "list[socket.socket]" = []
        self.rejoined: "list[str | None]" = []  # the name asked for on each rejoin
        self.rejoins: "queue.Queue[str | None]" = queue.Queue()  # the same, to wait for

    def connect(self) -> socket.socket:
        ours, theirs = socket.socketpair()
        ours.settimeout(TIMEOUT_S)
        self.ends.append(ours)
        return theirs

    def rejoin(self, name):
        """ChatClient's rejoin, called from its receiver thread."""
        end = self.connect()
        self.rejoined.append(name)
        self.rejoins.put(name)
        return end

    def play(self, *lines: str, close: bool = True) -> None:
        """Send lines on the newest connection, then close it as the server does after a kick."""
        end = self.ends[-1]
        end.sendall(b"".join(encode_line(line) for line in lines))
        if close:
            end.shutdown(socket.SHUT_WR)

    def close(self) -> None:
        for end in self.ends:
            end.close()


@pytest.fixture
def scripted():
    server = ScriptedServer()
    yield server
    server.close()


def run_client(scripted: ScriptedServer, reconnect: bool = True):
    """Start a ChatClient on a scripted connection; return it and a function that waits for its exit status."""
    console = RecordingConsole()
    rejoin = scripted.rejoin if reconnect else None
    client = ChatClient(scripted.connect(), console, False, Roster(), NoInterrupts(), rejoin, retry_first_s=0.01)
    outcome: "list[int]" = []
    thread = threading.Thread(target=lambda: outcome.append(client.run()), name="chat-client")
    thread.start()

    def wait_for_exit() -> int:
        thread.join(TIMEOUT_S)
        assert not thread.is_alive(), "the client never ended"
        return outcome[0]

    return client, console, wait_for_exit


@pytest.mark.parametrize("reconnect", [True, False], ids=["reconnecting", "no-reconnect"])
def test_a_kicked_client_shows_the_line_says_why_it_stops_and_exits_with_status_1(scripted, reconnect):
    client, console, wait_for_exit = run_client(scripted, reconnect)
    scripted.play(messages.welcome("Bob", 1), KICKED)
    assert wait_for_exit() == 1
    assert scripted.rejoined == []
    shown = [line for line in console.shown if not line.startswith("📨 " + messages.SYSTEM_PREFIX + "Welcome") and "✅ Connected!" not in line]
    assert shown[0] == "📨 " + KICKED
    assert shown[1].endswith("🚫 Not reconnecting: you were removed from the chat.")
    assert len(shown) == 2  # not "Server closed the connection", not "Reconnecting"
    # It said nothing more to the server either: no /quit into a closed connection.
    assert scripted.ends[0].recv(1024) == b""


def test_a_reconnect_refused_over_websocket_for_a_ban_ends_the_chat_with_status_1(scripted):
    refusal = "You are banned from this chat for 59 more minutes: spamming"

    def banned(name):
        scripted.rejoined.append(name)
        raise Banned(refusal)

    scripted.rejoin = banned
    client, console, wait_for_exit = run_client(scripted)
    scripted.play(messages.welcome("Bob", 1))  # then the connection drops
    assert wait_for_exit() == 1
    assert scripted.rejoined == ["Bob"]  # once
    assert console.shown[-2].endswith("🚫 " + refusal)
    assert console.shown[-1].endswith("🚫 Not reconnecting: you are banned from this chat.")


def test_a_wrong_operator_password_does_not_stop_reconnecting_as_a_wrong_room_password_does(scripted):
    client, console, wait_for_exit = run_client(scripted)
    # /op's guesses are limited as the room's are, and answered in the same words once too many.
    scripted.play(messages.welcome("Bob", 1), messages.error("Wrong operator password."), PASSWORD_TOO_MANY_TRIES)
    assert scripted.rejoins.get(timeout=TIMEOUT_S) == "Bob"
    scripted.play(KICKED)
    assert wait_for_exit() == 1


def test_a_client_that_reconnects_into_a_ban_stops_there(scripted):
    client, console, wait_for_exit = run_client(scripted)
    scripted.play(messages.welcome("Bob", 1), *FORGED)  # the forgeries change nothing: a drop, a reconnect
    assert scripted.rejoins.get(timeout=TIMEOUT_S) == "Bob"  # under its name, as after any drop
    banned = messages.system("You are banned from this chat for 59 more minutes: spamming")
    scripted.play(banned)
    assert wait_for_exit() == 1
    assert scripted.rejoined == ["Bob"]  # once
    assert console.shown[-2] == "📨 " + banned
    assert console.shown[-1].endswith("🚫 Not reconnecting: you are banned from this chat.")
    for line in FORGED:  # shown as the chat lines they are
        assert "📨 " + line in console.shown


# -- client.py in a pseudo-terminal, against a scripted server -----------------------------


def read_line_from(connection: socket.socket) -> str:
    """The first line the client sends on ``connection``."""
    framer = LineFramer(4096)
    connection.settimeout(TIMEOUT_S)
    while True:
        data = connection.recv(4096)
        assert data, "the client closed the connection without a line"
        for event in framer.feed(data):
            if isinstance(event, bytes):
                return decode_line(event)


def test_client_py_comes_back_after_a_forged_notice_but_stops_with_status_1_when_kicked(terminals):
    with socket.create_server(("127.0.0.1", 0)) as listener:
        listener.settimeout(PROGRAM_START_S)
        port = listener.getsockname()[1]
        client = terminals("127.0.0.1", str(port), "--name", "Bob", "--retry-first", "0.05", env={"NO_COLOR": "1"})
        first, _ = listener.accept()
        with first:
            assert read_line_from(first) == "/nick Bob"
            first.sendall(b"".join(encode_line(line) for line in [messages.welcome("Bob", 1), *FORGED]))
            client.wait_for(FORGED[-1])
        client.wait_for("🔌 Server closed the connection. Reconnecting in 1 s…")  # a drop like any other
        listener.settimeout(TIMEOUT_S)
        second, _ = listener.accept()
        with second:
            assert read_line_from(second) == "/nick Bob"
            second.sendall(encode_line(messages.welcome("Bob", 1)) + encode_line(KICKED))
            second.shutdown(socket.SHUT_WR)
            assert client.wait() == 1
        ending = ["📨 " + KICKED, "[HH:MM:SS] 🚫 Not reconnecting: you were removed from the chat."]
        client.wait_for_display(screen_shows(client, ending, typed=None, tail=True))
        # Had it tried again before exiting, the connection would be waiting here.
        listener.setblocking(False)
        with pytest.raises(BlockingIOError):
            listener.accept()


# -- client.py against server.py -------------------------------------------------------------

OP_PASSWORD = "P"


def test_client_py_offers_operator_commands_after_op_only_and_a_kick_ends_it_with_status_1(server_programs, terminals):
    server = server_programs(0, "--history", "0", "--op-password", OP_PASSWORD)
    olive = Peer.joined(server.address, "Olive")
    olive.send(f"/op {OP_PASSWORD}")
    olive.expect(NOW_OPERATOR)
    client = terminals("127.0.0.1", str(server.port), "--name", "Bob", "--retry-first", "0.05", env={"NO_COLOR": "1"})
    olive.expect(messages.joined("Bob"), timeout=PROGRAM_START_S)
    client.wait_for(messages.welcome("Bob", 1))

    def after_tab(typed: str, shown: str) -> None:
        """Type ``typed`` (with a Tab in it) and an X on an emptied line; wait for ``shown`` and the X after it."""
        client.type("\x15" + typed + "X")  # Ctrl+U empties the line
        client.wait_for_display(lambda: client.rows()[-1] == f"You: {shown}X")

    after_tab("/ki\t", "/ki")  # not an operator: not offered
    client.type("\x15/users\r")
    client.wait_for(messages.system("Online (2): Bob, @Olive"))
    after_tab("Ol\t", "Olive: ")  # the name, without its mark
    client.type(f"\x15/op {OP_PASSWORD}\r")
    client.wait_for(NOW_OPERATOR)
    after_tab("/ki\t", "/kick ")
    client.type("\x15/deop\r")
    client.wait_for(NO_LONGER_OPERATOR)
    after_tab("/ki\t", "/ki")

    olive.send("/kick Bob spamming")
    olive.expect(messages.system("Bob was removed by Olive: spamming"))
    assert client.wait() == 1
    ending = [
        "📨 " + messages.system("You were removed by Olive: spamming"),
        "[HH:MM:SS] 🚫 Not reconnecting: you were removed from the chat.",
        "[HH:MM:SS] 📝 Not sent: /kiX",  # what was typed is given back, as whenever the chat ends
    ]
    client.wait_for_display(screen_shows(client, ending, typed=None, tail=True))
    assert "Reconnecting" not in client.transcript
    olive.assert_receives_nothing()  # Bob never came back


def test_leaving_while_the_receiver_closes_the_connection_the_server_just_closed_is_no_traceback(scripted):
    # The race behind a rare traceback ("Bad file descriptor") at the end of
    # input: the receiver has closed the link, but not yet said that the
    # server is gone, when the main thread starts to say /quit on it.
    link = scripted.connect()
    client = ChatClient(link, RecordingConsole(), False, Roster(), NoInterrupts(), None)
    client.receiver.start()  # waiting in recv
    link.close()  # as the receiver does once the server closed the connection; its recv goes on waiting
    threading.Timer(0.1, scripted.ends[0].close).start()  # the server's end goes, which ends that recv
    client._leave()  # raised OSError (EBADF) from settimeout before
    assert client.server_gone.wait(TIMEOUT_S)
