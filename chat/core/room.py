"""The chat room: who is online, under which name, and delivering lines to them.

The room is the one piece of state that every client thread shares, so it is
guarded by one lock. Under that lock the room only does cheap, non-blocking
work: it updates the member table and appends encoded lines to members'
outboxes. Sending happens after the lock is released (``Member.flush``), so a
slow or stuck client can never hold up the others.

Because every broadcast appends to all outboxes while holding the lock, all
members receive the lines in the same order.

The room knows nothing about sockets: a member is anything with the
:class:`chat.core.members.Member` attributes and methods (on the server, a
connection's session), which makes the room easy to test. What the room
does hold is its lock, and it calls its members' ``queue`` under it and
``flush`` after it.

A room may be shared with other servers through a :class:`Bus` (see
``chat/bus/``). Then public lines do not go straight to the members: they
are published to the bus, which hands every server's lines back, in one
order for all, to :meth:`Room.deliver`. Names are claimed on the bus, so
that they are unique across servers. When the bus cannot be reached, the
room carries on alone.

Joins and leaves are announced, but a stream of them must not drown the
conversation, so:

* a leave is announced ``rejoin_grace_s`` late (:meth:`Room.announce_due_leaves`,
  which the server calls often): if the same name comes back meanwhile (a
  page reloaded, a client reconnecting), neither is announced. A member
  that says /quit is not coming back: its leave is told at once;
* a member may join quietly, when its address has announced too many
  joins lately (see ``Seat.may_announce``); it then leaves quietly too.

The log always tells.

Operators' orders (:mod:`chat.core.moderation`) go the same way as public
lines: :meth:`Room.give` hands an order to the bus, which hands it back to
every server's :meth:`Room.carry_out`, or carries it out here alone.
"""

import itertools
import math
import logging
import threading
import time
from typing import Protocol

from chat.core import messages
from chat.core.framing import encode_line, encode_lines
from chat.core.history import History
from chat.core.members import CountedAtWelcome, Member, MemberTable
from chat.core.moderation import Moderation, Order, OrderKind, Whois
from chat.core.password import OperatorPassword
from chat.core.text import name_key, name_problem

log = logging.getLogger(__name__)
# Joins, leaves and operators' orders have loggers of their own, so that the
# log can show each in its colour (chat.logs) and a host can filter them.
join_log = logging.getLogger("chat.joins")
leave_log = logging.getLogger("chat.leaves")
order_log = logging.getLogger("chat.orders")

# How long a join notice may take through the bus after its name was
# claimed, at most: for that long, a newcomer counted in a welcome is not
# announced again to whoever that welcome went to.
JOIN_NOTICE_WAIT_S = 10.0
# The server log lists at most this many names after each join or leave, so
# that a room of hundreds does not print a screenful every time.
LOGGED_NAMES_MAX = 20


class Bus(Protocol):
    """The other servers that share this room. Every method may do network I/O:
    the room never calls one while holding its lock."""

    def publish(self, lines: "list[str]", origin: "int | None", when: float, log_it: bool) -> bool:
        """Send public lines to every server, this one included (it hands them to
        Room.deliver, leaving out member ``origin``); False if the bus is out of reach."""

    def claim(self, name: str) -> "bool | None":
        """Claim ``name`` on every server: True if it is now ours, False if taken, None if out of reach."""

    def release(self, name: str) -> None:
        """Give up a name claimed before."""

    def names(self) -> "list[str] | None":
        """Everyone online on every server, or None if out of reach."""

    def in_reach(self) -> bool:
        """Whether the other servers can be reached now (without waiting to find out)."""

    def send_private(self, recipient: str, line: str, origin: int) -> "str | None":
        """Send ``line`` to ``recipient`` on whichever server has it (it comes back to
        Room.deliver_private there); its name, or None if nobody has it or the bus is out of reach."""

    def order(self, order: Order) -> bool:
        """Send an operator's order to every server, this one included (it hands it to
        Room.carry_out), and keep what it leaves behind for servers yet to start; False if out of reach."""

    def describe(self, name: str, address: "str | None", operator: bool) -> None:
        """Say who holds a name claimed here: the address it is counted by, and whether it is an operator."""

    def whois(self, name: str) -> "Whois | None":
        """The member online on any server under ``name``, or None (nobody, or out of reach)."""

    def roster(self) -> "list[Whois] | None":
        """Everyone online on every server, or None if out of reach."""


