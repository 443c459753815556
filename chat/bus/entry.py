"""The entries of the shared room's Redis stream: what each field means, and what a reader accepts.

Anyone who can reach the Redis server can write to the stream, so an entry
is data to check, never a line to pass on. It carries what was said (its
kind, who said it, the text), and each server that reads it builds the line
its members see with :mod:`chat.core.messages`, as it does for its own
members. The text is sanitized as a client's line is
(:func:`chat.core.commands.clean`), and names follow the rules for a user
name (:func:`chat.core.text.name_problem`). So no entry can show up as a
notice from the server, a private message it is not, two lines, or an
escape sequence; an entry that fits none of the rules is skipped whole.
(An operator's order is the one kind of entry whose line is a notice:
see below.)

A stream entry is a flat map from field names to strings. :class:`Entry`
is the only code that writes or reads one (``to_fields``, ``from_fields``;
:func:`fields_of` first checks the size of what Redis returned and decodes
it); the rest of the bus speaks of its attributes:

======  ==================  ================================================================
Field   ``Entry``           Meaning
======  ==================  ================================================================
``v``   (``VERSION``)       ``2``: the version of this format
``s``   ``server``          the server that added the entry (its id)
``k``   ``kind``            what it says (:class:`Kind`): ``chat``, ``action``, ``joined``,
                            ``left``, ``renamed``, ``private`` or ``order``
``n``   ``name``            who said it (chat, action, private), who joined or left, or
                            the old name (renamed): a valid user name; for an order, the
                            operator who gave it: a valid user name, or ``Server`` (the
                            console's, a name no member can have)
``x``   ``text``            what was said (chat, action, private), or the new name
                            (renamed); absent from ``joined`` and ``left``. In an order,
                            its reason (kick, ban), the topic (absent: cleared) or the
                            notice (say): sanitized, and at most ``MAX_REASON_BYTES``
``t``   ``when``            when it was said, in seconds since the epoch (a float, as text)
``o``   ``origin``          the sender's member number on that server; ``0``: nobody (a notice)
``g``   ``log_it``          ``1``: the writing server logs the line when it comes back to
                            it (``0``: it logged it when it happened); the other servers
                            always log public lines
``i``   ``number``          that server's number for the entry, if it has one: how it
                            recognises an entry it already delivered itself (absent: none)
``to``  ``to_server``       a private message's only: the server of its recipient
``p``   ``recipient``       a private message's only: its recipient, by name
``e``   ``elsewhere_only``  ``1``: for the other servers only (the writer's members know)
``r``   ``about``           in a notice that a server's member left, given by another
                            server that took it for dead: that server (which skips it)
``do``  ``order.kind``      an order's only: what the operator ordered
                            (:class:`chat.core.moderation.OrderKind`: ``kick``, ``ban``,
                            ``unban``, ``mute``, ``unmute``, ``topic`` or ``say``)
``w``   ``order.name``      the member a kick, ban, unban, mute or unmute is about
``a``   ``order.address``   the address a ban or unban is about, as
                            :func:`chat.admission.address_key` makes them: an IP address,
                            or an IPv6 /64 network (never loopback, for a ban)
``m``   ``order.minutes``   how long a ban or mute lasts, 1 to ``MAX_MINUTES`` (absent:
                            until it is lifted)
``u``   ``order.until``     when it ends, in seconds since the epoch (absent: never)
======  ==================  ================================================================

Public lines, notices, private messages and operators' orders are all
entries, so that they keep one order; each entry is one line. Only chat
lines, actions, renames and orders are history, replayed to newcomers
(:attr:`Entry.in_history`): never who joined or left, nor a private message.

An order is what an operator decided (:class:`chat.core.moderation.Order`),
not a line: each server carries it out, and makes its notice from it
(:meth:`~chat.core.moderation.Order.notice`), so an order too is checked
field by field and can say no more than an operator could. But whoever can
write to the stream can give orders, as the console would: kick anyone,
ban an address, speak as ``[SYSTEM]``. Access to Redis is an operator's
power over every server sharing it. The same fields, without the stream's
own, are how the orders that last (bans, mutes, the topic) are kept in
Redis (:mod:`chat.bus.standing`): :func:`order_fields` writes them and
:func:`order_of` reads them back, for both.

The entries of version 1 (no ``v``; the lines themselves, preformatted, in
``l``) are skipped: reading them safely would mean parsing lines back into
what they say, which is what this version stops trusting. Servers of
version 1 skip (and log) each entry of this one, so the servers sharing a
room are upgraded together.
"""

