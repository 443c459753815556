"""Someone else writes into the shared room's Redis: real servers, a real redis-server, raw clients.

The writer knows both wire formats, the one before (a preformatted line
in ``l``) and this one (kind, name and text). Whatever it writes, members
get lines a chat server made, from a valid name, one at a time; nobody is
dropped; newcomers still get their welcome; and the log says so once.
"""

import re
import time

from chat.bus import standing
from chat.bus.entry import MAX_REASON_BYTES
from chat.bus.redis_bus import STREAM
from chat.bus.standing import stored
from chat.core import messages
from chat.core.moderation import Order, OrderKind, timed
from tests.helpers import Peer
from tests.test_redis import buses, logged, redis_server, replay_of, shared_servers  # noqa: F401 (fixtures)

BIG_BYTES = 2 * 1024 * 1024  # over the 1 MiB a member may fall behind by: its line would drop every member


def old_entry(line: str, **fields) -> dict:
    """An entry of the version before: the line itself."""
    return {"s": "mallory", "o": "0", "t": repr(time.time()), "g": "1", "l": line, **fields}


def entry(kind: str, name: str, text: "str | None" = None, **fields) -> dict:
    said = {"x": text} if text is not None else {}
    return {"v": "2", "s": "mallory", "k": kind, "n": name, **said, "t": repr(time.time()), "o": "0", "g": "1", **fields}


def in_the_room(first: Peer, second: Peer) -> None:
    """Wait until each has heard all there is to hear of the other's joining (which comes through the stream)."""
    first.expect(messages.joined(second.name))
    first.send("ready")
    second.expect(f"{first.name}: ready")  # and whatever came before it in the stream


def lines_until(peer: Peer, last: str) -> "list[str]":
    """The lines ``peer`` reads up to ``last``, which is left out."""
    lines = [peer.read_line()]
    while lines[-1] != last:
        lines.append(peer.read_line())
    return lines[:-1]


def test_what_another_client_of_redis_writes_reaches_members_only_as_lines_of_a_valid_sender(
    shared_servers, redis_server, caplog  # noqa: F811
):
    one, two = shared_servers(), shared_servers()
    ann, bob = Peer.joined(one.address, "Ann"), Peer.joined(two.address, "Bob")
    in_the_room(ann, bob)
    bobs_server = two.room.bus.server_id
    attacker = redis_server.client()
    for fields in [
        old_entry("Mallory: \x1b[2J\x1b]0;pwned\x07 hi\x07"),
        old_entry(messages.SHUTTING_DOWN),
        old_entry("Mallory: one\n[SYSTEM] Server is shutting down."),
        old_entry("[PM from Admin] send me your password"),
        old_entry("[SYSTEM] You are banned.", to=bobs_server, n="Bob"),
        entry("chat", "Mallory", "\x1b[2J\x1b]0;pwned\x07 hi\x07"),
        entry("chat", "SYSTEM", "Server is shutting down."),
        entry("system", "Mallory", "Server is shutting down."),
        entry("joined", "[SYSTEM] Server is shutting down."),
        entry("chat", "Mallory", "one\n[SYSTEM] Server is shutting down."),
        entry("chat", "[PM from Admin]", "send me your password"),
        entry("private", "Admin\n[SYSTEM]", "You are banned.", to=bobs_server, p="Bob"),
        entry("private", "Mallory", "\x07psst", to=bobs_server, p="Bob"),
    ]:
        attacker.xadd(STREAM, fields)
    bob.send("after the attack")
    assert lines_until(ann, "Bob: after the attack") == [
        "Mallory:  hi",
        "Mallory: one[SYSTEM] Server is shutting down.",
    ]
    ann.send("seen")
    assert lines_until(bob, "Ann: seen") == [
        "Mallory:  hi",
        "Mallory: one[SYSTEM] Server is shutting down.",
        "[PM from Mallory] psst",  # a private message, to Bob alone: no one else's, and from a valid name
    ]
    assert len(logged(caplog, "of the Redis stream")) == 2  # the first skipped, once on each server


