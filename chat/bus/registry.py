"""Who is where in a shared room: the servers sharing it, and the names each holds.

Three kinds of Redis key (see also :mod:`chat.bus.redis_bus`):

* ``chat:names``, a hash ``name_key -> "SERVER\\tName\\tADDRESS\\tOP"``: a
  name is claimed with ``HSETNX`` (as ``"SERVER\\tName"``), which only one
  server can win; then the server that holds it says who holds it
  (:meth:`Registry.describe`): the address it is counted by
  (:func:`chat.admission.address_key`; empty if none) and whether it is an
  operator (``1``) or not (``0``), which ``/users``, ``/kick`` and ``/ban``
  on every server need;
* ``chat:servers``, a set: the servers sharing the room;
* ``chat:alive:SERVER``, which exists while SERVER is alive: it renews the
  key before it expires.

A server that dies without giving up its names stops renewing its key; once
the key has expired, another server reaps it: ``REAP``, a Lua script, removes
it and its names in one step, so that exactly one server does so.

Every method here is one or a few Redis calls and raises redis-py's
``RedisError`` if Redis does not answer: :class:`chat.bus.redis_bus.RedisBus`
decides what that means.

Anyone who can reach the Redis server can write here too, so a holder
read back is checked: a name that breaks the rules for a user name, a
server that is no server id, an address that is none or a flag that is
neither 0 nor 1 counts as no holder at all (it would otherwise be shown
to users in ``/users`` or ``[PM to ...]``).
"""

import re

import redis

from chat.bus.entry import valid_address
from chat.core.moderation import Whois
from chat.core.text import name_key, name_problem

_SERVER_ID = re.compile(r"[0-9A-Za-z_-]{1,64}")

NAMES = "chat:names"
SERVERS = "chat:servers"

# Give up a name, if this server holds it. KEYS: names; ARGV: name key, server.
RELEASE = """
local held = redis.call('HGET', KEYS[1], ARGV[1])
if held and string.sub(held, 1, #ARGV[2] + 1) == ARGV[2] .. '\\t' then
    return redis.call('HDEL', KEYS[1], ARGV[1])
end
return 0
"""

# Say who holds a name, if this server holds it (and, if ARGV[4] is not
# empty, only if it is still described as ARGV[4] says). KEYS: names; ARGV:
# name key, server, what it holds ("Name\tADDRESS\tOP"), "" or the value expected.
DESCRIBE = """
local held = redis.call('HGET', KEYS[1], ARGV[1])
if not held or string.sub(held, 1, #ARGV[2] + 1) ~= ARGV[2] .. '\\t' then return 0 end
if ARGV[4] ~= '' and held ~= ARGV[4] then return 0 end
return redis.call('HSET', KEYS[1], ARGV[1], ARGV[2] .. '\\t' .. ARGV[3]) + 1
"""

