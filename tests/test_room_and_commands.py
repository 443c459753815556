"""The room and the commands, with members that record what they are sent: no sockets."""

import logging
import sys
import threading
import time

import pytest

from chat.core.commands import COMMANDS, chat_text, handle_line, parse_command, requested_name
from chat.core.members import CountedAtWelcome
from chat.core.room import LOGGED_NAMES_MAX, Room


class FakeMember:
    def __init__(self):
        self.name = "?"
        self.address = None
        self.peer = None
        self.queued = []
        self.delivered = []
        self.quit_called = False
        self.refuses_private = False  # as a member far behind with its reading does
        self.operator = False
        self.console = False
        self.confirming = None
        self.pauses = []  # the waits a password check asked for

    def pause(self, seconds: float) -> bool:
        self.pauses.append(seconds)
        return True

    def queue(self, data: bytes) -> bool:
        self.queued.append(data)
        return len(self.queued) == 1  # the first line queued needs a flush

    def queue_private(self, data: bytes) -> "bool | None":
        return None if self.refuses_private else self.queue(data)

    def flush(self) -> None:
        self.delivered += [data.decode().rstrip("\n") for data in self.queued]
        self.queued.clear()

    def quit(self) -> None:
        self.quit_called = True  # a real member still sends what was queued, on its flush

    def take(self) -> "list[str]":
        lines, self.delivered = self.delivered, []
        return lines


@pytest.fixture
def room():
    return Room()


def join(room, name):
    member = FakeMember()
    assert room.join(member, "User_1", name) == (name, None)
    assert member.take()[-1].startswith(f"[SYSTEM] Welcome, {name}! ")
    return member


def test_a_newcomer_is_welcomed_with_the_number_of_others_online(room):
    join(room, "Ann")
    bob = FakeMember()
    room.join(bob, "User_1", "Bob")
    assert bob.take() == ["[SYSTEM] Welcome, Bob! 1 other user(s) online. Type /help for commands."]


def test_a_refused_name_is_explained_after_the_history_just_before_the_welcome():
    room = Room(history_lines=5)
    ann = join(room, "Ann")
    room.say(ann, "hello")
    other = FakeMember()
    room.join(other, "User_7", "ANN")
    lines = "\n".join(other.take()).splitlines()
    assert lines[-3:] == [
        "[SYSTEM] End of history.",
        "[ERROR] The name ANN is taken.",
        "[SYSTEM] Welcome, User_7! 1 other user(s) online. Type /help for commands.",
    ]


def test_a_join_logs_the_chosen_name_where_it_connects_from_and_a_refused_name(room, caplog):
    join(room, "Ann")
    bob = FakeMember()
    bob.peer = "('10.0.0.2', 5000)"
    with caplog.at_level(logging.INFO):
        room.join(bob, "User_5000", "ann")
    assert [record.getMessage() for record in caplog.records] == [
        "✅ User_5000 connected from ('10.0.0.2', 5000)",
        "🏷️  User_5000 asked for the name 'ann': The name ann is taken.",
        "[SYSTEM] User_5000 joined the chat!",
        "📊 Active users: Ann, User_5000",
    ]


def test_members_leaving_at_once_log_their_leaves_and_the_counts_after_them_in_order(room, caplog):
    members = [join(room, f"User_{number}") for number in range(60)]
    start = threading.Barrier(len(members))

    def leave(member):
        start.wait()
        room.leave(member)

    threads = [threading.Thread(target=leave, args=(member,)) for member in members]
    with caplog.at_level(logging.INFO):
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    logged = [record.getMessage() for record in caplog.records]
    assert all(line.endswith(" left the chat.") for line in logged[0::2])
    assert [online_count(line) for line in logged[1::2]] == list(range(len(members) - 1, -1, -1))


def online_count(logged: str) -> int:
    """How many are online by a line ``📊 Active users: Ann, Bob and 3 more`` (or ``none``)."""
    listed = logged.split(": ", 1)[1]
    if listed == "none":
        return 0
    names, _, more = listed.partition(" and ")
    return len(names.split(", ")) + (int(more.split()[0]) if more else 0)


def test_joining_is_announced_to_the_others_only(room):
    ann = join(room, "Ann")
    bob = join(room, "Bob")
    assert ann.take() == ["[SYSTEM] Bob joined the chat!"]
    assert bob.take() == []


