"""What operators' orders leave behind, kept in Redis for the servers that start later.

Orders go through the stream (:mod:`chat.bus.entry`), and each server
carries them out as they come. But a server that starts later reads the
stream only for its history: the bans, mutes and topic in force are kept
apart, in keys of their own, by the server that gives an order, in the
same MULTI as the order's entry (:meth:`Standing.keep`). A server loads
them as it joins the others, and again each time it is back in touch with
Redis (:meth:`Standing.load`).

=====================  ===========================================================
Key                    What it holds
=====================  ===========================================================
``chat:topic``         the TOPIC order that set the topic (absent: no topic)
``chat:bans``          a hash: ``address -> `` the BAN order on it
``chat:bans:ends``     a sorted set: each address banned for a time, by the time it
                       ends (``time.time()``), so that bans over are dropped
``chat:mutes``         a hash: ``name_key(name) -> `` the MUTE order on it
``chat:mutes:ends``    a sorted set: each name muted for a time, by the time it ends
=====================  ===========================================================

Each order is kept as its fields (:func:`chat.bus.entry.order_fields`, the
same as in the stream), one string: ``"do\\tban\\tn\\tAnn\\tw\\tBob..."``,
names and values separated by tabs (the only tabs: a reason is
sanitized, and sanitizing turns tabs into spaces).

Anyone who can reach the Redis server can write here too, so what is
loaded is checked as the stream's entries are (:func:`chat.bus.entry.order_of`),
and must be kept where it belongs (a ban under its own address, a mute
under its own name). At most ``MAX_BANS`` bans and ``MAX_MUTES`` mutes are
loaded, none bigger than an entry may be (``LOAD`` leaves out the rest in
Redis itself, as the stream's ``READ`` does); the bans and mutes that are
over are removed as they are loaded.
"""

import time

import redis

from chat.bus.entry import ORDER_FIELDS, MalformedEntry, fields_of, order_fields, order_of, quoted
from chat.core.moderation import MAX_BANS, MAX_MUTES, Order, OrderKind
from chat.core.text import name_key

TOPIC = "chat:topic"
BANS = "chat:bans"
BAN_ENDS = "chat:bans:ends"
MUTES = "chat:mutes"
MUTE_ENDS = "chat:mutes:ends"

# The topic, the bans and the mutes in force: bans and mutes that are over
# (their end before ARGV[1]) are removed first. At most ARGV[2] bans and
# ARGV[3] mutes, each as [key, value]; a pair of more than ARGV[4] bytes
# comes as ["", its size]. The topic is its value, 0 if there is none, or
# its size if too big. Anything of the wrong type comes as -1.
# KEYS: TOPIC, BANS, BAN_ENDS, MUTES, MUTE_ENDS.
LOAD = """
local now, max_bytes = ARGV[1], tonumber(ARGV[4])
local function kept(hash, ends, most)
    local kind = redis.call('TYPE', hash).ok
    if kind == 'none' then return {} end
    if kind ~= 'hash' then return -1 end
    if redis.call('TYPE', ends).ok == 'zset' then
        local over = redis.call('ZRANGEBYSCORE', ends, '-inf', now)
        for _, key in ipairs(over) do redis.call('HDEL', hash, key) end
        redis.call('ZREMRANGEBYSCORE', ends, '-inf', now)
    end
    local all, pairs = redis.call('HGETALL', hash), {}
    for i = 1, math.min(#all, 2 * most), 2 do
        local size = #all[i] + #all[i + 1]
        if size > max_bytes then
            table.insert(pairs, {'', size})
        else
            table.insert(pairs, {all[i], all[i + 1]})
        end
    end
    return pairs
end
local topic = 0
local kind = redis.call('TYPE', KEYS[1]).ok
if kind == 'string' then
    topic = redis.call('GET', KEYS[1])
    if #topic > max_bytes then topic = #topic end
elseif kind ~= 'none' then
    topic = -1
end
return {topic, kept(KEYS[2], KEYS[3], tonumber(ARGV[2])), kept(KEYS[4], KEYS[5], tonumber(ARGV[3]))}
"""


