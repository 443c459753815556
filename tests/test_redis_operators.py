"""Operators across servers sharing a room through a real, throwaway redis-server.

An operator on one server kicks, bans and mutes members of another, and
sets the topic; a server started later knows the topic, the bans and the
mutes. Clients are raw sockets, except where a ban must hit an address:
loopback is never banned (every client on the machine shares it), so the
member banned is a WebSocket client that a trusted proxy (this machine,
as ``--trusted-proxy 127.0.0.1``) names as 203.0.113.7 in X-Forwarded-For.
Whoever comes next with that header is refused with HTTP 403 on every
server, as a browser behind that proxy would be.
"""

import time

import pytest
import redis
from websockets.exceptions import ConnectionClosed, InvalidStatus

from chat.bus.redis_bus import BACK, LOST
from chat.bus.registry import NAMES, Registry, described
from chat.bus.standing import BAN_ENDS, BANS, MUTE_ENDS, MUTES, TOPIC, Standing, stored
from chat.core import messages
from chat.core.moderation import Order, OrderKind, Whois, timed
from chat.core.operators import NO_LONGER_OPERATOR, NOW_OPERATOR
from tests.helpers import TIMEOUT_S, Peer, wait_until
from tests.test_redis import buses, logged, redis_server, replay_of, shared_servers  # noqa: F401 (fixtures)
from tests.test_web_server import _close_web_clients, open_web_client  # noqa: F401 (fixtures)

OP_PASSWORD = "op-s3cret"
PROXY = "127.0.0.1"  # the web clients' connections come through it
BANNED = {"X-Forwarded-For": "203.0.113.7"}
OTHER = {"X-Forwarded-For": "198.51.100.9"}


@pytest.fixture
def servers(shared_servers):
    """Start ChatServers sharing the throwaway Redis's room, with an operator password; each stopped and checked after."""
    return lambda: shared_servers(trusted_proxies=(PROXY,), op_password=OP_PASSWORD)


def operator(server, name: str) -> Peer:
    peer = Peer.joined(server.address, name)
    peer.send(f"/op {OP_PASSWORD}")
    peer.expect(NOW_OPERATOR)
    return peer


def lines_until(peer: Peer, last: str) -> "list[str]":
    """The lines ``peer`` reads up to ``last``, which is left out."""
    lines = [peer.read_line()]
    while lines[-1] != last:
        lines.append(peer.read_line())
    return lines[:-1]


def web_client(server, name: str, forwarded_for: dict):
    """A WebSocket client through the trusted proxy, joined under ``name`` (read up to its welcome)."""
    client = open_web_client(server, additional_headers=forwarded_for)
    client.send(f"/nick {name}")
    recv_until(client, lambda line: line.startswith(f"[SYSTEM] Welcome, {name}!"))
    return client


def recv_until(client, last) -> "list[str]":
    """The lines ``client`` receives up to ``last`` (or one that satisfies it), which is left out."""
    matches = last if callable(last) else (lambda line: line == last)
    lines = [client.recv(timeout=TIMEOUT_S)]
    while not matches(lines[-1]):
        lines.append(client.recv(timeout=TIMEOUT_S))
    return lines[:-1]


def test_an_operator_kicks_a_member_of_another_server_who_alone_is_told_so_and_disconnected(servers):
    one, two = servers(), servers()
    ann = operator(one, "Ann")
    bob, cat = Peer.joined(two.address, "Bob"), Peer.joined(two.address, "Cat")
    cat.send("/users")
    cat.expect("[SYSTEM] Online (3): @Ann, Bob, Cat")  # who is an operator, from the other server
    ann.expect(messages.joined("Cat"))
    ann.send("/kick bob spamming links")
    removed = "[SYSTEM] Bob was removed by Ann: spamming links"
    ann.expect(removed)
    assert bob.read_until_closed()[-1] == "[SYSTEM] You were removed by Ann: spamming links"
    cat.expect(removed)
    cat.send("still here")
    assert lines_until(ann, "Cat: still here") == []  # nobody is told that Bob left: the notice said why
    ann.send("/users")
    ann.expect("[SYSTEM] Online (2): @Ann, Cat")
    assert Peer.joined(one.address, "Bob").name == "Bob"  # a kick is no ban: the name is free