def test_a_wanted_name_that_is_taken_falls_back_to_the_default(room):
    join(room, "Ann")
    other = FakeMember()
    assert room.join(other, "User_7", "ann") == ("User_7", "The name ann is taken.")


def test_a_default_name_that_is_taken_gets_a_suffix(room):
    join(room, "User_7")
    assert room.join(FakeMember(), "User_7") == ("User_7-2", None)
    assert room.join(FakeMember(), "User_7") == ("User_7-3", None)


def test_an_invalid_wanted_name_is_refused_with_the_reason(room):
    name, problem = room.join(FakeMember(), "User_7", "bad name")
    assert name == "User_7" and "ASCII letter" in problem


def test_closing_sends_a_last_line_to_all_then_admits_nobody(room):
    ann, bob = join(room, "Ann"), join(room, "Bob")
    ann.take()
    assert room.close("[SYSTEM] Bye") == [ann, bob]
    assert ann.take() == bob.take() == ["[SYSTEM] Bye"]
    assert ann.quit_called and bob.quit_called
    assert room.join(FakeMember(), "User_7") == (None, None)


def test_a_chat_line_reaches_everyone_but_the_sender(room):
    ann, bob, cat = join(room, "Ann"), join(room, "Bob"), join(room, "Cat")
    for member in (ann, bob, cat):
        member.take()
    handle_line(room, ann, "hello all")
    assert ann.take() == []
    assert bob.take() == cat.take() == ["Ann: hello all"]


def test_blank_lines_are_ignored(room):
    ann, bob = join(room, "Ann"), join(room, "Bob")
    ann.take()
    handle_line(room, ann, "   ")
    handle_line(room, ann, "")
    assert bob.take() == []


def test_a_double_slash_sends_a_line_that_starts_with_a_slash(room):
    ann, bob = join(room, "Ann"), join(room, "Bob")
    handle_line(room, ann, "//shrug")
    assert bob.take() == ["Ann: /shrug"]


def test_chat_text_is_sanitized_before_it_is_relayed(room):
    ann, bob = join(room, "Ann"), join(room, "Bob")
    handle_line(room, ann, "\x1b[2Jgotcha")
    assert bob.take() == ["Ann: gotcha"]


def test_leaving_is_announced_and_frees_the_name(room):
    ann, bob = join(room, "Ann"), join(room, "Bob")
    ann.take()
    room.leave(bob)
    room.leave(bob)  # a second leave is harmless
    assert ann.take() == ["[SYSTEM] Bob left the chat."]
    assert room.names() == ["Ann"]
    join(room, "Bob")


def test_nick_renames_and_tells_everyone(room):
    ann, bob = join(room, "Ann"), join(room, "Bob")
    ann.take()
    handle_line(room, ann, "/nick Anna")
    assert ann.take() == bob.take() == ["[SYSTEM] Ann is now known as Anna"]
    assert room.names() == ["Anna", "Bob"]
    handle_line(room, ann, "hi")
    assert bob.take() == ["Anna: hi"]


def test_nick_to_ones_own_name_changes_nothing(room):
    ann, bob = join(room, "Ann"), join(room, "Bob")
    ann.take()
    handle_line(room, ann, "/nick Ann")
    assert ann.take() == ["[ERROR] You are already Ann."]
    assert bob.take() == []


def test_nick_may_change_only_the_case_of_ones_own_name(room):
    ann = join(room, "Ann")
    handle_line(room, ann, "/nick ANN")
    assert ann.take() == ["[SYSTEM] Ann is now known as ANN"]


@pytest.mark.parametrize(
    "line, reply",
    [
        ("/nick Bob", "[ERROR] The name Bob is taken."),
        ("/nick bOB", "[ERROR] The name bOB is taken."),
        ("/nick SYSTEM", "[ERROR] The name SYSTEM is reserved."),
        ("/nick", "[ERROR] Usage: /nick NAME"),
        ("/msg Bob", "[ERROR] Usage: /msg NAME TEXT"),
        ("/msg Nobody hi", "[ERROR] No user named Nobody is online."),
        ("/me", "[ERROR] Usage: /me TEXT"),
        ("/dance", "[ERROR] Unknown command /dance. Type /help for the list."),
    ],
)
def test_a_failed_command_gets_one_error_line_and_nobody_else_hears(room, line, reply):
    ann, bob = join(room, "Ann"), join(room, "Bob")
    ann.take()
    handle_line(room, ann, line)
    assert ann.take() == [reply]
    assert bob.take() == []