class Archive(Protocol):
    """What keeps the room's history and orders on disk (``chat.store.archive``). Neither method ever waits."""

    def add_lines(self, lines: "list[str]", when: float) -> None:
        """Keep public lines said at ``when`` (those the history keeps)."""

    def keep_order(self, order: Order, when: float) -> None:
        """Keep an order's notice, and what it leaves behind."""


class Room:
    def __init__(
        self,
        history_lines: int = 0,
        bus: "Bus | None" = None,
        rejoin_grace_s: float = 0.0,
        clock=time.monotonic,
        moderation: "Moderation | None" = None,
        operator_password: "OperatorPassword | None" = None,
        archive: "Archive | None" = None,
    ) -> None:
        # Guards _members, _history, _closed, _quiet, _for_good, _leaving and _counted. Held only
        # for table updates and queueing.
        self._lock = threading.Lock()
        self._members = MemberTable()
        self._quiet: "set[int]" = set()  # the numbers of members whose joining was not announced
        self._for_good: "set[int]" = set()  # the numbers of members that said /quit
        self._leaving = Departures(rejoin_grace_s, clock)  # leaves not announced yet
        self._counted = CountedAtWelcome(clock, JOIN_NOTICE_WAIT_S)  # in a shared room: see deliver()
        # The other servers sharing this room, if any: set before serving, never changed after.
        self.bus = bus
        # The last public lines, replayed to each newcomer before its welcome.
        self._history = History(history_lines)
        self._closed = False
        self._flushes = DeferredFlushes()  # per thread: see deferred_flushes()
        # Bans, mutes and the topic: it has a lock of its own, which may be
        # taken while holding ours (never the other way round).
        self.moderation = moderation or Moderation()
        self.operator_password = operator_password  # None: only the console is an operator
        # What keeps the history and the orders on disk, if anything: called after the lock is released.
        self.archive = archive

    def deferred_flushes(self):
        """A block within which lines for members are queued at once but sent at its end.

        A reader handles all the lines of one ``recv`` in such a block, so a
        member that gets several of them gets them in one system call rather
        than one each: the main saving when a room is busy.
        """
        return self._flushes.block()

    def flush_deferred(self) -> None:
        """Inside deferred_flushes(), send what this thread has queued so far, now."""
        self._flushes.flush_now()

    # -- membership ---------------------------------------------------------

    def join(self, member: Member, default_name: str, wanted_name: "str | None" = None, announce: bool = True):
        """Add ``member`` under ``wanted_name`` if possible, else under ``default_name``.

        The member's first lines are the reason ``wanted_name`` was refused,
        if it was, the room's history and a welcome; everyone else is told
        that it joined, if ``announce`` and its name did not leave just now
        (then its leaving is not announced either).
        Returns ``(name, problem)``: the name given (None if the room is
        closed) and the reason ``wanted_name`` was refused, if it was.
        """
        problem = name_problem(wanted_name) if wanted_name is not None else None
        wanted = wanted_name if problem is None else None
        for name in _names_to_try(wanted, default_name):
            claimed = self._claim(name)
            if claimed is False:  # someone on another server has it
                problem = problem or (f"The name {name} is taken." if name == wanted else None)
                continue
            admitted = False
            try:
                everyone = self._keys_of_everyone()  # network I/O: before the lock
                with self._lock:
                    closed = self._closed
                    if not closed and self._members.named(name) is None:
                        self._admit_locked(member, name, problem, everyone)
                        back = self._leaving.came_back(name, member.address)
                        if not announce and not back:
                            self._quiet.add(member.member_id)
                        announce = announce and not back
                        left_first = back is False  # someone else took the name in its grace
                        self._log_join_locked(member, name, wanted_name, problem, announce)
                        admitted = True
            finally:
                if claimed and not admitted:  # taken here, the room closed, or an error
                    self.bus.release(name)
            if admitted:
                break
            if closed:
                return None, None
            problem = problem or (f"The name {name} is taken." if name == wanted else None)
        if self.bus is not None:
            self.bus.describe(name, member.address, False)
        notices = [messages.left(name)] if left_first else []
        if announce:
            # Published before the welcome is sent: whoever hears from the
            # newcomer has heard of its joining first.
            notices.append(messages.joined(name))
        if notices:
            self._publish(notices, member, log_it=False)
        self._flushes.flush([member])
        return name, problem

    def _keys_of_everyone(self) -> "set[str] | None":
        """The name keys of everyone online on every server; None without a bus, or out of its reach."""
        names = self.bus.names() if self.bus is not None else None
        return None if names is None else {name_key(name) for name in names}

    def _admit_locked(self, member: Member, name: str, problem: "str | None", everyone: "set[str] | None") -> None:
        others = self._members.others(name, everyone)
        topic = self.moderation.topic
        # The history first; then why the name asked for was refused, where
        # it is seen rather than above fifty lines of history; then the
        # welcome and the topic. Flushed by the caller.
        refused = [messages.error(problem)] if problem else []
        welcome = [messages.welcome(name, len(others))] + ([messages.topic(topic)] if topic else [])
        member.queue(encode_lines([*self._history.replay(), *refused, *welcome]))
        self._members.add(member, name)
        if self.bus is not None:  # join notices come through the bus, and may come after this welcome
            self._counted.add(member.member_id, others)

    def _log_join_locked(self, member: Member, name: str, wanted_name: "str | None", problem: "str | None", announced: bool) -> None:
        """Log a join. Under the room lock, as leaves are, so that the joins, the
        leaves and the counts of who is online after each keep their order
        in the log. That is no I/O: the server's one log handler
        (chat.logs.BackgroundHandler) only appends the record to its writer's
        queue. A handler added that writes at once would write under the lock."""
        if member.peer is not None:
            join_log.info("✅ %s connected from %s", name, member.peer)
        if problem:
            log.info("🏷️  %s asked for the name %r: %s", name, shortened(wanted_name), problem)
        join_log.info("%s%s", messages.joined(name), "" if announced else " (not announced)")
        log_online(self._members.first_names(LOGGED_NAMES_MAX), self.bus is not None)

    def not_coming_back(self, member: Member) -> None:
        """``member`` said /quit: its leave, when it comes, is told at once, not after the grace."""
        with self._lock:
            self._for_good.add(member.member_id)

    def leave(self, member: Member) -> None:
        """Remove ``member`` and tell the others (after the rejoin grace), unless it already left."""
        with self._lock:
            if not self._members.remove(member):
                return
            closed = self._closed
            announce = member.member_id not in self._quiet
            self._quiet.discard(member.member_id)
            at_once = member.member_id in self._for_good
            self._for_good.discard(member.member_id)
            later = announce and not closed and not at_once and self._leaving.grace_s > 0
            if later:
                self._leaving.add(member.name, member.address)
            if not closed:  # logged under the lock: see _log_join_locked
                leave_log.info("%s%s", messages.left(member.name), "" if announce else " (not announced)")
                log_online(self._members.first_names(LOGGED_NAMES_MAX), self.bus is not None)
        if closed:  # the shutdown notice was the last word here (and the bus tells the others)
            return
        if self.bus is not None:
            self.bus.release(member.name)
        if announce and not later:
            self._publish([messages.left(member.name)], None, log_it=False)

    def announce_due_leaves(self, all_now: bool = False) -> None:
        """Announce the leaves whose grace is over (or all of them now): their names did not come back.

        May do network I/O (the bus): the server calls it from a thread of its own.
        """
        with self._lock:
            if self._closed:
                return
            due = self._leaving.take_due(all_now)
        if due and self.bus is not None:  # back on another server sharing the room: never gone
            online = {name_key(name) for name in self.bus.names() or []}
            due = [name for name in due if name_key(name) not in online]
        if due:
            self._publish([messages.left(name) for name in due], None, log_it=False)

    def rename(self, member: Member, new_name: str) -> "str | None":
        """Rename ``member`` and announce it to all; return a problem instead if refused."""
        problem = name_problem(new_name)
        if problem:
            return problem
        if new_name == member.name:  # only the member's own thread renames it
            return f"You are already {new_name}."
        case_only = name_key(new_name) == name_key(member.name)
        if case_only and self.bus is not None:
            self.bus.release(member.name)  # the claim is the same; it is shown as given
        claimed = self._claim(new_name)
        if claimed is False:
            return f"The name {new_name} is taken."
        old_name = member.name
        with self._lock:
            renamed = self._members.rename(member, new_name)
            if renamed:
                self._quiet.discard(member.member_id)  # it speaks up: its leave will be told
                # Only a join is a return: a rename into a name in its grace tells its leave first.
                left_first = self._leaving.came_back(new_name, member.address) is not None
        if not renamed:
            if claimed:
                self.bus.release(new_name)
            return f"The name {new_name} is taken."
        if self.bus is not None:
            if not case_only:
                self.bus.release(old_name)
            self.bus.describe(new_name, member.address, member.operator)
        notice = messages.renamed(old_name, new_name)
        self._publish([messages.left(new_name), notice] if left_first else [notice], None, log_it=False)
        log.info(notice)
        return None

    def close(self, farewell: str) -> "list[Member]":
        """Send ``farewell`` as every member's last line and close them; admit nobody after.

        Queueing and closing happen under the lock, so no broadcast can slip
        in after the farewell. Returns the members that were closed.
        """
        with self._lock:
            self._closed = True
            members = list(self._members)
            to_flush = self._queue_locked(encode_line(farewell))
            for member in members:
                member.quit()
        self._flushes.flush(to_flush)
        return members

    # -- queries ------------------------------------------------------------

    def names(self) -> "list[str]":
        """Everyone online: on every server if the room is shared, else here."""
        everyone = self.bus.names() if self.bus is not None else None
        with self._lock:
            here = self._members.names_by_key()
        if everyone is not None:
            here.update((name_key(name), name) for name in everyone)
        return sorted(here.values(), key=name_key)

    def names_here(self) -> "list[str]":
        """The members on this server."""
        with self._lock:
            return self._members.names()

    def roster(self) -> "list[str]":
        """Everyone online, as /users lists them: by name, operators marked ``@Ann``."""
        ordered = sorted(self._everyone(), key=lambda w: name_key(w.name))
        return [("@" if w.operator else "") + w.name for w in ordered]

    # -- operators ------------------------------------------------------------

    def whois(self, name: str) -> "Whois | None":
        """The member online under ``name``: here, or on another server sharing the room."""
        with self._lock:
            member = self._members.named(name)
            if member is not None:
                return _whois(member)
        return self.bus.whois(name) if self.bus is not None else None

    def sharing(self, address: str) -> "list[str]":
        """The names of everyone online from ``address``, on every server."""
        return sorted((w.name for w in self._everyone() if w.address == address), key=name_key)

    def _everyone(self) -> "list[Whois]":
        """Everyone online on every server (as far as the bus is in reach), as operators see them."""
        elsewhere = self.bus.roster() if self.bus is not None else None
        everyone = {name_key(w.name): w for w in elsewhere or []}
        with self._lock:  # what this server knows of its own members is the latest
            everyone.update((name_key(m.name), _whois(m)) for m in self._members)
        return list(everyone.values())

    def set_operator(self, member: Member, operator: bool) -> None:
        """Make ``member`` an operator, or no longer one; every server's /users will say so."""
        with self._lock:
            member.operator = operator
        if self.bus is not None:
            self.bus.describe(member.name, member.address, operator)
        order_log.warning("🛡️  %s %s", member.name, "is now an operator" if operator else "is no longer an operator")

    def give(self, order: Order) -> None:
        """Carry out an operator's order on every server sharing the room (or here alone)."""
        if self.bus is None or not self.bus.order(order):
            self.carry_out(order)

    def carry_out(self, order: Order, when: "float | None" = None) -> None:
        """Carry out ``order`` here: keep what it leaves, remove its member if it is here, tell everyone.

        The removed member's last line is the order's farewell; nobody is
        told that it left, since the notice said why.
        """
        self.moderation.apply(order)
        notice = order.notice()
        removing = order.kind in (OrderKind.KICK, OrderKind.BAN)
        with self._lock:
            if self._closed:
                return
            removed = self._members.named(order.name) if removing else None
            if removed is not None:
                self._members.remove(removed)
                self._quiet.discard(removed.member_id)
                self._for_good.discard(removed.member_id)
                removed.queue(encode_line(order.farewell()))  # off the table: its last line
                removed.quit()  # as in close(): it says no more, and its connection ends once the farewell is sent
            when = time.time() if when is None else when
            self._history.add(notice, when)
            recipients = self._queue_locked(encode_line(notice))
        if self.archive is not None:
            self.archive.keep_order(order, when)
        self._flushes.flush(recipients + ([removed] if removed is not None else []))
        if removed is not None and self.bus is not None:
            self.bus.release(removed.name)
        order_log.warning("🛡️  %s", notice)

    # -- delivery -----------------------------------------------------------

    def say(self, member: Member, *lines: str) -> None:
        """Send public lines from ``member`` to every other member, in one step, and log them.

        One lock, one append per recipient and one flush for the lot: when a
        sender's lines come in bunches, the work per recipient is done once
        per bunch instead of once per line.
        """
        if member.member_id in self._quiet:  # read without the lock: only this member's thread adds it
            with self._lock:
                self._quiet.discard(member.member_id)  # it speaks up: its leave will be told
        self._publish(list(lines), member)

    def deliver(
        self, lines: "list[str]", origin: "int | None", when: float, log_it: bool = True,
        joined: "str | None" = None, left: "str | None" = None,
    ) -> None:
        """Queue public ``lines`` for every member but the one numbered ``origin``, and keep them in the history.

        Lines said here come straight here; in a shared room, the bus calls
        this for every server's lines, in the order they were published,
        saying whose join (``joined``) or leave (``left``) a notice tells.
        A join notice skips the newcomers whose welcome counted that name.
        """
        with self._lock:
            if self._closed:
                return
            for line in lines:
                self._history.add(line, when)
            told_already = self._counted.joined(joined) if joined is not None else ()
            if left is not None:
                self._counted.left(left)
            recipients = self._queue_locked(encode_lines(lines), self._members.numbered(origin), told_already)
        if self.archive is not None:
            self.archive.add_lines(lines, when)
        self._flushes.flush(recipients)
        if log_it:
            log.info("📨 %s", "\n📨 ".join(lines))  # one record: each line gets its own timestamp

    def remember(self, said: "list[tuple[float, str]]") -> None:
        """Add lines said before this server started (from the bus) to the history."""
        with self._lock:
            self._history.add_earlier(said)

    def announce(self, line: str) -> None:
        """Send a notice to every member here, outside the history (the bus's comings and goings)."""
        with self._lock:
            recipients = self._queue_locked(encode_line(line))
        self._flushes.flush(recipients)

    def send_to(self, member: Member, line: str) -> None:
        """Send ``line`` to one member."""
        if member.queue(encode_line(line)):
            self._flushes.flush([member])

    def send_private(self, sender: Member, recipient_name: str, text: str) -> "str | None":
        """Deliver a private message; return a problem if nobody has that name or it was refused.

        In a shared room it goes through the bus, even to a member here, so
        that it never overtakes a public line its sender said just before.
        """
        line = messages.private_from(sender.name, text)
        found = self.bus.send_private(recipient_name, line, sender.member_id) if self.bus is not None else None
        if found is None:  # not shared, out of reach, or a name claimed here while the bus was
            found = self.deliver_private(recipient_name, line)
            if found is None and self.bus is not None and not self.bus.in_reach():
                return f"No user named {recipient_name} is on this server, and the other servers are out of reach."
            if found is None:
                return f"No user named {recipient_name} is online."
            if found is False:
                return _not_keeping_up(recipient_name)
        self.send_to(sender, messages.private_to(found, text))
        return None

    def deliver_private(self, recipient_name: str, line: str, origin: "int | None" = None) -> "str | bool | None":
        """Queue a private line for a member here: its name, False if it refused the line, None if not here.

        ``origin``, if given, is the sender's number here (the line came
        through the bus): it is the one told about a refusal.
        """
        with self._lock:
            recipient = self._members.named(recipient_name)
            if recipient is None:
                return None
            needs_flush = recipient.queue_private(encode_line(line))
            sender = self._members.numbered(origin)
        if needs_flush is None:
            if sender is not None:
                self.send_to(sender, messages.error(_not_keeping_up(recipient.name)))
            return False
        if needs_flush:
            self._flushes.flush([recipient])
        return recipient.name

    # -- helpers (the *_locked ones need self._lock held) -------------------

    def _publish(self, lines: "list[str]", origin: "Member | None", log_it: bool = True) -> None:
        """Send public lines to everyone but ``origin``: through the bus if the room is shared and it is in reach."""
        origin_id = origin.member_id if origin is not None else None
        when = time.time()
        if self.bus is None or not self.bus.publish(lines, origin_id, when, log_it):
            self.deliver(lines, origin_id, when, log_it)

    def _claim(self, name: str) -> "bool | None":
        """Claim ``name`` on the bus: True if claimed there, False if taken there, None without a bus in reach."""
        return None if self.bus is None else self.bus.claim(name)

    def _queue_locked(self, data: bytes, exclude: "Member | None" = None, told_already=()) -> "list[Member]":
        """Queue ``data`` for every member but ``exclude`` and those numbered in ``told_already``; return those that need a flush."""
        if told_already:
            return [m for m in self._members if m is not exclude and m.member_id not in told_already and m.queue(data)]
        return [m for m in self._members if m is not exclude and m.queue(data)]


