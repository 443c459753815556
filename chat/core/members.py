"""Who is in the room: what the room needs of a member, and the table it keeps of them.

A member is anything with the :class:`Member` attributes and methods: on the
server, a connection's :class:`chat.core.session.Session`; in the tests, a
small fake that records what it is sent. The room touches nothing else.
"""

import heapq
import itertools
from collections import deque
from typing import Iterator, Protocol

from chat.core.text import name_key

# The names CountedAtWelcome remembers at most, all welcomes together (some 100 bytes each).
MAX_COUNTED_NAMES = 200_000


class Member(Protocol):
    """Everything the room reads, sets or calls on a member."""

    name: str  # set by the room on joining and renaming
    member_id: int  # set by the room on joining: how lines from the bus name their sender
    address: "str | None"  # where it connects from: a name back from there within its grace was never gone
    peer: "str | None"  # where it connects from, for the log: ('127.0.0.1', 5000)
    operator: bool  # set by the room (Room.set_operator): /users marks it, and operators cannot act on it

    def queue(self, data: bytes) -> bool:
        """Append ``data`` (newline-ended lines) to the outbox; True if flush() must follow.

        Must not block or do I/O: it runs under the room lock.
        """

    def queue_private(self, data: bytes) -> "bool | None":
        """Like queue(), for a line one sender aims at this member alone.

        Returns None, queueing nothing, if this member's backlog is already
        large: private messages from others must not be able to fill it up
        until the member is dropped as a slow reader.
        """

    def flush(self) -> None:
        """Start sending what was queued. Called without the room lock held."""

    def quit(self) -> None:
        """Close the connection once what is queued has been sent. Must not block."""


class MemberTable:
    """The members here, by name (regardless of case) and by number.

    Not thread-safe: the room's lock guards it.
    """

    def __init__(self) -> None:
        # The single source of truth for who is online here: name_key(name) -> member.
        self._by_key: "dict[str, Member]" = {}
        # The same members by the number each got on joining (member.member_id).
        self._by_id: "dict[int, Member]" = {}
        self._ids = itertools.count(1)

    def __len__(self) -> int:
        return len(self._by_key)

    def __iter__(self) -> "Iterator[Member]":
        return iter(self._by_key.values())

    def named(self, name: str) -> "Member | None":
        return self._by_key.get(name_key(name))

    def numbered(self, member_id: "int | None") -> "Member | None":
        return self._by_id.get(member_id)

    def add(self, member: Member, name: str) -> None:
        """Give ``member`` its name and a number, and list it; the name must be free."""
        member.name = name
        member.member_id = next(self._ids)
        self._by_key[name_key(name)] = member
        self._by_id[member.member_id] = member

    def remove(self, member: Member) -> bool:
        """Take ``member`` off the table; False if it was not on it."""
        if self._by_key.get(name_key(member.name)) is not member:
            return False
        del self._by_key[name_key(member.name)]
        del self._by_id[member.member_id]
        return True

    def rename(self, member: Member, new_name: str) -> bool:
        """Rename ``member``; False if another member has that name."""
        holder = self._by_key.get(name_key(new_name))
        if holder is not None and holder is not member:
            return False
        del self._by_key[name_key(member.name)]
        member.name = new_name
        self._by_key[name_key(new_name)] = member
        return True

    def names_by_key(self) -> "dict[str, str]":
        return {key: member.name for key, member in self._by_key.items()}

    def names(self) -> "list[str]":
        return sorted((m.name for m in self._by_key.values()), key=name_key)

    def first_names(self, limit: int) -> "tuple[int, list[str]]":
        """How many members there are, and the first ``limit`` names in order (cheaper than sorting all)."""
        return len(self._by_key), heapq.nsmallest(limit, (m.name for m in self._by_key.values()), key=name_key)

    def others(self, name: str, everyone: "set[str] | None") -> "set[str]":
        """The name keys of everyone online besides ``name``: here, and on every server (``everyone``, name keys)."""
        keys = set(self._by_key)
        if everyone is not None:
            keys |= everyone
        keys.discard(name_key(name))
        return keys


class CountedAtWelcome:
    """Whom each newcomer's welcome counted, for as long as their join notices may still be on the way.

    In a shared room the welcome counts everyone the bus says is online, but
    a join notice goes through the bus, and may reach this server after a
    newcomer was welcomed with that name counted. Such a notice is not shown
    to that newcomer: its count, and the join notices that follow it, agree.

    Bounded: a welcome is remembered for ``wait_s``, and at most
    ``max_names`` names in all; past that (a storm of joins in a crowded
    room), a newcomer may hear of a join it counted. Not thread-safe: the
    room's lock guards it.
    """

    def __init__(self, clock, wait_s: float, max_names: int = MAX_COUNTED_NAMES) -> None:
        self._clock = clock
        self._wait_s = wait_s  # how long a join notice may take through the bus, at most
        self._max_names = max_names
        self._counted_by: "dict[str, set[int]]" = {}  # name key -> the members whose welcome counted it
        # Each welcome remembered, by when it is forgotten: (until when, member_id, name keys).
        self._welcomes: "deque[tuple[float, int, set[str]]]" = deque()
        self._names = 0  # the name keys in _welcomes, all together

    def add(self, member_id: int, keys: "set[str]") -> None:
        """The welcome of member ``member_id`` counted the names ``keys``."""
        self._forget_expired()
        if not keys or self._names + len(keys) > self._max_names:
            return
        for key in keys:
            self._counted_by.setdefault(key, set()).add(member_id)
        self._welcomes.append((self._clock() + self._wait_s, member_id, keys))
        self._names += len(keys)

    def joined(self, name: str) -> "set[int]":
        """``name`` joined: the members that counted it already, who are not told (and now forget it)."""
        self._forget_expired()
        return self._counted_by.pop(name_key(name), set())

    def left(self, name: str) -> None:
        """``name`` left (or was renamed): should it come back, that is a join everyone hears of."""
        self._counted_by.pop(name_key(name), None)

    def _forget_expired(self) -> None:
        now = self._clock()
        while self._welcomes and self._welcomes[0][0] <= now:
            _, member_id, keys = self._welcomes.popleft()
            self._names -= len(keys)
            for key in keys:
                members = self._counted_by.get(key)
                if members is not None:
                    members.discard(member_id)
                    if not members:
                        del self._counted_by[key]
