"""One room across several servers, through a Redis stream.

Each server keeps serving its own clients with its own threads; what they
share goes through Redis:

=========================  =====================================================
Key                        What it holds
=========================  =====================================================
``chat:stream``            every chat line, action, notice and private message
                           of every server, one an entry, in one order (a
                           stream: ``XADD`` appends; ``READ`` reads on from the
                           last entry seen, or back from the newest for the
                           history). What each entry's fields mean:
                           :mod:`chat.bus.entry`
``chat:names``             who holds each name, and who holds it:
                           ``name_key -> "SERVER\\tName\\tADDRESS\\tOP"``
``chat:servers``           the servers sharing the room
``chat:alive:SERVER``      exists while SERVER is alive (a heartbeat renews it)
``chat:topic``,            what operators' orders leave behind: the topic, and
``chat:bans``,             the bans by address and the mutes by name in force
``chat:mutes``             (and ``chat:bans:ends``, ``chat:mutes:ends``)
=========================  =====================================================

The parts: :mod:`chat.bus.entry`, the one schema of the stream's entries;
:mod:`chat.bus.registry`, the servers, the names, and who holds each;
:mod:`chat.bus.standing`, the orders in force;
:class:`Contact`, whether Redis answers, said once each time that changes;
:class:`SkipLog`, the entries skipped, said once and then counted; and
:class:`RedisBus`, the room's bus and the thread that joins them up.

A server publishes its members' lines to the stream and does not deliver
them itself: its bus thread (:class:`RedisBus`) reads the stream, its own
entries with everyone else's, and hands each to the room
(:meth:`chat.core.room.Room.deliver`, or ``deliver_private`` for a private
message to one of its members). So all members on all servers see one
order, the stream's, and a private message never overtakes the public line
its sender said just before it. An operator's order goes the same way, to
each server's :meth:`chat.core.room.Room.carry_out`: every server carries it
out, in the same order as the lines around it. A server that loses Redis
for a while reads on from the last entry it delivered when it is back, so
nothing the others published in the meantime is lost (as long as the stream
still holds it: it keeps the last ``STREAM_MAX_ENTRIES``).

Anyone who can reach the Redis server can write to these keys too, so
nothing read back is trusted. Each entry is checked, and the lines members
see are made here from what it says (:mod:`chat.bus.entry`); names read
from the registry are checked as well. Entries are read by ``READ``, a Lua
script that leaves out the fields of any entry over the size limit, so
that no read returns more than ``READ_COUNT`` entries of that size. One
bound is Redis's own: the XREAD that waits for the next entry returns it
whole (redis-py reads a reply whole), as big as Redis let its writer make
it (``proto-max-bulk-len``, 512 MB by default), and it is dropped unread.
What is skipped is logged once, then counted (:class:`SkipLog`), so that a
stream full of bad entries cannot fill the log.

Why a stream and not Redis pub/sub: pub/sub forgets whatever is published
while a subscriber is away, and it keeps no history for newcomers.

A server that dies without releasing its names stops renewing its alive
key; when the key expires, another server removes it and announces that its
members left. Should the server have been alive after all (stalled, or cut
off from Redis for a while), it reads that notice in the stream and tells
the others that its members are back; its own members never hear of it.
"""

import itertools
import logging
import random
import threading
import time
import uuid
from dataclasses import replace
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import redis
from redis.backoff import NoBackoff
from redis.exceptions import AuthenticationError, RedisError, ResponseError
from redis.retry import Retry

from chat.bus.entry import MAX_FIELDS, Entry, Kind, MalformedEntry, UnsharableLine, fields_of
from chat.bus.registry import Registry, described
from chat.bus.standing import Standing
from chat.config import Timings
from chat.core import messages
from chat.core.framing import DEFAULT_MAX_LINE_BYTES
from chat.core.moderation import Order, Whois
from chat.core.text import name_key

log = logging.getLogger(__name__)

