"""The server over real sockets: a server on a free port, clients made of raw sockets."""

import logging
import os
import socket
import struct
import threading

from chat.server import keep_to_one_cpu, log_cpu
from tests.helpers import TIMEOUT_S, Peer, serving_threads, wait_until


def test_a_message_reaches_every_other_client_and_not_the_sender(server):
    ann, bob, cat = (Peer.joined(server.address, n) for n in ("Ann", "Bob", "Cat"))
    ann.send("Hello everyone!")
    assert bob.expect(lambda line: not line.startswith("[SYSTEM]")) == "Ann: Hello everyone!"
    assert cat.expect(lambda line: not line.startswith("[SYSTEM]")) == "Ann: Hello everyone!"
    ann.expect("[SYSTEM] Cat joined the chat!")
    ann.assert_receives_nothing()


def test_a_client_that_sends_nothing_joins_under_its_port_name(server):
    ann = Peer.joined(server.address, "Ann")
    quiet = Peer(server.address)
    port = quiet.sock.getsockname()[1]
    ann.expect(f"[SYSTEM] User_{port} joined the chat!", timeout=3)
    quiet.expect(f"[SYSTEM] Welcome, User_{port}! 1 other user(s) online. Type /help for commands.")


def test_a_name_sent_first_is_the_name_others_see_join(server):
    ann = Peer.joined(server.address, "Ann")
    Peer.joined(server.address, "Zed")
    assert ann.read_line() == "[SYSTEM] Zed joined the chat!"


def test_a_line_split_across_segments_and_lines_sharing_one_are_both_framed(server):
    ann, bob = Peer.joined(server.address, "Ann"), Peer.joined(server.address, "Bob")
    ann.send_raw("split ".encode())
    ann.send_raw("acro".encode() + "ss 🚀"[:3].encode())
    ann.send_raw("ss 🚀"[3:].encode() + b"\r\none\ntwo\n\n\nthree\n")
    assert [bob.read_line() for _ in range(4)] == ["Ann: split across 🚀", "Ann: one", "Ann: two", "Ann: three"]


def test_join_rename_and_leave_are_announced(server):
    ann = Peer.joined(server.address, "Ann")
    bob = Peer.joined(server.address, "Bob")
    ann.expect("[SYSTEM] Bob joined the chat!")
    bob.send("/nick Robert")
    assert ann.read_line() == "[SYSTEM] Bob is now known as Robert"
    assert bob.read_line() == "[SYSTEM] Bob is now known as Robert"
    bob.send("/quit")
    assert bob.read_until_closed() == ["[SYSTEM] Goodbye!"]
    assert ann.read_line() == "[SYSTEM] Robert left the chat."


def test_users_lists_who_is_online(server):
    ann = Peer.joined(server.address, "Ann")
    Peer.joined(server.address, "Bob")
    ann.expect("[SYSTEM] Bob joined the chat!")
    ann.send("/users")
    assert ann.read_line() == "[SYSTEM] Online (2): Ann, Bob"


def test_a_private_message_is_seen_by_its_recipient_only(server):
    ann, bob, cat = (Peer.joined(server.address, n) for n in ("Ann", "Bob", "Cat"))
    bob.expect("[SYSTEM] Cat joined the chat!")
    ann.send("/msg Bob the password is swordfish")
    assert bob.read_line() == "[PM from Ann] the password is swordfish"
    ann.expect("[PM to Bob] the password is swordfish")
    ann.send("/msg Nobody hello")
    assert ann.read_line() == "[ERROR] No user named Nobody is online."
    cat.assert_receives_nothing()


def test_me_is_shown_as_an_action(server):
    ann, bob = Peer.joined(server.address, "Ann"), Peer.joined(server.address, "Bob")
    ann.send("/me waves")
    assert bob.read_line() == "* Ann waves"


def test_an_abrupt_disconnect_leaves_no_trace(server):
    ann = Peer.joined(server.address, "Ann")
    ghost = Peer.joined(server.address, "Ghost")
    ann.expect("[SYSTEM] Ghost joined the chat!")
    # SO_LINGER with a zero timeout: close() sends a reset instead of a goodbye.
    ghost.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    ghost.close()
    assert ann.read_line() == "[SYSTEM] Ghost left the chat."
    ann.send("/users")
    assert ann.read_line() == "[SYSTEM] Online (1): Ann"
    assert wait_until(lambda: len(serving_threads()) == 2)  # Ann's reader and writer


def test_fifty_clients_get_every_line_once_in_one_order(server):
    clients, lines_each = 50, 10
    peers = [Peer.joined(server.address, f"P{i}") for i in range(clients)]
    received = {peer.name: [] for peer in peers}
    expected_count = (clients - 1) * lines_each

    def collect(peer):
        while len(received[peer.name]) < expected_count:
            line = peer.read_line(timeout=10)
            if not line.startswith("[SYSTEM]"):
                received[peer.name].append(line)

    def talk(peer):
        for n in range(lines_each):
            peer.send(f"line {n} from {peer.name}")

    readers = [threading.Thread(target=collect, args=(p,)) for p in peers]
    talkers = [threading.Thread(target=talk, args=(p,)) for p in peers]
    for thread in readers + talkers:
        thread.start()
    for thread in readers + talkers:
        thread.join(20)
        assert not thread.is_alive()

    everything = {f"P{i}: line {n} from P{i}" for i in range(clients) for n in range(lines_each)}
    for peer in peers:
        lines = received[peer.name]
        assert len(lines) == len(set(lines)) == expected_count, "a line was lost or duplicated"
        assert set(lines) == {line for line in everything if not line.startswith(f"{peer.name}:")}
    # One order for all: any two clients saw the lines they have in common in the same order.
    first = received["P0"]
    for peer in peers[1:]:
        mine = received[peer.name]
        common = set(first) & set(mine)
        assert [l for l in first if l in common] == [l for l in mine if l in common]
    # And each sender's lines arrive in the order they were sent.
    for line_list in received.values():
        for i in range(clients):
            own = [l for l in line_list if l.startswith(f"P{i}:")]
            assert own == sorted(own, key=lambda l: int(l.split()[2]))


def test_shutdown_tells_every_client_and_closes_them(start_server):
    server = start_server()
    ann, bob = Peer.joined(server.address, "Ann"), Peer.joined(server.address, "Bob")
    threading.Thread(target=server.shutdown).start()
    for peer in (ann, bob):
        assert peer.read_until_closed()[-1] == "[SYSTEM] Server is shutting down."
    assert wait_until(lambda: not serving_threads(), timeout=TIMEOUT_S)


def test_one_cpu_where_the_system_cannot_keep_threads_on_one_says_so_and_goes_on(monkeypatch, caplog):
    monkeypatch.delattr(os, "sched_setaffinity", raising=False)
    assert keep_to_one_cpu() is None
    with caplog.at_level(logging.INFO, logger="chat.server"):
        log_cpu(None)
    assert [record.getMessage() for record in caplog.records] == [
        "⚠️  --one-cpu: this system cannot keep the server's threads on one CPU; they run on any."
    ]