class Standing:
    """The orders in force, as Redis keeps them: one server's view.

    ``keep`` adds the commands that keep an order to a MULTI (the caller's,
    with the order's entry: any thread); ``load`` reads what is kept, on the
    client it was made with (the bus thread's). A pipeline's ``execute``
    and ``load`` raise redis-py's ``RedisError`` when Redis does not answer.
    """

    def __init__(self, reader: redis.Redis, max_bytes: int) -> None:
        self._load = reader.register_script(LOAD)  # on a client that leaves replies undecoded
        self.max_bytes = max_bytes

    @staticmethod
    def keep(pipe, order: Order) -> None:
        """Add to ``pipe`` what keeps ``order`` (or lifts what it lifts): nothing for a kick or a notice."""
        if order.kind in (OrderKind.BAN, OrderKind.MUTE, OrderKind.UNBAN, OrderKind.UNMUTE):
            banning = order.kind in (OrderKind.BAN, OrderKind.UNBAN)
            hash_key, ends = (BANS, BAN_ENDS) if banning else (MUTES, MUTE_ENDS)
            key = order.address if banning else name_key(order.name)
            if order.kind in (OrderKind.UNBAN, OrderKind.UNMUTE):
                pipe.hdel(hash_key, key)
            else:
                pipe.hset(hash_key, key, stored(order))
            if order.until is not None and order.kind in (OrderKind.BAN, OrderKind.MUTE):
                pipe.zadd(ends, {key: order.until})
            else:
                pipe.zrem(ends, key)
        elif order.kind is OrderKind.TOPIC and order.reason:
            pipe.set(TOPIC, stored(order))
        elif order.kind is OrderKind.TOPIC:
            pipe.delete(TOPIC)

    def load(self, now: "float | None" = None) -> "tuple[list[Order], list[tuple[str, str]]]":
        """The orders in force: the topic's, then the bans and the mutes; and what was skipped, as (where, why)."""
        now = time.time() if now is None else now
        topic, bans, mutes = self._load(
            keys=[TOPIC, BANS, BAN_ENDS, MUTES, MUTE_ENDS], args=[repr(now), MAX_BANS, MAX_MUTES, self.max_bytes]
        )
        orders, skipped = [], []
        if topic != 0:
            self._read([(TOPIC, b"", topic)], OrderKind.TOPIC, now, orders, skipped)
        for hash_key, kind, pairs in ((BANS, OrderKind.BAN, bans), (MUTES, OrderKind.MUTE, mutes)):
            if isinstance(pairs, int):
                skipped.append((hash_key, "not a hash"))
                continue
            self._read([(hash_key, key, value) for key, value in pairs], kind, now, orders, skipped)
        return orders, skipped

    def _read(self, kept, kind: OrderKind, now: float, orders: "list[Order]", skipped: list) -> None:
        for where, key, value in kept:
            try:
                order = self._order_of(key, value, kind)
            except MalformedEntry as error:
                shown = f"{where} {quoted(key.decode(errors='replace'))}" if key else where
                skipped.append((shown, error.problem))
                continue
            if not order.over(now):
                orders.append(order)

    def _order_of(self, key: bytes, value, kind: OrderKind) -> Order:
        """The order kept under ``key``, if it is one of ``kind`` kept where it belongs; else MalformedEntry."""
        if isinstance(value, int):
            if value < 0:
                raise MalformedEntry("not a string")
            raise MalformedEntry(f"{value} bytes, over the {self.max_bytes} an order may hold")
        parts = value.split(b"\t")
        if len(parts) % 2:
            raise MalformedEntry(f"not an order's fields: {quoted(value)}")
        fields = fields_of(parts, self.max_bytes)
        unknown = sorted(set(fields) - ORDER_FIELDS)
        if unknown:
            raise MalformedEntry(f"an order has no field {unknown[0]!r}")
        order = order_of(fields)
        if order.kind is not kind:
            raise MalformedEntry(f"{order.kind.value} where {kind.value} orders are kept")
        where = order.address if kind is OrderKind.BAN else name_key(order.name) if kind is OrderKind.MUTE else ""
        if key.decode(errors="replace") != where:
            raise MalformedEntry(f"kept under {quoted(key.decode(errors='replace'))}, not {where!r}")
        return order


def stored(order: Order) -> str:
    """``order`` as it is kept: its fields, names and values separated by tabs."""
    return "\t".join(part for item in order_fields(order).items() for part in item)
