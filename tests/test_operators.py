"""Operators and their orders, with members that record what they are sent: no sockets."""

import logging

import pytest

from chat.core import messages
from chat.core.commands import COMMANDS, handle_line
from chat.core.flood import FloodControl
from chat.core.moderation import CONSOLE_NAME, MAX_BANS, Moderation, Order, OrderKind, timed
from chat.core.password import FailureTracker, OperatorPassword
from chat.core.room import Room
from chat.core.session import Session
from tests.helpers import FakeClock
from tests.test_room_and_commands import FakeMember
from tests.test_session import FakeTransport, heard

OP_PASSWORD = "let-me-moderate"


@pytest.fixture
def wall():
    """Wall-clock time for bans and mutes, moved by the test."""
    clock = FakeClock()
    clock.now = 1_800_000_000.0
    return clock


@pytest.fixture
def room(wall):
    failures = FailureTracker(clock=FakeClock())
    return Room(moderation=Moderation(clock=wall), operator_password=OperatorPassword(OP_PASSWORD, failures))


def join(room, name, address="203.0.113.1"):
    """A member in the room; everyone's lines so far are taken, so that each test sees only what it does."""
    member = FakeMember()
    member.address = address
    room.join(member, "User_1", name)
    for someone in [*getattr(room, "test_members", []), member]:
        someone.take()
    room.test_members = [*getattr(room, "test_members", []), member]
    return member


def lines_of(member):
    return [line for block in member.take() for line in block.split("\n")]


def op(room, name, address="203.0.113.1"):
    member = join(room, name, address)
    handle_line(room, member, f"/op {OP_PASSWORD}")
    assert lines_of(member) == ["[SYSTEM] You are now an operator. Type /help to see the operator commands."]
    return member


class Console(FakeMember):
    """The server's console, as chat.console makes it: an operator that is no member."""

    def __init__(self):
        super().__init__()
        self.name = CONSOLE_NAME
        self.member_id = 0
        self.operator = True
        self.console = True


# -- becoming an operator -------------------------------------------------------


def test_the_operator_password_makes_a_member_an_operator_and_deop_undoes_it(room):
    ann = op(room, "Ann")
    assert ann.operator
    handle_line(room, ann, "/deop")
    assert lines_of(ann) == ["[SYSTEM] You are no longer an operator."]
    assert not ann.operator


def test_a_wrong_operator_password_is_refused_slowed_down_and_never_logged(room, caplog):
    caplog.set_level(logging.DEBUG)
    ann = join(room, "Ann")
    handle_line(room, ann, "/op guess-one")
    assert lines_of(ann) == ["[ERROR] Wrong operator password."]
    handle_line(room, ann, "/op guess-two")
    assert lines_of(ann) == ["[ERROR] Wrong operator password."]
    assert ann.pauses == [1.0]  # the second try waited its turn, as room passwords do
    assert not ann.operator
    assert "Ann (from 203.0.113.1) gave a wrong operator password" in caplog.text
    assert "guess" not in caplog.text


def test_without_an_operator_password_only_the_console_is_an_operator(wall):
    room = Room(moderation=Moderation(clock=wall))
    ann = join(room, "Ann")
    handle_line(room, ann, "/op anything")
    assert lines_of(ann) == ["[ERROR] This server has no operator password (--op-password)."]


@pytest.mark.parametrize("command", ["kick Bob", "ban Bob", "bans", "unban Bob", "mute Bob", "unmute Bob", "topic hi", "deop"])
def test_operator_commands_are_refused_to_other_members_and_nothing_happens(room, command):
    ann, bob = join(room, "Ann"), join(room, "Bob")
    handle_line(room, ann, f"/{command}")
    name = command.split()[0]
    assert lines_of(ann) == [f"[ERROR] Only operators can use /{name}."]
    assert lines_of(bob) == [] and not bob.quit_called
    assert room.moderation.topic == ""


def test_say_is_for_the_console_alone(room):
    ann = op(room, "Ann")
    handle_line(room, ann, "/say hello")
    assert lines_of(ann) == ["[ERROR] Only the server's console can use /say."]


def test_help_lists_the_operator_commands_only_to_operators(room):
    bob = join(room, "Bob")
    handle_line(room, bob, "/help")
    assert not any("/kick" in line for line in lines_of(bob))
    ann = op(room, "Ann")
    handle_line(room, ann, "/help")
    shown = lines_of(ann)
    for name in ("kick", "ban", "bans", "unban", "mute", "unmute", "topic", "deop"):
        assert any(line.startswith(f"[SYSTEM] /{name}") for line in shown), name
    assert not any(line.startswith("[SYSTEM] /say") for line in shown)


