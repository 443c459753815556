"""server.py and client.py as people run them: subprocesses, and a pseudo-terminal for the client."""

import re
import socket
import time

import pytest

from tests.helpers import Peer, ServerProgram, Program, Terminal, free_port


@pytest.fixture
def server_program():
    program = ServerProgram()
    yield program
    Peer.close_all()
    program.kill()


@pytest.fixture
def terminals():
    started = []

    def start(*args, env=None) -> Terminal:
        terminal = Terminal(list(args), env={"NO_COLOR": "1", **(env or {})})
        started.append(terminal)
        return terminal

    yield start
    for terminal in started:
        terminal.close()


def test_the_server_prints_the_startup_lines_and_each_event(server_program):
    startup = [re.sub(r"^\[\d\d:\d\d:\d\d\] ", "[HH:MM:SS] ", line) for line in server_program.output]
    assert startup == [
        "[HH:MM:SS] 🚀 Chat Server Started",
        f"[HH:MM:SS] 📍 Listening on 127.0.0.1:{server_program.port}",
        "[HH:MM:SS] ⏳ Waiting for clients to connect...",
    ]
    ann = Peer.joined(server_program.address, "Ann")
    port = ann.sock.getsockname()[1]
    server_program.expect(rf"^\[\d\d:\d\d:\d\d\] ✅ User_{port} connected from \('127.0.0.1', {port}\)$")
    server_program.expect(r"\[SYSTEM\] Ann joined the chat!$")
    server_program.expect(r"📊 Active users: Ann$")
    ann.send("Hello everyone!")
    server_program.expect(r"📨 Ann: Hello everyone!$")
    ann.close()
    server_program.expect(r"\[SYSTEM\] Ann left the chat\.$")


def test_sigterm_stops_the_server_cleanly_within_two_seconds(server_program):
    ann = Peer.joined(server_program.address, "Ann")
    started = time.monotonic()
    server_program.terminate()
    assert ann.read_until_closed()[-1] == "[SYSTEM] Server is shutting down."
    assert server_program.wait() == 0
    assert time.monotonic() - started < 2.0
    assert "Traceback" not in server_program.all_output()
    # The port is free again at once.
    again = ServerProgram(server_program.port)
    again.terminate()
    assert again.wait() == 0


def test_a_port_in_use_gives_one_clear_line_and_status_1():
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        program = Program(["server.py", "--host", "127.0.0.1", "--port", str(port)])
        assert program.wait() == 1
    output = program.all_output()
    assert f"Port {port} is already in use" in output
    assert len(output.strip().splitlines()) == 1


@pytest.mark.parametrize("args", [["--port", "eighty"], ["--port", "70000"], ["--colour"]])
def test_a_bad_argument_gets_the_usage_line_and_status_2(args):
    program = Program(["server.py", *args])
    assert program.wait() == 2
    assert "usage: server.py" in program.all_output()


def test_the_client_connects_sends_receives_while_typing_and_quits(server_program, terminals):
    ann = Peer.joined(server_program.address, "Ann")
    client = terminals("127.0.0.1", str(server_program.port), "--name", "Bob")
    client.wait_for(f"🔄 Connecting to 127.0.0.1:{server_program.port}...")
    client.wait_for("✅ Connected! Type messages and press Enter. Type 'quit' to exit.")
    client.wait_for("You: ")
    ann.expect("[SYSTEM] Bob joined the chat!")

    client.type("Hello everyone!\r")
    assert ann.read_line() == "Bob: Hello everyone!"

    client.type("half-tped")
    client.wait_for("half-tped")
    client.type("\x1b[D\x1b[D\x1b[D")  # the cursor goes back three places, after "half-t"
    ann.send("Hi there!")
    client.wait_for("Hi there!")
    client.type("y")
    # The message has a row of its own; the prompt and the typing are intact below it,
    # with the cursor where it was.
    client.wait_for_display(lambda: client.rows()[-2:] == ["📨 Ann: Hi there!", "You: half-typed"])
    client.wait_for_display(lambda: client.cursor_column() == len("You: half-ty"))
    client.type("\r")
    assert ann.read_line() == "Bob: half-typed"

    client.type("quit\r")
    assert client.wait() == 0
    assert ann.read_line() == "[SYSTEM] Bob left the chat."
    assert "Traceback" not in client.screen


@pytest.mark.parametrize("keys", ["\x03", "\x04", "/quit\r"], ids=["ctrl-c", "ctrl-d", "slash-quit"])
def test_the_client_leaves_cleanly_on_every_way_out(server_program, terminals, keys):
    ann = Peer.joined(server_program.address, "Ann")
    client = terminals(f"127.0.0.1:{server_program.port}", "--name", "Bob")
    client.wait_for("You: ")
    ann.expect("[SYSTEM] Bob joined the chat!")
    client.type(keys)
    assert client.wait() == 0
    assert ann.read_line() == "[SYSTEM] Bob left the chat."
    assert "Traceback" not in client.screen


def test_the_client_says_so_when_the_server_goes_away(server_program, terminals):
    client = terminals("127.0.0.1", str(server_program.port))
    client.wait_for("You: ")
    server_program.terminate()
    client.wait_for("[SYSTEM] Server is shutting down.")
    client.wait_for("Server closed the connection.")
    assert client.wait() == 0
    assert "Traceback" not in client.screen


def test_a_refused_connection_is_one_line_naming_the_address(terminals):
    port = free_port()
    client = terminals("localhost", str(port))
    assert client.wait() == 1
    assert f"Could not connect to localhost:{port}" in client.screen
    assert "python server.py" in client.screen
    assert "Traceback" not in client.screen


def test_names_are_colored_on_a_terminal_unless_no_color_is_set(server_program, terminals):
    ann = Peer.joined(server_program.address, "Ann")
    colored = terminals("127.0.0.1", str(server_program.port), env={"NO_COLOR": ""})
    plain = terminals("127.0.0.1", str(server_program.port), "--no-color", env={"NO_COLOR": ""})
    for client in (colored, plain):
        client.wait_for("You: ")
    ann.expect(lambda line: line.endswith("joined the chat!"))
    ann.expect(lambda line: line.endswith("joined the chat!"))
    ann.send("colors?")
    color_code = re.compile(r"\x1b\[[0-9;]*m")
    assert color_code.search(colored.wait_for("colors?"))
    assert not color_code.search(plain.wait_for("colors?"))


def test_the_client_strips_escape_sequences_a_hostile_server_sends(terminals):
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        client = terminals("127.0.0.1", str(listener.getsockname()[1]))
        listener.settimeout(5)
        connection, _ = listener.accept()
        with connection:
            client.wait_for("You: ")
            connection.sendall("\x1b]0;pwned\x07\x1b[2Jevil \u202eline\x9b\n".encode())
            screen = client.wait_for("evil line")
            connection.sendall(b"[SYSTEM] bye\n")
            client.wait_for("bye")
    assert "pwned" not in screen and "\x1b]" not in screen and "\x1b[2J" not in screen
    assert "\u202e" not in screen