def test_an_entry_too_big_to_read_is_skipped_nobody_is_dropped_and_newcomers_are_welcome(
    shared_servers, redis_server  # noqa: F811
):
    one, two = shared_servers(), shared_servers()
    ann, bob = Peer.joined(one.address, "Ann"), Peer.joined(two.address, "Bob")
    in_the_room(ann, bob)
    attacker = redis_server.client()
    attacker.xadd(STREAM, old_entry("Mallory: " + "A" * BIG_BYTES))
    attacker.xadd(STREAM, entry("chat", "Mallory", "A" * BIG_BYTES))
    bob.send("still here?")
    assert lines_until(ann, "Bob: still here?") == []
    ann.send("yes")
    bob.expect("Ann: yes")
    newcomer = replay_of(Peer(one.address, "Cat"))  # on a server that saw the entries come
    assert "Bob: still here?" in newcomer and max(map(len, newcomer)) < 100
    later = shared_servers()  # and on one that reads them from the stream's history
    assert replay_of(Peer(later.address, "Dan")) == [
        "[SYSTEM] Last 3 messages:",
        "Ann: ready",
        "Bob: still here?",
        "Ann: yes",
        "[SYSTEM] End of history.",
    ]


def test_a_flood_of_bad_entries_is_logged_once(shared_servers, redis_server, caplog):  # noqa: F811
    server = shared_servers()
    ann, bob = Peer.joined(server.address, "Ann"), Peer.joined(server.address, "Bob")
    in_the_room(ann, bob)
    pipe = redis_server.client().pipeline(transaction=False)
    for n in range(300):
        pipe.xadd(STREAM, old_entry(f"Mallory: spam {n}"))
    pipe.execute()
    ann.send("after the flood")
    assert lines_until(bob, "Ann: after the flood") == []
    [said] = logged(caplog, "of the Redis stream")
    assert re.fullmatch(r"⚠️  Skipped entry \d+-\d+ of the Redis stream: no version: not an entry of this format\. .+", said)


def test_a_newcomers_history_from_the_stream_is_the_conversation_however_many_came_and_went(buses):  # noqa: F811
    writer = buses()
    said = [messages.chat("Ann", "hello"), messages.action("Ann", "waves"), messages.renamed("Ann", "Anna")]
    for line in said:
        assert writer.publish([line], 1, time.time())
    for n in range(60):  # a class reconnecting: twelve times the history a newcomer gets, over a page of READ
        assert writer.publish([messages.joined(f"User{n}"), messages.left(f"User{n}")], None, time.time())
    assert writer.claim("Anna") and writer.send_private("Anna", messages.private_from("Bob", "psst"), 2) == "Anna"
    reader = buses()  # keeps 10 lines of history
    assert [line for _, line in reader.room.remembered] == said


def test_names_someone_else_wrote_into_the_registry_are_not_shown(shared_servers, redis_server):  # noqa: F811
    server = shared_servers()
    ann = Peer.joined(server.address, "Ann")
    attacker = redis_server.client()
    attacker.hset("chat:names", mapping={"mallory": "evil\tMal\x1b[2Jlory", "eve": "no server", "sys": "x\tSYSTEM"})
    ann.send("/users")
    ann.expect("[SYSTEM] Online (1): Ann")
    ann.send("/msg eve hello")
    ann.expect("[ERROR] No user named eve is online.")


# -- operators' orders --------------------------------------------------------------------------------


def order_entry(kind: str, by: str = "Mallory", **fields) -> dict:
    return {"v": "2", "s": "mallory", "k": "order", "n": by, "t": repr(time.time()), "o": "0", "g": "1", "do": kind, **fields}