def test_a_bad_nick_is_explained(room):
    ann = join(room, "Ann")
    handle_line(room, ann, "/nick no spaces")
    assert "ASCII letter" in ann.take()[0]


def test_users_lists_everyone_online_to_the_asker(room):
    join(room, "Ann")
    bob, cat = join(room, "bob"), join(room, "Cat")
    bob.take()
    handle_line(room, bob, "/users")
    assert bob.take() == ["[SYSTEM] Online (3): Ann, bob, Cat"]
    assert cat.take() == []


def test_msg_reaches_only_its_recipient_and_confirms_to_the_sender(room):
    ann, bob, cat = join(room, "Ann"), join(room, "Bob"), join(room, "Cat")
    for member in (ann, bob, cat):
        member.take()
    handle_line(room, ann, "/msg bob  meet me at 5")
    assert bob.take() == ["[PM from Ann] meet me at 5"]
    assert ann.take() == ["[PM to Bob] meet me at 5"]
    assert cat.take() == []


def test_me_sends_an_action_to_the_others(room):
    ann, bob = join(room, "Ann"), join(room, "Bob")
    ann.take()
    handle_line(room, ann, "/me waves")
    assert bob.take() == ["* Ann waves"]
    assert ann.take() == []


def test_help_lists_every_command_but_the_operators_to_the_asker(room):
    ann = join(room, "Ann")
    handle_line(room, ann, "/help")
    lines = ann.take()
    everyones = [c for c in COMMANDS.values() if not c.operator]
    assert len(lines) == len(everyones) + 1
    assert lines[-1] == "[SYSTEM] Start a line with // to send a message that begins with /."
    for command, line in zip(everyones, lines):
        assert line.startswith(f"[SYSTEM] {command.usage}") and line.endswith(command.help)


def test_quit_says_goodbye_and_closes(room):
    ann = join(room, "Ann")
    handle_line(room, ann, "/QUIT")
    assert ann.take() == ["[SYSTEM] Goodbye!"]
    assert ann.quit_called


def test_a_first_nick_line_names_the_newcomer():
    assert requested_name("/nick Ann") == "Ann"
    assert requested_name("/NICK  Ann ") == "Ann"
    assert requested_name("/nick") is None
    assert requested_name("hello /nick Ann") is None
    assert requested_name("/users") is None


def test_commands_are_parsed_into_name_and_argument():
    assert parse_command("/MSG bob  hi there ") == ("msg", "bob  hi there")
    assert parse_command("/users") == ("users", "")


def recording_flushes(member: FakeMember) -> "list[list[bytes]]":
    """What ``member`` had queued at each of its flushes, from now on."""
    flushes = []
    member.flush = lambda: flushes.append(list(member.queued)) or FakeMember.flush(member)
    return flushes


def test_deferred_flushes_send_each_member_one_batch_at_the_end(room):
    ann, bob = join(room, "Ann"), join(room, "Bob")
    ann.take()
    flushes = recording_flushes(bob)
    with room.deferred_flushes():
        handle_line(room, ann, "one")
        handle_line(room, ann, "two")
        assert bob.take() == [] and flushes == []
    assert flushes == [[b"Ann: one\n", b"Ann: two\n"]]
    assert bob.take() == ["Ann: one", "Ann: two"]


def test_lines_said_together_reach_each_member_in_one_piece(room):
    ann, bob, cat = join(room, "Ann"), join(room, "Bob"), join(room, "Cat")
    for member in (ann, bob, cat):
        member.take()
    room.say(ann, "Ann: one", "Ann: two", "Ann: three")
    assert bob.queued == [] and bob.take() == ["Ann: one\nAnn: two\nAnn: three"]
    assert cat.take() == ["Ann: one\nAnn: two\nAnn: three"]
    assert ann.take() == []