import enum
import ipaddress
import math
import re
from dataclasses import dataclass

from chat.core.addresses import IPV6_PREFIX_BITS
from chat.core import messages
from chat.core.commands import clean
from chat.core.framing import DEFAULT_MAX_LINE_BYTES, decode_line
from chat.core.moderation import CONSOLE_NAME, MAX_MINUTES, Order, OrderKind
from chat.core.text import name_problem, sanitize

VERSION = "2"
# Stream entry times beyond this (the year 5138) are taken for garbage: they are shown to newcomers.
LATEST_TIME = 1e11
# A security limit. An entry holds one line and a few short fields, so
# this is room for a line four times as long as the line limit (that of
# a server whose limit is higher than the reader's, say).
DEFAULT_MAX_ENTRY_BYTES = 4 * DEFAULT_MAX_LINE_BYTES
# The longest reason, topic or notice an order carries, in bytes (UTF-8):
# as long as a line may be, by default. A longer one is cut short by the
# server that gives the order, and refused by those that read it.
MAX_REASON_BYTES = DEFAULT_MAX_LINE_BYTES
# How much of a rejected value a problem quotes (problems are logged).
_QUOTED_CHARS = 40

_SERVER_ID = re.compile(r"[0-9A-Za-z_-]{1,64}")
_NUMBER = re.compile(r"[0-9]{1,18}")
_TIME = re.compile(r"[0-9.e+-]{1,32}")


class Kind(enum.Enum):
    """What an entry says; each is made into a line by its function in :mod:`chat.core.messages`."""

    CHAT = "chat"
    ACTION = "action"
    JOINED = "joined"
    LEFT = "left"
    RENAMED = "renamed"
    PRIVATE = "private"
    ORDER = "order"  # an operator's: see chat.core.moderation


# The fields every entry has, those it may have, and those an entry of each kind has too.
_REQUIRED = {"v", "s", "k", "n", "t", "g"}
_OPTIONAL = {"o", "i", "e", "r"}
_OF_KIND = {
    Kind.CHAT: {"x"},
    Kind.ACTION: {"x"},
    Kind.JOINED: set(),
    Kind.LEFT: set(),
    Kind.RENAMED: {"x"},
    Kind.PRIVATE: {"x", "to", "p"},
    Kind.ORDER: {"do"},
}
_HISTORY = {Kind.CHAT, Kind.ACTION, Kind.RENAMED, Kind.ORDER}

# An order's own fields ("n", who gave it, is every entry's): those each
# kind of order needs, and those it may have besides.
ORDER_FIELDS = {"do", "n", "w", "x", "a", "m", "u"}
# Each kind's fields: those it needs, and all it may have.
_FIELDS_OF_KIND = {
    kind: (
        frozenset(_REQUIRED | needs),
        frozenset(_REQUIRED | needs | _OPTIONAL | (ORDER_FIELDS if kind is Kind.ORDER else set())),
    )
    for kind, needs in _OF_KIND.items()
}
_ORDER_NEEDS = {
    OrderKind.KICK: {"w"},
    OrderKind.BAN: {"w", "a"},
    OrderKind.UNBAN: {"w", "a"},
    OrderKind.MUTE: {"w"},
    OrderKind.UNMUTE: {"w"},
    OrderKind.TOPIC: set(),
    OrderKind.SAY: {"x"},
}
_ORDER_MAY = {kind: {"x"} | ({"m", "u"} if kind in (OrderKind.BAN, OrderKind.MUTE) else set()) for kind in OrderKind}

_FIELD_NAMES = _REQUIRED | _OPTIONAL | set().union(*_OF_KIND.values()) | ORDER_FIELDS
MAX_FIELDS = len(_FIELD_NAMES)  # as many as there are field names


class MalformedEntry(ValueError):
    """An entry this version does not accept, and why. Someone else's fault, or an old version's.

    ``problem`` is short and quotes at most a few dozen characters of any
    value, escaped: it is fit for a log line whatever the entry held.
    """

    def __init__(self, problem: str) -> None:
        super().__init__(problem)
        self.problem = problem


