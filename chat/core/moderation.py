"""What operators decide about people: kicks, bans, mutes and the topic.

An operator's decision is an :class:`Order`, a plain value: who gave it,
whom it is about, why, and until when. The room carries every order out
the same way, wherever it was given (:meth:`chat.core.room.Room.carry_out`):
on this server, or on another one sharing the room through the bus, which
hands each server the same orders in the same order. An order says the
line everyone sees (:meth:`Order.notice`) and, for a kick or a ban, the
last line its member gets (:meth:`Order.farewell`).

:class:`Moderation` keeps what orders leave behind: the bans by address,
the mutes by name, and the topic. Its times are wall-clock times
(``time.time``), because they are shared with other servers and kept
across restarts.

Like the rest of ``chat.core`` this module does no I/O.
"""

import enum
import math
import threading
import time
from dataclasses import dataclass

from chat.core import messages
from chat.core.addresses import canonical
from chat.core.text import name_key

# The operator who types at the server's own terminal (see chat.console).
CONSOLE_NAME = "Server"
DEFAULT_BAN_MINUTES = 60
DEFAULT_MUTE_MINUTES = 10
MAX_MINUTES = 366 * 24 * 60  # a year: longer, and 0 ("until lifted") says it better
# Bans and mutes kept at most: a careless script cannot grow them without bound.
MAX_BANS = 1000
MAX_MUTES = 1000


class OrderKind(enum.Enum):
    KICK = "kick"  # remove a member
    BAN = "ban"  # remove a member, and refuse its address until the ban ends
    UNBAN = "unban"  # lift a ban
    MUTE = "mute"  # refuse a member's lines until the mute ends
    UNMUTE = "unmute"  # lift a mute
    TOPIC = "topic"  # set the topic, or clear it
    SAY = "say"  # a notice from the server's console


@dataclass(frozen=True)
class Order:
    """One operator's decision, as every server sharing the room carries it out.

    ``name`` is the member it is about; ``reason`` is the reason given (for
    TOPIC the topic, for SAY the notice); ``address`` the address a BAN or
    UNBAN is about; ``minutes`` how long a BAN or MUTE lasts (0: until it is
    lifted) and ``until`` when it ends, by ``time.time()`` (None: never).
    """

    kind: OrderKind
    by: str
    name: str = ""
    reason: str = ""
    address: "str | None" = None
    minutes: int = 0
    until: "float | None" = None

    def notice(self) -> str:
        """The line every member sees (but the one removed, who gets farewell())."""
        if self.kind in (OrderKind.KICK, OrderKind.BAN):
            return messages.system(f"{self.name} was removed by {self._removal()}")
        if self.kind is OrderKind.UNBAN:
            return messages.system(f"The ban on {self.name} was lifted by {self.by}.")
        if self.kind is OrderKind.MUTE:
            return messages.system(f"{self.name} was muted by {self.by} {_lasting(self.minutes, 'unmutes')}.")
        if self.kind is OrderKind.UNMUTE:
            return messages.system(f"{self.name} was unmuted by {self.by}.")
        if self.kind is OrderKind.TOPIC:
            if self.reason:
                return messages.system(f"{self.by} set the topic: {self.reason}")
            return messages.system(f"{self.by} cleared the topic.")
        return messages.system(self.reason)  # SAY

    def farewell(self) -> str:
        """The last line a removed member gets: clients see that they must not reconnect."""
        return messages.system(f"You were removed by {self._removal()}")

    def _removal(self) -> str:
        banned = f" and banned {_lasting(self.minutes, 'lifts it')}" if self.kind is OrderKind.BAN else ""
        return f"{self.by}{banned}" + (f": {self.reason}" if self.reason else ".")

    def minutes_left(self, now: float) -> "int | None":
        """Whole minutes (rounded up) until a ban or mute ends; None if it lasts until lifted."""
        return None if self.until is None else max(1, math.ceil((self.until - now) / 60))

    def over(self, now: float) -> bool:
        return self.until is not None and self.until <= now


def timed(kind: OrderKind, by: str, name: str, minutes: int, now: float, **fields) -> Order:
    """A BAN or MUTE order of ``minutes`` (0: until lifted) given at ``now``."""
    until = now + 60 * minutes if minutes else None
    return Order(kind, by, name, minutes=minutes, until=until, **fields)