def test_a_chat_line_is_told_from_a_command():
    assert chat_text("hello") == "hello"
    assert chat_text("//shrug") == "/shrug"
    assert chat_text("/nick Bob") is None


def test_the_log_names_at_most_twenty_of_those_online(room, caplog):
    caplog.set_level(logging.INFO, logger="chat.core.room")
    for n in range(25):
        join(room, f"User{n:02}")
    listed = [r.getMessage() for r in caplog.records if r.getMessage().startswith("📊 Active users")][-1]
    names = ", ".join(f"User{n:02}" for n in range(LOGGED_NAMES_MAX))
    assert LOGGED_NAMES_MAX == 20
    assert listed == f"📊 Active users: {names} and 5 more"


class RecordingBus:
    """A bus that is always in reach and delivers what is published at once, recording it."""

    def __init__(self):
        self.room = None
        self.published = []

    def publish(self, lines, origin, when, log_it):
        self.published += lines
        self.room.deliver(lines, origin, when, log_it)
        return True

    def claim(self, name):
        return True

    def release(self, name):
        pass

    def names(self):
        return None

    def in_reach(self):
        return True

    def describe(self, name, address, operator):
        pass


def test_after_a_shutdown_nobody_is_announced_as_leaving_again(caplog):
    # The shutdown notice was each member's last word, and the bus tells the other servers.
    caplog.set_level(logging.INFO, logger="chat.core.room")
    bus = RecordingBus()
    room = bus.room = Room(bus=bus)
    members = [join(room, name) for name in ("Ann", "Bob", "Cat")]
    room.close("[SYSTEM] Server is shutting down.")
    for member in members:
        room.leave(member)
    assert not [line for line in bus.published if "left the chat" in line]
    assert "left the chat" not in caplog.text
    assert all(member.take()[-1] == "[SYSTEM] Server is shutting down." for member in members)


class SwitchingMember(FakeMember):
    """A member that records what it is queued, and lets other threads run in the middle of a broadcast."""

    def __init__(self):
        super().__init__()
        self.in_order: "list[str]" = []

    def queue(self, data: bytes) -> bool:
        time.sleep(0)
        self.in_order += data.decode().splitlines()
        return False  # nothing to flush: the order of queueing is what is checked


def test_every_member_gets_concurrent_broadcasts_in_one_order(room):
    members = []
    for name in ("Ann", "Bob", "Cat", "Dan", "Eve", "Fay"):
        member = SwitchingMember()
        room.join(member, "User_1", name)
        members.append(member)
    start = threading.Barrier(4)

    def speak(sender):
        start.wait(5)
        for i in range(200):
            room.say(sender, f"{sender.name}: {i}")

    previous = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as the interpreter will
    try:
        threads = [threading.Thread(target=speak, args=(sender,)) for sender in members[:4]]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(10)
    finally:
        sys.setswitchinterval(previous)
    said = [line for line in members[-1].in_order if not line.startswith("[")]  # Fay only listened
    assert len(said) == 800
    for member in members:  # each hears everyone's lines but its own, in the one order
        heard = [line for line in member.in_order if not line.startswith("[")]
        assert heard == [line for line in said if not line.startswith(f"{member.name}:")]


# -- comings and goings ------------------------------------------------------------


def test_a_join_that_may_not_be_announced_is_quiet_and_so_is_its_leave(room):
    ann = FakeMember()
    room.join(ann, "User_1", "Ann")
    quiet = FakeMember()
    name, _ = room.join(quiet, "User_2", "Quiet", announce=False)
    assert name == "Quiet" and quiet.take()[-1].startswith("[SYSTEM] Welcome, Quiet!")
    room.leave(quiet)
    assert ann.take() == ["[SYSTEM] Welcome, Ann! 0 other user(s) online. Type /help for commands."]


def test_a_name_back_within_the_grace_is_not_announced_however_often_it_reconnects(clock):
    # Before: one address reconnecting made everyone read thousands of notices.
    room = Room(rejoin_grace_s=5, clock=clock)
    ann = FakeMember()
    room.join(ann, "User_1", "Ann")
    ann.take()
    for _ in range(5):
        bob = FakeMember()
        room.join(bob, "User_2", "Bob")
        clock.advance(1)
        room.leave(bob)
        clock.advance(4.9)
        room.announce_due_leaves()
    assert ann.take() == ["[SYSTEM] Bob joined the chat!"]
    clock.advance(0.1)
    room.announce_due_leaves()
    assert ann.take() == ["[SYSTEM] Bob left the chat."]
    room.join(FakeMember(), "User_2", "bob")  # the same name, whatever its case, after its leave was told
    assert ann.take() == ["[SYSTEM] bob joined the chat!"]


