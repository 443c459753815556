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
                            ``left``, ``renamed`` or ``private``
``n``   ``name``            who said it (chat, action, private), who joined or left, or
                            the old name (renamed): a valid user name
``x``   ``text``            what was said (chat, action, private), or the new name
                            (renamed); absent from ``joined`` and ``left``
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
======  ==================  ================================================================

Public lines, notices and private messages are all entries, so that they
keep one order; each entry is one line. Only chat lines, actions and
renames are history, replayed to newcomers (:attr:`Entry.in_history`):
never who joined or left, nor a private message.

The entries of version 1 (no ``v``; the lines themselves, preformatted, in
``l``) are skipped: reading them safely would mean parsing lines back into
what they say, which is what this version stops trusting. Servers of
version 1 skip (and log) each entry of this one, so the servers sharing a
room are upgraded together.
"""

import enum
import math
import re
from dataclasses import dataclass

from chat.core import messages
from chat.core.commands import clean
from chat.core.framing import DEFAULT_MAX_LINE_BYTES, decode_line
from chat.core.text import name_problem

VERSION = "2"
# Stream entry times beyond this (the year 5138) are taken for garbage: they are shown to newcomers.
LATEST_TIME = 1e11
# A security limit. An entry holds one line and a few short fields, so
# this is room for a line four times as long as the line limit (that of
# a server whose limit is higher than the reader's, say).
DEFAULT_MAX_ENTRY_BYTES = 4 * DEFAULT_MAX_LINE_BYTES
MAX_FIELDS = 13  # as many as there are field names
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
}
_HISTORY = {Kind.CHAT, Kind.ACTION, Kind.RENAMED}


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

    def to_fields(self) -> "dict[str, str]":
        fields = {"v": VERSION, "s": self.server, "k": self.kind.value, "n": self.name}
        fields.update(t=repr(self.when), o=str(self.origin), g=str(int(self.log_it)))
        optional = {"x": self.text, "i": self.number, "to": self.to_server, "p": self.recipient, "r": self.about}
        fields.update((key, str(value)) for key, value in optional.items() if value is not None)
        if self.elsewhere_only:
            fields["e"] = "1"
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
        required = _REQUIRED | _OF_KIND[kind]
        unknown = sorted(set(fields) - required - _OPTIONAL)
        if unknown:
            raise MalformedEntry(f"a {kind.value} entry has no field {quoted(unknown[0])}")
        missing = sorted(required - set(fields))
        if missing:
            raise MalformedEntry(f"a {kind.value} entry needs the field {missing[0]!r}")
        text = fields.get("x")
        if kind is Kind.RENAMED:
            text = _name(text, "new name")
        elif text is not None:
            text = clean(text)  # as a client's line: no control characters, escapes, bidi overrides
            if text is None:
                raise MalformedEntry("blank text")
        return cls(
            server=_server(fields["s"]),
            kind=kind,
            name=_name(fields["n"], "name"),
            when=_time(fields["t"]),
            text=text,
            origin=_number(fields.get("o", "0"), "origin"),
            log_it=_flag(fields["g"], "g"),
            number=_number(fields["i"], "number") if "i" in fields else None,
            to_server=_server(fields["to"]) if "to" in fields else None,
            recipient=_name(fields["p"], "recipient") if "p" in fields else None,
            elsewhere_only=_flag(fields.get("e", "0"), "e"),
            about=_server(fields["r"]) if "r" in fields else None,
        )


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
        name = _ascii(key, "a field name")
        if name in fields:
            raise MalformedEntry(f"the field {quoted(name)} twice")
        fields[name] = decode_line(value) if name == "x" else _ascii(value, f"the field {quoted(name)}")
    return fields


def quoted(value) -> str:
    """``value`` as a problem quotes it: escaped, and cut short."""
    text = repr(value[:_QUOTED_CHARS] if isinstance(value, (str, bytes)) else value)
    return text + "..." if isinstance(value, (str, bytes)) and len(value) > _QUOTED_CHARS else text


def _ascii(value: bytes, what: str) -> str:
    try:
        return value.decode("ascii")
    except UnicodeDecodeError:
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