def _lasting(minutes: int, lifted: str) -> str:
    if not minutes:
        return f"until an operator {lifted}"
    return "for 1 minute" if minutes == 1 else f"for {minutes} minutes"


def _more(minutes_left: "int | None", lifted: str) -> str:
    if minutes_left is None:
        return f"until an operator {lifted}"
    return f"for {minutes_left} more minute{'' if minutes_left == 1 else 's'}"


def banned_refusal(ban: Order, now: float) -> str:
    """Why a banned address is refused at the door (a [SYSTEM] line, or HTTP 403)."""
    reason = f": {ban.reason}" if ban.reason else "."
    return f"You are banned from this chat {_more(ban.minutes_left(now), 'lifts it')}{reason}"


def muted_refusal(mute: Order, now: float) -> str:
    """What a muted member is told instead of its line being sent."""
    return messages.error(f"You are muted {_more(mute.minutes_left(now), 'unmutes you')}.")


@dataclass(frozen=True)
class Whois:
    """A member online, here or on another server sharing the room, as operators see it."""

    name: str
    address: "str | None"  # the address it is counted by (see chat.admission.address_key)
    operator: bool


class Moderation:
    """What orders leave behind: bans by address, mutes by name, and the topic.

    Thread-safe: the connections check bans and mutes, the room applies
    orders. Bans and mutes that are over are forgotten when next looked at.
    """

    def __init__(self, clock=time.time, max_bans: int = MAX_BANS, max_mutes: int = MAX_MUTES) -> None:
        self.clock = clock
        self.max_bans = max_bans
        self.max_mutes = max_mutes
        # Guards the three below.
        self._lock = threading.Lock()
        self._bans: "dict[str, Order]" = {}  # address -> its BAN order
        self._mutes: "dict[str, Order]" = {}  # name_key(name) -> its MUTE order
        self._topic = ""

    def apply(self, order: Order) -> None:
        """Keep what ``order`` leaves behind (a kick or a notice leaves nothing)."""
        with self._lock:
            if order.kind is OrderKind.BAN and order.address is not None:
                self._bans[order.address] = order
            elif order.kind is OrderKind.UNBAN:
                self._bans.pop(order.address, None)
            elif order.kind is OrderKind.MUTE:
                self._mutes[name_key(order.name)] = order
            elif order.kind is OrderKind.UNMUTE:
                self._mutes.pop(name_key(order.name), None)
            elif order.kind is OrderKind.TOPIC:
                self._topic = order.reason

    @property
    def topic(self) -> str:
        with self._lock:
            return self._topic

    def ban_on(self, address: str) -> "Order | None":
        """The ban in force on ``address``, if any."""
        if not self._bans:  # read without the lock: the common case, nobody banned
            return None
        with self._lock:
            return self._current_locked(self._bans, address)

    def bans(self) -> "list[Order]":
        """The bans in force, oldest first."""
        with self._lock:
            return self._in_force_locked(self._bans)

    def bans_matching(self, who: str) -> "list[Order]":
        """The bans in force on the address ``who`` (however it is written), or on the member named ``who``."""
        address = canonical(who)
        return [ban for ban in self.bans() if ban.address == address or name_key(ban.name) == name_key(who)]

    def mute_on(self, name: str) -> "Order | None":
        """The mute in force on the member named ``name``, if any."""
        if not self._mutes:  # read without the lock: the common case, nobody muted
            return None
        with self._lock:
            return self._current_locked(self._mutes, name_key(name))

    def full(self, kind: OrderKind) -> bool:
        """Whether no more bans (or mutes) can be kept until some are lifted or end."""
        orders, most = (self._bans, self.max_bans) if kind is OrderKind.BAN else (self._mutes, self.max_mutes)
        with self._lock:
            return len(self._in_force_locked(orders)) >= most

    def _in_force_locked(self, orders: "dict[str, Order]") -> "list[Order]":
        return [order for key in list(orders) if (order := self._current_locked(orders, key))]

    def _current_locked(self, orders: "dict[str, Order]", key: str) -> "Order | None":
        order = orders.get(key)
        if order is not None and order.over(self.clock()):
            del orders[key]
            return None
        return order