# Remove a server that is no longer alive (or, with ARGV[2] "stopping", that
# is stopping), and return the names it held; false (nil to us) if the server
# is alive or no longer there (another server reaped it first). KEYS:
# servers, names, its alive key; ARGV: the server, and "stopping" or "".
REAP = """
if ARGV[2] == 'stopping' then redis.call('DEL', KEYS[3]) end
if redis.call('EXISTS', KEYS[3]) == 1 then return false end
if redis.call('SREM', KEYS[1], ARGV[1]) == 0 then return false end
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


class Registry:
    """One server's view of the registry: it claims, releases and looks up names, and says it is alive.

    Thread-safe (one redis-py client, whose connection pool is).
    """

    def __init__(self, client: redis.Redis, server: str, alive_ttl_s: float) -> None:
        self._redis = client
        self.server = server
        self._mine = server + "\t"  # how the names this server holds begin
        self._alive_ttl_ms = round(alive_ttl_s * 1000)
        self._release = client.register_script(RELEASE)
        self._describe = client.register_script(DESCRIBE)
        self._reap = client.register_script(REAP)

    def claim(self, name: str) -> bool:
        """True if ``name`` is now this server's, False if another server (or this one) holds it."""
        return bool(self._redis.hsetnx(NAMES, name_key(name), self._mine + name))

    def release(self, name: str) -> None:
        """Give up ``name`` if this server holds it; a name another server holds stays its."""
        self._release(keys=[NAMES], args=[name_key(name), self.server])

    def describe(self, name: str, address: "str | None", operator: bool) -> bool:
        """Say who holds ``name``, if this server does: the address it is counted by, and whether it is an operator."""
        description = described(name, address, operator)
        return bool(self._describe(keys=[NAMES], args=[name_key(name), self.server, description, ""]))

    def everyone(self) -> "list[str]":
        """The names held on every server."""
        return [who.name for who in self.roster()]

    def roster(self) -> "list[Whois]":
        """Everyone online on every server: name, address (None if not described yet) and operator flag."""
        return [held[1] for held in map(_holder, self._redis.hvals(NAMES)) if held is not None]

    def holder(self, name: str) -> "tuple[str, str] | None":
        """Which server holds ``name``, and the name as it was given; None if nobody does."""
        held = self.whois(name)
        return None if held is None else (held[0], held[1].name)

    def whois(self, name: str) -> "tuple[str, Whois] | None":
        """Which server holds ``name``, and who holds it (the name as it was given); None if nobody does."""
        held = self._redis.hget(NAMES, name_key(name))
        return None if held is None else _holder(held)

    def heartbeat(self) -> bool:
        """Say this server is alive for another alive_ttl_s; True if it had been taken for dead and reaped."""
        pipe = self._redis.pipeline(transaction=False)
        pipe.sadd(SERVERS, self.server)
        pipe.set(alive_key(self.server), "1", px=self._alive_ttl_ms)
        readded, _ = pipe.execute()
        return bool(readded)

    def hold_only(self, names: "list[str]", describe) -> "tuple[list[str], list[str]]":
        """Make the names this server holds exactly ``names`` (its members now), each as ``describe(name)`` says.

        Returns the names it held and no longer does (their holders left
        while Redis was out of reach), and those of ``names`` held on
        another server (claimed there meanwhile). A name still held here
        is described again if that changed meanwhile (an operator since,
        say), unless this server's members described it again since it
        was read here: theirs is the latest word.
        """
        wanted = {name_key(name): name for name in names}
        held = self._redis.hgetall(NAMES)
        ours = {key: holder[len(self._mine) :] for key, holder in held.items() if holder.startswith(self._mine)}
        went = [name.partition("\t")[0] for key, name in ours.items() if key not in wanted]
        went = [name for name in went if name_problem(name) is None]
        for name in went:
            self.release(name)
        clashes = []
        for key, name in wanted.items():
            holder, description = held.get(key), describe(name)
            if holder is None and not self._redis.hsetnx(NAMES, key, self._mine + description):
                holder = self._redis.hget(NAMES, key)  # claimed elsewhere since we looked
            if holder is not None and not holder.startswith(self._mine):
                clashes.append(name)
            elif holder is not None and holder != self._mine + description:
                self._describe(keys=[NAMES], args=[key, self.server, description, holder])
        return went, clashes

    def dead_servers(self) -> "list[str]":
        """The other servers whose alive key has expired (not yet reaped)."""
        others = [server for server in self._redis.smembers(SERVERS) if server != self.server]
        return [server for server in others if not self._redis.exists(alive_key(server))]

    def reap(self, server: str, stopping: bool = False) -> "list[str] | None":
        """Remove ``server`` (this one, if ``stopping``) and free its names, if it is dead.

        Returns the names it held, or None if it was not removed here: it is
        alive, or another server reaped it first.
        """
        gone = self._reap(keys=[SERVERS, NAMES, alive_key(server)], args=[server, "stopping" if stopping else ""])
        if gone is None:
            return None
        names = (held.partition("\t")[0] for held in gone)  # "Name\tADDRESS\tOP" once described
        return sorted((name for name in names if name_problem(name) is None), key=name_key)


def described(name: str, address: "str | None", operator: bool) -> str:
    """What the registry says of a name's holder, after its server: ``"Name\\tADDRESS\\tOP"``."""
    return f"{name}\t{address or ''}\t{int(operator)}"


def _holder(held: str) -> "tuple[str, Whois] | None":
    """``(server, who)`` from a ``"SERVER\\tName[\\tADDRESS\\tOP]"`` value; None if it is not one a server wrote."""
    parts = held.split("\t")
    if len(parts) == 2:
        parts += ["", "0"]  # claimed, not described yet
    if len(parts) != 4:
        return None
    server, name, address, operator = parts
    if not _SERVER_ID.fullmatch(server) or name_problem(name) is not None or operator not in ("0", "1"):
        return None
    if address and not valid_address(address):
        return None
    return server, Whois(name, address or None, operator == "1")
