"""The stream's entries as data to check, without Redis: what is accepted, what is skipped, and why.

Anyone who can reach the Redis server can write entries; these tests are
what such a writer may try. The same entries go through real servers in
test_bus_hostile.py.
"""

import logging

import pytest

from chat.bus.entry import (
    DEFAULT_MAX_ENTRY_BYTES,
    MAX_FIELDS,
    MAX_REASON_BYTES,
    Entry,
    Kind,
    MalformedEntry,
    UnsharableLine,
    fields_of,
    quoted,
    valid_address,
)
from chat.bus.redis_bus import SkipLog, check_url, without_password
from chat.core import messages
from chat.core.moderation import MAX_MINUTES, Order, OrderKind, timed

CHAT = {"v": "2", "s": "s1", "k": "chat", "n": "Mallory", "x": "hi", "t": "1700000000.5", "o": "0", "g": "1"}


def read(**change) -> Entry:
    """The entry of CHAT's fields changed by ``change`` (None: the field left out)."""
    fields = {key: value for key, value in {**CHAT, **change}.items() if value is not None}
    return Entry.from_fields(fields)


def problem(**change) -> str:
    with pytest.raises(MalformedEntry) as raised:
        read(**change)
    return raised.value.problem


@pytest.mark.parametrize(
    "line",
    [
        messages.chat("Ann", "hello: there"),
        messages.chat("Ann", "[SYSTEM] looks like a notice, but Ann said it"),
        messages.action("Ann", "waves"),
        messages.joined("User_51234"),
        messages.left("Bob-2"),
        messages.renamed("Bob", "Robert"),
        messages.private_from("Ann", "psst: [PM from Bob] x"),
    ],
)
def test_every_kind_of_line_a_room_publishes_goes_through_an_entry_and_comes_out_the_same(line):
    private = {"to_server": "s2", "recipient": "Bob"} if line.startswith("[PM") else {}
    entry = Entry.of_line("s1", line, 1700000000.5, **private)
    assert Entry.from_fields(entry.to_fields()).line == line


@pytest.mark.parametrize(
    "line",
    [
        messages.SHUTTING_DOWN,
        messages.system("Ann is an operator now"),
        messages.private_to("Bob", "psst"),
        messages.error("Unknown command /x."),
        messages.welcome("Ann", 3),
    ],
)
def test_a_line_no_kind_of_entry_says_is_refused_not_sent_as_text(line):
    with pytest.raises(UnsharableLine):
        Entry.of_line("s1", line, 1.0)


def test_the_text_of_an_entry_is_sanitized_as_a_clients_line_and_stays_one_line_of_its_sender():
    assert read(x="\x1b[2J\x1b]0;pwned\x07 hi\x07").line == "Mallory:  hi"
    assert read(x="one\n[SYSTEM] Server is shutting down.").line == "Mallory: one[SYSTEM] Server is shutting down."
    assert read(x="\u202eevil\u2028two").line == "Mallory: eviltwo"
    assert read(k="action", x="waves\r\n* Bob dies").line == "* Mallory waves* Bob dies"
    assert read(k="renamed", x="Mal").line == messages.renamed("Mallory", "Mal")


