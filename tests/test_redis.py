"""One room across several server.py processes, through a real, throwaway redis-server.

Each test starts its own redis-server on a free port (no persistence), and
real server.py processes that share it. Without redis-server installed those
tests skip, saying how to install it.
"""

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest

from chat.bus.redis_bus import ALIVE_TTL_S, BACK, HEARTBEAT_S, LOST
from chat.core import messages
from tests.helpers import PROJECT, TIMEOUT_S, Peer, Relay, ServerProgram, free_port, wait_until

REDIS_SERVER = shutil.which("redis-server")
# How long the others may take to notice a server killed outright.
DEATH_NOTICED_S = ALIVE_TTL_S + 2 * HEARTBEAT_S + TIMEOUT_S


class RedisServer:
    """A redis-server on a free loopback port (or a unix socket), keeping nothing on disk."""

    def __init__(self, port: "int | None" = None, unix_socket: "str | None" = None) -> None:
        self.port = port or free_port()
        self.unix_socket = unix_socket
        self.process = None
        self.start()

    @property
    def url(self) -> str:
        return f"unix://{self.unix_socket}" if self.unix_socket else f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        options = ["--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        if self.unix_socket:
            options += ["--unixsocket", self.unix_socket]
        self.process = subprocess.Popen([REDIS_SERVER, *options], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        assert wait_until(self._answers, timeout=TIMEOUT_S), "redis-server did not start"

    def _answers(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(TIMEOUT_S)


@pytest.fixture
def redis_server(tmp_path):
    if REDIS_SERVER is None:
        pytest.skip("redis-server is not installed: apt-get install redis-server (bash .ci/run installs it)")
    server = RedisServer()
    yield server
    server.kill()


@pytest.fixture
def shared_servers(redis_server, server_programs):
    """Start server.py processes sharing ``redis_server``'s room (killed afterwards, before it)."""

    def start(*options: str, url: "str | None" = None) -> ServerProgram:
        program = server_programs(0, "--redis", url or redis_server.url, "--max-rate", "0", *options)
        program.expect("🔗 Sharing the room through Redis")
        return program

    return start


def said(line: str) -> bool:
    return not line.startswith("[SYSTEM] ") and not line.startswith("[ERROR] ")


def test_three_servers_deliver_1000_lines_sent_at_once_in_one_order(shared_servers):
    servers = [shared_servers() for _ in range(3)]
    senders = [Peer.joined(server.address, f"Sender{n}") for n, server in enumerate(servers)]
    listeners = [Peer.joined(server.address, f"Listener{n}") for n, server in enumerate(servers)]
    for listener in listeners:  # everyone has joined everywhere before the first line
        listener.send("/users")
        listener.expect(lambda line: line.startswith("[SYSTEM] Online (6): "))
    counts = [334, 333, 333]

    def send(sender, n):
        sender.send_raw(b"".join(f"line {i} from {n}\n".encode() for i in range(counts[n])))

    threads = [threading.Thread(target=send, args=(sender, n)) for n, sender in enumerate(senders)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(TIMEOUT_S)
    received = []
    for listener in listeners:
        lines = []
        while len(lines) < 1000:
            line = listener.read_line(timeout=3 * TIMEOUT_S)
            if said(line):
                lines.append(line)
        received.append(lines)
    assert received[0] == received[1] == received[2]
    for n in range(3):  # and each sender's lines in the order it sent them
        mine = [line for line in received[0] if line.endswith(f" from {n}")]
        assert mine == [f"Sender{n}: line {i} from {n}" for i in range(counts[n])]


def test_names_are_unique_across_servers_even_when_claimed_at_the_same_moment(shared_servers):
    servers = [shared_servers() for _ in range(3)]
    for round_number in range(5):
        wanted = f"Zed{round_number}"
        peers = [None] * 3

        def join(n):
            peers[n] = Peer.joined(servers[n].address, wanted)

        threads = [threading.Thread(target=join, args=(n,)) for n in range(3)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(2 * TIMEOUT_S)
        names = [peer.name for peer in peers]
        assert names.count(wanted) == 1, names
        assert len(set(names)) == 3
    ann = Peer.joined(servers[0].address, "Ann")
    bob = Peer.joined(servers[1].address, "Bob")
    bob.send("/nick ANN")
    bob.expect("[ERROR] The name ANN is taken.")
    ann.send("/quit")
    ann.read_until_closed()
    bob.expect(messages.left("Ann"))
    bob.send("/nick ANN")
    bob.expect(messages.renamed("Bob", "ANN"))


def test_users_and_private_messages_reach_across_servers(shared_servers):
    one, two = shared_servers(), shared_servers()
    ann = Peer.joined(one.address, "Ann")
    bob = Peer.joined(two.address, "Bob")
    ann.expect(messages.joined("Bob"))
    ann.send("/users")
    ann.expect("[SYSTEM] Online (2): Ann, Bob")
    ann.send("/msg bob psst")
    ann.expect("[PM to Bob] psst")
    bob.expect("[PM from Ann] psst")
    ann.send("/msg Nobody hello")
    ann.expect("[ERROR] No user named Nobody is online.")


def test_a_newcomer_on_a_server_started_later_gets_the_rooms_history_from_the_stream(shared_servers):
    one = shared_servers()
    ann = Peer.joined(one.address, "Ann")
    bob = Peer.joined(one.address, "Bob")
    ann.send("hello")
    ann.send("/msg Bob a secret")
    bob.expect("Ann: hello")
    bob.expect("[PM from Ann] a secret")
    later = shared_servers()
    cat = Peer(later.address, "Cat")
    lines = []
    while not (lines and lines[-1].startswith("[SYSTEM] Welcome, Cat!")):
        lines.append(cat.read_line())
    replay = [re.sub(r"^\[\d\d:\d\d:\d\d\] ", "", line) for line in lines]
    assert replay == [
        "[SYSTEM] Last 3 messages:",
        messages.joined("Ann"),
        messages.joined("Bob"),
        "Ann: hello",
        "[SYSTEM] End of history.",
        "[SYSTEM] Welcome, Cat! 2 other user(s) online. Type /help for commands.",
    ]


def test_a_server_killed_outright_is_noticed_its_users_leave_and_their_names_are_free(shared_servers):
    one, two = shared_servers(), shared_servers()
    ann = Peer.joined(one.address, "Ann")
    Peer.joined(two.address, "Bob")
    ann.expect(messages.joined("Bob"))
    two.process.send_signal(signal.SIGKILL)
    killed = time.monotonic()
    ann.expect(messages.left("Bob"), timeout=DEATH_NOTICED_S)
    assert time.monotonic() - killed <= DEATH_NOTICED_S
    ann.send("/users")
    ann.expect("[SYSTEM] Online (1): Ann")
    assert Peer.joined(one.address, "Bob").name == "Bob"


def test_a_server_stopped_on_purpose_tells_the_others_at_once(shared_servers):
    one, two = shared_servers(), shared_servers()
    ann = Peer.joined(one.address, "Ann")
    bob = Peer.joined(two.address, "Bob")
    ann.expect(messages.joined("Bob"))
    two.terminate()
    assert bob.read_until_closed()[-1] == messages.SHUTTING_DOWN
    ann.expect(messages.left("Bob"))  # well before a heartbeat could expire
    assert two.wait() == 0
    output = two.all_output()
    assert "Traceback" not in output and "Lost contact" not in output and "👋 Server stopped." in output
    assert Peer.joined(one.address, "Bob").name == "Bob"


def test_redis_restarted_mid_chat_the_servers_say_so_carry_on_alone_and_share_again(shared_servers, redis_server):
    one, two = shared_servers(), shared_servers()
    ann, ann_mate = Peer.joined(one.address, "Ann"), Peer.joined(one.address, "Amy")
    bob = Peer.joined(two.address, "Bob")
    ann.send("before")
    bob.expect("Ann: before")
    redis_server.kill()
    for peer in (ann, ann_mate, bob):
        peer.expect(LOST)
    ann.send("while apart")
    ann_mate.expect("Ann: while apart")  # this server's members still chat
    redis_server.start()  # empty: it kept nothing
    for peer in (ann, ann_mate, bob):
        peer.expect(BACK, timeout=3 * TIMEOUT_S)
    ann.send("after")
    bob.expect("Ann: after")
    ann_mate.expect("Ann: after")
    bob.send("/users")  # the names were claimed again
    bob.expect("[SYSTEM] Online (3): Amy, Ann, Bob")
    bob.assert_receives_nothing()  # and nothing twice
    assert Peer.joined(two.address, "Ann").name != "Ann"


def test_a_server_cut_off_from_redis_gets_what_the_others_said_meanwhile_once_and_in_order(shared_servers, redis_server):
    relay = Relay(("127.0.0.1", redis_server.port))
    try:
        one = shared_servers(url=f"redis://127.0.0.1:{relay.port}/0")
        two = shared_servers()
        ann, amy = Peer.joined(one.address, "Ann"), Peer.joined(one.address, "Amy")
        bob = Peer.joined(two.address, "Bob")
        ann.expect(messages.joined("Bob"))
        # Its Redis client's reconnects fail at once (a held one would wait
        # for its command timeout), until the relay lets them through.
        relay.refuse()
        relay.cut()
        ann.expect(LOST)
        for n in range(5):
            bob.send(f"meanwhile {n}")
        bob.send("/users")
        bob.expect("[SYSTEM] Online (3): Amy, Ann, Bob")  # Bob's lines are in the stream by now
        amy.send("/quit")  # leaving while her server is apart
        amy.read_until_closed()
        ann.expect(messages.left("Amy"))
        relay.release()
        ann.expect(BACK, timeout=3 * TIMEOUT_S)
        assert [ann.read_line() for _ in range(5)] == [f"Bob: meanwhile {n}" for n in range(5)]
        bob.expect(messages.left("Amy"))  # told when the servers are in touch again
        ann.assert_receives_nothing()  # Ann heard nothing twice (not even Amy leaving)
        assert Peer.joined(two.address, "Amy").name == "Amy"  # and her name is free
    finally:
        relay.close()


def test_a_stalled_redis_delays_a_line_once_and_it_is_never_delivered_twice(shared_servers, redis_server):
    one, two = shared_servers(), shared_servers()
    ann, amy = Peer.joined(one.address, "Ann"), Peer.joined(one.address, "Amy")
    bob = Peer.joined(two.address, "Bob")
    ann.expect(messages.joined("Bob"))
    redis_server.process.send_signal(signal.SIGSTOP)  # Redis takes the line, but answers only later
    try:
        ann.send("said while Redis stalls")
        amy.expect(LOST)  # after one timeout
        assert amy.read_line() == "Ann: said while Redis stalls"  # then delivered on this server
    finally:
        redis_server.process.send_signal(signal.SIGCONT)
    amy.expect(BACK, timeout=3 * TIMEOUT_S)
    bob.expect("Ann: said while Redis stalls")  # Redis had it after all: the others get it from the stream
    ann.send("and after")
    assert amy.expect(lambda line: line.startswith("Ann: ")) == "Ann: and after"  # not the stalled line again


def test_a_malformed_entry_in_the_stream_is_skipped_and_joining_still_works(shared_servers, redis_server):
    one = shared_servers()
    ann = Peer.joined(one.address, "Ann")
    with socket.create_connection(("127.0.0.1", redis_server.port), timeout=TIMEOUT_S) as sock:
        fields = ["XADD", "chat:stream", "*", "s", "other", "o", "0", "t", "1e20", "g", "1", "l", "Mallory: hi"]
        sock.sendall(("*%d\r\n" % len(fields) + "".join(f"${len(f)}\r\n{f}\r\n" for f in fields)).encode())
        assert sock.recv(64).startswith(b"$")  # the entry's ID
    one.expect("Skipped a malformed entry in the Redis stream")
    bob = Peer.joined(one.address, "Bob")  # a newcomer's history is not broken by it
    bob.send("/users")
    bob.expect("[SYSTEM] Online (2): Ann, Bob")
    assert ann.read_line() == messages.joined("Bob")  # and nobody was sent Mallory's line


def test_servers_can_share_a_room_through_a_unix_socket(tmp_path, shared_servers):
    if REDIS_SERVER is None:
        pytest.skip("redis-server is not installed")
    redis_unix = RedisServer(unix_socket=str(tmp_path / "redis.sock"))
    try:
        one, two = shared_servers(url=redis_unix.url), shared_servers(url=redis_unix.url)
        ann, bob = Peer.joined(one.address, "Ann"), Peer.joined(two.address, "Bob")
        ann.send("over a unix socket")
        bob.expect("Ann: over a unix socket")
    finally:
        redis_unix.kill()


# -- without a redis-server --------------------------------------------------------------------


@pytest.mark.parametrize("url", ["http://localhost:6379", "redis://", "localhost:6379", "redis://localhost:6379/abc"])
def test_a_bad_redis_url_gets_one_sentence_and_exit_status_2(url):
    done = subprocess.run(
        [sys.executable, "server.py", "--redis", url], cwd=PROJECT, capture_output=True, text=True, timeout=TIMEOUT_S
    )
    assert done.returncode == 2
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("server.py: error: argument --redis: ") and "Traceback" not in done.stderr
    assert "redis://HOST:PORT" in last


def test_a_bad_url_in_chat_redis_url_is_refused_the_same_way():
    done = subprocess.run(
        [sys.executable, "server.py"], cwd=PROJECT, capture_output=True, text=True, timeout=TIMEOUT_S,
        env=dict(os.environ, CHAT_REDIS_URL="ftp://nowhere"),
    )
    assert done.returncode == 2 and "is not a Redis URL" in done.stderr


def test_a_server_whose_redis_is_out_of_reach_says_so_once_and_serves_its_own_clients():
    program = ServerProgram(0, "--redis", f"redis://127.0.0.1:{free_port()}/0")
    try:
        program.expect(r"Cannot reach Redis at redis://127\.0\.0\.1:\d+/0")
        ann, bob = Peer.joined(program.address, "Ann"), Peer.joined(program.address, "Bob")
        ann.send("alone but fine")
        bob.expect("Ann: alone but fine")
        bob.send("/users")
        bob.expect("[SYSTEM] Online (2): Ann, Bob")
        assert program.all_output().count("Cannot reach Redis") == 1
    finally:
        Peer.close_all()
        program.kill()


def test_without_redis_nothing_of_redis_is_imported():
    code = (
        "import sys, server; from chat.server import ChatServer; "
        "ChatServer('127.0.0.1', 0, history_lines=5); server.parse_args([]); "
        "print(sorted(m for m in sys.modules if m == 'redis' or m.startswith(('redis.', 'chat.bus'))))"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=PROJECT, capture_output=True, text=True, timeout=TIMEOUT_S)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
