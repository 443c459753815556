"""History: the last N public lines, replayed to each newcomer. The room with fake members, no sockets."""

import re

import pytest

from chat.core.commands import handle_line
from chat.core.history import HISTORY_END, History, history_start, is_history_start, stamped, unstamped
from chat.core.room import Room
from tests.test_room_and_commands import FakeMember

STAMP = r"\[\d\d:\d\d:\d\d\] "


def joined(room, name):
    member = FakeMember()
    room.join(member, "User_1", name)
    return member


def lines_of(member) -> "list[str]":
    return [line for block in member.take() for line in block.split("\n")]


def replay_of(member) -> "list[str]":
    """What a newcomer got before its welcome, with the time stamps taken off."""
    lines = lines_of(member)
    assert lines[-1].startswith("[SYSTEM] Welcome, ")
    return [unstamped(line)[1] for line in lines[:-1]]


def test_a_newcomer_gets_the_public_lines_in_order_between_markers_then_the_welcome():
    room = Room(history_lines=50)
    ann = joined(room, "Ann")
    bob = joined(room, "Bob")
    room.say(ann, "Ann: hello")
    handle_line(room, bob, "/me waves")
    handle_line(room, bob, "/nick Rob")
    room.leave(ann)
    cat = joined(room, "Cat")
    lines = lines_of(cat)
    assert lines[0] == "[SYSTEM] Last 3 messages:"
    assert all(re.match(STAMP, line) for line in lines[1:4])
    assert [unstamped(line)[1] for line in lines[1:4]] == [
        "Ann: hello",
        "* Bob waves",
        "[SYSTEM] Bob is now known as Rob",
    ]
    assert lines[4:] == [HISTORY_END, "[SYSTEM] Welcome, Cat! 1 other user(s) online. Type /help for commands."]


def test_only_the_last_n_lines_are_kept():
    room = Room(history_lines=3)
    ann = joined(room, "Ann")
    for n in range(10):
        room.say(ann, f"Ann: {n}")
    assert replay_of(joined(room, "Bob")) == ["[SYSTEM] Last 3 messages:", "Ann: 7", "Ann: 8", "Ann: 9", HISTORY_END]


def test_private_messages_and_command_replies_are_never_kept():
    room = Room(history_lines=50)
    ann = joined(room, "Ann")
    joined(room, "Bob")
    handle_line(room, ann, "/msg Bob a secret")
    handle_line(room, ann, "/users")
    handle_line(room, ann, "/help")
    handle_line(room, ann, "/nosuchcommand")
    assert replay_of(joined(room, "Cat")) == []


def test_without_history_a_newcomer_gets_the_welcome_first():
    room = Room(history_lines=0)
    ann = joined(room, "Ann")
    room.say(ann, "Ann: hello")
    assert lines_of(joined(room, "Bob")) == ["[SYSTEM] Welcome, Bob! 1 other user(s) online. Type /help for commands."]


def test_an_empty_history_sends_no_markers():
    room = Room(history_lines=50)
    assert lines_of(joined(room, "Ann")) == ["[SYSTEM] Welcome, Ann! 0 other user(s) online. Type /help for commands."]


def test_joins_and_leaves_are_not_kept_so_a_crowd_coming_and_going_cannot_push_the_talk_out():
    # Before: 44 of a newcomer's 50 lines of history were the notices of one address reconnecting.
    room = Room(history_lines=5)
    ann = joined(room, "Ann")
    room.say(ann, "Ann: the point of it all")
    for n in range(20):
        room.leave(joined(room, f"Churn{n}"))
    assert replay_of(joined(room, "Bob")) == ["[SYSTEM] Last 1 message:", "Ann: the point of it all", HISTORY_END]


def test_lines_that_only_look_like_notices_are_kept():
    history = History(5)
    history.add("Ann: [SYSTEM] Bob joined the chat!", when=1.0)
    history.add("[SYSTEM] Bob joined the chat!", when=2.0)
    history.add_earlier([(0.5, "[SYSTEM] Cat left the chat."), (0.6, "* Cat left the chat.")])
    assert [unstamped(line)[1] for line in history.replay()[1:-1]] == [
        "* Cat left the chat.",
        "Ann: [SYSTEM] Bob joined the chat!",
    ]


def test_the_shutdown_notice_is_not_history():
    room = Room(history_lines=50)
    joined(room, "Ann")
    room.close("[SYSTEM] Server is shutting down.")
    history = room._history.replay()
    assert not any("shutting down" in line for line in history)


def test_the_markers_and_stamps_read_back():
    assert is_history_start(history_start(1)) and history_start(1) == "[SYSTEM] Last 1 message:"
    assert is_history_start(history_start(50)) and history_start(50) == "[SYSTEM] Last 50 messages:"
    assert not is_history_start("[SYSTEM] Last few messages:")
    line = stamped(0.0, "Ann: [12:00:00] not a stamp")
    when, said = unstamped(line)
    assert re.fullmatch(r"\d\d:\d\d:\d\d", when) and said == "Ann: [12:00:00] not a stamp"
    assert unstamped("Ann: hi") == (None, "Ann: hi")


@pytest.mark.parametrize("max_lines", [0, 1, 7])
def test_history_memory_is_bounded_by_its_line_count(max_lines):
    history = History(max_lines)
    for n in range(100):
        history.add(f"Ann: {n}", when=float(n))
    assert len(history) == max_lines


def test_lines_said_before_go_in_front_of_those_kept_and_the_newest_are_kept():
    history = History(3)
    history.add("Ann: said here", when=10.0)
    history.add_earlier([(1.0, "Old: first"), (2.0, "Old: second"), (3.0, "Old: third")])
    kept = [stamped(2.0, "Old: second"), stamped(3.0, "Old: third"), stamped(10.0, "Ann: said here")]
    assert history.replay()[1:-1] == kept
