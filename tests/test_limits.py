"""The limits that keep one host, one sender or one stuck output from hurting everyone else.

The per-address limits exempt this machine's own connections, and every test
client connects from here: so the tests that check them start the server with
``exempt_loopback=False``, which makes it count loopback like any other address.
"""

import logging
import socket
import threading
from dataclasses import replace

import pytest

from chat.admission import Admission, address_key
from chat.config import Limits
from chat.core import messages
from chat.server import CROWD_PAUSE_S
from chat.transports.refusals import REFUSAL_LOG_EVERY_S, RefusalLog
from server import limits_from, parse_args
from tests.crowd import Crowd
from tests.helpers import FAST, TIMEOUT_S, Peer, join_all, wait_until


def test_one_address_cannot_take_more_than_its_share_of_seats(start_server):
    server = start_server(max_per_address=3, exempt_loopback=False)
    join_all(server.address, "Ann", "Bob", "Cat")
    extra = Peer(server.address, "Extra")
    assert extra.read_until_closed() == [
        "[SYSTEM] Too many connections from your address (limit: 3). Close one, or try again later."
    ]


def test_this_machines_own_connections_are_not_counted_per_address(start_server):
    server = start_server(max_per_address=2)
    join_all(server.address, "Ann", "Bob", "Cat", "Dan")


def test_a_seat_is_free_again_as_soon_as_its_client_leaves(start_server):
    # The leaving client lingers for up to a second, reading what it was sent; someone
    # reconnecting to a full server meanwhile must not be refused by that ghost.
    server = start_server(max_clients=2)
    watcher, ann = join_all(server.address, "Watcher", "Ann")
    ann.send("/quit")
    assert ann.read_line() == "[SYSTEM] Goodbye!"  # and Ann does not close: she lingers
    watcher.expect("[SYSTEM] Ann left the chat.")  # her seat was given back before this was said
    Peer.joined(server.address, "Bob")


def test_an_addresses_connections_share_one_flood_budget(start_server):
    server = start_server(max_rate=10, max_address_rate=10, exempt_loopback=False)
    ann, bob, cat = join_all(server.address, "Ann", "Bob", "Cat")
    # Each connection alone may send 20 at once; together they may not send 40.
    ann.send_raw(b"".join(b"ann %d\n" % i for i in range(20)))
    assert [cat.read_line() for _ in range(20)] == [f"Ann: ann {i}" for i in range(20)]
    bob.send_raw(b"".join(b"bob %d\n" % i for i in range(20)))
    assert bob.expect(lambda line: line.startswith("[SYSTEM]")) == (
        "[SYSTEM] Your address is sending too fast (limit: 10 lines per second from one address, "
        "all its connections together). Lines are being dropped."
    )
    assert bob.expect(lambda line: line.startswith("[SYSTEM]")).endswith("lines were not sent.")
    bob.send("last")
    relayed = []
    while (line := cat.read_line()) != "Bob: last":
        relayed.append(line)
    assert len(relayed) < 4  # what the budget regained in the meantime, at 10 lines a second


def test_private_messages_cannot_get_a_slow_reader_dropped(start_server):
    server = start_server(max_rate=0, max_queue_bytes=64 * 1024, max_line_bytes=8000)
    crowd = Crowd(server.address)
    try:
        victim = crowd.connect("Victim", reading=False, receive_buffer=4096)
        senders = [crowd.connect(f"Sender{i}") for i in range(5)]
        assert crowd.pump(lambda: all(welcomed(m) for m in senders))
        # Far more than the victim's bound and its socket buffers together: 5 x 100 x 7.5 KB.
        for _ in range(100):
            for sender in senders:
                crowd.say(sender, "/msg Victim " + "m" * 7500)
        assert crowd.pump(lambda: all(any("Victim is not keeping up" in line for line in s.lines) for s in senders), timeout=10)
        assert "Victim" in server.room.names()
        # The victim, reading at last, gets what was accepted for it.
        victim.reading = True
        crowd._update(victim)
        assert crowd.pump(lambda: sum(line.startswith("[PM from") for line in victim.lines) >= 10)
        assert not victim.closed
    finally:
        crowd.close_all()


