"""client.py when its connection is lost: it reconnects, rejoins under its name, and shows only what it missed.

The client runs in a pseudo-terminal. A connection is lost either through
a :class:`Relay` in between, cut as a failing network would cut it (the
server then runs in this process), or by stopping a server.py process and
starting another on the same port.

The client's waits between tries are set with ``--retry-first``: short
(:data:`SOON`), so that the tests check what happens instead of waiting on
the default second, and long (:data:`LATER`) for what a user can do while the
client waits. The client shows every wait rounded up to whole seconds, so a
short one reads "Reconnecting in 1 s…".
"""

import re
import time

import pytest

from chat.core import messages
from tests.helpers import PROGRAM_START_S, TIMEOUT_S, Peer, Relay
from tests.test_client_terminal import opening, screen_shows

# The first try about 0.05 s after a loss, then 0.1 s, 0.2 s…: a server
# started meanwhile is found within about twice the time it took to start.
SOON = ("--retry-first", "0.05")
# A first wait of 15 to 30 s, which no test sees the end of.
LATER = ("--retry-first", "30")
# Well under QUIT_WAIT_S, the longest the client waits for its receiver thread when it leaves.
LEFT_AT_ONCE_S = 1.5
# Long enough for a reconnect after a loss, and a server started meanwhile, on a busy machine.
RECONNECT_TIMEOUT_S = TIMEOUT_S * 2
# Without colors, what the client prints can be waited for as plain text.
PLAIN = {"NO_COLOR": "1"}


@pytest.fixture
def servers(server_programs):
    """Start server.py processes with history (``start(port, *options)``), killed afterwards."""
    return lambda port=0, *options: server_programs(port, "--history", "50", *options)


@pytest.fixture
def relays():
    """Put a Relay in front of a server (``relays(server)``, which is ``relay.server``); all closed afterwards."""
    started = []

    def start(server) -> Relay:
        relay = Relay(server.address)
        relay.server = server
        started.append(relay)
        return relay

    yield start
    for relay in started:
        relay.close()


@pytest.fixture
def relay(start_server, relays) -> Relay:
    """A server in this process with history, and a Relay in front of it (``relay.server``)."""
    return relays(start_server(history_lines=50))


def wait_until_handled(peer: Peer) -> None:
    """Wait until the server has handled every line ``peer`` sent: it answers a command after the lines before it."""
    peer.send("/users")
    peer.expect(lambda line: line.startswith(messages.system("Online (")))


def stamped(line: str) -> str:
    """``line`` as the client shows it from a replay, its time as screen_shows() writes every time."""
    return f"📨 [HH:MM:SS] {line}"


def test_after_a_dropped_connection_the_client_rejoins_under_its_name_and_shows_only_what_it_missed(relay, terminals):
    ann = Peer.joined(relay.server.address, "Ann")
    ann.send("before Bob came")
    client = terminals("127.0.0.1", str(relay.port), "--name", "Bob", *SOON)
    ann.expect(messages.joined("Bob"), timeout=PROGRAM_START_S)
    history = [
        "📨 [SYSTEM] Last 1 message:",
        stamped("Ann: before Bob came"),
        "📨 [SYSTEM] End of history.",
    ]
    start = [*opening(relay.port, "Bob", 1)[:2], *history, "📨 " + messages.welcome("Bob", 1)]
    client.wait_for_display(screen_shows(client, start))
    ann.send("seen live")
    client.wait_for_display(screen_shows(client, [*start, "📨 Ann: seen live"]))
    client.type("my own line\r")
    assert ann.read_line() == "Bob: my own line"
    client.type("/nick Robert\r")
    ann.expect(messages.renamed("Bob", "Robert"))
    ann.send("seen live")  # the same words again: only the overlap tells them apart
    seen = [
        "📨 Ann: seen live",
        "You: my own line",
        "You: /nick Robert",
        "📨 " + messages.renamed("Bob", "Robert"),
        "📨 Ann: seen live",
    ]
    client.wait_for_display(screen_shows(client, [*start, *seen]))

    relay.hold()  # the reconnect waits at the relay until Ann has said what Robert misses
    relay.cut(reset=True)
    ann.expect(messages.left("Robert"))
    ann.send("said while you were away")
    ann.send("/me waves")
    ann.send("seen live")
    wait_until_handled(ann)  # all three are in the history before Robert is let back
    client.type("half typed")
    relay.wait_until_accepted(2, RECONNECT_TIMEOUT_S)
    relay.release()
    ann.expect(messages.joined("Robert"))  # the same name as when the connection was lost
    back = [
        "[HH:MM:SS] 🔌 Lost the connection to the server (Connection reset by peer). Reconnecting in 1 s…",
        "[HH:MM:SS] ✅ Reconnected.",
        "[HH:MM:SS] 📜 3 messages while you were away:",
        stamped("Ann: said while you were away"),
        stamped("* Ann waves"),
        stamped("Ann: seen live"),
        "📨 " + messages.welcome("Robert", 1),
    ]
    # Nothing seen before is shown again, nor Robert's own lines; the draft is still there.
    client.wait_for_display(screen_shows(client, [*start, *seen, *back], "half typed"))
    client.type("\r")
    assert ann.read_line() == "Robert: half typed"
    client.type("quit\r")
    assert client.wait() == 0
    assert ann.read_line() == messages.left("Robert")