STREAM = "chat:stream"
# Entries the stream keeps (about: trimming is approximate, which is cheaper).
# A server away for longer than that many entries misses the oldest of them.
STREAM_MAX_ENTRIES = 10_000
# The bus thread waits at most this long for new entries (less if its
# heartbeat is due sooner), then does its chores.
READ_BLOCK_S = 1.0
# Entries one read returns at most: with the size limit of an entry
# (4 line limits: 16 KiB by default), no read holds more than 1.6 MiB.
READ_COUNT = 100
# A newcomer's history is the last conversation lines of the stream, but
# joins and leaves are not history: the bus looks this many entries back
# per line of history at most, to find them.
HISTORY_ENTRIES_PER_LINE = 20
# Skipped entries are logged the first time, then counted: how often the count is logged, at most.
SKIPS_REPORTED_EVERY_S = 60.0
# Redis answers in well under a millisecond: a command that takes a second
# means Redis is stalled, and the room carries on alone after that one wait.
CONNECT_TIMEOUT_S = 1.0
COMMAND_TIMEOUT_S = 1.0
# Waits between attempts to reach Redis again: doubling, with jitter.
RETRY_FIRST_S = 0.5
RETRY_MAX_S = 30.0
# How long close() waits for the bus thread (which it wakes at once).
CLOSE_WAIT_S = READ_BLOCK_S + 1.0

# The entries after (ARGV[1] "after") or before ("before") the ID ARGV[2]
# ("+": the newest included), ARGV[3] of them at most, newest first if
# before. Each is {id, fields}, but an entry of more than ARGV[4] bytes or
# ARGV[5] fields comes as {id, its size}: Redis checks sizes, so no reply
# holds more than ARGV[3] times ARGV[4] bytes, whatever anyone wrote.
READ = """
local entries
if ARGV[1] == 'after' then
    entries = redis.call('XRANGE', KEYS[1], '(' .. ARGV[2], '+', 'COUNT', ARGV[3])
elseif ARGV[2] == '+' then
    entries = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', ARGV[3])
else
    entries = redis.call('XREVRANGE', KEYS[1], '(' .. ARGV[2], '-', 'COUNT', ARGV[3])
end
local max_bytes, max_parts = tonumber(ARGV[4]), 2 * tonumber(ARGV[5])
for _, entry in ipairs(entries) do
    local size = 0
    for _, part in ipairs(entry[2]) do size = size + #part end
    if size > max_bytes or #entry[2] > max_parts then entry[2] = size end
end
return entries
"""

LOST = messages.system("Lost contact with the other servers; messages stay on this server until it is back.")
BACK = messages.system("Back in contact with the other servers.")


def check_url(url: str) -> str:
    """``url`` if redis-py can use it (``redis://``, ``rediss://``, ``unix://``); else ValueError saying why."""
    parts = urlsplit(url)
    shown = repr(without_password(url))  # these sentences end up on a terminal or in a log
    if parts.scheme not in ("redis", "rediss", "unix"):
        raise ValueError(f"{shown} is not a Redis URL: use redis://HOST:PORT/DB, rediss://... (TLS) or unix:///PATH")
    try:
        redis.connection.ConnectionPool.from_url(url)
    except ValueError as error:
        raise ValueError(f"{shown} is not a Redis URL: {error}") from None
    if parts.scheme != "unix" and not parts.hostname:
        raise ValueError(f"{shown} has no host: use redis://HOST:PORT/DB")
    if parts.scheme != "unix" and parts.path.strip("/") and not parts.path.strip("/").isdigit():
        raise ValueError(f"{shown} names no database: the path is a number, as in redis://HOST:PORT/0")
    return url


def without_password(url: str) -> str:
    """``url`` fit for a log: any password replaced by ``***``, in the address or the query (``?password=``)."""
    parts = urlsplit(url)
    if parts.password is not None:
        netloc = parts.netloc.rpartition("@")[2]
        user = f"{parts.username}:***@" if parts.username else ":***@"
        parts = parts._replace(netloc=user + netloc)
    query = parse_qsl(parts.query, keep_blank_values=True)
    if any("password" in key for key, _ in query):  # redis-py takes password= and ssl_password= there too
        hidden = [(key, "***" if "password" in key else value) for key, value in query]
        parts = parts._replace(query=urlencode(hidden, safe="*/"))
    return urlunsplit(parts)


