"""A room shared through a bus, with a fake bus that stands for the other servers: no sockets, no Redis."""

from chat.core import messages
from chat.core.commands import handle_line
from chat.core.moderation import Order, Whois
from chat.core.room import Room
from chat.core.text import name_key
from tests.test_room_and_commands import FakeMember


class FakeBus:
    """Holds names and published lines as Redis would; ``reachable`` False makes every call fail."""

    def __init__(self) -> None:
        self.reachable = True
        self.held: "dict[str, str]" = {}  # name key -> name, for the whole room
        self.published: "list[tuple[list[str], int | None]]" = []
        self.private: "list[tuple[str, str, int]]" = []
        self.profiles: "dict[str, Whois]" = {}  # name key -> who holds it, for the whole room
        self.orders: "list[Order]" = []

    def publish(self, lines, origin, when, log_it=True) -> bool:
        if self.reachable:
            self.published.append((lines, origin))
        return self.reachable

    def claim(self, name):
        if not self.reachable:
            return None
        if name_key(name) in self.held:
            return False
        self.held[name_key(name)] = name
        return True

    def release(self, name) -> None:
        if self.reachable:
            self.held.pop(name_key(name), None)

    def names(self):
        return list(self.held.values()) if self.reachable else None

    def in_reach(self) -> bool:
        return self.reachable

    def send_private(self, recipient, line, origin):
        if not self.reachable or name_key(recipient) not in self.held:
            return None
        self.private.append((recipient, line, origin))
        return self.held[name_key(recipient)]

    def describe(self, name, address, operator) -> None:
        if self.reachable:
            self.profiles[name_key(name)] = Whois(name, address, operator)

    def whois(self, name):
        return self.profiles.get(name_key(name)) if self.reachable and name_key(name) in self.held else None

    def roster(self):
        return [self.profiles.get(key, Whois(name, None, False)) for key, name in self.held.items()] if self.reachable else None

    def order(self, order) -> bool:
        if self.reachable:
            self.orders.append(order)
        return self.reachable

    def hand_back(self, room) -> None:
        """What the bus thread does: deliver what was published, in order, and carry out the orders."""
        for lines, origin in self.published:
            room.deliver(lines, origin, 0.0)
        self.published.clear()
        for order in self.orders:
            room.carry_out(order)
        self.orders.clear()


def shared_room():
    bus = FakeBus()
    return Room(history_lines=10, bus=bus), bus


def joined(room, name):
    member = FakeMember()
    room.join(member, "User_1", name)
    member.take()
    return member


def test_lines_go_to_the_bus_and_reach_members_only_when_it_hands_them_back():
    room, bus = shared_room()
    ann, bob = joined(room, "Ann"), joined(room, "Bob")
    bus.hand_back(room)
    ann.take(), bob.take()
    room.say(ann, "Ann: hi")
    assert bob.take() == []  # not yet: the bus decides the order
    assert bus.published == [(["Ann: hi"], ann.member_id)]
    bus.hand_back(room)
    assert bob.take() == ["Ann: hi"]
    assert ann.take() == []  # never echoed to its sender


def test_a_name_held_on_another_server_is_refused_and_the_default_given():
    room, bus = shared_room()
    bus.held["zed"] = "Zed"  # someone on another server
    member = FakeMember()
    name, problem = room.join(member, "User_7", "ZED")
    assert (name, problem) == ("User_7", "The name ZED is taken.")
    assert bus.held["user_7"] == "User_7"


def test_leaving_and_renaming_release_names_on_the_bus():
    room, bus = shared_room()
    ann = joined(room, "Ann")
    assert room.rename(ann, "Anna") is None
    assert set(bus.held) == {"anna"}
    bus.held["bob"] = "Bob"
    assert room.rename(ann, "Bob") == "The name Bob is taken."
    assert set(bus.held) == {"anna", "bob"}
    room.leave(ann)
    assert set(bus.held) == {"bob"}


def test_users_lists_everyone_on_every_server():
    room, bus = shared_room()
    ann = joined(room, "Ann")
    bus.held["bob"] = "Bob"
    handle_line(room, ann, "/users")
    assert ann.take() == ["[SYSTEM] Online (2): Ann, Bob"]


