"""A session, from its first line to its last, with a fake transport and a clock the test moves: no sockets."""

import pytest

from chat.config import Limits, Timings
from chat.core.flood import FloodControl
from chat.core.framing import LineTooLong
from chat.core.password import FailureTracker, PasswordGate
from chat.core.room import Room
from chat.core.session import Session, Stage
from tests.test_room_and_commands import FakeMember


class FakeTransport:
    """Records the lines the session's member gets, as they would be sent."""

    def __init__(self) -> None:
        self.sent: "list[str]" = []
        self._queued: "list[bytes]" = []
        self.closed = False
        self.backlog_bytes = 0

    def queue(self, data: bytes) -> bool:
        self._queued.append(data)
        return True

    def queue_private(self, data: bytes) -> "bool | None":
        return self.queue(data)

    def flush(self) -> None:
        for data in self._queued:
            self.sent += data.decode().splitlines()
        self._queued.clear()

    def close(self) -> None:
        self.closed = True

    def wait_until_below(self, max_backlog: int, timeout: float) -> bool:
        return True

    def take(self) -> "list[str]":
        lines, self.sent = self.sent, []
        return lines


def heard(member: FakeMember) -> "list[str]":
    """The lines ``member`` got since last asked, one per line (a batch arrives as one block)."""
    return [line for block in member.take() for line in block.split("\n")]


@pytest.fixture
def room():
    return Room()


def start_session(room, clock, limits=Limits(), timings=Timings(), password=None, connected_at=None) -> "tuple[Session, FakeTransport]":
    transport = FakeTransport()
    gate = PasswordGate(password, FailureTracker(clock=clock), "10.0.0.1") if password else None
    flood = FloodControl(limits.max_rate, clock=clock)
    session = Session(
        room, transport, "User_5000", flood, timings.first_line_wait_s, limits.max_line_bytes, limits.max_queue_bytes, gate, clock, connected_at
    )
    return session, transport


def test_a_client_that_says_nothing_joins_under_its_default_name_after_the_first_line_wait(room, clock):
    session, transport = start_session(room, clock)
    assert session.seconds_until_due() == Timings().first_line_wait_s == 1.0
    clock.advance(0.99)
    assert session.on_due() and session.stage is Stage.NAMING
    clock.advance(0.01)
    assert session.on_due() and session.stage is Stage.CHATTING
    assert session.name == "User_5000"
    assert transport.take()[-1].startswith("[SYSTEM] Welcome, User_5000! ")


def test_the_first_line_wait_counts_from_the_connection_not_from_when_its_kind_was_known(room, clock):
    # A raw client is known as one by its first bytes, or by saying nothing at all.
    connected_at = clock()
    clock.advance(0.6)
    session, _ = start_session(room, clock, connected_at=connected_at)
    assert session.seconds_until_due() == pytest.approx(0.4)
    clock.advance(0.4)
    assert session.on_due() and session.stage is Stage.CHATTING


def test_a_nick_sent_half_a_second_after_connecting_is_honoured(room, clock):
    # The default wait is long enough for a person's client on a slow network.
    session, transport = start_session(room, clock)
    clock.advance(0.5)
    assert session.on_due()
    assert session.receive([b"/nick Zed"])
    assert session.name == "Zed"
    assert transport.take()[-1].startswith("[SYSTEM] Welcome, Zed! ")


def test_a_first_line_that_is_no_nick_is_said_once_joined_under_the_default_name(room, clock):
    other = FakeMember()
    room.join(other, "User_1", "Ann")
    other.take()
    session, _ = start_session(room, clock)
    assert session.receive([b"hello", b"/nick Zed"])
    assert heard(other) == ["[SYSTEM] User_5000 joined the chat!", "User_5000: hello", "[SYSTEM] User_5000 is now known as Zed"]


def test_whitespace_only_lines_cost_no_flood_allowance(room, clock):
    other = FakeMember()
    room.join(other, "User_1", "Ann")
    session, transport = start_session(room, clock, Limits(max_rate=1))  # a burst of two lines
    session.receive([b"/nick Bob"])
    other.take()
    assert session.receive([b"   ", b"\t", b" \r", b"one", b"", b"  ", b"two"])
    assert heard(other) == ["Bob: one", "Bob: two"]
    assert not [line for line in transport.take() if "too fast" in line]


def test_a_line_too_long_is_refused_with_the_limit_and_the_next_line_is_said(room, clock):
    other = FakeMember()
    room.join(other, "User_1", "Ann")
    session, transport = start_session(room, clock)
    session.receive([b"/nick Bob"])
    other.take()
    transport.take()
    assert session.receive([LineTooLong(4096), b"short"])
    assert transport.take() == ["[SYSTEM] Line too long: the limit is 4096 bytes. It was not sent."]
    assert heard(other) == ["Bob: short"]


def test_with_a_password_the_first_line_must_give_it_and_a_nick_may_follow(room, clock):
    session, transport = start_session(room, clock, password="sesame")
    assert session.receive([b"/pass sesame"])
    assert session.stage is Stage.NAMING
    clock.advance(0.5)
    assert session.on_due()
    assert session.receive([b"/nick Zed"])
    assert session.name == "Zed"


@pytest.mark.parametrize("first_line", [b"/pass wrong", b"hello", b"/nick Zed", LineTooLong(4096)])
def test_a_wrong_or_missing_password_gets_one_line_and_the_end(room, clock, first_line):
    session, transport = start_session(room, clock, password="sesame")
    assert not session.receive([first_line, b"/nick Zed"])
    wrong = first_line == b"/pass wrong"
    assert transport.take() == ["[ERROR] Wrong password." if wrong else "[SYSTEM] This chat needs a password: send /pass PASSWORD first."]
    assert session.stage is Stage.ENDED
    assert room.names_here() == []


def test_a_client_that_gives_no_password_in_time_is_told_it_needs_one(room, clock):
    session, transport = start_session(room, clock, password="sesame")
    clock.advance(Timings().first_line_wait_s)
    assert not session.on_due()
    assert transport.take() == ["[SYSTEM] This chat needs a password: send /pass PASSWORD first."]


def test_quit_ends_the_session_and_closes_the_transport(room, clock):
    session, transport = start_session(room, clock)
    session.receive([b"/nick Zed"])
    assert not session.receive([b"/quit", b"never said"])
    assert transport.closed and session.ended
    assert transport.take()[-1] == "[SYSTEM] Goodbye!"