class Departures:
    """Members gone whose leave is not announced yet: each is due ``grace_s`` after it left.

    Not thread-safe: the room's lock guards it.
    """

    def __init__(self, grace_s: float, clock=time.monotonic) -> None:
        self.grace_s = grace_s
        self._clock = clock
        self._due: "dict[str, tuple[str, float, str | None]]" = {}  # name_key(name) -> (name, when due, address)

    def add(self, name: str, address: "str | None") -> None:
        """``name``, of a member from ``address``, left now."""
        self._due[name_key(name)] = (name, self._clock() + self.grace_s, address)

    def came_back(self, name: str, address: "str | None") -> "bool | None":
        """Someone from ``address`` takes ``name``: is it the member whose leave is due?

        True if it left within its grace from the same address: its leave is
        never announced. False if it left, but this is someone else: the
        leave must be told now. None if the name is not waiting.
        """
        pending = self._due.pop(name_key(name), None)
        return None if pending is None else pending[2] == address

    def take_due(self, all_now: bool = False) -> "list[str]":
        """The names whose grace is over (all of them, if ``all_now``), forgotten as they are returned."""
        if not self._due:
            return []
        now = math.inf if all_now else self._clock()
        due = [name for name, when, _ in self._due.values() if when <= now]
        for name in due:
            del self._due[name_key(name)]
        return due


