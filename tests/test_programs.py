"""server.py as people run it: a subprocess, its output and its exit status (client.py: test_client_terminal.py)."""

import logging
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest

from chat.config import EVERY_INTERFACE, Limits, ServerConfig
from chat.server import ChatServer
from tests.helpers import FAST, PROJECT, TIMEOUT_S, Peer, Program, ServerProgram, free_port, join_all, wait_until


def test_the_server_prints_the_startup_lines_and_each_event(server_program):
    startup = [re.sub(r"^\[\d\d:\d\d:\d\d\] ", "[HH:MM:SS] ", line) for line in server_program.output]
    assert startup == [
        "[HH:MM:SS] 🚀 Chat Server Started",
        f"[HH:MM:SS] 📍 Listening on 127.0.0.1:{server_program.port}",
        "[HH:MM:SS] ⏳ Waiting for clients to connect...",
    ]
    ann = Peer.joined(server_program.address, "Ann")
    port = ann.sock.getsockname()[1]
    server_program.expect(rf"^\[\d\d:\d\d:\d\d\] ✅ Ann connected from \('127.0.0.1', {port}\)$")
    server_program.expect(r"\[SYSTEM\] Ann joined the chat!$")
    server_program.expect(r"📊 Active users: Ann$")
    ann.send("Hello everyone!")
    server_program.expect(r"📨 Ann: Hello everyone!$")
    Peer.joined(server_program.address, "ann").close()  # the name is taken: it joins as User_PORT
    server_program.expect(r"🏷️  User_\d+ asked for the name 'ann': The name ann is taken\.$")
    with socket.create_connection(server_program.address) as passer_by:  # says nothing, and goes
        port = passer_by.getsockname()[1]
    server_program.expect(rf"🔌 \('127\.0\.0\.1', {port}\) disconnected before joining$")
    ann.close()
    server_program.expect(r"\[SYSTEM\] Ann left the chat\.$")


def ipv6_missing() -> "str | None":
    """Why a dual-stack server cannot be tried here, or None."""
    if not socket.has_dualstack_ipv6():
        return "this system has no dual-stack IPv6 sockets"
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
    except OSError as error:
        return f"IPv6 loopback is not usable here: {error}"
    return None


@pytest.mark.skipif(ipv6_missing() is not None, reason=str(ipv6_missing()))
def test_a_port_whose_ipv6_side_another_program_holds_is_served_for_ipv4_and_says_so(caplog):
    with socket.socket(socket.AF_INET6) as holder:
        holder.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        holder.bind(("::1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        server = ChatServer(ServerConfig(EVERY_INTERFACE, port, Limits(), FAST, None, 0))
        server.bind()
        thread = threading.Thread(target=server.serve_forever)
        with caplog.at_level(logging.INFO):
            thread.start()
            try:
                Peer.joined(("127.0.0.1", port), "Four").close()
            finally:
                assert server.shutdown(TIMEOUT_S)
                thread.join(TIMEOUT_S)
    assert not server.ipv6_too
    logged = [record.getMessage() for record in caplog.records]
    assert f"📍 Listening on 0.0.0.0:{port}" in logged
    assert "⚠️  Not listening for IPv6 clients (Address already in use): IPv4 only." in logged


@pytest.mark.skipif(ipv6_missing() is not None, reason=str(ipv6_missing()))
def test_by_default_the_server_listens_for_ipv4_and_ipv6_clients_and_logs_each_as_it_knows_itself():
    server = Program(["server.py", "--port", "0", "--history", "0", "--no-qr"])
    try:
        port = int(server.expect(r"📍 Listening on 0\.0\.0\.0:(\d+)$").group(1))
        server.expect(rf"📍 Listening on \[::\]:{port} too, for IPv6$")
        four = Peer.joined(("127.0.0.1", port), "Four")
        server.expect(rf"✅ Four connected from \('127\.0\.0\.1', {four.sock.getsockname()[1]}\)$")
        six = Peer.joined(("::1", port), "Six")
        server.expect(rf"✅ Six connected from \[::1\]:{six.sock.getsockname()[1]}$")
        six.send("hello over IPv6")
        assert four.expect(lambda line: line.endswith("hello over IPv6")) == "Six: hello over IPv6"
    finally:
        Peer.close_all()
        server.process.send_signal(signal.SIGTERM)
        assert server.wait() == 0


def test_with_one_cpu_every_thread_of_the_server_stays_on_the_cpu_it_names():
    server = ServerProgram(0, "--one-cpu")
    try:
        cpu = server.expect(r"🧵 Every thread of the server runs on CPU (\d+) \(--one-cpu\)\.$").group(1)
        ann = Peer.joined(server.address, "Ann")  # its reader and writer threads start after the pinning
        ann.send("/users")
        ann.expect(lambda line: line.startswith("[SYSTEM] Online ("))
        allowed = {}
        for task in os.listdir(f"/proc/{server.process.pid}/task"):
            with open(f"/proc/{server.process.pid}/task/{task}/status") as status:
                allowed[task] = next(line for line in status if line.startswith("Cpus_allowed_list:")).split()[1]
        assert len(allowed) >= 4 and set(allowed.values()) == {cpu}  # main, log writer, reader, writer...
        ann.close()
    finally:
        server.terminate()
        assert server.wait() == 0


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


def test_sigterm_stops_the_server_within_two_seconds_even_when_its_output_is_blocked():
    # Nobody reads the server's output (a paused terminal, a stalled pipe): its log writer
    # blocks once the pipe is full, and the server must still stop when told to.
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "server.py", "--host", "127.0.0.1", "--port", str(port), "--max-rate", "0"],
        cwd=PROJECT,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        assert wait_until(lambda: can_connect(port))
        ann, bob = join_all(("127.0.0.1", port), "Ann", "Bob")
        for batch in range(20):  # 400 KB of log lines: several times what a pipe holds
            ann.send_raw(b"".join(b"%d.%d " % (batch, i) + b"x" * 200 + b"\n" for i in range(100)))
        # Bob has everything, so the shutdown notice is all that is left to reach him.
        bob.expect(lambda line: line.startswith("Ann: 19.99 "), timeout=10)
        started = time.monotonic()
        process.send_signal(signal.SIGTERM)
        assert process.wait(5) == 0
        assert time.monotonic() - started < 2.0
        assert bob.read_until_closed()[-1] == "[SYSTEM] Server is shutting down."
    finally:
        process.kill()
        process.wait()
        process.stdout.close()


def can_connect(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False