def test_after_a_server_restart_the_client_comes_back_and_lines_typed_meanwhile_are_not_sent(servers, terminals):
    first = servers()
    ann = Peer.joined(first.address, "Ann")
    client = terminals("127.0.0.1", str(first.port), "--name", "Bob", *SOON, env=PLAIN)
    ann.expect(messages.joined("Bob"), timeout=PROGRAM_START_S)
    client.wait_for("Welcome, Bob!")
    ann.send("before the restart")
    client.wait_for("📨 Ann: before the restart")
    first.terminate()  # SIGTERM: every client is told, then the connection closes
    assert messages.SHUTTING_DOWN in ann.read_until_closed()  # as the client does: the server need not linger
    client.wait_for("📨 " + messages.SHUTTING_DOWN)
    client.wait_for("🔌 Server closed the connection. Reconnecting in 1 s…")
    assert first.wait() == 0
    client.type("anyone there?\r")
    client.wait_for("📝 Not sent (not connected): anyone there?")

    second = servers(first.port)
    client.wait_for("✅ Reconnected.", RECONNECT_TIMEOUT_S)
    client.wait_for(messages.welcome("Bob", 0))  # the new server's history is empty: no replay
    ann = Peer.joined(second.address, "Ann")
    client.wait_for("📨 " + messages.joined("Ann"))
    ann.send("hello again")
    client.wait_for("📨 Ann: hello again")
    client.type("/quit\r")
    assert client.wait() == 0
    assert ann.read_line() == messages.left("Bob")  # the line typed while away never came
    assert "while you were away" not in client.transcript


def test_a_client_away_for_longer_than_the_history_holds_is_told_that_earlier_lines_may_be_missing(
    start_server, relays, terminals
):
    relay = relays(start_server(history_lines=2))
    ann = Peer.joined(relay.server.address, "Ann")
    client = terminals("127.0.0.1", str(relay.port), "--name", "Bob", *SOON, env=PLAIN)
    ann.expect(messages.joined("Bob"), timeout=PROGRAM_START_S)
    ann.send("seen live")
    client.wait_for("📨 Ann: seen live")
    relay.hold()
    relay.cut(reset=True)
    ann.expect(messages.left("Bob"))
    for number in range(1, 4):
        ann.send(f"missed {number}")
    wait_until_handled(ann)
    relay.wait_until_accepted(2, RECONNECT_TIMEOUT_S)
    relay.release()
    # The history holds the last two lines: the first one missed is gone, and nothing Bob saw is left.
    client.wait_for("📜 2 messages while you were away (earlier ones may be missing):")
    client.wait_for("Ann: missed 2")
    client.wait_for("Ann: missed 3")
    client.wait_for(messages.welcome("Bob", 1))
    assert "missed 1" not in client.transcript


def test_a_killed_server_replaced_on_its_port_gets_the_client_back_over_websocket(servers, terminals):
    first = servers()
    client = terminals(f"ws://127.0.0.1:{first.port}", "--name", "Wes", *SOON, env=PLAIN)
    client.wait_for(messages.welcome("Wes", 0))
    first.kill()  # SIGKILL: no notice, no closing frame
    client.wait_for("🔌 Lost the connection to the server (")
    client.wait_for("Reconnecting in 1 s…")

    second = servers(first.port)
    client.wait_for("✅ Reconnected.", RECONNECT_TIMEOUT_S)
    client.wait_for(messages.welcome("Wes", 0))
    ann = Peer.joined(second.address, "Ann")
    client.wait_for(messages.joined("Ann"))
    client.type("back over websocket\r")
    assert ann.read_line() == "Wes: back over websocket"
    client.type("/quit\r")
    assert client.wait() == 0