@pytest.mark.parametrize(
    "change, wanted",
    [
        ({"n": "SYSTEM"}, "name 'SYSTEM': The name SYSTEM is reserved."),
        ({"n": "[PM from Admin]"}, "name '[PM from Admin]': Names are 1 to 20 characters"),
        ({"n": "Ann\n[SYSTEM]"}, "name 'Ann\\n[SYSTEM]': Names are"),
        ({"k": "system"}, "kind 'system'"),
        ({"k": None}, "no kind"),
        ({"v": None}, "no version: not an entry of this format"),
        ({"v": "3"}, "version '3', not 2"),
        ({"l": "[SYSTEM] Server is shutting down."}, "a chat entry has no field 'l'"),
        ({"k": "joined"}, "a joined entry has no field 'x'"),
        ({"k": "private"}, "a private entry needs the field 'p'"),
        ({"to": "s2", "p": "Bob"}, "a chat entry has no field 'p'"),
        ({"k": "renamed", "x": "[SYSTEM] x"}, "new name '[SYSTEM] x': Names are"),
        ({"x": "\x1b[2J \x07"}, "blank text"),
        ({"x": None}, "a chat entry needs the field 'x'"),
        ({"s": "evil server"}, "server 'evil server'"),
        ({"t": "1e5e5"}, "time '1e5e5'"),
        ({"t": "inf"}, "time 'inf'"),
        ({"o": "-1"}, "origin '-1'"),
        ({"o": "1_000"}, "origin '1_000'"),
        ({"g": "yes"}, "the field 'g' is 'yes', not 0 or 1"),
        ({"n": "x" * 1000}, "name " + repr("x" * 40) + "...: Names are"),
    ],
)
def test_an_entry_that_breaks_a_rule_is_refused_saying_which(change, wanted):
    assert problem(**change).startswith(wanted)


def test_a_private_message_must_name_a_valid_recipient_and_server():
    private = {"k": "private", "to": "s2", "p": "Bob", "x": "psst"}
    entry = read(**private)
    assert (entry.line, entry.recipient, entry.to_server) == ("[PM from Mallory] psst", "Bob", "s2")
    assert problem(**{**private, "p": "Bob\x1b[2J"}).startswith("recipient 'Bob\\x1b[2J': Names are")
    assert problem(**{**private, "to": ""}) == "server ''"


def test_sizes_are_checked_before_anything_is_decoded():
    raw = [part.encode() for item in CHAT.items() for part in item]
    assert fields_of(raw) == CHAT
    too_big = raw[:-2] + [b"x", b"\xff" * DEFAULT_MAX_ENTRY_BYTES]  # not even UTF-8: never decoded
    size = sum(map(len, too_big))
    with pytest.raises(MalformedEntry, match=f"^{size} bytes, over the {DEFAULT_MAX_ENTRY_BYTES} an entry may hold$"):
        fields_of(too_big)
    with pytest.raises(MalformedEntry, match=f"^{MAX_FIELDS + 1} fields, over the {MAX_FIELDS}"):
        fields_of([b"f%d" % n for n in range(2 * (MAX_FIELDS + 1))])
    assert fields_of(raw, max_bytes=sum(map(len, raw))) == CHAT  # exactly at the limit


def test_fields_are_ascii_but_the_text_is_decoded_as_a_clients_line():
    raw = [b"v", b"2", b"x", b"caf\xc3\xa9 \xff", b"n", b"Mallory"]
    assert fields_of(raw) == {"v": "2", "x": "caf\u00e9 \ufffd", "n": "Mallory"}
    with pytest.raises(MalformedEntry, match="^the field 'n' is not ASCII: b'Mall\\\\xc3\\\\xb6ry'$"):
        fields_of([b"n", "Mallöry".encode()])
    with pytest.raises(MalformedEntry, match="^the field 'v' twice$"):
        fields_of([b"v", b"2", b"v", b"1"])


def test_a_problem_quotes_at_most_forty_characters_escaped():
    assert quoted("\x1b" * 100) == repr("\x1b" * 40) + "..."
    assert quoted(None) == "None"


def test_history_is_the_conversation_and_the_operators_orders_only():
    kept = {kind for kind in Kind if Entry("s1", kind, "Ann", 1.0, "Bob").in_history}
    assert kept == {Kind.CHAT, Kind.ACTION, Kind.RENAMED, Kind.ORDER}


# -- operators' orders ----------------------------------------------------------------------------------

BAN = {
    **{key: CHAT[key] for key in ("v", "s", "t", "o", "g")},
    "k": "order", "n": "Ann", "do": "ban", "w": "Bob", "a": "203.0.113.7", "m": "5", "u": "1700000300.5", "x": "flooding",
}


def read_order(**change) -> Order:
    """The order of BAN's fields changed by ``change`` (None: the field left out)."""
    return Entry.from_fields({key: value for key, value in {**BAN, **change}.items() if value is not None}).order