class UnsharableLine(ValueError):
    """A line of this server's own that no kind of entry carries. Our bug: a kind of line the bus was not taught."""

    def __init__(self, line: str) -> None:
        super().__init__(f"no kind of entry carries the line {quoted(line)}")
        self.line = line


@dataclass(frozen=True)
class Entry:
    """One entry of the stream; see the module's table for each field."""

    server: str
    kind: Kind
    name: str
    when: float
    text: "str | None" = None
    origin: int = 0
    log_it: bool = True
    number: "int | None" = None
    to_server: "str | None" = None
    recipient: "str | None" = None
    elsewhere_only: bool = False
    about: "str | None" = None
    order: "Order | None" = None  # an order's (then ``name`` is who gave it)

    @property
    def private(self) -> bool:
        return self.kind is Kind.PRIVATE

    @property
    def in_history(self) -> bool:
        """Whether newcomers are told of it: the conversation only, not comings and goings."""
        return self.kind in _HISTORY

    @property
    def line(self) -> str:
        """The line the members of a server see, made by that server."""
        if self.order is not None:
            return self.order.notice()
        return render(self.kind, self.name, self.text)

    @property
    def size(self) -> int:
        """Its size in the stream, as readers count it: the bytes of its field names and values."""
        return sum(len(key) + len(value.encode()) for key, value in self.to_fields().items())

    @classmethod
    def of_line(cls, server: str, line: str, when: float, **options) -> "Entry":
        """The entry that says ``line``, one of this server's own; :class:`UnsharableLine` if none does."""
        for kind, name, text in _readings(line):
            if render(kind, name, text) == line:
                return cls(server, kind, name, when, text, **options)
        raise UnsharableLine(line)

    @classmethod
    def of_order(cls, server: str, order: Order, when: float, **options) -> "Entry":
        """The entry that gives ``order``, one of this server's operators' (its fields: :func:`order_fields`)."""
        return cls(server, Kind.ORDER, order.by, when, order=order, **options)

    def to_fields(self) -> "dict[str, str]":
        fields = {"v": VERSION, "s": self.server, "k": self.kind.value, "n": self.name}
        fields.update(t=repr(self.when), o=str(self.origin), g=str(int(self.log_it)))
        optional = {"x": self.text, "i": self.number, "to": self.to_server, "p": self.recipient, "r": self.about}
        fields.update((key, str(value)) for key, value in optional.items() if value is not None)
        if self.elsewhere_only:
            fields["e"] = "1"
        if self.order is not None:
            fields.update(order_fields(self.order))
        return fields

    @classmethod
    def from_fields(cls, fields: "dict[str, str]") -> "Entry":
        """The entry these fields stand for, its text made safe; :class:`MalformedEntry` if they stand for none."""
        version = fields.get("v")
        if version is None:
            raise MalformedEntry("no version: not an entry of this format")
        if version != VERSION:
            raise MalformedEntry(f"version {quoted(version)}, not {VERSION}")
        kind = _kind(fields.get("k"))
        required, allowed = _FIELDS_OF_KIND[kind]
        names = fields.keys()
        if not (names <= allowed and required <= names):  # the common case in two set comparisons
            unknown = sorted(names - allowed)
            if unknown:
                raise MalformedEntry(f"{_a(kind.value)} entry has no field {quoted(unknown[0])}")
            missing = sorted(required - names)
            raise MalformedEntry(f"{_a(kind.value)} entry needs the field {missing[0]!r}")
        order, text = None, fields.get("x")
        if kind is Kind.ORDER:
            order = order_of({key: value for key, value in fields.items() if key in ORDER_FIELDS})
            text = None  # it is the order's reason
        elif kind is Kind.RENAMED:
            text = _name(text, "new name")
        elif text is not None:
            text = clean(text)  # as a client's line: no control characters, escapes, bidi overrides
            if text is None:
                raise MalformedEntry("blank text")
        return cls(
            server=_server(fields["s"]),
            kind=kind,
            name=order.by if order is not None else _name(fields["n"], "name"),
            when=_time(fields["t"]),
            text=text,
            origin=_number(fields.get("o", "0"), "origin"),
            log_it=_flag(fields["g"], "g"),
            number=_number(fields["i"], "number") if "i" in fields else None,
            to_server=_server(fields["to"]) if "to" in fields else None,
            recipient=_name(fields["p"], "recipient") if "p" in fields else None,
            elsewhere_only=_flag(fields.get("e", "0"), "e"),
            about=_server(fields["r"]) if "r" in fields else None,
            order=order,
        )