def test_the_console_gets_the_operator_commands_and_say_but_no_member_commands(room):
    console = Console()
    handle_line(room, console, "/help")
    shown = lines_of(console)
    assert any(line.startswith("[SYSTEM] /say TEXT") for line in shown)
    assert not any(line.startswith(("[SYSTEM] /nick", "[SYSTEM] /msg", "[SYSTEM] /me ", "[SYSTEM] /op ")) for line in shown)
    handle_line(room, console, "/nick Boss")
    assert lines_of(console) == ["[ERROR] /nick is for members of the chat, not the console."]


def test_users_marks_operators_with_an_at_sign(room):
    op(room, "Ann")
    bob = join(room, "Bob")
    handle_line(room, bob, "/users")
    assert lines_of(bob) == ["[SYSTEM] Online (2): @Ann, Bob"]


# -- kicks ------------------------------------------------------------------------


def test_a_kick_removes_the_member_and_tells_everyone_who_and_why(room):
    ann, bob, cat = op(room, "Ann"), join(room, "Bob"), join(room, "Cat")
    handle_line(room, ann, "/kick bob stop spamming")
    assert lines_of(bob) == ["[SYSTEM] You were removed by Ann: stop spamming"]
    assert bob.quit_called
    assert lines_of(cat) == ["[SYSTEM] Bob was removed by Ann: stop spamming"]
    assert lines_of(ann) == ["[SYSTEM] Bob was removed by Ann: stop spamming"]
    assert room.names() == ["Ann", "Cat"]
    room.leave(bob)  # its connection ends: nobody hears that it left, the notice said why
    assert lines_of(cat) == []


def test_a_kick_without_a_reason_ends_with_a_full_stop(room):
    ann, bob = op(room, "Ann"), join(room, "Bob")
    handle_line(room, ann, "/kick Bob")
    assert lines_of(bob) == ["[SYSTEM] You were removed by Ann."]


@pytest.mark.parametrize(
    "line, reply",
    [
        ("/kick", "[ERROR] Usage: /kick NAME [reason]"),
        ("/kick Nobody", "[ERROR] No user named Nobody is online."),
        ("/kick ann", "[ERROR] You cannot kick yourself."),
        ("/ban Zed 99999999", "[ERROR] Minutes are a whole number from 0 to 527040 (a year); 0 lasts until lifted."),
        ("/unban", "[ERROR] Usage: /unban ADDRESS|NAME"),
        ("/unban 198.51.100.9", "[ERROR] No ban on 198.51.100.9. Type /bans for the list."),
        ("/unmute Zed", "[ERROR] Zed is not muted."),
    ],
)
def test_a_mistaken_order_gets_one_error_line_and_nothing_happens(room, line, reply):
    ann, zed = op(room, "Ann"), join(room, "Zed", "198.51.100.7")
    handle_line(room, ann, line)
    assert lines_of(ann) == [reply]
    assert lines_of(zed) == [] and not zed.quit_called


def test_operators_cannot_act_on_one_another_but_the_console_can(room):
    ann, bob = op(room, "Ann"), op(room, "Bob", "198.51.100.7")
    for command in ("kick", "ban", "mute"):
        handle_line(room, ann, f"/{command} Bob")
        assert lines_of(ann) == [f"[ERROR] Bob is an operator: only the server's console can {command} an operator."]
    assert not bob.quit_called
    handle_line(room, Console(), "/kick Bob enough")
    assert lines_of(bob)[-1] == "[SYSTEM] You were removed by Server: enough"


# -- bans -------------------------------------------------------------------------


def test_a_ban_removes_the_member_and_refuses_its_address_for_an_hour_by_default(room, wall):
    ann, bob = op(room, "Ann"), join(room, "Bob", "198.51.100.7")
    handle_line(room, ann, "/ban Bob flooding")
    assert lines_of(bob) == ["[SYSTEM] You were removed by Ann and banned for 60 minutes: flooding"]
    assert bob.quit_called
    assert lines_of(ann) == ["[SYSTEM] Bob was removed by Ann and banned for 60 minutes: flooding"]
    ban = room.moderation.ban_on("198.51.100.7")
    assert (ban.name, ban.by, ban.reason, ban.minutes_left(wall())) == ("Bob", "Ann", "flooding", 60)
    assert room.moderation.ban_on("198.51.100.8") is None
    wall.advance(3600)
    assert room.moderation.ban_on("198.51.100.7") is None  # over