def test_without_a_grace_a_leave_is_announced_at_once(room):
    ann, bob = FakeMember(), FakeMember()
    room.join(ann, "User_1", "Ann")
    room.join(bob, "User_2", "Bob")
    ann.take()
    room.leave(bob)
    assert ann.take() == ["[SYSTEM] Bob left the chat."]


def test_leaves_still_in_their_grace_are_not_announced_after_the_room_closes(clock):
    room = Room(rejoin_grace_s=5, clock=clock)
    ann, bob = FakeMember(), FakeMember()
    room.join(ann, "User_1", "Ann")
    room.join(bob, "User_2", "Bob")
    room.leave(bob)
    room.close("[SYSTEM] Server is shutting down.")
    ann.take()
    clock.advance(5)
    room.announce_due_leaves()
    assert ann.take() == []


def test_a_member_that_says_quit_is_not_coming_back_so_its_leave_is_told_at_once(clock):
    room = Room(rejoin_grace_s=5, clock=clock)
    ann, bob = FakeMember(), FakeMember()
    room.join(ann, "User_1", "Ann")
    room.join(bob, "User_2", "Bob")
    ann.take()
    handle_line(room, bob, "/quit")
    assert bob.take()[-1] == "[SYSTEM] Goodbye!" and bob.quit_called
    assert ann.take() == []  # told once the connection has given back its seat: when it leaves
    room.leave(bob)  # as the connection does once it closes
    assert ann.take() == ["[SYSTEM] Bob left the chat."]
    clock.advance(5)
    room.announce_due_leaves()
    assert ann.take() == []


def test_leaves_still_in_their_grace_can_all_be_announced_at_once_as_the_server_stops(clock):
    room = Room(rejoin_grace_s=5, clock=clock)
    ann, bob, cat = FakeMember(), FakeMember(), FakeMember()
    for member, name in ((ann, "Ann"), (bob, "Bob"), (cat, "Cat")):
        room.join(member, "User_1", name)
    room.leave(bob)
    room.leave(cat)
    ann.take()
    room.announce_due_leaves(all_now=True)
    assert ann.take() == ["[SYSTEM] Bob left the chat.\n[SYSTEM] Cat left the chat."]  # in one step


def member_from(address: str) -> FakeMember:
    member = FakeMember()
    member.address = address
    return member


def test_someone_else_taking_a_name_in_its_grace_is_told_apart_from_its_owner_coming_back(clock):
    # The leave is told first, then the join: nobody can slip into a name unseen.
    room = Room(rejoin_grace_s=5, clock=clock)
    ann = member_from("10.0.0.1")
    room.join(ann, "User_1", "Ann")
    alice = member_from("10.0.0.2")
    room.join(alice, "User_2", "Alice")
    room.leave(alice)
    back = member_from("10.0.0.2")
    room.join(back, "User_3", "Alice")  # her own address: she is back
    assert ann.take()[1:] == ["[SYSTEM] Alice joined the chat!"]  # her first join, and nothing after
    room.leave(back)
    impostor = member_from("10.0.0.9")
    room.join(impostor, "User_4", "Alice")
    assert ann.take() == ["[SYSTEM] Alice left the chat.\n[SYSTEM] Alice joined the chat!"]
    assert not any("left" in line for line in impostor.take())


def test_renaming_into_a_name_in_its_grace_tells_its_leave_first(clock):
    room = Room(rejoin_grace_s=5, clock=clock)
    ann, bob, cat = member_from("10.0.0.1"), member_from("10.0.0.2"), member_from("10.0.0.3")
    for member, name in ((ann, "Ann"), (bob, "Bob"), (cat, "Cat")):
        room.join(member, "User_1", name)
    room.leave(bob)
    ann.take()
    handle_line(room, cat, "/nick Bob")
    assert ann.take() == ["[SYSTEM] Bob left the chat.\n[SYSTEM] Cat is now known as Bob"]
    clock.advance(5)
    room.announce_due_leaves()
    assert ann.take() == []  # told once, not again when the grace is over