def order_fields(order: Order) -> "dict[str, str]":
    """The fields that say ``order`` (see the module's table), its reason made safe and cut to MAX_REASON_BYTES."""
    fields = {"do": order.kind.value, "n": order.by}
    reason = _cut(sanitize(order.reason), MAX_REASON_BYTES)
    optional = {"w": order.name or None, "x": reason or None, "a": order.address, "m": order.minutes or None}
    fields.update((key, str(value)) for key, value in optional.items() if value is not None)
    if order.until is not None:
        fields["u"] = repr(order.until)
    return fields


def order_of(fields: "dict[str, str]") -> Order:
    """The order these fields give (``do``, ``n`` and those its kind has); :class:`MalformedEntry` if they give none.

    The reason is sanitized, as a client's line is; names follow the rules
    for a user name (but the console's, ``Server``, may give an order);
    addresses are those :func:`chat.admission.address_key` makes.
    """
    try:
        kind = OrderKind(fields.get("do"))
    except ValueError:
        raise MalformedEntry(f"order {quoted(fields.get('do'))}") from None
    given = set(fields) - {"do", "n"}
    unknown = sorted(given - _ORDER_NEEDS[kind] - _ORDER_MAY[kind])
    if unknown:
        raise MalformedEntry(f"{_a(kind.value)} order has no field {quoted(unknown[0])}")
    missing = sorted(_ORDER_NEEDS[kind] - given)
    if missing:
        raise MalformedEntry(f"{_a(kind.value)} order needs the field {missing[0]!r}")
    by = fields.get("n", "")
    if by != CONSOLE_NAME:
        _name(by, "operator")
    reason = sanitize(fields.get("x", ""))
    size = len(reason.encode())
    if size > MAX_REASON_BYTES:
        raise MalformedEntry(f"a reason of {size} bytes, over the {MAX_REASON_BYTES} an order may give")
    if kind is OrderKind.SAY and not reason.strip():
        raise MalformedEntry("blank text")
    address = _address(fields["a"]) if "a" in fields else None
    if kind is OrderKind.BAN and is_loopback(address):
        raise MalformedEntry(f"a ban on {quoted(address)}: loopback cannot be banned")
    minutes = 0  # until lifted
    if "m" in fields:
        minutes = _number(fields["m"], "minutes")
        if not 1 <= minutes <= MAX_MINUTES:
            raise MalformedEntry(f"minutes {quoted(fields['m'])}, not 1 to {MAX_MINUTES}")
    until = _time(fields["u"]) if "u" in fields else None
    if (until is None) != (minutes == 0):
        raise MalformedEntry("a ban or mute has minutes and an end, or neither")
    name = _name(fields["w"], "member") if "w" in fields else ""
    return Order(kind, by, name, reason, address, minutes, until)


def valid_address(value: str) -> bool:
    """Whether ``value`` is an address as :func:`chat.admission.address_key` makes them: an IP address or an IPv6 /64."""
    if "%" in value:  # a zone may hold any character: none is ever part of a key
        return False
    try:
        if "/" in value:
            network = ipaddress.IPv6Network(value)  # strict: no host bits
            return network.prefixlen == IPV6_PREFIX_BITS and str(network) == value
        return str(ipaddress.ip_address(value)) == value
    except ValueError:
        return False


def is_loopback(address: "str | None") -> bool:
    try:
        return address is not None and ipaddress.ip_address(address).is_loopback
    except ValueError:  # a network
        return False


def _address(value: str) -> str:
    if not valid_address(value):
        raise MalformedEntry(f"address {quoted(value)}")
    return value


def _cut(text: str, max_bytes: int) -> str:
    """``text`` cut to at most ``max_bytes`` of UTF-8, between characters."""
    data = text.encode()
    return text if len(data) <= max_bytes else data[:max_bytes].decode(errors="ignore")