def test_a_ban_of_zero_minutes_lasts_until_lifted(room, wall):
    ann, bob = op(room, "Ann"), join(room, "Bob", "198.51.100.7")
    handle_line(room, ann, "/ban Bob 0")
    assert lines_of(bob) == ["[SYSTEM] You were removed by Ann and banned until an operator lifts it."]
    wall.advance(10 * 365 * 86400)
    assert room.moderation.ban_on("198.51.100.7") is not None


def test_loopback_cannot_be_banned(room):
    ann, bob = op(room, "Ann"), join(room, "Bob", "127.0.0.1")
    handle_line(room, ann, "/ban Bob")
    assert lines_of(ann) == [
        "[ERROR] Bob connects from this machine, whose address every local client shares: it cannot be banned. Use /kick or /mute."
    ]
    assert not bob.quit_called and room.moderation.bans() == []


def test_a_ban_on_a_shared_address_waits_for_the_operator_to_repeat_it(room):
    ann = op(room, "Ann")
    bob, cat, dan = (join(room, name, "198.51.100.7") for name in ("Bob", "Cat", "Dan"))
    handle_line(room, ann, "/ban Bob 5 spam")
    assert lines_of(ann) == [
        "[SYSTEM] Bob shares an address with 2 other members online (Cat, Dan): "
        "the ban would refuse them too when they next connect. Repeat the command to ban it."
    ]
    assert not bob.quit_called and room.moderation.bans() == []
    handle_line(room, ann, "/users")  # anything else in between: the warning must be seen again
    handle_line(room, ann, "/ban Bob 5 spam")
    assert "Repeat the command" in lines_of(ann)[-1]
    handle_line(room, ann, "/ban Bob 5 spam")
    assert bob.quit_called
    assert lines_of(cat) == ["[SYSTEM] Bob was removed by Ann and banned for 5 minutes: spam"]
    assert not cat.quit_called and not dan.quit_called  # they stay, until they reconnect


def test_bans_lists_each_ban_and_unban_lifts_one_by_name_or_address(room, wall):
    ann = op(room, "Ann")
    bob, cat = join(room, "Bob", "198.51.100.7"), join(room, "Cat", "2001:db8::/64")
    handle_line(room, ann, "/ban Bob 30 spam")
    handle_line(room, ann, "/ban Cat 0")
    wall.advance(60)
    lines_of(ann)
    handle_line(room, ann, "/bans")
    assert lines_of(ann) == [
        "[SYSTEM] Bans (2):",
        "[SYSTEM]   198.51.100.7  Bob: spam (29 minutes left, by Ann)",
        "[SYSTEM]   2001:db8::/64  Cat: no reason given (until lifted, by Ann)",
    ]
    handle_line(room, ann, "/unban bob")
    handle_line(room, ann, "/unban 2001:db8::/64")
    assert lines_of(ann) == ["[SYSTEM] The ban on Bob was lifted by Ann.", "[SYSTEM] The ban on Cat was lifted by Ann."]
    handle_line(room, ann, "/bans")
    assert lines_of(ann) == ["[SYSTEM] No bans."]


def test_bans_are_capped(wall):
    moderation = Moderation(clock=wall, max_bans=2)
    room = Room(moderation=moderation, operator_password=OperatorPassword(OP_PASSWORD, FailureTracker()))
    ann = op(room, "Ann")
    for number in range(3):
        join(room, f"U{number}", f"198.51.100.{number + 1}")
        handle_line(room, ann, f"/ban U{number}")
    assert lines_of(ann)[-1] == "[ERROR] There are too many bans: lift some with /unban first."
    assert len(moderation.bans()) == 2
    assert MAX_BANS == 1000


# -- mutes and the topic ------------------------------------------------------------


def session_of(room, name, address="198.51.100.7"):
    transport = FakeTransport()
    session = Session(room, transport, "User_2", FloodControl(0), 1.0, 1024, 1 << 20, address=address)
    session.receive([f"/nick {name}".encode()])
    transport.take()
    for someone in getattr(room, "test_members", []):
        someone.take()
    return session, transport


