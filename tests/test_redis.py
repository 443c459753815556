"""One room across several servers, through a real, throwaway redis-server.

Each test that needs Redis starts its own redis-server on a free port (no
persistence). The servers sharing it are ChatServers in this process, which
start at once, except where the process itself is what is tested: one
killed outright, one stopped, one stalled (SIGSTOP), and the command line;
those are server.py processes. A few tests drive the bus without its thread,
one step at a time, to check what two servers do at the same moment.
Without redis-server installed these tests skip, saying how to install it.
"""

import contextlib
import logging
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
import redis

from chat.bus.entry import Entry, Kind, MalformedEntry
from chat.bus.redis_bus import BACK, LOST, STREAM, RedisBus
from chat.bus.registry import Registry, alive_key
from chat.config import Limits, ServerConfig, Timings
from chat.core import messages
from chat.server import ChatServer
from tests.helpers import FAST, PROJECT, TIMEOUT_S, Peer, Relay, ServerProgram, free_port, wait_until

REDIS_SERVER = shutil.which("redis-server")
# Servers that watch for dead ones: they look ten times a second, and could
# themselves stall for a second before the others took them for dead.
WATCHFUL = Timings(first_line_wait_s=FAST.first_line_wait_s, heartbeat_s=0.1, alive_ttl_s=1.0)
# The heartbeat of a server.py that a test kills or stalls: it is taken for dead 4 heartbeats after its last.
QUICK_HEARTBEAT_S = 0.15
DEATH_NOTICED_S = 4 * QUICK_HEARTBEAT_S + 2 * WATCHFUL.heartbeat_s