def render(kind: Kind, name: str, text: "str | None") -> str:
    """The line that says ``text`` of this kind from (or about) ``name``."""
    if kind is Kind.CHAT:
        return messages.chat(name, text)
    if kind is Kind.ACTION:
        return messages.action(name, text)
    if kind is Kind.JOINED:
        return messages.joined(name)
    if kind is Kind.LEFT:
        return messages.left(name)
    if kind is Kind.RENAMED:
        return messages.renamed(name, text)
    return messages.private_from(name, text)


def _readings(line: str):
    """What ``line`` may say, as (kind, name, text): each is checked by rendering it again."""
    kind, name = messages.classify(line)
    if kind is messages.Kind.CHAT:
        yield Kind.CHAT, name, line[len(name) + 2 :]
    elif kind is messages.Kind.ACTION:
        yield Kind.ACTION, name, line[len(name) + 3 :]
    elif kind is messages.Kind.PRIVATE:
        yield Kind.PRIVATE, name, line.partition("] ")[2]
    elif kind is messages.Kind.SYSTEM:
        words = line[len(messages.SYSTEM_PREFIX) :].split(" ")
        yield Kind.JOINED, words[0], None
        yield Kind.LEFT, words[0], None
        yield Kind.RENAMED, words[0], words[-1]


def fields_of(raw: list, max_bytes: int = DEFAULT_MAX_ENTRY_BYTES) -> "dict[str, str]":
    """The fields of an entry as Redis returns them undecoded (``[name, value, ...]``), checked and decoded.

    Sizes are checked before anything is decoded. The text is decoded as a
    client's line is (invalid UTF-8 becomes U+FFFD); every other field must
    be ASCII. :class:`MalformedEntry` if the entry is too big or unreadable.
    """
    size = sum(len(part) for part in raw)
    if size > max_bytes:
        raise MalformedEntry(f"{size} bytes, over the {max_bytes} an entry may hold")
    if len(raw) > 2 * MAX_FIELDS or len(raw) % 2:
        raise MalformedEntry(f"{len(raw) // 2} fields, over the {MAX_FIELDS} an entry may have")
    fields = {}
    for key, value in zip(raw[::2], raw[1::2]):
        name = _ascii(key)
        if name in fields:
            raise MalformedEntry(f"the field {quoted(name)} twice")
        fields[name] = decode_line(value) if name == "x" else _ascii(value, name)
    return fields


def quoted(value) -> str:
    """``value`` as a problem quotes it: escaped, and cut short."""
    text = repr(value[:_QUOTED_CHARS] if isinstance(value, (str, bytes)) else value)
    return text + "..." if isinstance(value, (str, bytes)) and len(value) > _QUOTED_CHARS else text


def _a(word: str) -> str:
    return ("an " if word[0] in "aeiou" else "a ") + word


def _ascii(value: bytes, field: "str | None" = None) -> str:
    """``value`` decoded: a field name, or (given its name) a field's value."""
    try:
        return value.decode("ascii")
    except UnicodeDecodeError:  # the message is built only now: this runs for every field
        what = "a field name" if field is None else f"the field {quoted(field)}"
        raise MalformedEntry(f"{what} is not ASCII: {quoted(value)}") from None


def _kind(value: "str | None") -> Kind:
    try:
        return Kind(value)
    except ValueError:
        raise MalformedEntry(f"kind {quoted(value)}" if value is not None else "no kind") from None


def _name(value: str, what: str) -> str:
    problem = name_problem(value)
    if problem:
        raise MalformedEntry(f"{what} {quoted(value)}: {problem}")
    return value


def _server(value: str) -> str:
    if not _SERVER_ID.fullmatch(value):
        raise MalformedEntry(f"server {quoted(value)}")
    return value


def _number(value: str, what: str) -> int:
    if not _NUMBER.fullmatch(value):
        raise MalformedEntry(f"{what} {quoted(value)}")
    return int(value)


def _flag(value: str, field: str) -> bool:
    if value not in ("0", "1"):
        raise MalformedEntry(f"the field {field!r} is {quoted(value)}, not 0 or 1")
    return value == "1"


def _time(value: str) -> float:
    try:
        when = float(value) if _TIME.fullmatch(value) else math.nan
    except ValueError:  # "1e5e5", say
        when = math.nan
    if not (math.isfinite(when) and 0 <= when < LATEST_TIME):
        raise MalformedEntry(f"time {quoted(value)}")
    return when