def order_problem(**change) -> str:
    with pytest.raises(MalformedEntry) as raised:
        read_order(**change)
    return raised.value.problem


NOW = 1700000000.5
ORDERS = [
    Order(OrderKind.KICK, "Ann", "Bob", "spamming links"),
    Order(OrderKind.KICK, "Server", "Bob"),
    timed(OrderKind.BAN, "Ann", "Bob", 5, NOW, reason="flooding", address="203.0.113.7"),
    timed(OrderKind.BAN, "Server", "Bob", 0, NOW, address="2001:db8:1:2::/64"),
    Order(OrderKind.UNBAN, "Ann", "Bob", address="203.0.113.7"),
    timed(OrderKind.MUTE, "Ann", "Bob", 10, NOW),
    timed(OrderKind.MUTE, "Server", "Bob", 0, NOW),
    Order(OrderKind.UNMUTE, "Ann", "Bob"),
    Order(OrderKind.TOPIC, "Ann", reason="Homework: due Friday, café at 5"),
    Order(OrderKind.TOPIC, "Ann"),
    Order(OrderKind.SAY, "Server", reason="Back in five minutes"),
]


@pytest.mark.parametrize("order", ORDERS, ids=lambda order: order.kind.value)
def test_every_kind_of_order_goes_through_an_entry_and_is_history_told_as_its_notice(order):
    entry = Entry.of_order("s1", order, NOW, number=7)
    raw = [part.encode() for item in entry.to_fields().items() for part in item]
    read = Entry.from_fields(fields_of(raw))  # as the bus reads it: within MAX_FIELDS and the size limit
    assert read.order == order and read.name == order.by and read.number == 7
    assert read.line == order.notice() and read.in_history


