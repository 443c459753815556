"""One room across several servers, through a Redis stream.

Each server keeps serving its own clients with its own threads; what they
share goes through Redis:

=========================  =====================================================
Key                        What it holds
=========================  =====================================================
``chat:stream``            every public line and private message of every
                           server, in one order (a stream: ``XADD`` appends,
                           ``XREAD`` reads on from the last entry seen,
                           ``XREVRANGE`` gives the last N)
``chat:names``             who holds each name: ``name_key -> "SERVER\\tName"``
``chat:servers``           the servers sharing the room
``chat:alive:SERVER``      exists while SERVER is alive (a heartbeat renews it)
=========================  =====================================================

A server publishes its members' lines to the stream and does not deliver
them itself: its bus thread (:class:`RedisBus`) reads the stream, its own
entries with everyone else's, and hands each to the room
(:meth:`chat.core.room.Room.deliver`, or ``deliver_private`` for a private
message to one of its members). So all members on all servers see one
order, the stream's, and a private message never overtakes the public line
its sender said just before it. A server that loses Redis for a while reads on from the
last entry it delivered when it is back, so nothing the others published in
the meantime is lost (as long as the stream still holds it: it keeps the last
``STREAM_MAX_ENTRIES``).

Why a stream and not Redis pub/sub: pub/sub forgets whatever is published
while a subscriber is away, and it keeps no history for newcomers.

Names are claimed with ``HSETNX``, which only one server can win. A server
that dies without releasing its names stops renewing its ``chat:alive`` key;
when the key expires, another server removes its names and announces that
its members left (``REAP``, a Lua script, so that only one server does it).
"""

import itertools
import logging
import math
import random
import threading
import time
import uuid
from urllib.parse import urlsplit, urlunsplit

import redis
from redis.backoff import NoBackoff
from redis.exceptions import AuthenticationError, RedisError, ResponseError
from redis.retry import Retry

from chat.config import Timings
from chat.core import messages
from chat.core.text import name_key

log = logging.getLogger(__name__)

STREAM = "chat:stream"
NAMES = "chat:names"
SERVERS = "chat:servers"
# Entries the stream keeps (about: trimming is approximate, which is cheaper).
# A server away for longer than that many entries misses the oldest of them.
STREAM_MAX_ENTRIES = 10_000
# The bus thread waits this long for new entries, then does its chores.
READ_BLOCK_MS = 1_000
READ_COUNT = 1_000
# A server renews its chat:alive key this often; it expires after ALIVE_TTL_S,
# and then the others say its members left: within ALIVE_TTL_S + HEARTBEAT_S.
HEARTBEAT_S = 1.5
ALIVE_TTL_S = 6
# Redis answers in well under a millisecond: a command that takes a second
# means Redis is stalled, and the room carries on alone after that one wait.
CONNECT_TIMEOUT_S = 1.0
COMMAND_TIMEOUT_S = 1.0
# Waits between attempts to reach Redis again: doubling, with jitter.
RETRY_FIRST_S = 0.5
RETRY_MAX_S = 30.0
# How long close() waits for the bus thread (which it wakes at once).
CLOSE_WAIT_S = READ_BLOCK_MS / 1000 + 1.0

LOST = messages.system("Lost contact with the other servers; messages stay on this server until it is back.")
BACK = messages.system("Back in contact with the other servers.")

# Give up a name, if this server holds it. KEYS: names; ARGV: name key, server.
RELEASE = """
local held = redis.call('HGET', KEYS[1], ARGV[1])
if held and string.sub(held, 1, #ARGV[2] + 1) == ARGV[2] .. '\\t' then
    return redis.call('HDEL', KEYS[1], ARGV[1])
end
return 0
"""

# Remove a server that is no longer alive (or, with ARGV[2] "stopping", that
# is stopping), and return the names it held. KEYS: servers, names, its alive
# key; ARGV: the server, and "stopping" or "".
REAP = """
if ARGV[2] == 'stopping' then redis.call('DEL', KEYS[3]) end
if redis.call('EXISTS', KEYS[3]) == 1 then return {} end
if redis.call('SREM', KEYS[1], ARGV[1]) == 0 then return {} end
local prefix = ARGV[1] .. '\\t'
local gone = {}
local held = redis.call('HGETALL', KEYS[2])
for i = 1, #held, 2 do
    if string.sub(held[i + 1], 1, #prefix) == prefix then
        redis.call('HDEL', KEYS[2], held[i])
        table.insert(gone, string.sub(held[i + 1], #prefix + 1))
    end
end
return gone
"""


def alive_key(server: str) -> str:
    return f"chat:alive:{server}"