def welcomed(member) -> bool:
    return any(line.startswith("[SYSTEM] Welcome") for line in member.lines)


def test_when_all_queues_together_pass_their_limit_the_furthest_behind_are_dropped(start_server, caplog):
    caplog.set_level(logging.WARNING)
    # Each alone could fall 1 MiB behind; together they may hold 200 KB.
    server = start_server(max_rate=0, max_line_bytes=20_000, max_total_queue_bytes=200_000)
    crowd = Crowd(server.address)
    try:
        talker, reader = crowd.connect("Talker"), crowd.connect("Reader")
        assert crowd.pump(lambda: welcomed(talker) and welcomed(reader))
        for i in range(3):
            crowd.connect(f"Stuck{i}", reading=False, receive_buffer=4096)
        assert crowd.pump(lambda: "[SYSTEM] Stuck2 joined the chat!" in reader.lines)
        sent = 0
        while not all(f"[SYSTEM] Stuck{i} left the chat." in reader.lines for i in range(3)):
            assert sent < 200, "nobody was dropped"  # 200 x 19 KB: 3.8 MB for each stuck client
            crowd.say(talker, f"{sent:03d} " + "t" * 19_000)
            assert crowd.pump(lambda: any(line.startswith(f"Talker: {sent:03d} ") for line in reader.lines[-4:]))
            sent += 1
        talked = [line[8:11] for line in reader.lines if line.startswith("Talker: ")]
        assert talked == [f"{n:03d}" for n in range(sent)]
        assert not reader.closed
        assert any("for all clients together" in record.getMessage() for record in caplog.records)
    finally:
        crowd.close_all()


def test_a_client_that_pipelines_many_commands_gets_every_reply(start_server):
    server = start_server(max_rate=0, max_queue_bytes=16 * 1024)
    names = [f"Someone_with_long{i:03d}" for i in range(20)]
    join_all(server.address, *names)
    asker = Peer.joined(server.address, "Asker")
    asker.send_raw(b"/users\n" * 100)  # 100 replies of some 450 bytes: three times the bound
    replies = [asker.expect(lambda line: line.startswith("[SYSTEM] Online (21)")) for _ in range(100)]
    assert len(replies) == 100
    asker.send("/users")
    assert asker.expect(lambda line: line.startswith("[SYSTEM] Online (21)"))


@pytest.mark.parametrize("failing", ["reader-", "writer-"])
def test_a_thread_that_cannot_start_leaves_no_thread_or_seat_behind(start_server, monkeypatch, failing):
    server = start_server(max_clients=1)  # "Fine" below gets in only if Doomed's seat was given back
    original_start = threading.Thread.start

    def start(thread):
        if thread.name.startswith(failing):
            raise RuntimeError("can't start new thread")
        original_start(thread)

    monkeypatch.setattr(threading.Thread, "start", start)
    peer = Peer(server.address, "Doomed")
    try:
        assert peer.read_until_closed() == []
    except ConnectionResetError:  # closed with our "/nick" unread: no thread was left to linger
        pass
    monkeypatch.undo()
    assert wait_until(lambda: not [t for t in threading.enumerate() if t.name.startswith(("reader-User", "writer-User"))])
    Peer.joined(server.address, "Fine")


@pytest.mark.parametrize(
    "flag, field, value",
    [
        ("--max-line-bytes", "max_line_bytes", 1000),
        ("--max-rate", "max_rate", 3.0),
        ("--max-queue-bytes", "max_queue_bytes", 5000),
        ("--max-total-queue-bytes", "max_total_queue_bytes", 70000),
        ("--max-clients", "max_clients", 7),
        ("--max-per-address", "max_per_address", 9),
        ("--max-address-rate", "max_address_rate", 11.0),
        ("--keepalive-idle", "keepalive_idle_s", 13),
    ],
)
def test_every_limit_on_the_command_line_reaches_the_server(flag, field, value):
    limits = limits_from(parse_args([flag, str(value)]))
    assert getattr(limits, field) == value
    assert limits == Limits(**{field: value})