def test_an_operator_cannot_act_on_an_operator_of_another_server_who_can_give_it_up(servers):
    one, two = servers(), servers()
    ann, bob = operator(one, "Ann"), operator(two, "Bob")
    for command in ("kick", "ban", "mute"):
        ann.send(f"/{command} Bob")
        ann.expect(f"[ERROR] Bob is an operator: only the server's console can {command} an operator.")
    bob.send("/deop")
    bob.expect(NO_LONGER_OPERATOR)
    ann.send("/users")
    ann.expect("[SYSTEM] Online (2): @Ann, Bob")
    bob.send("/users")
    bob.expect("[SYSTEM] Online (2): @Ann, Bob")


def test_a_member_muted_from_another_server_is_refused_and_nobody_sees_its_lines_until_unmuted(servers):
    one, two = servers(), servers()
    ann = operator(one, "Ann")
    bob, cat = Peer.joined(two.address, "Bob"), Peer.joined(two.address, "Cat")
    ann.expect(messages.joined("Cat"))
    ann.send("/mute Bob")
    muted = "[SYSTEM] Bob was muted by Ann for 10 minutes."
    for peer in (ann, bob, cat):
        peer.expect(muted)
    bob.send("let me speak")
    bob.expect("[ERROR] You are muted for 10 more minutes.")
    bob.send("/msg Ann psst")
    bob.expect("[ERROR] You are muted for 10 more minutes.")
    cat.send("after Bob")
    assert lines_until(ann, "Cat: after Bob") == []
    assert lines_until(bob, "Cat: after Bob") == []
    ann.send("/unmute bob")
    for peer in (ann, bob, cat):
        peer.expect("[SYSTEM] Bob was unmuted by Ann.")
    bob.send("thanks")
    ann.expect("Bob: thanks")


def test_a_ban_from_another_server_refuses_the_address_everywhere_and_servers_started_later_know_it(servers):
    one, two = servers(), servers()
    ann = operator(one, "Ann")
    bob = web_client(two, "Bob", BANNED)
    dan = Peer.joined(two.address, "Dan")
    ann.expect(messages.joined("Dan"))
    ann.send("/topic Homework is due on Friday")
    ann.send("/mute Dan 30")
    ann.send("/ban Bob 5 flooding")
    removed = "[SYSTEM] Bob was removed by Ann and banned for 5 minutes: flooding"
    ann.expect(removed)
    assert recv_until(bob, "[SYSTEM] You were removed by Ann and banned for 5 minutes: flooding")
    with pytest.raises(ConnectionClosed):
        bob.recv(timeout=TIMEOUT_S)
    dan.expect(removed)
    for server in (one, two):
        with pytest.raises(InvalidStatus) as refused:
            open_web_client(server, additional_headers=BANNED)
        assert refused.value.response.status_code == 403
        assert b"You are banned from this chat for 5 more minutes: flooding" in refused.value.response.body
    later = servers()  # it reads the topic, the ban and the mute from Redis, and the notices from the stream
    with pytest.raises(InvalidStatus) as refused:
        open_web_client(later, additional_headers=BANNED)
    assert refused.value.response.status_code == 403
    assert later.room.moderation.mute_on("dan").name == "Dan"
    eve = Peer(later.address, "Eve")
    assert replay_of(eve) == [
        "[SYSTEM] Last 3 messages:",
        "[SYSTEM] Ann set the topic: Homework is due on Friday",
        "[SYSTEM] Dan was muted by Ann for 30 minutes.",
        removed,
        "[SYSTEM] End of history.",
    ]
    assert eve.read_line() == "[SYSTEM] Topic: Homework is due on Friday"  # right after its welcome
    web_client(later, "Fay", OTHER)  # another address behind the same proxy is welcome
    ann.send("/unban 203.0.113.7")
    for peer in (ann, dan, eve):
        peer.expect("[SYSTEM] The ban on Bob was lifted by Ann.")
    for server in (one, two, later):
        open_web_client(server, additional_headers=BANNED).close()