def test_a_private_message_goes_through_the_bus_and_is_delivered_where_the_recipient_is():
    room, bus = shared_room()
    ann = joined(room, "Ann")
    bus.held["bob"] = "Bob"
    handle_line(room, ann, "/msg bob psst")
    assert bus.private == [("bob", "[PM from Ann] psst", ann.member_id)]
    assert ann.take() == ["[PM to Bob] psst"]


def test_a_refused_private_message_from_the_bus_is_reported_to_its_sender_here():
    room, bus = shared_room()
    ann, bob = joined(room, "Ann"), joined(room, "Bob")
    bus.hand_back(room)
    ann.take()
    bob.refuses_private = True
    assert room.deliver_private("Bob", "[PM from Ann] psst", ann.member_id) is False
    assert ann.take() == ["[ERROR] Bob is not keeping up with incoming messages: yours was not delivered. Try again later."]


def test_out_of_reach_the_room_carries_on_alone():
    room, bus = shared_room()
    bus.reachable = False
    ann, bob = joined(room, "Ann"), joined(room, "Bob")
    assert ann.take() == [messages.joined("Bob")]  # delivered here, at once
    room.say(ann, "Ann: still here")
    assert bob.take() == ["Ann: still here"]
    handle_line(room, ann, "/users")
    assert ann.take() == ["[SYSTEM] Online (2): Ann, Bob"]
    handle_line(room, ann, "/msg Bob psst")
    assert bob.take() == ["[PM from Ann] psst"]


def test_a_private_message_while_the_bus_is_out_of_reach_says_why_nobody_was_found():
    room, bus = shared_room()
    ann = joined(room, "Ann")
    bus.held["bob"] = "Bob"
    bus.reachable = False
    handle_line(room, ann, "/msg Bob psst")
    assert ann.take() == ["[ERROR] No user named Bob is on this server, and the other servers are out of reach."]


def test_history_from_the_bus_goes_before_what_was_said_here_since_the_server_started():
    room, bus = shared_room()
    bus.reachable = False
    ann = joined(room, "Ann")
    room.say(ann, "Ann: said here first")
    room.remember([(0.0, "Old: said before, elsewhere")])
    newcomer = FakeMember()
    room.join(newcomer, "User_2", "New")
    lines = [line for block in newcomer.take() for line in block.split("\n")]
    assert [line.partition("] ")[2] for line in lines[1:3]] == ["Old: said before, elsewhere", "Ann: said here first"]


def test_lines_from_the_bus_enter_the_history_with_their_time():
    room, bus = shared_room()
    room.remember([(0.0, "Old: from before this server started")])
    room.deliver(["Far: from another server"], None, 0.0)
    newcomer = FakeMember()
    room.join(newcomer, "User_2", "New")
    lines = [line for block in newcomer.take() for line in block.split("\n")]
    assert [line.partition("] ")[2] for line in lines[1:3]] == [
        "Old: from before this server started",
        "Far: from another server",
    ]


def test_origin_numbers_from_the_bus_leave_out_only_that_member():
    room, bus = shared_room()
    ann, bob = joined(room, "Ann"), joined(room, "Bob")
    bus.hand_back(room)
    ann.take(), bob.take()
    room.deliver(["Ann: hi"], ann.member_id, 0.0)
    room.deliver(["Zed: from afar"], None, 0.0)
    assert ann.take() == ["Zed: from afar"]
    assert bob.take() == ["Ann: hi", "Zed: from afar"]


def test_a_leave_is_not_announced_when_the_name_came_back_on_another_server_within_the_grace(clock):
    bus = FakeBus()
    room = Room(history_lines=10, bus=bus, rejoin_grace_s=5, clock=clock)
    bob, cat = joined(room, "Bob"), joined(room, "Cat")
    room.leave(bob)
    bus.claim("Bob")  # Bob reconnected through the load balancer to another server
    room.leave(cat)
    bus.published.clear()
    clock.advance(5)
    room.announce_due_leaves()
    assert bus.published == [(["[SYSTEM] Cat left the chat."], None)]