def check_url(url: str) -> str:
    """``url`` if redis-py can use it (``redis://``, ``rediss://``, ``unix://``); else ValueError saying why."""
    parts = urlsplit(url)
    if parts.scheme not in ("redis", "rediss", "unix"):
        raise ValueError(f"{url!r} is not a Redis URL: use redis://HOST:PORT/DB, rediss://... (TLS) or unix:///PATH")
    try:
        redis.connection.ConnectionPool.from_url(url)
    except ValueError as error:
        raise ValueError(f"{url!r} is not a Redis URL: {error}") from None
    if parts.scheme != "unix" and not parts.hostname:
        raise ValueError(f"{url!r} has no host: use redis://HOST:PORT/DB")
    if parts.scheme != "unix" and parts.path.strip("/") and not parts.path.strip("/").isdigit():
        raise ValueError(f"{url!r} names no database: the path is a number, as in redis://HOST:PORT/0")
    return url


def without_password(url: str) -> str:
    """``url`` fit for a log: any password replaced by ``***``."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rpartition("@")[2]
    user = f"{parts.username}:***@" if parts.username else ":***@"
    return urlunsplit(parts._replace(netloc=user + netloc))


class RedisBus:
    """This server's link to the others: the room's :class:`chat.core.room.Bus`, and a thread.

    Any thread may publish, claim or look up names. One thread, the bus
    thread, reads the stream, delivers what it reads
    to the room, renews the heartbeat, notices dead servers, and reconnects
    with backoff when Redis is out of reach. While it is, every method
    returns at once with "out of reach" (False or None), and the room carries
    on alone.
    """

    def __init__(self, url: str, room, history_lines: int, timings: Timings = Timings()) -> None:
        self.timings = timings
        self.url = url
        self.room = room
        self.history_lines = history_lines
        self.server_id = uuid.uuid4().hex[:12]
        # Our own loop retries; redis-py must not retry (and wait) inside a call.
        options = dict(decode_responses=True, socket_connect_timeout=CONNECT_TIMEOUT_S, retry=Retry(NoBackoff(), 0))
        # Commands from any thread (a pool, thread-safe); the bus thread's reads on a client of their own.
        self._redis = redis.Redis.from_url(url, socket_timeout=COMMAND_TIMEOUT_S, **options)
        self._reader = redis.Redis.from_url(url, socket_timeout=READ_BLOCK_MS / 1000 + COMMAND_TIMEOUT_S, **options)
        self._release = self._redis.register_script(RELEASE)
        self._reap = self._redis.register_script(REAP)
        # Set while Redis answers. Guarded by _reach_lock when it changes, so
        # that "lost" and "back" are each said once.
        self._in_reach = threading.Event()
        self._reach_lock = threading.Lock()
        self._ever_in_reach = False
        self._said_unreachable = False  # the first failure to connect was logged
        self._stopping = threading.Event()
        # Only the bus thread touches these: where it has read up to.
        self._last_id: "str | None" = None
        self._next_heartbeat = 0.0
        # Every entry this server publishes has a number. If publishing it
        # failed in a way that leaves open whether Redis took it (a timeout),
        # the room delivers it here at once, and its number is kept, so that
        # it is not delivered here a second time should it show up in the
        # stream after all. (Only calls under way when Redis is lost: a few.)
        self._numbers = itertools.count(1)
        self._delivered_here: "set[str]" = set()
        self._thread = threading.Thread(target=self._run, name="redis-bus", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        """Stop the bus thread; release this server's names and tell the others its members left."""
        self._stopping.set()
        # Wake the bus thread from its XREAD: shutting its connection down ends the wait at once.
        self._reader.connection_pool.disconnect()
        self._thread.join(CLOSE_WAIT_S)
        if self._in_reach.is_set():
            try:
                self._reap_server(self.server_id, stopping=True)
            except RedisError as error:
                log.warning("⚠️  Could not tell the other servers that this one stopped: %s", error)
        self._in_reach.clear()  # from now on every call is a no-op
        self._redis.close()
        self._reader.close()

    # -- the room's Bus interface (any thread) --------------------------------

    def in_reach(self) -> bool:
        return self._in_reach.is_set()

    def publish(self, lines: "list[str]", origin: "int | None", when: float, log_it: bool = True) -> bool:
        entry = {"s": self.server_id, "o": origin or 0, "t": repr(when), "g": int(log_it), "l": "\n".join(lines)}
        return self._append(entry)

    def _append(self, entry: dict) -> bool:
        """Append one of our entries to the stream; False if Redis is out of reach (the room delivers it here)."""
        if not self._in_reach.is_set():
            return False
        entry["i"] = number = str(next(self._numbers))
        try:
            self._redis.xadd(STREAM, entry, maxlen=STREAM_MAX_ENTRIES, approximate=True)
        except RedisError as error:
            self._delivered_here.add(number)
            self._lost(error)
            return False
        return True

    def claim(self, name: str) -> "bool | None":
        if not self._in_reach.is_set():
            return None
        try:
            return bool(self._redis.hsetnx(NAMES, name_key(name), f"{self.server_id}\t{name}"))
        except RedisError as error:
            self._lost(error)
            return None

    def release(self, name: str) -> None:
        if not self._in_reach.is_set():
            return
        try:
            self._release(keys=[NAMES], args=[name_key(name), self.server_id])
        except RedisError as error:
            self._lost(error)

    def names(self) -> "list[str] | None":
        if not self._in_reach.is_set():
            return None
        try:
            held = self._redis.hvals(NAMES)
        except RedisError as error:
            self._lost(error)
            return None
        return [value.partition("\t")[2] for value in held]

    def send_private(self, recipient: str, line: str, origin: int) -> "str | None":
        if not self._in_reach.is_set():
            return None
        try:
            held = self._redis.hget(NAMES, name_key(recipient))
        except RedisError as error:
            self._lost(error)
            return None
        if held is None:
            return None
        server, _, name = held.partition("\t")
        if not self._append({"s": self.server_id, "o": origin, "to": server, "n": name, "l": line}):
            return None  # the room tries its own members
        return name

    # -- the bus thread ----------------------------------------------------------

    def _run(self) -> None:
        delay = RETRY_FIRST_S
        while not self._stopping.is_set():
            try:
                if not self._in_reach.is_set():
                    self._join_the_others()
                    delay = RETRY_FIRST_S
                self._deliver(self._read())
                self._keep_alive()
            except Exception as error:
                if self._stopping.is_set():
                    return  # close() cut the connection to wake us
                if isinstance(error, RedisError):
                    self._lost(error)
                else:  # a bug of ours: say so, and carry on
                    log.exception("Unexpected error in the Redis bus")
                    self._lost(None)
            else:
                continue
            self._stopping.wait(delay * random.uniform(0.5, 1.0))
            delay = min(delay * 2, RETRY_MAX_S)

    def _join_the_others(self) -> None:
        """Connect: on the first time, take the history from the stream; each time, (re)register."""
        if self._last_id is None:
            entries = self._redis.xrevrange(STREAM, count=max(self.history_lines, 1))  # newest first
            self._last_id = entries[0][0] if entries else "0-0"
            said = []
            for _, fields in reversed(entries):
                with _skipping_malformed():
                    if "to" not in fields:  # private messages are no history
                        said += [(_time(fields), line) for line in fields["l"].split("\n")]
            self.room.remember(said[-self.history_lines :] if self.history_lines else [])
        self._register()
        with self._reach_lock:
            again, self._ever_in_reach = self._ever_in_reach, True
            self._in_reach.set()
        if again:
            log.info("🔗 Back in contact with Redis: the room is shared again.")
            self.room.announce(BACK)
        else:
            log.info("🔗 Sharing the room through Redis at %s (this server: %s)", without_password(self.url), self.server_id)

    def _register(self) -> None:
        """Say this server is alive, and make the names it holds in Redis those of its members now.

        After Redis lost everything (a restart), the names are claimed
        again; after this server lost Redis for a while, the names of those
        who left meanwhile are released.
        """
        mine = self.server_id + "\t"
        names = {name_key(name): name for name in self.room.names_here()}
        pipe = self._redis.pipeline(transaction=False)
        pipe.sadd(SERVERS, self.server_id)
        pipe.set(alive_key(self.server_id), "1", px=round(self.timings.alive_ttl_s * 1000))
        pipe.hgetall(NAMES)
        held = pipe.execute()[2]
        went = [holder[len(mine) :] for key, holder in held.items() if holder.startswith(mine) and key not in names]
        for name in went:
            self._release(keys=[NAMES], args=[name_key(name), self.server_id])
        if went:  # the others still thought them here (our own members saw them leave)
            self._redis.xadd(STREAM, self._notice([messages.left(name) for name in went], elsewhere_only=True))
        for key, name in names.items():
            if key not in held and not self._redis.hsetnx(NAMES, key, mine + name):
                held[key] = self._redis.hget(NAMES, key) or mine
            if not held.get(key, mine).startswith(mine):
                log.warning("⚠️  %s is also the name of someone on another server (taken while we were apart)", name)
        self._next_heartbeat = time.monotonic() + self.timings.heartbeat_s

    def _read(self):
        return self._reader.xread({STREAM: self._last_id}, count=READ_COUNT, block=READ_BLOCK_MS) or []

    def _deliver(self, response) -> None:
        """Hand what was read to the room, in the stream's order."""
        for _, entries in response:
            with self.room.deferred_flushes():  # each member's lines go out together
                for entry_id, fields in entries:
                    with _skipping_malformed():
                        self._deliver_entry(fields)
                    self._last_id = entry_id

    def _deliver_entry(self, fields: dict) -> None:
        ours = fields["s"] == self.server_id
        if ours and "e" in fields:  # meant for the other servers only
            return
        if ours and fields.get("i") in self._delivered_here:  # delivered here already, when Redis seemed lost
            self._delivered_here.discard(fields["i"])
            return
        if fields.get("r") == self.server_id:  # we were taken for dead, but our members are here
            return
        origin = int(fields["o"]) if ours else None  # member numbers are per server
        if "to" in fields:  # a private message
            if fields["to"] == self.server_id:
                self.room.deliver_private(fields["n"], fields["l"], origin)
            return
        log_it = not ours or fields.get("g") == "1"  # our own notices were logged when they happened
        self.room.deliver(fields["l"].split("\n"), origin, _time(fields), log_it)

    def _keep_alive(self) -> None:
        if time.monotonic() < self._next_heartbeat:
            return
        pipe = self._redis.pipeline(transaction=False)
        pipe.sadd(SERVERS, self.server_id)
        pipe.set(alive_key(self.server_id), "1", px=round(self.timings.alive_ttl_s * 1000))
        readded, _ = pipe.execute()
        if readded:  # our heartbeat came too late, and another server removed us
            log.warning("⚠️  The other servers took this one for dead: registering again")
            self._register()
            here = self.room.names_here()
            if here:  # they were told our members left: tell them they are back
                self._append(self._notice([messages.joined(name) for name in here], elsewhere_only=True))
        for server in self._redis.smembers(SERVERS):
            if server != self.server_id and not self._redis.exists(alive_key(server)):
                self._reap_server(server)
        self._next_heartbeat = time.monotonic() + self.timings.heartbeat_s

    def _reap_server(self, server: str, stopping: bool = False) -> None:
        """Remove a server that stopped (or this one, stopping), and tell everyone its members left."""
        gone = self._reap(keys=[SERVERS, NAMES, alive_key(server)], args=[server, "stopping" if stopping else ""])
        if server != self.server_id:
            log.warning("💀 Server %s stopped answering: %d of its users left", server, len(gone))
        if gone:
            lines = [messages.left(name) for name in sorted(gone, key=name_key)]
            entry = self._notice(lines)
            entry["r"] = server  # should that server still be alive, it knows its members are not gone
            self._redis.xadd(STREAM, entry, maxlen=STREAM_MAX_ENTRIES, approximate=True)

    def _notice(self, lines: "list[str]", elsewhere_only: bool = False) -> dict:
        """A stream entry for notices this server gives about others (not its members' own doing)."""
        entry = {"s": self.server_id, "o": 0, "t": repr(time.time()), "g": 1, "l": "\n".join(lines)}
        if elsewhere_only:
            entry["e"] = 1
        return entry

    def _lost(self, error: "Exception | None") -> None:
        """Redis stopped answering: say so once, and let the bus thread reconnect."""
        with self._reach_lock:
            if not self._in_reach.is_set():
                if not self._ever_in_reach and not self._said_unreachable:
                    self._said_unreachable = True
                    log.warning(
                        "⚠️  Cannot reach Redis at %s (%s)%s: serving this server's clients alone, and trying again",
                        without_password(self.url), error, _hint(error),
                    )
                return
            self._in_reach.clear()
        log.warning("⚠️  Lost contact with Redis (%s): serving this server's clients alone until it is back", error)
        self.room.announce(LOST)


def _time(fields: dict) -> float:
    """An entry's time, which must be a plausible one (it is shown to newcomers)."""
    when = float(fields["t"])
    if not (math.isfinite(when) and 0 <= when < 1e11):
        raise ValueError(f"time {fields['t']!r}")
    return when


def _hint(error: "Exception | None") -> str:
    """What to check when Redis answers, but refuses us."""
    if isinstance(error, (AuthenticationError, ResponseError)):
        return "; check the password and the database number in the URL"
    return ""


class _skipping_malformed:
    """A context manager: an entry that is not ours to read (a missing or odd field) is logged and skipped."""

    def __enter__(self):
        return self

    def __exit__(self, kind, error, traceback) -> bool:
        if kind in (KeyError, ValueError, AttributeError):
            log.warning("⚠️  Skipped a malformed entry in the Redis stream: %r", error)
            return True
        return False
