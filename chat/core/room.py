"""The chat room: who is online, under which name, and delivering lines to them.

The room is the one piece of state that every client thread shares, so it is
guarded by one lock. Under that lock the room only does cheap, non-blocking
work: it updates the member table and appends encoded lines to members'
outboxes. Sending happens after the lock is released (``Member.flush``), so a
slow or stuck client can never hold up the others.

Because every broadcast appends to all outboxes while holding the lock, all
members receive the lines in the same order.

The room knows nothing about sockets: a member is anything with the
:class:`Member` methods, which makes the room easy to test.
"""

import contextlib
import heapq
import logging
import threading
from typing import Protocol

from chat.core import messages
from chat.core.framing import encode_line, encode_lines
from chat.core.history import History
from chat.core.text import name_key, name_problem

log = logging.getLogger(__name__)

# The server log lists at most this many names after each join or leave, so
# that a room of hundreds does not print a screenful every time.
LOGGED_NAMES_MAX = 20


class Member(Protocol):
    """What the room needs from a connected client."""

    name: str

    def queue(self, data: bytes) -> bool:
        """Append ``data`` to the outbox; True if flush() must follow.

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


class Room:
    def __init__(self, history_lines: int = 0) -> None:
        # Guards _members, _history and _closed. Held only for table updates and queueing.
        self._lock = threading.Lock()
        # The single source of truth for who is online: name_key(name) -> member.
        self._members: "dict[str, Member]" = {}
        # The last public lines, replayed to each newcomer before its welcome.
        self._history = History(history_lines)
        self._closed = False
        # Per thread: the members whose flush deferred_flushes() put off.
        self._deferred = threading.local()

    @contextlib.contextmanager
    def deferred_flushes(self):
        """Within this block, lines for members are queued at once but sent at its end.

        A reader handles all the lines of one ``recv`` in such a block, so a
        member that gets several of them gets them in one system call rather
        than one each: the main saving when a room is busy.
        """
        self._deferred.members = pending = {}  # a dict as an ordered set
        try:
            yield
        finally:
            self._deferred.members = None
            for member in pending:
                member.flush()

    def flush_deferred(self) -> None:
        """Inside deferred_flushes(), send what this thread has queued so far, now."""
        pending = getattr(self._deferred, "members", None)
        if pending:
            members = list(pending)
            pending.clear()
            for member in members:
                member.flush()

    # -- membership ---------------------------------------------------------

    def join(self, member: Member, default_name: str, wanted_name: "str | None" = None):
        """Add ``member`` under ``wanted_name`` if possible, else under ``default_name``.

        The member's first lines are the reason ``wanted_name`` was refused,
        if it was, and a welcome; everyone else is told that it joined.
        Returns ``(name, problem)``: the name given (None if the room is
        closed) and the reason ``wanted_name`` was refused, if it was.
        """
        problem = name_problem(wanted_name) if wanted_name is not None else None
        with self._lock:
            if self._closed:
                return None, None
            if wanted_name is not None and problem is None and name_key(wanted_name) in self._members:
                problem = f"The name {wanted_name} is taken."
            if wanted_name is not None and problem is None:
                name = wanted_name
            else:
                name = self._unused_name_locked(default_name)
            if problem:
                member.queue(encode_line(messages.error(problem)))
            # History first, then the welcome; both flushed below.
            member.queue(encode_lines([*self._history.replay(), messages.welcome(name, len(self._members))]))
            member.name = name
            self._members[name_key(name)] = member
            recipients = self._publish_locked([messages.joined(name)], member)
            online = self._names_to_log_locked()
        self._flush([member, *recipients])
        log.info(messages.joined(name))
        self._log_online(online)
        return name, problem

    def leave(self, member: Member) -> None:
        """Remove ``member`` and tell the others, unless it already left."""
        with self._lock:
            if self._members.get(name_key(member.name)) is not member:
                return
            del self._members[name_key(member.name)]
            if self._closed:  # the shutdown notice was the last word: no leave notices
                return
            recipients = self._publish_locked([messages.left(member.name)])
            online = self._names_to_log_locked()
        self._flush(recipients)
        log.info(messages.left(member.name))
        self._log_online(online)

    def rename(self, member: Member, new_name: str) -> "str | None":
        """Rename ``member`` and announce it to all; return a problem instead if refused."""
        problem = name_problem(new_name)
        if problem:
            return problem
        with self._lock:
            holder = self._members.get(name_key(new_name))
            if holder is not None and holder is not member:
                return f"The name {new_name} is taken."
            if new_name == member.name:
                return f"You are already {new_name}."
            old_name = member.name
            del self._members[name_key(old_name)]
            member.name = new_name
            self._members[name_key(new_name)] = member
            notice = messages.renamed(old_name, new_name)
            recipients = self._publish_locked([notice])
        self._flush(recipients)
        log.info(notice)
        return None

    def close(self, farewell: str) -> "list[Member]":
        """Send ``farewell`` as every member's last line and close them; admit nobody after.

        Queueing and closing happen under the lock, so no broadcast can slip
        in after the farewell. Returns the members that were closed.
        """
        with self._lock:
            self._closed = True
            members = list(self._members.values())
            to_flush = self._queue_locked(encode_line(farewell))
            for member in members:
                member.quit()
        self._flush(to_flush)
        return members

    # -- queries ------------------------------------------------------------

    def names(self) -> "list[str]":
        with self._lock:
            return self._names_locked()

    # -- delivery -----------------------------------------------------------

    def say(self, member: Member, line: str) -> None:
        """Send ``line`` from ``member`` to every other member, and log it."""
        self.say_all(member, [line])

    def say_all(self, member: Member, lines: "list[str]") -> None:
        """Send several lines from ``member`` to every other member, in one step, and log them.

        One lock, one append per recipient and one flush for the lot: when a
        sender's lines come in bunches, the work per recipient is done once
        per bunch instead of once per line.
        """
        with self._lock:
            recipients = self._publish_locked(lines, member)
        self._flush(recipients)
        log.info("📨 %s", "\n📨 ".join(lines))  # one record: each line gets its own timestamp

    def send_to(self, member: Member, line: str) -> None:
        """Send ``line`` to one member."""
        if member.queue(encode_line(line)):
            self._flush([member])

    def send_private(self, sender: Member, recipient_name: str, text: str) -> "str | None":
        """Deliver a private message; return a problem if nobody has that name."""
        with self._lock:
            recipient = self._members.get(name_key(recipient_name))
            if recipient is None:
                return f"No user named {recipient_name} is online."
            needs_flush = recipient.queue_private(encode_line(messages.private_from(sender.name, text)))
            recipient_name = recipient.name
        if needs_flush is None:
            return f"{recipient_name} is not keeping up with incoming messages: yours was not delivered. Try again later."
        if needs_flush:
            self._flush([recipient])
        self.send_to(sender, messages.private_to(recipient_name, text))
        return None

    # -- helpers (the *_locked ones need self._lock held) -------------------

    def _publish_locked(self, lines: "list[str]", exclude: "Member | None" = None) -> "list[Member]":
        """Queue public ``lines`` for every member but ``exclude``, and keep them in the history."""
        for line in lines:
            self._history.add(line)
        return self._queue_locked(encode_lines(lines), exclude)

    def _queue_locked(self, data: bytes, exclude: "Member | None" = None) -> "list[Member]":
        """Queue ``data`` for every member but ``exclude``; return those that need a flush."""
        return [m for m in self._members.values() if m is not exclude and m.queue(data)]

    def _flush(self, recipients: "list[Member]") -> None:
        """Flush ``recipients`` now or, inside deferred_flushes() on this thread, at its end."""
        pending = getattr(self._deferred, "members", None)
        if pending is None:
            for member in recipients:
                member.flush()
        else:
            pending.update(dict.fromkeys(recipients))

    def _names_locked(self) -> "list[str]":
        return sorted((m.name for m in self._members.values()), key=name_key)

    def _names_to_log_locked(self) -> "tuple[int, list[str]]":
        """How many are online, and the first LOGGED_NAMES_MAX names in order (cheaper than sorting all)."""
        names = (m.name for m in self._members.values())
        return len(self._members), heapq.nsmallest(LOGGED_NAMES_MAX, names, key=name_key)

    def _unused_name_locked(self, base: str) -> str:
        name, suffix = base, 1
        while name_key(name) in self._members:
            suffix += 1
            name = f"{base}-{suffix}"
        return name

    @staticmethod
    def _log_online(online: "tuple[int, list[str]]") -> None:
        count, names = online
        shown = ", ".join(names)
        hidden = count - len(names)
        more = f" and {hidden} more" if hidden > 0 else ""
        log.info("📊 Active users: %s%s", shown or "none", more)