def test_a_muted_member_is_refused_and_nobody_hears_it_until_unmuted(room, wall):
    ann = op(room, "Ann")
    bob, bob_sees = session_of(room, "Bob")
    handle_line(room, ann, "/mute Bob")
    assert lines_of(ann) == ["[SYSTEM] Bob was muted by Ann for 10 minutes."]
    assert bob_sees.take() == ["[SYSTEM] Bob was muted by Ann for 10 minutes."]
    wall.advance(61)
    bob.receive([b"hello?", b"/me waves", b"/msg Ann psst", b"/nick Robert", b"/users"])
    muted = "[ERROR] You are muted for 9 more minutes."
    assert bob_sees.take() == [muted] * 4 + ["[SYSTEM] Online (2): @Ann, Bob"]
    assert lines_of(ann) == []
    handle_line(room, ann, "/unmute bob")
    assert lines_of(ann) == ["[SYSTEM] Bob was unmuted by Ann."]
    bob.receive([b"thanks"])
    assert lines_of(ann) == ["Bob: thanks"]


def test_a_mute_ends_by_itself(room, wall):
    ann = op(room, "Ann")
    bob, bob_sees = session_of(room, "Bob")
    handle_line(room, ann, "/mute Bob 1")
    wall.advance(59)
    bob.receive([b"now?"])
    assert bob_sees.take()[-1] == "[ERROR] You are muted for 1 more minute."
    wall.advance(1)
    bob.receive([b"now!"])
    assert lines_of(ann)[-1] == "Bob: now!"


def test_the_topic_is_told_to_everyone_and_shown_after_every_welcome(room):
    ann, bob = op(room, "Ann"), join(room, "Bob")
    handle_line(room, ann, "/topic Homework is due Friday")
    assert lines_of(bob) == ["[SYSTEM] Ann set the topic: Homework is due Friday"]
    cat = FakeMember()
    room.join(cat, "User_1", "Cat")
    assert lines_of(cat)[-2:] == [
        "[SYSTEM] Welcome, Cat! 2 other user(s) online. Type /help for commands.",
        "[SYSTEM] Topic: Homework is due Friday",
    ]
    handle_line(room, ann, "/topic")
    assert lines_of(bob)[-1] == "[SYSTEM] Ann cleared the topic."
    dan = FakeMember()
    room.join(dan, "User_1", "Dan")
    assert lines_of(dan)[-1].startswith("[SYSTEM] Welcome, Dan!")


def test_the_console_speaks_as_system(room):
    bob = join(room, "Bob")
    handle_line(room, Console(), "/say The room closes at five.")
    assert lines_of(bob) == ["[SYSTEM] The room closes at five."]


def test_a_chat_line_that_imitates_an_operator_notice_stays_that_members_chat_line(room):
    mallory, bob = join(room, "Mallory"), join(room, "Bob")
    handle_line(room, mallory, "[SYSTEM] Bob was removed by Ann: spam")
    handle_line(room, mallory, "/me [SYSTEM] You were removed by Ann.")
    heard = lines_of(bob)
    assert heard == ["Mallory: [SYSTEM] Bob was removed by Ann: spam", "* Mallory [SYSTEM] You were removed by Ann."]
    assert [messages.classify(line)[0] for line in heard] == [messages.Kind.CHAT, messages.Kind.ACTION]
    assert not bob.quit_called


def test_orders_read_as_their_notices():
    ban = timed(OrderKind.BAN, "Ann", "Bob", 1, now=0.0, reason="spam", address="198.51.100.7")
    assert ban.notice() == "[SYSTEM] Bob was removed by Ann and banned for 1 minute: spam"
    assert ban.farewell() == "[SYSTEM] You were removed by Ann and banned for 1 minute: spam"
    assert Order(OrderKind.MUTE, "Ann", "Bob").notice() == "[SYSTEM] Bob was muted by Ann until an operator unmutes."
    assert "ban" in COMMANDS and COMMANDS["ban"].operator and not COMMANDS["users"].operator


def test_too_many_wrong_operator_passwords_get_an_answer_of_their_own(wall):
    failures = FailureTracker(clock=FakeClock(), max_delay_s=1.0)
    room = Room(moderation=Moderation(clock=wall), operator_password=OperatorPassword(OP_PASSWORD, failures))
    ann = join(room, "Ann")
    answers = []
    for _ in range(4):
        handle_line(room, ann, "/op nope")
        answers += lines_of(ann)
    # Not the room password's line, which clients take as "the room refused you".
    assert answers[-1] == "[ERROR] Too many wrong operator passwords from your address. Try again in a minute."