def test_a_member_that_joined_quietly_and_spoke_is_told_leaving(room):
    ann, quiet, silent = FakeMember(), FakeMember(), FakeMember()
    room.join(ann, "User_1", "Ann")
    room.join(quiet, "User_2", "Quiet", announce=False)
    room.join(silent, "User_3", "Silent", announce=False)
    room.say(quiet, "Quiet: hello")
    room.leave(quiet)
    room.leave(silent)
    assert ann.take()[-2:] == ["Quiet: hello", "[SYSTEM] Quiet left the chat."]  # Silent left no trace


def test_renaming_into_ones_own_name_in_its_grace_is_no_return_either(clock):
    room = Room(rejoin_grace_s=5, clock=clock)
    ann, bob = member_from("10.0.0.1"), member_from("10.0.0.2")
    room.join(ann, "User_1", "Ann")
    room.join(bob, "User_2", "Bob")
    room.leave(bob)
    again = member_from("10.0.0.2")
    room.join(again, "User_3", None)  # back under its default name, from the same address
    ann.take()
    handle_line(room, again, "/nick Bob")
    assert ann.take() == ["[SYSTEM] Bob left the chat.\n[SYSTEM] User_3 is now known as Bob"]


def test_a_newcomer_is_not_told_of_joins_its_welcome_counted_for_as_long_as_they_may_take():
    now = [0.0]
    counted = CountedAtWelcome(lambda: now[0], wait_s=10)
    counted.add(1, {"ann", "bob"})
    counted.add(2, {"ann"})
    assert counted.joined("ANN") == {1, 2}  # both counted her: neither is told
    assert counted.joined("Ann") == set()  # she left and came back: that is news
    counted.left("bob")
    assert counted.joined("Bob") == set()
    counted.add(3, {"cy"})
    now[0] = 10.0
    assert counted.joined("cy") == set()  # too late to be that join's notice: told


def test_what_welcomes_counted_is_remembered_up_to_a_bound_and_a_rename_frees_the_old_name():
    counted = CountedAtWelcome(lambda: 0.0, wait_s=10, max_names=3)
    counted.add(1, {"ann", "bob"})
    counted.add(2, {"cy", "dee"})  # past the bound: not remembered, so it will hear of their joins
    assert counted.joined("Dee") == set()
    counted.left("Ann")  # Ann renamed herself: someone new may take her name
    assert counted.joined("Ann") == set()
    assert counted.joined("Bob") == {1}


def test_in_a_shared_room_a_join_notice_skips_the_newcomers_whose_welcome_counted_that_name():
    class Bus:
        online = ["Ann"]

        def names(self):
            return self.online

        def claim(self, name):
            return True

        def describe(self, name, address, operator):
            pass

        def publish(self, lines, origin, when, log_it):
            return True  # comes back through deliver(), as from the stream

    room = Room(bus=Bus())
    ann, bob = FakeMember(), FakeMember()
    room.join(ann, "User_1", "Ann")
    Bus.online = ["Ann", "Bob", "Cy"]  # Cy claimed the name on another server; its notice is on the way
    room.join(bob, "User_2", "Bob")
    assert bob.take()[-1].startswith("[SYSTEM] Welcome, Bob! 2 other user(s) online.")
    ann.take()
    room.deliver(["[SYSTEM] Cy joined the chat!"], None, 0.0, joined="Cy")
    assert bob.take() == []
    assert ann.take() == ["[SYSTEM] Cy joined the chat!"]


def test_a_deferred_flush_block_within_another_flushes_at_the_end_of_the_outer_one(room):
    ann, bob = join(room, "Ann"), join(room, "Bob")
    ann.take()
    flushes = recording_flushes(bob)
    with room.deferred_flushes():
        with room.deferred_flushes():
            handle_line(room, ann, "one")
        assert flushes == []
        handle_line(room, ann, "two")
    assert flushes == [[b"Ann: one\n", b"Ann: two\n"]]
    handle_line(room, ann, "three")  # outside any block: at once
    assert flushes[-1] == [b"Ann: three\n"]