def test_an_orders_reason_is_sanitized_and_cut_short_by_its_giver_between_characters():
    assert read_order(x="\x1b[2Jflooding\n[SYSTEM] Server is shutting down.\x07").reason == (
        "flooding[SYSTEM] Server is shutting down."
    )
    assert read_order(x="\u202eevil").reason == "evil"
    fields = Entry.of_order("s1", Order(OrderKind.KICK, "Ann", "Bob", "é" * MAX_REASON_BYTES), NOW).to_fields()
    assert fields["x"] == "é" * (MAX_REASON_BYTES // 2)  # two bytes each
    assert Entry.from_fields(fields).order.reason == fields["x"]


@pytest.mark.parametrize(
    "change, wanted",
    [
        ({"a": "not-an-address"}, "address 'not-an-address'"),
        ({"a": "203.0.113.7/24"}, "address '203.0.113.7/24'"),
        ({"a": "2001:db8::/48"}, "address '2001:db8::/48'"),
        ({"a": "2001:DB8::/64"}, "address '2001:DB8::/64'"),  # not as address_key writes it: no ban would match
        ({"a": "fe80::1%\x1b[2J"}, "address 'fe80::1%\\x1b[2J'"),
        ({"a": "127.0.0.1"}, "a ban on '127.0.0.1': loopback cannot be banned"),
        ({"a": "::1"}, "a ban on '::1': loopback cannot be banned"),
        ({"a": None}, "a ban order needs the field 'a'"),
        ({"w": None}, "a ban order needs the field 'w'"),
        ({"w": "Bob\n[SYSTEM]"}, "member 'Bob\\n[SYSTEM]': Names are"),
        ({"w": "Server"}, "member 'Server': The name Server is reserved."),
        ({"n": "SYSTEM"}, "operator 'SYSTEM': The name SYSTEM is reserved."),
        ({"n": "[SYSTEM] Ann"}, "operator '[SYSTEM] Ann': Names are"),
        ({"do": "op"}, "order 'op'"),
        ({"do": None}, "an order entry needs the field 'do'"),
        ({"do": "kick"}, "a kick order has no field 'a'"),
        ({"do": "unmute", "a": None, "x": None}, "an unmute order has no field 'm'"),
        ({"do": "say", "w": None, "a": None, "m": None, "u": None, "x": "\x1b[2J \x07"}, "blank text"),
        ({"do": "say", "w": None, "a": None, "m": None, "u": None, "x": None}, "a say order needs the field 'x'"),
        ({"m": "0"}, "minutes '0', not 1 to 527040"),
        ({"m": str(MAX_MINUTES + 1)}, "minutes '527041', not 1 to 527040"),
        ({"m": "-5"}, "minutes '-5'"),
        ({"m": None}, "a ban or mute has minutes and an end, or neither"),
        ({"u": "inf"}, "time 'inf'"),
        ({"x": "é" * MAX_REASON_BYTES}, f"a reason of {2 * MAX_REASON_BYTES} bytes, over the {MAX_REASON_BYTES}"),
        ({"p": "Bob"}, "an order entry has no field 'p'"),
    ],
)
def test_an_order_that_breaks_a_rule_is_refused_saying_which(change, wanted):
    assert order_problem(**change).startswith(wanted)


def test_addresses_are_those_a_server_counts_clients_by():
    for address in ("203.0.113.7", "2001:db8:1:2::/64", "::1", "2001:db8::7"):
        assert valid_address(address), address
    for address in ("", "203.0.113.07", "203.0.113.7 ", "2001:db8::1/64", "2001:0db8::/64", "fe80::1%eth0", "localhost"):
        assert not valid_address(address), address


# -- logging what was skipped ------------------------------------------------------------------------


def skip_lines(caplog) -> "list[str]":
    return [record.getMessage() for record in caplog.records if "of the Redis stream" in record.getMessage()]


def test_a_flood_of_skipped_entries_is_logged_once_then_counted_now_and_then(clock, caplog):
    skips = SkipLog(every_s=60.0, clock=clock)
    for n in range(1000):
        skips.skipped(f"{n}-0", "no version: not an entry of this format")
    assert len(skip_lines(caplog)) == 1
    assert skip_lines(caplog)[0].startswith("⚠️  Skipped entry 0-0 of the Redis stream: no version: not an entry")
    clock.advance(59.9)
    skips.report_if_due()
    assert len(skip_lines(caplog)) == 1
    clock.advance(0.1)
    skips.skipped("1000-0", "kind 'system'")  # a skip itself reports, when one is due
    assert skip_lines(caplog)[1:] == ["⚠️  Skipped 1000 more entries of the Redis stream (the latest, 1000-0: kind 'system')"]
    clock.advance(600)
    skips.report_if_due()  # nothing more skipped: nothing to say
    assert len(skip_lines(caplog)) == 2
    skips.skipped("1001-0", "kind 'x'")
    assert skip_lines(caplog)[2:] == ["⚠️  Skipped 1 more entries of the Redis stream (the latest, 1001-0: kind 'x')"]
    assert all(record.levelno == logging.WARNING for record in caplog.records)


# -- passwords in URLs ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url, shown",
    [
        ("redis://:s3cret@host:6379/0", "redis://:***@host:6379/0"),
        ("rediss://chat:s3cret@host:6380/1?ssl_cert_reqs=none", "rediss://chat:***@host:6380/1?ssl_cert_reqs=none"),
        ("redis://host/0?password=s3cret&db=0", "redis://host/0?password=***&db=0"),
        ("rediss://host/0?ssl_ca_certs=/etc/ca.pem&ssl_password=s3cret", "rediss://host/0?ssl_ca_certs=/etc/ca.pem&ssl_password=***"),
        ("redis://host:6379/0", "redis://host:6379/0"),
    ],
)
def test_a_password_is_kept_out_of_what_is_shown_of_a_url(url, shown):
    assert without_password(url) == shown


def test_a_url_refused_is_quoted_without_its_password():
    with pytest.raises(ValueError) as raised:
        check_url("redis://:s3cret@host:6379/abc")
    assert "s3cret" not in str(raised.value) and "redis://:***@host:6379/abc" in str(raised.value)