@pytest.mark.parametrize("line", ["/ban Zed ² x", "/mute Zed ①", "/mute Zed -1", "/ban Zed 1e9 spam", "/mute Zed 5m", "/ban Zed ٣"])
def test_minutes_that_are_no_whole_number_are_refused_not_guessed(room, line):
    ann, zed = op(room, "Ann"), join(room, "Zed", "198.51.100.7")
    handle_line(room, ann, line)
    assert lines_of(ann) == ["[ERROR] Minutes are a whole number from 0 to 527040 (a year); 0 lasts until lifted."]
    assert lines_of(zed) == [] and room.moderation.mute_on("Zed") is None and room.moderation.bans() == []


def test_a_mute_takes_no_reason(room):
    ann, zed = op(room, "Ann"), join(room, "Zed", "198.51.100.7")
    handle_line(room, ann, "/mute Zed 5 for spamming")
    assert lines_of(ann) == ["[ERROR] Usage: /mute NAME [minutes]"]
    assert room.moderation.mute_on("Zed") is None


def test_unban_takes_an_address_however_it_is_written(room):
    ann = op(room, "Ann")
    join(room, "Bob", "198.51.100.7"), join(room, "Cat", "2001:db8::/64")
    handle_line(room, ann, "/ban Bob")
    handle_line(room, ann, "/ban Cat")
    lines_of(ann)
    handle_line(room, ann, "/unban ::ffff:198.51.100.7")
    handle_line(room, ann, "/unban 2001:db8::5")  # one address of the banned /64
    assert lines_of(ann) == ["[SYSTEM] The ban on Bob was lifted by Ann.", "[SYSTEM] The ban on Cat was lifted by Ann."]


def test_an_operator_password_typed_after_a_space_is_still_a_command_and_never_said(room):
    ann, bob = join(room, "Ann"), join(room, "Bob")
    handle_line(room, ann, f"  /op {OP_PASSWORD}")
    assert lines_of(ann) == ["[SYSTEM] You are now an operator. Type /help to see the operator commands."]
    assert lines_of(bob) == []
    handle_line(room, bob, " /me waves")  # other commands after a space are chat, as before
    assert lines_of(ann) == ["Bob:  /me waves"]


def test_a_client_banned_after_it_connected_is_refused_when_it_would_join(room, wall):
    room.moderation.apply(timed(OrderKind.BAN, "Ann", "Bob", 5, wall(), reason="spam", address="198.51.100.7"))
    transport = FakeTransport()
    late = Session(room, transport, "User_2", FloodControl(0), 1.0, 1024, 1 << 20, address="198.51.100.7")
    assert not late.receive([b"/nick Bob2"])
    assert transport.take() == ["[SYSTEM] You are banned from this chat for 5 more minutes: spam"]
    assert room.names() == []


def test_a_wait_for_an_operator_password_check_holds_back_none_of_the_lines_before_it(wall):
    failures = FailureTracker(first_delay_s=0.01)
    room = Room(moderation=Moderation(clock=wall), operator_password=OperatorPassword(OP_PASSWORD, failures))
    ann = join(room, "Ann")
    mal, _ = session_of(room, "Mal")
    heard_while_waiting = []
    real_wait = mal._quitting.wait

    def wait(seconds):
        heard_while_waiting.extend(lines_of(ann))
        return real_wait(seconds)

    mal._quitting.wait = wait
    mal.receive([b"hello everyone", b"/op a", b"/op b"])
    assert heard_while_waiting == ["Mal: hello everyone"]


def test_the_operator_password_is_guessed_in_room_wide_turns_from_the_first_failure(wall):
    guesses = FakeClock()
    failures = FailureTracker(room_rate=2.0, guessing_after_failures=1, clock=guesses)
    crowd = [f"198.51.100.{n}" for n in range(1, 7)]
    for address in crowd:
        failures.failed(address)
    waits = [failures.wait_before_check(address) for address in crowd]
    # Each waits a second after its failure, and they take the room's turns, two a second.
    assert waits == [1.0, 1.0, 1.0, 1.5, 2.0, 2.5]
    assert failures.wait_before_check("203.0.113.9") == 0.0  # an address that never failed is not held up