def shortened(text: str, limit: int = 40) -> str:
    """``text`` cut to ``limit`` characters, for the log."""
    return text if len(text) <= limit else text[:limit] + "…"


def log_online(online: "tuple[int, list[str]]", shared: bool) -> None:
    """Log who is online after a join or leave: ``online`` as MemberTable.first_names gives it."""
    where = " on this server" if shared else ""  # the other servers log their own
    log.info("📊 Active users%s: %s", where, online_summary(*online))


def online_summary(count: int, names: "list[str]") -> str:
    """``Ann, Bob and 3 more``: the names shown, and how many were left out of ``count``."""
    hidden = count - len(names)
    return (", ".join(names) or "none") + (f" and {hidden} more" if hidden > 0 else "")


class DeferredFlushes:
    """Members whose flush is put off until the end of a block, per thread.

    It is its own context manager (``with flushes.block():``), without a
    generator: a reader enters one block per ``recv``, so the block's own
    cost counts in a busy room.
    """

    def __init__(self) -> None:
        self._local = threading.local()

    def block(self) -> "DeferredFlushes":
        return self

    def __enter__(self) -> None:
        local = self._local
        depth = getattr(local, "depth", 0)
        local.depth = depth + 1  # a block within a block flushes at the end of the outer one
        if depth == 0:
            local.members = {}  # a dict as an ordered set

    def __exit__(self, *exc_info) -> None:
        local = self._local
        local.depth -= 1
        if local.depth == 0:
            pending, local.members = local.members, None
            for member in pending:
                member.flush()

    def flush(self, members: "list[Member]") -> None:
        """Flush ``members`` now or, inside a block on this thread, at its end."""
        pending = getattr(self._local, "members", None)
        if pending is None:
            for member in members:
                member.flush()
        else:
            pending.update(dict.fromkeys(members))

    def flush_now(self) -> None:
        """Inside a block, flush what this thread has put off so far."""
        pending = getattr(self._local, "members", None)
        if pending:
            members = list(pending)
            pending.clear()
            for member in members:
                member.flush()


def _whois(member: Member) -> Whois:
    return Whois(member.name, member.address, member.operator)


def _names_to_try(wanted: "str | None", default: str):
    """``wanted`` (if any), then ``default``, then ``default-2``, ``default-3``..."""
    if wanted is not None:
        yield wanted
    yield default
    for suffix in itertools.count(2):
        yield f"{default}-{suffix}"


def _not_keeping_up(name: str) -> str:
    return f"{name} is not keeping up with incoming messages: yours was not delivered. Try again later."