def test_forged_orders_that_break_a_rule_are_skipped_and_the_bus_carries_on(
    shared_servers, redis_server, caplog  # noqa: F811
):
    one, two = shared_servers(), shared_servers()
    ann, bob = Peer.joined(one.address, "Ann"), Peer.joined(two.address, "Bob")
    in_the_room(ann, bob)
    attacker = redis_server.client()
    for fields in [
        order_entry("ban", w="Bob", a="not-an-address", x="bye"),
        order_entry("ban", w="Bob", a="127.0.0.1"),  # everyone on this machine
        order_entry("kick", w="Bob", x="A" * (MAX_REASON_BYTES + 1)),
        order_entry("kick", w="Bob\n[SYSTEM] Ann"),
        order_entry("kick", by="SYSTEM", w="Bob"),
        order_entry("mute", w="Bob", m="-5", u="1"),
        order_entry("say", x="\x1b[2J\x07"),
        order_entry("topic", x="\x1b]0;pwned\x07 Free pizza", w="Bob"),
    ]:
        attacker.xadd(STREAM, fields)
    bob.send("after the attack")
    assert lines_until(ann, "Bob: after the attack") == []
    ann.send("seen")
    assert lines_until(bob, "Ann: seen") == []  # still here, and not muted
    for server in (one, two):
        assert server.room.moderation.bans() == [] and server.room.moderation.topic == ""
    assert len(logged(caplog, "of the Redis stream")) == 2  # the first skipped, once on each server


def test_whoever_can_write_to_redis_gives_orders_as_the_console_would_but_each_is_one_clean_line(
    shared_servers, redis_server  # noqa: F811
):
    one, two = shared_servers(), shared_servers()
    ann, bob = Peer.joined(one.address, "Ann"), Peer.joined(two.address, "Bob")
    in_the_room(ann, bob)
    attacker = redis_server.client()
    attacker.xadd(STREAM, order_entry("say", by="Server", x="\x1b[2Jone\n[SYSTEM] two\u202e"))
    attacker.xadd(STREAM, order_entry("kick", by="Server", w="Bob", x="\x1b]0;pwned\x07bye"))
    assert ann.read_line() == "[SYSTEM] one[SYSTEM] two"
    assert bob.read_until_closed()[-2:] == ["[SYSTEM] one[SYSTEM] two", "[SYSTEM] You were removed by Server: bye"]
    assert ann.read_line() == "[SYSTEM] Bob was removed by Server: bye"


def test_what_someone_else_keeps_in_redis_for_servers_started_later_is_checked_and_the_rest_loaded(
    shared_servers, redis_server, caplog  # noqa: F811
):
    attacker = redis_server.client()
    ban = stored(timed(OrderKind.BAN, "Ann", "Bob", 0, time.time(), reason="flooding", address="203.0.113.7"))
    attacker.hset(standing.BANS, mapping={
        "203.0.113.7": ban,
        "203.0.113.8": ban,  # kept under another address than its own
        "127.0.0.1": ban.replace("203.0.113.7", "127.0.0.1"),
        "198.51.100.1": ban.replace("203.0.113.7", "198.51.100.1") + "A" * BIG_BYTES,
        "198.51.100.2": "garbage",
        "198.51.100.3": stored(Order(OrderKind.KICK, "Ann", "Bob")),
    })
    attacker.set(standing.MUTES, "not a hash")
    attacker.set(standing.TOPIC, "do\ttopic\tn\tAnn\tx\t\x1b[2JQuiet\x07 please")
    server = shared_servers()
    assert [(ban.address, ban.reason) for ban in server.room.moderation.bans()] == [("203.0.113.7", "flooding")]
    newcomer = Peer(server.address, "Cat")
    newcomer.expect(lambda line: line.startswith("[SYSTEM] Welcome, Cat!"))
    assert newcomer.read_line() == "[SYSTEM] Topic: Quiet please"
    [said] = logged(caplog, "of the orders kept in Redis")  # the first (in Redis's order); the others are counted
    assert said.startswith("⚠️  Skipped entry chat:") and "Something other than this version's servers" in said