@pytest.mark.parametrize(
    "host, key",
    [("10.1.2.3", "10.1.2.3"), ("::ffff:10.1.2.3", "10.1.2.3"), ("fe80::1%eth0", "fe80::/64"), ("2001:db8::1", "2001:db8::/64"), ("::1", "::1")],
)
def test_an_address_is_counted_in_one_form(host, key):
    assert address_key(host) == key


def test_admission_counts_each_address_and_frees_its_seats():
    admission = Admission(Limits(max_clients=5, max_per_address=2))
    first, second = admission.admit("10.0.0.1"), admission.admit("::ffff:10.0.0.1")
    assert "Too many connections" in admission.admit("10.0.0.1")
    assert first.address_budget is second.address_budget  # one budget for the address
    other = admission.admit("10.0.0.2")
    loopback = [admission.admit("127.0.0.1") for _ in range(2)]
    assert "Server is full (5 users)" in admission.admit("10.0.0.3")
    first.release()
    first.release()  # harmless: one seat back, not two
    again = admission.admit("10.0.0.1")
    assert not isinstance(again, str)
    assert "Server is full" in admission.admit("10.0.0.3")
    for seat in (second, other, *loopback):
        seat.release()
    assert [isinstance(admission.admit(f"10.0.1.{n}"), str) for n in range(5)] == [False] * 4 + [True]


def test_a_client_back_under_its_name_within_the_grace_was_never_gone_for_the_others(start_server):
    # As when a page is reloaded, or a client reconnects: before, everyone read a leave and a join.
    server = start_server(timings=replace(FAST, rejoin_grace_s=0.5))
    ann, bob = join_all(server.address, "Ann", "Bob")
    bob.close()
    assert wait_until(lambda: "Bob" not in server.room.names_here())
    bob = Peer.joined(server.address, "Bob")
    bob.send("still here")
    assert ann.read_line() == "Bob: still here"  # no leave, no join between
    bob.close()
    assert ann.read_line() == messages.left("Bob")  # once the grace is over


def test_an_address_refused_again_and_again_is_logged_once_then_counted(clock, caplog):
    # A flood of connections from one address is refused hundreds of times a second.
    refusals = RefusalLog(clock)
    for _ in range(100):
        refusals.refused("('10.0.0.1', 5000)", "10.0.0.1", "Too many joins")
    refusals.refused("('10.0.0.2', 5000)", "10.0.0.2", "Too many joins")
    clock.advance(REFUSAL_LOG_EVERY_S)
    refusals.refused("('10.0.0.1', 5001)", "10.0.0.1", "Too many joins")
    assert [record.getMessage() for record in caplog.records] == [
        "⛔ Refused ('10.0.0.1', 5000): Too many joins",
        "⛔ Refused ('10.0.0.2', 5000): Too many joins",
        "⛔ Refused ('10.0.0.1', 5001): Too many joins (99 more from there since)",
    ]


def test_once_half_the_opening_places_are_taken_the_acceptor_pauses_after_each_newcomer(start_server):
    # So that the connections opening get the time to read their first
    # lines before more come in: in a crowd arriving at once, none of those
    # already talking is then closed to make room.
    server = start_server(max_opening=4, timings=replace(FAST, first_line_wait_s=TIMEOUT_S))
    pauses = []
    wait = server._stop_requested.wait
    server._stop_requested.wait = lambda timeout=None: (timeout == CROWD_PAUSE_S and pauses.append(timeout)) or wait(timeout)
    silent = [socket.create_connection(server.address)]  # says nothing: it stays opening
    assert wait_until(lambda: server.admission.opening == 1)
    assert pauses == []  # one of four places: no crowd
    silent.append(socket.create_connection(server.address))
    assert wait_until(lambda: pauses == [CROWD_PAUSE_S])  # two of four
    ann = Peer.joined(server.address, "Ann")
    assert wait_until(lambda: len(pauses) == 2)
    ann.close()
    for sock in silent:
        sock.close()