@pytest.mark.parametrize("keys", ["\x03", "\x04", "SIGTERM"], ids=["ctrl-c", "ctrl-d", "sigterm"])
def test_while_waiting_to_reconnect_every_way_out_leaves_cleanly_with_status_0_at_once(relay, terminals, keys):
    client = terminals("127.0.0.1", str(relay.port), "--name", "Bob", *LATER, env=PLAIN)
    client.wait_for(messages.welcome("Bob", 0))
    relay.cut(reset=True)
    waiting = client.wait_for(" s…")
    assert int(re.search(r"Reconnecting in (\d+) s…", waiting).group(1)) >= 15  # as --retry-first asked
    pressed = time.monotonic()
    client.leave_with(keys)
    # The wait had at least 15 s to go; and the client did not give up on it
    # after a while either, as it does on a thread that will not end.
    assert time.monotonic() - pressed < LEFT_AT_ONCE_S, "the client waited for the backoff to end"
    assert "Reconnected" not in client.transcript


def test_without_reconnect_a_broken_connection_ends_the_client_with_status_1(relay, terminals):
    ann = Peer.joined(relay.server.address, "Ann")
    client = terminals("127.0.0.1", str(relay.port), "--name", "Bob", "--no-reconnect", env=PLAIN)
    ann.expect(messages.joined("Bob"), timeout=PROGRAM_START_S)
    client.wait_for(messages.welcome("Bob", 1))
    client.type("half typed")
    client.wait_for("half typed")
    relay.cut(reset=True)
    assert client.wait() == 1
    ending = [
        "[HH:MM:SS] 🔌 Lost the connection to the server (Connection reset by peer).",
        "[HH:MM:SS] 📝 Not sent: half typed",
    ]
    client.wait_for_display(screen_shows(client, ending, typed=None, tail=True))
    assert relay.accepted == 1  # it never tried again
    assert "Reconnecting" not in client.transcript


def test_a_name_still_taken_on_rejoining_gets_the_servers_answer_and_a_name_of_its_own(relay, terminals):
    ann = Peer.joined(relay.server.address, "Ann")
    # Wide enough for the welcome of User_<port> on one row, to be waited for whole.
    client = terminals("127.0.0.1", str(relay.port), "--name", "Bob", *SOON, env=PLAIN, size=(100, 24))
    ann.expect(messages.joined("Bob"), timeout=PROGRAM_START_S)
    client.wait_for(messages.welcome("Bob", 1))
    relay.cut(reset=True, server_side=False)  # the server has not noticed: Bob is still online
    client.wait_for("Reconnecting in 1 s…")
    # As for any client whose wanted name is refused: the default name, and why.
    joined = ann.expect(lambda line: line.endswith(" joined the chat!"), RECONNECT_TIMEOUT_S)
    name = re.fullmatch(r"\[SYSTEM\] (User_\d+) joined the chat!", joined).group(1)
    client.wait_for("📨 [ERROR] The name Bob is taken.")
    client.wait_for(messages.welcome(name, 2))
    client.type("/nick Bob\r")  # refused again while the old connection lasts
    client.wait_for("📨 [ERROR] The name Bob is taken.")
    client.type("/quit\r")
    assert client.wait() == 0
    assert ann.read_line() == messages.left(name)


def test_a_reconnect_refused_for_its_password_stops_trying_with_status_1(servers, terminals):
    first = servers(0, "--password", "old secret")
    client = terminals("127.0.0.1", str(first.port), "--name", "Pat", "--password", "old secret", *SOON, env=PLAIN)
    client.wait_for(messages.welcome("Pat", 0))
    first.kill()
    client.wait_for("Reconnecting in 1 s…")
    servers(first.port, "--password", "new secret")
    client.wait_for("📨 [ERROR] Wrong password.", RECONNECT_TIMEOUT_S)
    assert client.wait() == 1
    client.wait_for("🔌 Server closed the connection.")
    assert "Reconnecting" not in client.screen  # the rest of the output: it never tried again
    assert "Reconnected" not in client.transcript  # refused: it never was