def test_the_topic_is_shown_after_the_welcome_on_every_server_and_cleared_everywhere(servers):
    one, two = servers(), servers()
    ann = operator(one, "Ann")
    bob = Peer.joined(two.address, "Bob")
    ann.send("/topic Quiet please")
    bob.expect("[SYSTEM] Ann set the topic: Quiet please")
    newcomer = Peer(two.address, "Cat")
    newcomer.expect(lambda line: line.startswith("[SYSTEM] Welcome, Cat!"))
    assert newcomer.read_line() == "[SYSTEM] Topic: Quiet please"
    ann.send("/topic")
    bob.expect("[SYSTEM] Ann cleared the topic.")
    assert two.room.moderation.topic == ""
    later = servers()
    assert later.room.moderation.topic == ""  # nothing kept: no topic
    late = Peer(later.address, "Dan")
    late.expect(lambda line: line.startswith("[SYSTEM] Welcome, Dan!"))
    late.send("/users")
    assert late.read_line() == "[SYSTEM] Online (4): @Ann, Bob, Cat, Dan"


def test_after_redis_lost_everything_each_server_says_again_who_is_an_operator(servers, redis_server):  # noqa: F811
    one, two = servers(), servers()
    ann = Peer.joined(one.address, "Ann")
    bob = Peer.joined(two.address, "Bob")
    ann.expect(messages.joined("Bob"))
    redis_server.kill()
    ann.expect(LOST)
    bob.expect(LOST)
    ann.send(f"/op {OP_PASSWORD}")  # while the others cannot be told
    ann.expect(NOW_OPERATOR)
    redis_server.start()  # empty: it kept nothing
    ann.expect(BACK, timeout=3 * TIMEOUT_S)
    bob.expect(BACK, timeout=3 * TIMEOUT_S)
    assert wait_until(lambda: two.room.roster() == ["@Ann", "Bob"])
    ann.send("/kick Bob")  # Bob's address was said again too: he is found, and no operator
    assert bob.read_until_closed()[-1] == "[SYSTEM] You were removed by Ann."


# -- the keys, without servers ----------------------------------------------------------------------


@pytest.fixture
def raw_client(redis_server):  # noqa: F811
    """A client of ``redis_server`` that leaves replies undecoded, as the bus reads what is kept."""
    client = redis.Redis.from_url(redis_server.url)
    yield client
    client.close()


def keep(client, *orders: Order) -> None:
    pipe = client.pipeline(transaction=True)
    for order in orders:
        Standing.keep(pipe, order)
    pipe.execute()


def test_bans_and_mutes_that_are_over_are_removed_from_redis_as_they_are_loaded(raw_client):
    now = time.time()
    over = timed(OrderKind.BAN, "Ann", "Old", 1, now - 61, address="203.0.113.1")
    banned = timed(OrderKind.BAN, "Ann", "Bob", 5, now, reason="flooding", address="203.0.113.7")
    for_good = timed(OrderKind.BAN, "Ann", "Eve", 0, now - 1e6, address="2001:db8:1:2::/64")
    muted, unmuted = timed(OrderKind.MUTE, "Ann", "Cat", 10, now), timed(OrderKind.MUTE, "Ann", "Dan", 10, now)
    keep(raw_client, over, banned, for_good, muted, unmuted, Order(OrderKind.UNMUTE, "Ann", "dan"))
    keep(raw_client, Order(OrderKind.TOPIC, "Ann", reason="Quiet please"))
    standing = Standing(raw_client, 16384)
    orders, skipped = standing.load(now)
    assert orders[0] == Order(OrderKind.TOPIC, "Ann", reason="Quiet please") and skipped == []
    assert sorted(orders[1:], key=lambda order: order.name) == [banned, muted, for_good]
    assert sorted(raw_client.hkeys(BANS)) == [b"2001:db8:1:2::/64", b"203.0.113.7"]
    assert raw_client.zrange(BAN_ENDS, 0, -1) == [b"203.0.113.7"]  # a ban until lifted never ends by itself
    keep(raw_client, Order(OrderKind.UNBAN, "Ann", "Bob", address="203.0.113.7"), Order(OrderKind.TOPIC, "Ann"))
    assert standing.load(now + 3600) == ([for_good], [])
    assert raw_client.zcard(BAN_ENDS) == raw_client.zcard(MUTE_ENDS) == 0 and not raw_client.exists(TOPIC)