class RedisServer:
    """A redis-server on a free loopback port (or a unix socket), keeping nothing on disk.

    ``options`` are more of redis-server's: a password, say, or a TLS port
    (the plain port stays open on loopback, to see when it is ready).
    """

    def __init__(self, port: "int | None" = None, unix_socket: "str | None" = None, options=()) -> None:
        self.port = port or free_port()
        self.unix_socket = unix_socket
        self.options = list(options)
        self.process = None
        self.start()

    @property
    def url(self) -> str:
        return f"unix://{self.unix_socket}" if self.unix_socket else f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        options = ["--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        if self.unix_socket:
            options += ["--unixsocket", self.unix_socket]
        options += self.options
        self.process = subprocess.Popen([REDIS_SERVER, *options], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        assert wait_until(self._answers, timeout=TIMEOUT_S), "redis-server did not start"

    def _answers(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(16).startswith((b"+PONG", b"-NOAUTH"))
        except OSError:
            return False

    def client(self) -> redis.Redis:
        return redis.Redis.from_url(self.url, decode_responses=True)

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(TIMEOUT_S)


@pytest.fixture
def redis_server():
    if REDIS_SERVER is None:
        pytest.skip("redis-server is not installed: apt-get install redis-server (bash .ci/run installs it)")
    server = RedisServer()
    yield server
    server.kill()


@pytest.fixture
def shared_servers(redis_server):
    """Start ChatServers in this process sharing ``redis_server``'s room; each is stopped and checked afterwards."""
    started = []

    def start(url: "str | None" = None, timings: Timings = FAST, wait: bool = True, **options) -> ChatServer:
        """A server on ``url`` (by default the throwaway one); ``options`` are ServerConfig's (op_password, say)."""
        url = url or redis_server.url
        server = ChatServer(ServerConfig("127.0.0.1", 0, Limits(max_rate=0), timings, None, 50, url, **options))
        server.bind()
        thread = threading.Thread(target=server.serve_forever, name="accept-loop")
        thread.start()
        started.append((server, thread))
        if wait:
            assert wait_until(server.room.bus.in_reach), "the server did not reach Redis"
        return server

    yield start
    Peer.close_all()
    for server, thread in started:
        assert server.shutdown(timeout=TIMEOUT_S), "the server did not stop"
        thread.join(TIMEOUT_S)
        assert not thread.is_alive()


@pytest.fixture
def shared_programs(redis_server, server_programs):
    """Start server.py processes sharing ``redis_server``'s room (killed afterwards, before it)."""

    def start(*options: str) -> ServerProgram:
        program = server_programs(0, "--redis", redis_server.url, "--max-rate", "0", *options)
        program.expect("🔗 Sharing the room through Redis")
        return program

    return start


@contextlib.contextmanager
def relayed(redis_server):
    """A Relay in front of ``redis_server``, closed afterwards; its URL is ``relay.url``."""
    relay = Relay(("127.0.0.1", redis_server.port))
    relay.url = f"redis://127.0.0.1:{relay.port}/0"
    try:
        yield relay
    finally:
        relay.close()


def said(line: str) -> bool:
    return not line.startswith("[SYSTEM] ") and not line.startswith("[ERROR] ")


def replay_of(peer: Peer) -> "list[str]":
    """What ``peer`` was sent before its welcome, time stamps taken off (it must not have read any line yet)."""
    lines = [peer.read_line()]
    while not lines[-1].startswith("[SYSTEM] Welcome, "):
        lines.append(peer.read_line())
    return [re.sub(r"^\[\d\d:\d\d:\d\d\] ", "", line) for line in lines[:-1]]


def logged(caplog, text: str) -> "list[str]":
    return [record.getMessage() for record in caplog.records if text in record.getMessage()]


# -- servers sharing a room ------------------------------------------------------------------------


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


def test_a_newcomers_count_of_others_online_agrees_with_the_join_notices_that_follow_it(shared_servers):
    # Joins on one server while a newcomer is welcomed on the other: the
    # welcome counts who the bus says is online, and some of their join
    # notices are still on the way through it. Those are not told again.
    one, two = shared_servers(), shared_servers()
    online = 0
    for round in range(4):
        joiners = [threading.Thread(target=Peer.joined, args=(one.address, f"A{round}_{n}")) for n in range(6)]
        for joiner in joiners:
            joiner.start()
        newcomer = Peer(two.address, f"B{round}")
        welcome = newcomer.expect(lambda line: line.startswith("[SYSTEM] Welcome, "))
        for joiner in joiners:
            joiner.join()
        online += len(joiners)
        speaker = Peer.joined(one.address, f"Marker{round}")  # its line comes after every join before it
        speaker.send("last")
        joins = 0
        while not (line := newcomer.read_line()).endswith(": last"):
            joins += line.endswith(" joined the chat!")
        counted = int(re.search(r"! (\d+) other user", welcome).group(1))
        assert counted + joins == online + 1, (welcome, joins)  # the speaker, too, joined and was told
        online += 2  # the speaker and the newcomer


def test_a_newcomer_on_a_server_started_later_gets_the_rooms_history_but_no_private_message(shared_servers):
    one = shared_servers()
    ann = Peer.joined(one.address, "Ann")
    bob = Peer.joined(one.address, "Bob")
    ann.send("hello")
    ann.send("/msg Bob a secret")
    bob.expect("Ann: hello")
    bob.expect("[PM from Ann] a secret")  # in the stream by now, after Ann's hello
    later = shared_servers()
    assert replay_of(Peer(later.address, "Cat")) == [  # nor who joined: only the conversation is history
        "[SYSTEM] Last 1 message:",
        "Ann: hello",
        "[SYSTEM] End of history.",
    ]


def test_lines_said_before_redis_was_first_reached_come_after_the_streams_history(shared_servers, redis_server):
    first = shared_servers()
    ann = Peer.joined(first.address, "Ann")
    ann.send("said before")
    with relayed(redis_server) as relay:
        relay.refuse()
        later = shared_servers(url=relay.url, wait=False)
        bob = Peer.joined(later.address, "Bob")
        bob.send("said while alone")
        bob.send("/users")  # its answer follows Bob's line: the line is in the history by then
        bob.expect("[SYSTEM] Online (1): Bob")
        relay.release()
        assert wait_until(later.room.bus.in_reach)
        assert replay_of(Peer(later.address, "Cat")) == [
            "[SYSTEM] Last 2 messages:",
            "Ann: said before",
            "Bob: said while alone",
            "[SYSTEM] End of history.",
        ]


def test_a_server_killed_outright_is_noticed_its_users_leave_and_their_names_are_free(shared_servers, shared_programs):
    survivor = shared_servers(timings=WATCHFUL)
    doomed = shared_programs("--heartbeat", str(QUICK_HEARTBEAT_S))
    ann = Peer.joined(survivor.address, "Ann")
    Peer.joined(doomed.address, "Bob")
    ann.expect(messages.joined("Bob"))
    doomed.process.send_signal(signal.SIGKILL)
    killed = time.monotonic()
    ann.expect(messages.left("Bob"), timeout=DEATH_NOTICED_S + TIMEOUT_S)
    assert time.monotonic() - killed <= DEATH_NOTICED_S + TIMEOUT_S
    ann.send("/users")
    ann.expect("[SYSTEM] Online (1): Ann")
    assert Peer.joined(survivor.address, "Bob").name == "Bob"


def test_a_server_taken_for_dead_keeps_its_members_and_tells_the_others_they_are_back(shared_servers, shared_programs):
    watcher = shared_servers(timings=WATCHFUL)
    stalled = shared_programs("--heartbeat", str(QUICK_HEARTBEAT_S))
    ann = Peer.joined(stalled.address, "Ann")
    bob = Peer.joined(watcher.address, "Bob")
    ann.expect(messages.joined("Bob"))
    stalled.process.send_signal(signal.SIGSTOP)  # stopped in a debugger, say
    try:
        bob.expect(messages.left("Ann"), timeout=DEATH_NOTICED_S + TIMEOUT_S)  # taken for dead
        bob.send("while you were away")
    finally:
        stalled.process.send_signal(signal.SIGCONT)
    bob.expect(messages.joined("Ann"))  # it read the notice, and said its member is here
    assert ann.read_line() == "Bob: while you were away"  # Ann lost nothing, and heard nothing of leaving
    stalled.expect("took this one for dead: registered again")
    bob.send("/users")
    bob.expect("[SYSTEM] Online (2): Ann, Bob")
    ann.send("still here")
    bob.expect("Ann: still here")


def test_a_server_stopped_on_purpose_tells_the_others_at_once(shared_servers, shared_programs):
    one, two = shared_servers(), shared_programs()
    ann = Peer.joined(one.address, "Ann")
    bob = Peer.joined(two.address, "Bob")
    ann.expect(messages.joined("Bob"))
    two.terminate()
    assert bob.read_until_closed()[-1] == messages.SHUTTING_DOWN
    ann.expect(messages.left("Bob"))  # well before its heartbeat (1.5 s; dead after 6) could expire
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
    bob.send("/msg Ann and nothing twice")  # through the stream, after everything before it
    assert ann.read_line() == "[PM from Bob] and nothing twice"
    assert Peer.joined(two.address, "Ann").name != "Ann"


def test_a_server_cut_off_from_redis_gets_what_the_others_said_meanwhile_once_and_in_order(
    shared_servers, redis_server, caplog
):
    caplog.set_level(logging.INFO)
    with relayed(redis_server) as relay:
        one = shared_servers(url=relay.url)
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
        relay.wait_until_accepted(relay.accepted + 1)  # a try to reach Redis again failed
        relay.release()
        ann.expect(BACK, timeout=3 * TIMEOUT_S)
        assert [ann.read_line() for _ in range(5)] == [f"Bob: meanwhile {n}" for n in range(5)]
        bob.expect(messages.left("Amy"))  # told when the servers are in touch again
        bob.send("/msg Ann nothing twice")  # through the stream, after everything before it
        assert ann.read_line() == "[PM from Bob] nothing twice"  # not even Amy leaving
        assert Peer.joined(two.address, "Amy").name == "Amy"  # and her name is free
        assert len(logged(caplog, "Lost contact with Redis")) == 1  # however many tries failed
        assert len(logged(caplog, "Back in contact with Redis")) == 1


def test_a_server_cut_off_for_longer_than_its_heartbeat_lasts_says_its_members_are_back(
    shared_servers, redis_server
):
    watcher = shared_servers(timings=WATCHFUL)
    with relayed(redis_server) as relay:
        short_lived = Timings(first_line_wait_s=FAST.first_line_wait_s, heartbeat_s=0.1, alive_ttl_s=0.5)
        cut_off = shared_servers(url=relay.url, timings=short_lived)
        ann = Peer.joined(cut_off.address, "Ann")
        bob = Peer.joined(watcher.address, "Bob")
        ann.expect(messages.joined("Bob"))
        relay.refuse()
        relay.cut()
        ann.expect(LOST)
        bob.expect(messages.left("Ann"), timeout=TIMEOUT_S)  # taken for dead
        bob.send("meanwhile")
        relay.release()
        assert [ann.read_line(), ann.read_line()] == [BACK, "Bob: meanwhile"]
        bob.expect(messages.joined("Ann"))
        bob.send("/users")
        bob.expect("[SYSTEM] Online (2): Ann, Bob")


def test_a_line_redis_took_but_answered_too_late_for_is_delivered_here_once(shared_servers, redis_server, monkeypatch):
    one, two = shared_servers(), shared_servers()
    ann, amy = Peer.joined(one.address, "Ann"), Peer.joined(one.address, "Amy")
    bob = Peer.joined(two.address, "Bob")
    ann.expect(messages.joined("Bob"))
    taken = []

    def xadd_timing_out(name, fields, **options):  # as when Redis stalls: it may have the entry, or not
        taken.append((name, fields))
        raise redis.exceptions.TimeoutError("Timeout reading from socket")

    monkeypatch.setattr(one.room.bus._redis, "xadd", xadd_timing_out)
    ann.send("said while Redis stalls")
    amy.expect(LOST)
    assert amy.read_line() == "Ann: said while Redis stalls"  # delivered on this server at once
    monkeypatch.undo()
    redis_server.client().xadd(*taken[0])  # Redis had it after all
    bob.expect("Ann: said while Redis stalls")  # the others get it from the stream
    assert wait_until(one.room.bus.in_reach, timeout=3 * TIMEOUT_S)
    ann.send("and after")  # delivered after the stalled line's entry, in the stream's order
    assert [amy.read_line(), amy.read_line()] == [BACK, "Ann: and after"]  # not the stalled line again


def test_a_malformed_entry_in_the_stream_is_skipped_and_joining_still_works(shared_servers, redis_server, caplog):
    one = shared_servers()
    ann = Peer.joined(one.address, "Ann")
    entry = {"v": "2", "s": "other", "k": "chat", "n": "Mallory", "x": "hi", "o": "0", "t": "1e20", "g": "1"}
    redis_server.client().xadd(STREAM, entry)
    assert wait_until(lambda: logged(caplog, "of the Redis stream: time '1e20'"))
    bob = Peer.joined(one.address, "Bob")  # a newcomer's history is not broken by it
    bob.send("/users")
    bob.expect("[SYSTEM] Online (2): Ann, Bob")
    assert ann.read_line() == messages.joined("Bob")  # and nobody was sent Mallory's line


def test_servers_can_share_a_room_through_a_unix_socket(tmp_path, shared_servers):
    redis_unix = RedisServer(unix_socket=str(tmp_path / "redis.sock"))
    try:
        one, two = shared_servers(url=redis_unix.url), shared_servers(url=redis_unix.url)
        ann, bob = Peer.joined(one.address, "Ann"), Peer.joined(two.address, "Bob")
        ann.send("over a unix socket")
        bob.expect("Ann: over a unix socket")
    finally:
        redis_unix.kill()


def test_a_server_whose_redis_is_out_of_reach_says_so_once_and_serves_its_own_clients(
    shared_servers, redis_server, caplog
):
    with relayed(redis_server) as relay:
        relay.refuse()
        server = shared_servers(url=relay.url, wait=False)
        relay.wait_until_accepted(2)  # it tried twice
        ann, bob = Peer.joined(server.address, "Ann"), Peer.joined(server.address, "Bob")
        ann.send("alone but fine")
        bob.expect("Ann: alone but fine")
        bob.send("/users")
        bob.expect("[SYSTEM] Online (2): Ann, Bob")
        [warning] = logged(caplog, "Cannot reach Redis")  # however many tries failed
    wanted = rf"⚠️  Cannot reach Redis at {relay.url} \(.+\): serving this server's clients alone, and trying again"
    assert re.fullmatch(wanted, warning)


# -- the bus, one step at a time, without its thread ------------------------------------------------


class StubRoom:
    """What the bus calls on the room, recorded; ``here`` are the names of its members."""

    def __init__(self, *here: str) -> None:
        self.here = list(here)
        self.delivered: "list[list[str]]" = []
        self.origins: "list[int | None]" = []  # the member each delivery leaves out
        self.announced: "list[str]" = []
        self.remembered: "list[tuple[float, str]]" = []

    def names_here(self) -> "list[str]":
        return list(self.here)

    def deliver(self, lines, origin, when, log_it=True, joined=None, left=None) -> None:
        self.delivered.append(lines)
        self.origins.append(origin)

    def deliver_private(self, recipient_name, line, origin=None) -> None:
        self.delivered.append([line])

    def remember(self, said) -> None:
        self.remembered = said

    def announce(self, line: str) -> None:
        self.announced.append(line)

    @contextlib.contextmanager
    def deferred_flushes(self):
        yield


@pytest.fixture
def buses(redis_server):
    """Make RedisBuses in touch with ``redis_server`` but without their thread: ``make(*names_here, timings=...)``."""
    made = []

    def make(*names_here: str, timings: Timings = Timings()) -> RedisBus:
        bus = RedisBus(redis_server.url, StubRoom(*names_here), 10, timings)
        bus._join_the_others()  # the bus thread's first step
        made.append(bus)
        return bus

    yield make
    for bus in made:
        bus.close()


def test_a_dead_servers_members_leave_once_even_when_two_servers_see_it_die(buses, redis_server, caplog):
    dead = buses("Bob", timings=Timings(heartbeat_s=0.05, alive_ttl_s=0.05))
    one, two = buses(), buses()
    client = redis_server.client()
    assert wait_until(lambda: not client.exists(alive_key(dead.server_id)))
    assert one.registry.dead_servers() == two.registry.dead_servers() == [dead.server_id]
    one._reap(dead.server_id)  # both saw it dead before either removed it
    two._reap(dead.server_id)
    assert logged(caplog, "💀") == [f"💀 Server {dead.server_id} stopped answering: 1 of its users left"]
    notices = [Entry.from_fields(fields) for _, fields in client.xrange(STREAM)]
    assert [(entry.kind, entry.name) for entry in notices if entry.about == dead.server_id] == [(Kind.LEFT, "Bob")]
    assert one.names() == []


def test_lines_one_server_said_together_reach_the_room_of_another_in_one_piece(buses):
    speaker, listener = buses(), buses()
    speaker.publish(["Ann: one", "Ann: two"], 1, 100.0)
    speaker.publish(["Bob: three"], 2, 101.0)
    speaker.publish(["[SYSTEM] Cat joined the chat!"], None, 102.0, log_it=False)
    speaker.publish(["Cat: four", "Cat: five"], 3, 103.0)
    listener._deliver(listener._read())
    assert listener.room.delivered == [
        ["Ann: one", "Ann: two"], ["Bob: three"], ["[SYSTEM] Cat joined the chat!"], ["Cat: four", "Cat: five"]
    ]


def test_a_servers_own_lines_come_back_together_leaving_out_their_sender_but_not_those_delivered_here_already(buses):
    bus, other = buses(), buses()
    bus.publish(["Ann: one", "Ann: two", "Ann: three"], 7, 100.0)
    entries = bus._read()
    bus._delivered_here.add(entries[1][1].number)  # as if Redis had seemed lost while it was published
    bus._deliver(entries)
    assert bus.room.delivered == [["Ann: one"], ["Ann: three"]]
    assert bus.room.origins == [7, 7]  # member numbers are per server: Ann is left out here...
    other._deliver(other._read())
    assert other.room.delivered == [["Ann: one", "Ann: two", "Ann: three"]]
    assert other.room.origins == [None]  # ...and nobody on the other server


def test_the_release_script_never_releases_a_name_another_server_holds(redis_server):
    client = redis_server.client()
    mine, theirs = Registry(client, "mine", 1.0), Registry(client, "theirs", 1.0)
    assert theirs.claim("Ann")
    mine.release("ann")
    assert mine.holder("ANN") == ("theirs", "Ann")
    assert mine.claim("Amy") and not theirs.claim("amy")
    mine.release("AMY")
    assert mine.holder("Amy") is None


# -- the stream's entries, without Redis ---------------------------------------------------------------


def test_an_entry_has_the_wire_format_of_version_2():
    chat = Entry("s1", Kind.CHAT, "Ann", 1700000000.25, "hi", origin=3, log_it=False, number=7)
    fields = {"v": "2", "s": "s1", "k": "chat", "n": "Ann", "x": "hi", "t": "1700000000.25", "o": "3", "g": "0", "i": "7"}
    assert chat.to_fields() == fields
    notice = Entry("s1", Kind.LEFT, "Bob", 5.0, elsewhere_only=True, about="s2")
    assert notice.to_fields() == {"v": "2", "s": "s1", "k": "left", "n": "Bob", "t": "5.0", "o": "0", "g": "1", "r": "s2", "e": "1"}
    private = Entry("s1", Kind.PRIVATE, "Ann", 5.0, "psst", 3, False, 8, to_server="s2", recipient="Bob")
    assert (private.to_fields()["to"], private.to_fields()["p"]) == ("s2", "Bob")
    for entry in (chat, notice, private):
        assert Entry.from_fields(entry.to_fields()) == entry
    assert private.private and not chat.private and not notice.private
    assert [chat.line, notice.line, private.line] == ["Ann: hi", messages.left("Bob"), "[PM from Ann] psst"]


@pytest.mark.parametrize(
    "change, problem",
    [
        ({"s": None}, "a chat entry needs the field 's'"),
        ({"t": None}, "a chat entry needs the field 't'"),
        ({"t": "1e20"}, "time '1e20'"),
        ({"t": "nan"}, "time 'nan'"),
        ({"o": "zero"}, "origin 'zero'"),
        ({"k": "private"}, "a private entry needs the field 'p'"),
    ],
)
def test_a_malformed_entry_says_what_is_wrong_with_it(change, problem):
    fields = {"v": "2", "s": "s1", "k": "chat", "n": "Ann", "x": "hi", "t": "1.0", "o": "0", "g": "1", **change}
    with pytest.raises(MalformedEntry) as raised:
        Entry.from_fields({key: value for key, value in fields.items() if value is not None})
    assert raised.value.problem == problem


# -- the command line, and no Redis at all -------------------------------------------------------------


def refusal(argv, capsys) -> str:
    """What server.py's main(argv) says as it refuses to start, which it must do with exit status 2."""
    import server

    with pytest.raises(SystemExit) as raised:
        server.main(argv)
    assert raised.value.code == 2
    return capsys.readouterr().err


@pytest.mark.parametrize("url", ["http://localhost:6379", "redis://", "localhost:6379", "redis://localhost:6379/abc"])
def test_a_bad_redis_url_gets_one_sentence_and_exit_status_2(url, capsys):
    said = refusal(["--redis", url], capsys)
    last = said.strip().splitlines()[-1]
    assert ": error: argument --redis: " in last and "Traceback" not in said
    assert "redis://HOST:PORT" in last


def test_a_bad_url_in_chat_redis_url_is_refused_the_same_way(capsys, monkeypatch):
    monkeypatch.setenv("CHAT_REDIS_URL", "ftp://nowhere")
    assert "is not a Redis URL" in refusal([], capsys)


def test_without_redis_nothing_of_redis_is_imported():
    code = (
        "import sys, server; from chat.server import ChatServer; from chat.config import ServerConfig; "
        "ChatServer(ServerConfig('127.0.0.1', 0, history_lines=5)); server.parse_args([]); "
        "print(sorted(m for m in sys.modules if m == 'redis' or m.startswith(('redis.', 'chat.bus'))))"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=PROJECT, capture_output=True, text=True, timeout=TIMEOUT_S)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_the_heartbeat_option_sets_how_soon_a_silent_server_is_taken_for_dead(capsys):
    from server import config_from, parse_args

    timings = config_from(parse_args(["--heartbeat", "0.25"])).timings
    assert (timings.heartbeat_s, timings.alive_ttl_s) == (0.25, 1.0)
    for value in ("0", "nan", "-1"):
        said = refusal(["--heartbeat", value], capsys)
        assert f"argument --heartbeat: {value} is not a number of seconds from 0.01 to 3600" in said