class RedisBus:
    """This server's link to the others: the room's :class:`chat.core.room.Bus`, and a thread.

    Any thread may publish, claim or look up names. One thread, the bus
    thread, reads the stream, delivers what it reads to the room, renews the
    heartbeat, notices dead servers, and reconnects with backoff when Redis
    is out of reach. While it is, every method returns at once with "out of
    reach" (False or None), and the room carries on alone.

    ``timings.heartbeat_s`` and ``timings.alive_ttl_s`` say how often this
    server says it is alive, and how long after its last word it is taken
    for dead. An entry of the stream may hold up to four times
    ``max_line_bytes`` (this server's line limit): any bigger one is
    skipped unread.
    """

    def __init__(
        self,
        url: str,
        room,
        history_lines: int,
        timings: Timings = Timings(),
        max_line_bytes: int = DEFAULT_MAX_LINE_BYTES,
    ) -> None:
        self.timings = timings
        self.url = url
        self.room = room
        self.history_lines = history_lines
        self.max_entry_bytes = 4 * max_line_bytes
        self.server_id = uuid.uuid4().hex[:12]
        # A heartbeat is never kept waiting by a read (and 0 would block for ever).
        self._read_block_ms = max(1, round(min(READ_BLOCK_S, timings.heartbeat_s) * 1000))
        # Our own loop retries; redis-py must not retry (and wait) inside a call.
        options = dict(socket_connect_timeout=CONNECT_TIMEOUT_S, retry=Retry(NoBackoff(), 0))
        # Commands from any thread (a pool, thread-safe); the bus thread's reads on a client of their own,
        # which leaves the entries undecoded until their size is checked.
        self._redis = redis.Redis.from_url(url, socket_timeout=COMMAND_TIMEOUT_S, decode_responses=True, **options)
        read_timeout_s = self._read_block_ms / 1000 + COMMAND_TIMEOUT_S
        self._reader = redis.Redis.from_url(url, socket_timeout=read_timeout_s, decode_responses=False, **options)
        self._read_script = self._reader.register_script(READ)
        self.registry = Registry(self._redis, self.server_id, timings.alive_ttl_s)
        self.standing = Standing(self._reader, self.max_entry_bytes)
        self.contact = Contact(url, room)
        self.skips = SkipLog()
        self.standing_skips = SkipLog(where="of the orders kept in Redis")
        # Guards _described: how this server's members' names are described
        # in the registry (name_key -> "Name\tADDRESS\tOP"), kept here to say
        # it again after Redis was out of reach or lost everything.
        self._described_lock = threading.Lock()
        self._described: "dict[str, str]" = {}
        self._said_unkept = False  # an order Redis could not keep was logged (once)
        self._stopping = threading.Event()
        # Only the bus thread touches these: where it has read up to.
        self._last_id: "str | None" = None
        self._next_heartbeat = 0.0
        # Every entry this server publishes has a number. If publishing it
        # failed in a way that leaves open whether Redis took it (a timeout),
        # the room delivers it here at once, and its number is kept, so that
        # it is not delivered here a second time should it show up in the
        # stream after all. (Only calls under way when Redis is lost: a few.)
        # Publishing threads add, the bus thread discards: each a single,
        # atomic set operation.
        self._numbers = itertools.count(1)
        self._delivered_here: "set[int]" = set()
        self._said_unsharable = False  # a line of ours no entry carries was logged (once: our bug)
        self._thread = threading.Thread(target=self._run, name="redis-bus", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        """Stop the bus thread; release this server's names and tell the others its members left."""
        self._stopping.set()
        # Wake the bus thread from its XREAD: shutting its connection down ends the wait at once.
        self._reader.connection_pool.disconnect()
        if self._thread.ident is not None:
            self._thread.join(CLOSE_WAIT_S)
        if self.contact.in_reach():
            try:
                gone = self.registry.reap(self.server_id, stopping=True)
                if gone:
                    self._add(self._notices(Kind.LEFT, gone))
            except RedisError as error:
                log.warning("⚠️  Could not tell the other servers that this one stopped: %s", error)
        self.contact.end()  # from now on every call is a no-op
        # A call under way in another thread (a member leaving) finishes on
        # its connection: closing that under it would fail it with no RedisError.
        self._redis.connection_pool.disconnect(inuse_connections=False)
        self._reader.close()

    # -- the room's Bus interface (any thread) --------------------------------

    def in_reach(self) -> bool:
        return self.contact.in_reach()

    def publish(self, lines: "list[str]", origin: "int | None", when: float, log_it: bool = True) -> bool:
        entries = self._entries(lines, when, origin=origin or 0, log_it=log_it)
        return entries is not None and self._append(entries)

    def claim(self, name: str) -> "bool | None":
        return self._while_in_reach(self.registry.claim, name)

    def release(self, name: str) -> None:
        with self._described_lock:
            self._described.pop(name_key(name), None)
        self._while_in_reach(self.registry.release, name)

    def names(self) -> "list[str] | None":
        return self._while_in_reach(self.registry.everyone)

    def send_private(self, recipient: str, line: str, origin: int) -> "str | None":
        holder = self._while_in_reach(self.registry.holder, recipient)
        if holder is None:
            return None
        server, name = holder
        entries = self._entries([line], time.time(), origin=origin, log_it=False, to_server=server, recipient=name)
        return name if entries is not None and self._append(entries) else None  # if not, the room tries its own members

    def order(self, order: Order) -> bool:
        entry = Entry.of_order(self.server_id, order, time.time())
        try:
            Entry.from_fields(entry.to_fields())  # as every server, this one included, will read it
        except MalformedEntry as error:
            self._unsharable(f"the others would skip an order ({error.problem}): it is carried out on this server only")
            return False
        return self._fit([entry]) and self._append([entry])

    def describe(self, name: str, address: "str | None", operator: bool) -> None:
        with self._described_lock:
            self._described[name_key(name)] = described(name, address, operator)
        self._while_in_reach(self.registry.describe, name, address, operator)  # if not, said again when back

    def whois(self, name: str) -> "Whois | None":
        held = self._while_in_reach(self.registry.whois, name)
        return None if held is None else held[1]

    def roster(self) -> "list[Whois] | None":
        return self._while_in_reach(self.registry.roster)

    def _while_in_reach(self, call, *args):
        """``call(*args)``; None at once if Redis is out of reach, or if it stops answering now."""
        if not self.contact.in_reach():
            return None
        try:
            return call(*args)
        except RedisError as error:
            self.contact.lost(error)
            return None

    def _entries(self, lines: "list[str]", when: float, **options) -> "list[Entry] | None":
        """The entries that say this server's ``lines``; None if one cannot be shared (logged once: our bug)."""
        try:
            entries = [Entry.of_line(self.server_id, line, when, **options) for line in lines]
        except UnsharableLine as error:
            self._unsharable(f"{error}: it is shown on this server only")
            return None
        return entries if self._fit(entries) else None

    def _fit(self, entries: "list[Entry]") -> bool:
        """Whether the others read entries this big; if not, False (logged once: our bug)."""
        size = max(entry.size for entry in entries)
        if size <= self.max_entry_bytes:
            return True
        self._unsharable(f"an entry of {size} bytes is over the {self.max_entry_bytes} the others read: it stays on this server")
        return False

    def _unsharable(self, problem: str) -> None:
        if not self._said_unsharable:
            self._said_unsharable = True
            log.error("Cannot share a line through Redis (%s)", problem)

    def _append(self, entries: "list[Entry]") -> bool:
        """Append some of our entries to the stream, all or none; False if Redis is out of reach (the room delivers them here)."""
        if not self.contact.in_reach():
            return False
        numbered = [replace(entry, number=next(self._numbers)) for entry in entries]
        try:
            self._add(numbered)
        except RedisError as error:
            self._delivered_here.update(entry.number for entry in numbered)
            self.contact.lost(error)
            return False
        return True

    def _add(self, entries: "list[Entry]") -> None:
        orders = [entry.order for entry in entries if entry.order is not None]
        if len(entries) == 1 and not orders:
            self._redis.xadd(STREAM, entries[0].to_fields(), maxlen=STREAM_MAX_ENTRIES, approximate=True)
            return
        # In MULTI and EXEC: lines said together stay together, an order and
        # what it leaves behind too (no server reads one without the other),
        # and Redis takes them all or none.
        pipe = self._redis.pipeline(transaction=True)
        for entry in entries:
            pipe.xadd(STREAM, entry.to_fields(), maxlen=STREAM_MAX_ENTRIES, approximate=True)
        for order in orders:
            self.standing.keep(pipe, order)
        results = pipe.execute(raise_on_error=False)
        failed = [result for result in results if isinstance(result, Exception)]
        if any(isinstance(result, Exception) for result in results[: len(entries)]):
            raise failed[0]
        if failed and not self._said_unkept:  # someone else put a key of another type there
            self._said_unkept = True
            log.warning("⚠️  Redis did not keep an order for the servers that start later: %s", failed[0])

    def _notices(self, kind: Kind, names: "list[str]", elsewhere_only: bool = False, about: "str | None" = None):
        """Entries saying that ``names`` joined or left, given by this server about others (not its members' own doing)."""
        when = time.time()
        return [Entry(self.server_id, kind, name, when, elsewhere_only=elsewhere_only, about=about) for name in names]

    # -- the bus thread ----------------------------------------------------------

    def _run(self) -> None:
        delay = RETRY_FIRST_S
        while not self._stopping.is_set():
            try:
                if not self.contact.in_reach():
                    self._join_the_others()
                    delay = RETRY_FIRST_S
                self._deliver(self._read())
                self._keep_alive()
            except Exception as error:
                if self._stopping.is_set():
                    return  # close() cut the connection to wake us
                if isinstance(error, RedisError):
                    self.contact.lost(error)
                else:  # a bug of ours: say so, and carry on
                    log.exception("Unexpected error in the Redis bus")
                    self.contact.lost(None)
            else:
                continue
            self._stopping.wait(delay * random.uniform(0.5, 1.0))
            delay = min(delay * 2, RETRY_MAX_S)

    def _join_the_others(self) -> None:
        """Connect: on the first time, take the history from the stream; each time, (re)register."""
        if self._last_id is None:
            self._load_history()
        self._register()
        self._load_standing()
        self.contact.made(self.server_id)

    def _load_history(self) -> None:
        """Read on from the stream's last entry, and give the room the conversation before it as history.

        Joins, leaves and private messages are not history: the bus looks
        further back past them, as far as HISTORY_ENTRIES_PER_LINE entries
        per line it wants.
        """
        wanted = self.history_lines
        said: "list[tuple[float, str]]" = []  # newest first
        before, looked_at = "+", 0
        while True:
            page = self._read_entries("before", before, READ_COUNT if wanted else 1)
            if before == "+":
                self._last_id = page[0][0] if page else "0-0"
            for entry_id, entry in page:
                if entry is not None and entry.in_history:
                    said.append((entry.when, entry.line))
            looked_at += len(page)
            if len(said) >= wanted or len(page) < READ_COUNT or looked_at >= wanted * HISTORY_ENTRIES_PER_LINE:
                break
            before = page[-1][0]
        self.room.remember(said[:wanted][::-1])

    def _register(self) -> None:
        """Say this server is alive, and make the names it holds in Redis those of its members now.

        After Redis lost everything (a restart), the names are claimed
        again; after this server lost Redis for a while, the names of those
        who left meanwhile are released.
        """
        self.registry.heartbeat()
        went, clashes = self.registry.hold_only(self.room.names_here(), self._description)
        if went:  # the others still thought them here (our own members saw them leave)
            self._add(self._notices(Kind.LEFT, went, elsewhere_only=True))
        for name in clashes:
            log.warning("⚠️  %s is also the name of someone on another server (taken while we were apart)", name)
        self._next_heartbeat = time.monotonic() + self.timings.heartbeat_s

    def _description(self, name: str) -> str:
        """How ``name``, of a member here, is described in the registry."""
        with self._described_lock:
            return self._described.get(name_key(name)) or described(name, None, False)

    def _load_standing(self) -> None:
        """Keep the bans, the mutes and the topic in force: those given while this server was not there to hear.

        Loaded after the history, whose last entry is where the bus reads
        on from: an order given in between is read in the stream as well
        (and carried out twice here, which leaves the same).
        """
        orders, skipped = self.standing.load()
        for where, problem in skipped:
            self.standing_skips.skipped(where, problem)
        for order in orders:
            self.room.moderation.apply(order)

    def _read(self) -> "list[tuple[str, Entry | None]]":
        """The entries after the last one read: those there are now, or the first to come within the read block.

        XREAD waits for an entry, but returns it whole, however big: here it
        only wakes the bus thread, for one entry at most, and what it
        returned is dropped undecoded. The entries are read by READ, which
        leaves out what is too big to read.
        """
        entries = self._read_entries("after", self._last_id, READ_COUNT)
        if entries or not self._reader.xread({STREAM: self._last_id}, count=1, block=self._read_block_ms):
            return entries
        return self._read_entries("after", self._last_id, READ_COUNT)

    def _read_entries(self, direction: str, start: str, count: int) -> "list[tuple[str, Entry | None]]":
        """Up to ``count`` entries after or before the ID ``start``, each with its ID; None for one skipped (logged)."""
        args = [direction, start, count, self.max_entry_bytes, MAX_FIELDS]
        read = [(raw_id.decode(), raw) for raw_id, raw in self._read_script(keys=[STREAM], args=args)]
        return [(entry_id, self._entry_of(entry_id, raw)) for entry_id, raw in read]

    def _entry_of(self, entry_id: str, raw) -> "Entry | None":
        """The entry, or None if it is not one this server reads (counted in ``skips``)."""
        try:
            if isinstance(raw, int):  # too big: READ left its fields out
                raise MalformedEntry(f"{raw} bytes, over the {self.max_entry_bytes} an entry may hold")
            return Entry.from_fields(fields_of(raw, self.max_entry_bytes))
        except MalformedEntry as error:
            self.skips.skipped(entry_id, error.problem)
            return None

    def _deliver(self, entries: "list[tuple[str, Entry | None]]") -> None:
        """Hand what was read to the room, in the stream's order."""
        said = SaidTogether(self.room)
        with self.room.deferred_flushes():  # each member's lines go out together
            for entry_id, entry in entries:
                if entry is not None:
                    self._deliver_entry(entry, said)
                self._last_id = entry_id
            said.deliver()

    def _deliver_entry(self, entry: Entry, said: "SaidTogether") -> None:
        """Hand one entry to the room, unless this server's members have it already or it is not for them.

        Public lines wait in ``said`` for those said with them; anything
        else first has them delivered, so that the order holds.
        """
        ours = entry.server == self.server_id
        origin = entry.origin if ours else None  # member numbers are per server
        log_it = not ours or entry.log_it
        plain = entry.kind not in (Kind.JOINED, Kind.LEFT, Kind.RENAMED)
        if plain and not entry.private and entry.order is None and not entry.elsewhere_only and entry.about is None:
            if not (ours and entry.number in self._delivered_here):
                said.add(entry.line, origin, entry.when, log_it)
                return
        said.deliver()
        if ours and entry.elsewhere_only:
            return
        if ours and entry.number in self._delivered_here:  # delivered here already, when Redis seemed lost
            self._delivered_here.discard(entry.number)
            return
        if entry.about == self.server_id:  # we were taken for dead, but our members are here
            self._say_we_are_back(entry)
            return
        if entry.order is not None:
            self.room.carry_out(entry.order, entry.when)
            return
        if not entry.private:
            self.room.deliver(
                [entry.line], origin, entry.when, log_it,
                joined=entry.name if entry.kind is Kind.JOINED else None,
                left=entry.name if entry.kind in (Kind.LEFT, Kind.RENAMED) else None,  # renamed: the old name is free
            )
        elif entry.to_server == self.server_id:
            self.room.deliver_private(entry.recipient, entry.line, origin)

    def _say_we_are_back(self, notice: Entry) -> None:
        """Tell the other servers that a member of ours another server said had left is here.

        Said in answer to that notice, so that the others see it leave,
        then come back, in that order.
        """
        if notice.kind is Kind.LEFT and notice.name in self.room.names_here():
            self._add(self._notices(Kind.JOINED, [notice.name], elsewhere_only=True))

    def _keep_alive(self) -> None:
        """Once a heartbeat: say this server is alive, and remove those that are not."""
        if time.monotonic() < self._next_heartbeat:
            return
        if self.registry.heartbeat():  # too late: another server removed us
            self._register()
            log.warning("⚠️  The other servers took this one for dead: registered again")
        for server in self.registry.dead_servers():
            self._reap(server)
        self.skips.report_if_due()
        self.standing_skips.report_if_due()
        self._next_heartbeat = time.monotonic() + self.timings.heartbeat_s

    def _reap(self, server: str) -> None:
        """Remove a server that stopped answering, and tell everyone its members left (unless another server did)."""
        gone = self.registry.reap(server)
        if gone is None:
            return
        log.warning("💀 Server %s stopped answering: %d of its users left", server, len(gone))
        if gone:  # should that server still be alive, it reads this and says they are back
            self._add(self._notices(Kind.LEFT, gone, about=server))


class SaidTogether:
    """Public lines read from the stream, one after another, that one server said together.

    A server publishes the lines of one ``recv`` together (Room.say), each
    an entry of its own. Handed to the room in one ``Room.deliver`` again,
    they reach each member in one piece, as they would on one server,
    rather than costing every member a queueing per line.
    """

    def __init__(self, room) -> None:
        self.room = room
        self._said_as: "tuple | None" = None  # (origin, when, log_it) of the lines waiting
        self._lines: "list[str]" = []

    def add(self, line: str, origin: "int | None", when: float, log_it: bool) -> None:
        said_as = (origin, when, log_it)
        if said_as != self._said_as:
            self.deliver()
            self._said_as = said_as
        self._lines.append(line)

    def deliver(self) -> None:
        """Hand the lines waiting to the room."""
        if self._lines:
            origin, when, log_it = self._said_as
            self.room.deliver(self._lines, origin, when, log_it)
            self._lines = []
        self._said_as = None


class SkipLog:
    """The entries of the stream (or of another key: ``where``) the bus skipped: the first is logged with why, then how many.

    Whoever can write to the stream can fill it with entries this server
    skips: each of them logged would flood the log. So only the first is
    logged, with its reason; after it, the count of those skipped since,
    with the latest reason, at most once per ``every_s`` (looked at by
    ``report_if_due``, which the bus thread calls once a heartbeat).
    Only the bus thread uses it.
    """

    def __init__(
        self, every_s: float = SKIPS_REPORTED_EVERY_S, clock=time.monotonic, where: str = "of the Redis stream"
    ) -> None:
        self._where = where  # what the entries skipped are entries of
        self._every_s = every_s
        self._clock = clock
        self._next_report: "float | None" = None  # None: none skipped yet
        self._count = 0  # skipped since the last line logged
        self._latest = ""

    def skipped(self, entry_id: str, problem: str) -> None:
        if self._next_report is None:
            log.warning(
                "⚠️  Skipped entry %s %s: %s. Something other than this version's servers "
                "writes to it; from now on, skipped entries are counted, and the count logged now and then",
                entry_id, self._where, problem,
            )
            self._next_report = self._clock() + self._every_s
            return
        self._count += 1
        self._latest = f"{entry_id}: {problem}"
        self.report_if_due()

    def report_if_due(self) -> None:
        if self._count and self._clock() >= self._next_report:
            log.warning("⚠️  Skipped %d more entries %s (the latest, %s)", self._count, self._where, self._latest)
            self._count = 0
            self._next_report = self._clock() + self._every_s


class Contact:
    """Whether Redis answers now; each time that changes, the log and this server's members are told once.

    Any thread may ask (``in_reach``, an event read without a lock) and
    report a failure (``lost``); the bus thread says when contact is
    ``made``, the first time and after each loss.
    """

    def __init__(self, url: str, room) -> None:
        self.url = url
        self.room = room
        self._in_reach = threading.Event()
        # Guards the changes of _in_reach and the two flags below, so that
        # "lost" and "back" are each said once.
        self._lock = threading.Lock()
        self._ever_made = False
        self._said_unreachable = False  # the first failure to connect was logged

    def in_reach(self) -> bool:
        return self._in_reach.is_set()

    def made(self, server_id: str) -> None:
        with self._lock:
            again, self._ever_made = self._ever_made, True
            self._in_reach.set()
        if again:
            log.info("🔗 Back in contact with Redis: the room is shared again.")
            self.room.announce(BACK)
        else:
            log.info("🔗 Sharing the room through Redis at %s (this server: %s)", without_password(self.url), server_id)

    def lost(self, error: "Exception | None") -> None:
        """Redis stopped answering (or ``error`` kept us from reaching it): say so once."""
        with self._lock:
            was_in_reach = self._in_reach.is_set()
            first_failure = not was_in_reach and not self._ever_made and not self._said_unreachable
            self._said_unreachable |= first_failure
            self._in_reach.clear()
        if first_failure and isinstance(error, AuthenticationError):  # logged after the lock, like everything else here
            log.warning(
                "⚠️  Redis at %s refused to let this server in (%s): check the user name and password in the URL; "
                "serving this server's clients alone, and trying again",
                without_password(self.url), error,
            )
        elif first_failure:
            log.warning(
                "⚠️  Cannot reach Redis at %s (%s)%s: serving this server's clients alone, and trying again",
                without_password(self.url), error, _hint(error),
            )
        if not was_in_reach:
            return
        log.warning("⚠️  Lost contact with Redis (%s): serving this server's clients alone until it is back", error)
        self.room.announce(LOST)

    def end(self) -> None:
        """From now on, out of reach for good (the bus is closed), and said no more."""
        with self._lock:
            self._in_reach.clear()
            self._ever_made = self._said_unreachable = True


def _hint(error: "Exception | None") -> str:
    """What to check when Redis answers, but refuses us."""
    if isinstance(error, ResponseError):
        return "; check the password and the database number in the URL"
    return ""