def test_what_is_kept_is_checked_and_what_is_skipped_says_why(raw_client):
    ban = stored(timed(OrderKind.BAN, "Ann", "Bob", 0, 1.0, address="203.0.113.7"))
    raw_client.hset(BANS, mapping={
        "203.0.113.7": ban,
        "203.0.113.8": ban,
        "198.51.100.2": "garbage",
        "198.51.100.3": stored(Order(OrderKind.KICK, "Ann", "Bob")),
        "198.51.100.4": ban.replace("203.0.113.7", "198.51.100.4") + "\tq\t1",
        "198.51.100.5": ban.replace("203.0.113.7", "198.51.100.5").replace("Ann", "Ann\x1b"),
    })
    raw_client.hset(MUTES, "cat", "x" * 200)
    raw_client.lpush(TOPIC, "not a string")
    orders, skipped = Standing(raw_client, 100).load()
    assert [order.address for order in orders] == ["203.0.113.7"]
    assert sorted(skipped) == [
        ("chat:bans '198.51.100.2'", "not an order's fields: b'garbage'"),
        ("chat:bans '198.51.100.3'", "kick where ban orders are kept"),
        ("chat:bans '198.51.100.4'", "an order has no field 'q'"),
        ("chat:bans '198.51.100.5'", "operator 'Ann\\x1b': Names are 1 to 20 characters, each an ASCII letter "
         "(A-Z, a-z), a digit, '_' or '-'."),
        ("chat:bans '203.0.113.8'", "kept under '203.0.113.8', not '203.0.113.7'"),
        ("chat:mutes", "203 bytes, over the 100 an order may hold"),
        ("chat:topic", "not a string"),
    ]


def test_only_the_server_holding_a_name_says_who_holds_it_and_its_latest_word_stands(redis_server):  # noqa: F811
    client = redis_server.client()
    mine, theirs = Registry(client, "mine", 1.0), Registry(client, "theirs", 1.0)
    mine.heartbeat()
    assert mine.claim("Ann") and theirs.claim("Bob")
    assert mine.whois("ann") == ("mine", Whois("Ann", None, False))  # claimed, not described yet
    assert mine.describe("Ann", "203.0.113.7", True)
    assert not mine.describe("Bob", "203.0.113.8", True)  # not its to describe
    assert theirs.whois("ANN") == ("mine", Whois("Ann", "203.0.113.7", True))
    assert sorted(theirs.roster(), key=lambda who: who.name) == [Whois("Ann", "203.0.113.7", True), Whois("Bob", None, False)]
    # Back after a while apart: Ann gave up being an operator meanwhile, but said so since it was read.
    assert mine.hold_only(["Ann"], lambda name: described(name, "203.0.113.7", False)) == ([], [])
    assert mine.whois("Ann")[1].operator is False
    stale = {"Ann": described("Ann", "203.0.113.7", True)}
    real_hgetall = client.hgetall

    def hgetall_then_described(key):  # what hold_only read is then changed by a member's own word
        held = real_hgetall(key)
        mine.describe("Ann", "203.0.113.9", False)
        return held

    client.hgetall = hgetall_then_described
    assert mine.hold_only(["Ann"], stale.get) == ([], [])
    assert mine.whois("Ann")[1] == Whois("Ann", "203.0.113.9", False)
    client.hset(NAMES, mapping={"eve": "x\tEve\t1.2.3.4\tyes", "mal": "x\tMal\tnowhere\t0", "sue": "x\tSue\t\t1\t"})
    assert sorted(who.name for who in theirs.roster()) == ["Ann", "Bob"]
    assert [theirs.reap("mine", stopping=True), theirs.whois("Ann")] == [["Ann"], None]


def test_an_order_the_others_would_skip_is_not_sent_but_carried_out_here_and_said_once(buses, caplog):  # noqa: F811
    bus = buses()
    unbannable = Order(OrderKind.BAN, "Ann", "Bob", address="localhost")  # no address a server counts by
    assert bus.order(unbannable) is False and bus.order(unbannable) is False  # the room carries it out alone
    [said] = logged(caplog, "Cannot share a line through Redis")
    assert "the others would skip an order (address 'localhost')" in said
    assert bus.order(Order(OrderKind.SAY, "Server", reason="fine")) is True
