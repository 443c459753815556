"""Hundreds of clients at once, well- and ill-behaved, and shutdown under load.

The server runs as its own process here, as it does for users: it gets a core
of its own, and its threads and descriptors are counted through /proc.
"""

import random
import time

import pytest

from tests.crowd import Crowd
from tests.helpers import ServerProgram, wait_until

SHUTDOWN_NOTICE = "[SYSTEM] Server is shutting down."


def all_welcomed(members) -> bool:
    return all(any(line.startswith("[SYSTEM] Welcome") for line in m.lines) for m in members)


# The server gives its clients SHUTDOWN_GRACE_S (1 s) to take the notice and
# close, then cuts off the rest: about two seconds in all, as the README
# says. The bound leaves room for a machine busy with other work; a server
# that waited on its clients one after another would take far longer.
SIGTERM_STOP_BOUND_S = 3.0


def test_sigterm_with_200_clients_chatting_reaches_them_all_and_stops_at_once():
    program = ServerProgram()
    crowd = Crowd(program.address)
    try:
        members = [crowd.connect(f"M{i}") for i in range(200)]
        assert crowd.pump(lambda: all_welcomed(members), timeout=15)
        for tick in range(3):
            for member in members:
                crowd.say(member, f"tick {tick}")
            crowd.pump(timeout=0.1)
        started = time.monotonic()
        program.terminate()
        assert crowd.pump(lambda: all(m.closed for m in members), timeout=5)
        assert program.wait() == 0
        assert time.monotonic() - started < SIGTERM_STOP_BOUND_S
        for member in members:
            assert member.lines[-1] == SHUTDOWN_NOTICE, f"{member.name} got {member.lines[-3:]}"
        assert "Traceback" not in program.all_output()
    finally:
        crowd.close_all()
        program.kill()


def test_hundreds_of_connects_and_disconnects_leave_nothing_behind(server_program):
    server = server_program
    idle = server.resources()
    crowd_size, rounds = 30, 20
    for round_number in range(rounds):
        crowd = Crowd(server.address)
        members = [crowd.connect(f"C{round_number}x{i}") for i in range(crowd_size)]
        assert crowd.pump(lambda: all_welcomed(members))
        for i, member in enumerate(members):
            if i % 3 == 0:
                crowd.reset(member)
            elif i % 3 == 1:
                crowd.say(member, "/quit")
            else:
                crowd.close(member)
        assert crowd.pump(lambda: all(m.closed for m in members[1::3]))  # each got its goodbye
        crowd.close_all()
    assert wait_until(lambda: server.online() == [], timeout=10)
    assert wait_until(lambda: server.resources() == idle, timeout=10), f"{server.resources()} != {idle}"


@pytest.fixture
def small_backlog_server():
    # A small backlog bound, and long lines for private messages to the clients that never
    # read, so that their queues reach the part private messages may fill within seconds.
    program = ServerProgram(0, "--max-queue-bytes", "65536", "--max-line-bytes", "16000")
    yield program
    program.kill()


def test_chaos_leaves_healthy_clients_whole_and_the_server_idle(small_backlog_server):
    server = small_backlog_server
    idle = server.resources()
    rng = random.Random(2024)
    crowd = Crowd(server.address)
    healthy = [crowd.connect(f"H{i}") for i in range(60)]
    closers = [crowd.connect(f"Closer{i}") for i in range(20)]
    garbage = [crowd.connect(f"Garbage{i}") for i in range(20)]
    non_readers = [crowd.connect(f"Deaf{i}", reading=False, receive_buffer=4096) for i in range(5)]
    whisperers = [crowd.connect(f"Whisper{i}") for i in range(10)]
    long_liners = [crowd.connect(f"Long{i}") for i in range(10)]
    flooders = [crowd.connect(f"Flood{i}") for i in range(10)]
    try:
        # Once every healthy client has seen the last join, all of them see all that follows.
        last_join = f"[SYSTEM] {crowd.members[-1].name} joined the chat!"
        assert crowd.pump(lambda: all(last_join in m.lines for m in healthy), timeout=20)

        ticks = 6
        for tick in range(ticks):
            for member in healthy:
                crowd.say(member, f"tick {tick}")  # 4 lines a second: within the flood limit
            for member in closers:
                if rng.random() < 0.1:
                    crowd.reset(member)
                else:
                    crowd.say(member, f"closer tick {tick}")
            for member in garbage:
                junk = bytes(rng.randrange(256) for _ in range(200)).replace(b"\n", b"")
                crowd.send(member, junk + b"\n")
            for member in whisperers:  # private lines to the non-readers alone, refused once they are behind
                for _ in range(5):  # more than the flood limit lets through
                    crowd.say(member, f"/msg {rng.choice(non_readers).name} " + "w" * 15_000)
            for member in long_liners:
                crowd.send(member, b"L" * 100_000 + b"\n")
            for member in flooders:
                crowd.send(member, b"".join(b"flood %d " % n + b"f" * 100 + b"\n" for n in range(30)))
            crowd.pump(timeout=0.25)

        def healthy_lines(member):
            return [line for line in member.lines if line.startswith("H") and ": tick " in line]

        expected = {f"{m.name}: tick {t}" for m in healthy for t in range(ticks)}
        wanted = {m.name: {line for line in expected if not line.startswith(f"{m.name}:")} for m in healthy}
        assert crowd.pump(lambda: all(len(healthy_lines(m)) >= len(wanted[m.name]) for m in healthy), timeout=30), (
            f"dropped: {[m.name for m in healthy if m.closed]}; "
            f"short: {[(m.name, len(healthy_lines(m))) for m in healthy if len(healthy_lines(m)) < len(wanted[m.name])][:5]}"
        )
        references = (healthy_lines(healthy[0]), healthy_lines(healthy[1]))
        for member in healthy:
            lines = healthy_lines(member)
            assert len(lines) == len(set(lines)), f"{member.name} got a line twice"
            assert set(lines) == wanted[member.name], f"{member.name} lost lines"
            for reference in references:
                common = set(reference) & set(lines)
                assert [l for l in reference if l in common] == [l for l in lines if l in common], "two orders"
        assert {m.name for m in healthy} <= set(server.online())
        # Private messages alone cannot fill a non-reader's queue: the senders are told instead.
        assert any("is not keeping up" in line for m in whisperers for line in m.lines)
    finally:
        crowd.close_all()
    assert wait_until(lambda: server.online() == [], timeout=10)
    assert wait_until(lambda: server.resources() == idle, timeout=10), f"{server.resources()} != {idle}"
