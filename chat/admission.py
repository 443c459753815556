"""Who may connect, and when a connection takes a seat in the room.

A connection goes through two doors, each with its own limits:

1. On arrival (:meth:`Admission.arrive`) it is still *opening*: an HTTP
   request's head, a WebSocket handshake, or a raw client's first second.
   It holds no seat and has no writer thread yet. An address may have
   ``max_opening_per_address`` connections opening at once, and may open
   ``max_connect_rate`` new ones a second; the whole server
   ``max_opening``. So a crowd of half-open connections (a head sent one
   byte at a time) costs a few threads, and keeps nobody out. (When all
   ``max_opening`` places are taken, the server closes the oldest opening
   connection to make room: see :meth:`Admission.arrive`.)
2. Once it has shown what it is and is about to chat,
   :meth:`Admission.seat` gives it a :class:`Seat`: one of ``max_clients``,
   at most ``max_per_address`` per address and ``max_join_rate`` joins a
   second, with the address's shared flood budget. A request for a file of
   the page never needs one.

Without limits per address, one laptop could open a thousand sockets and
hold every seat; without a budget per address, the same laptop could open
many connections and multiply its flood allowance. IRC servers do the same
(ngircd's ``MaxConnectionsIP``, ergo's ``connection-limits`` and
``connection-throttling``). An IPv6 address counts by its /64 network, which
is what one home or phone is given, as ergo does.

Loopback peers are exempt from the limits per address: whoever connects
from this machine already has a shell on it, and the tests and the
benchmark connect from here. So are trusted proxies (``--trusted-proxy``):
their clients are counted by the address the proxy names in
X-Forwarded-For, once the request's head has been read.

No I/O: the server asks for an :class:`Arrival` for each new connection;
the connection asks for its seat, and releases it when it starts closing,
so that a client that reconnects at once is not refused by its own ghost.
"""

import ipaddress
import threading
import time
from collections import OrderedDict

from chat.config import Limits
from chat.core.addresses import address_key, ip_of, is_loopback  # noqa: F401  (part of this module's interface)
from chat.core.password import FIRST_DELAY_S, FailureTracker
from chat.core.ratelimit import SharedTokenBucket

# Addresses whose recent connections and join notices are remembered (the
# ones heard from longest ago are forgotten first): bounded memory.
MAX_REMEMBERED_ADDRESSES = 10_000
SERVER_BUSY = "The server is busy: too many connections are opening at once. Try again in a few seconds."
def address_in(entry: str) -> "str | None":
    """The IP address in one X-Forwarded-For entry (``1.2.3.4``, ``1.2.3.4:5678``, ``[::1]:80``), or None."""
    entry = entry.strip()
    if entry.startswith("["):
        entry = entry[1:].partition("]")[0]
    elif entry.count(":") == 1:
        entry = entry.partition(":")[0]
    try:
        # Without a zone (fe80::1%eth0): it means nothing here, and may be any text at all.
        return str(ipaddress.ip_address(entry.partition("%")[0]))
    except ValueError:
        return None


class TrustedProxies:
    """The proxies whose X-Forwarded-For header is believed: addresses or networks."""

    def __init__(self, proxies: "tuple[str, ...] | list[str]" = ()) -> None:
        self.networks = [ipaddress.ip_network(p, strict=False) for p in proxies]

    def __contains__(self, host: str) -> bool:
        address = ip_of(host)
        return address is not None and any(address in network for network in self.networks if network.version == address.version)

    def client_behind(self, peer_host: str, forwarded_for: "list[str]") -> "str | None":
        """The client's own address, when a trusted proxy names it; else None.

        ``forwarded_for`` holds the request's X-Forwarded-For headers. Each
        proxy adds its own peer at the end, so the entries are read from the
        last: the first that is not itself a trusted proxy is the client.
        Anything before it came from the client, and could be forged; so
        could the header itself, from a peer that is not a trusted proxy.
        """
        if not forwarded_for or peer_host not in self:
            return None
        for entry in reversed(",".join(forwarded_for).split(",")):
            client = address_in(entry)
            if client is None or client not in self:
                return client
        return None


class Arrival:
    """A connection that is still opening: it holds a place among those, and no seat."""

    def __init__(self, admission: "Admission", key: "str | None") -> None:
        self.admission = admission
        self.key = key  # None for an exempt peer (loopback, a trusted proxy)
        self.on_evict = lambda: None  # set by the connection: how to close it while it opens
        self.evicted = False  # closed to make room for a newcomer: it may take no seat
        self._released = False

    def release(self) -> None:
        """Give the place back (the connection took a seat, or is closing). Idempotent."""
        if not self._released:
            self._released = True
            self.admission._release_opening(self)


class Seat:
    """One seated connection's place: its address's shared budgets, and release()."""

    def __init__(self, admission: "Admission", key: "str | None", budget, notices) -> None:
        self.admission = admission
        self.key = key  # None for an exempt (loopback) peer
        self.address_budget: "SharedTokenBucket | None" = budget  # lines a second, shared by the address
        self._notices: "SharedTokenBucket | None" = notices  # join notices, shared by the address
        self._released = False

    def may_announce(self) -> bool:
        """Whether this connection's joining may be announced (spends one of its address's notices)."""
        return self._notices is None or self._notices.allow()

    def release(self) -> None:
        """Give the seat back. Idempotent."""
        if not self._released:
            self._released = True
            self.admission._release_seat(self.key)


class _Recent:
    """What is remembered of an address between its connections: budgets of connections, joins and join notices."""

    def __init__(self, limits: Limits, clock) -> None:
        self.connects = _bucket(limits.max_connect_rate, limits.max_connect_burst, clock)
        self.joins = _bucket(limits.max_join_rate, limits.max_join_burst, clock)
        per_minute = limits.max_join_notices_per_minute
        self.notices = _bucket(per_minute / 60, per_minute, clock)


def _bucket(rate: float, burst: float, clock) -> "SharedTokenBucket | None":
    """A budget of ``rate`` a second, bursts of ``burst``; None for no limit (a rate of 0)."""
    return SharedTokenBucket(rate, max(1, burst), clock) if rate > 0 else None


class Admission:
    """Places for opening connections, seats for chatting ones, and the room's password."""

    def __init__(
        self,
        limits: Limits,
        password: "str | None" = None,
        password_delay_s: float = FIRST_DELAY_S,
        trusted_proxies: "tuple[str, ...]" = (),
        clock=time.monotonic,
    ) -> None:
        self.limits = limits
        self.password = password or None  # an empty password means none
        self.password_failures = FailureTracker(
            first_delay_s=password_delay_s, room_rate=limits.max_password_rate, clock=clock
        )
        self.proxies = TrustedProxies(trusted_proxies)
        self._clock = clock
        # Guards every attribute below.
        self._lock = threading.Lock()
        self._opening = 0
        self._arrivals: "dict[Arrival, None]" = {}  # those still opening, oldest first
        self._opening_per_address: "dict[str, int]" = {}
        self._seated = 0
        self._per_address: "dict[str, int]" = {}
        self._budgets: "dict[str, SharedTokenBucket]" = {}
        self._recent: "OrderedDict[str, _Recent]" = OrderedDict()  # least recently heard from first

    def counted(self, host: str) -> "str | None":
        """The key ``host`` is counted by, or None if it is exempt from the limits per address."""
        key = address_key(host)
        return None if self.limits.exempt_loopback and is_loopback(key) else key

    @property
    def opening(self) -> int:
        """How many connections are opening now (read without the lock: a snapshot)."""
        return self._opening

    def arrive(self, host: str) -> "Arrival | str":
        """A place for a new connection from ``host`` to open in, or the reason it is refused.

        When every place is taken, the oldest connection still opening is
        closed to make room (its ``on_evict``), as long as one is left that
        is not already closing: a crowd of half-open connections from many
        addresses then only pushes each other out, while a newcomer, who
        opens in milliseconds, gets in.
        """
        key = None if host in self.proxies else self.counted(host)
        evicted = None
        with self._lock:
            if self._opening >= self.limits.max_opening:
                # As many again may be closing for newcomers, not more: each
                # costs a thread until its reader has seen the close.
                evicted = next((a for a in self._arrivals if not a.evicted), None)
                if evicted is None or self._opening >= 2 * self.limits.max_opening:
                    return SERVER_BUSY
            if key is not None:
                if self._opening_per_address.get(key, 0) >= self.limits.max_opening_per_address:
                    return (
                        "Too many connections from your address are opening at once "
                        f"(limit: {self.limits.max_opening_per_address}). Try again in a few seconds."
                    )
                connects = self._recent_locked(key).connects
                if connects is not None and not connects.allow():
                    return (
                        f"Too many new connections from your address (limit: {self.limits.max_connect_rate:g} a second). "
                        "Try again in a few seconds."
                    )
                self._opening_per_address[key] = self._opening_per_address.get(key, 0) + 1
            self._opening += 1
            arrival = Arrival(self, key)
            self._arrivals[arrival] = None
            if evicted is not None:
                evicted.evicted = True
        if evicted is not None:
            evicted.on_evict()
        return arrival

    def seat(self, arrival: Arrival, client_host: "str | None" = None) -> "Seat | str":
        """A seat for a connection that has opened, or the reason it is refused.

        ``client_host`` is the client's own address when a trusted proxy
        named it (see :meth:`TrustedProxies.client_behind`): the seat and
        the join are counted by that. The arrival's place
        is given back either way.
        """
        arrival.release()
        if arrival.evicted:
            return SERVER_BUSY
        key = arrival.key if client_host is None else self.counted(client_host)
        with self._lock:
            if self._seated >= self.limits.max_clients:
                users = "user" if self.limits.max_clients == 1 else "users"
                return f"Server is full ({self.limits.max_clients} {users}). Try again later."
            if key is None:
                self._seated += 1
                return Seat(self, None, None, None)
            if self._per_address.get(key, 0) >= self.limits.max_per_address:
                return (
                    f"Too many connections from your address (limit: {self.limits.max_per_address}). "
                    "Close one, or try again later."
                )
            recent = self._recent_locked(key)
            if recent.joins is not None and not recent.joins.allow():
                return (
                    f"Too many joins from your address (limit: {self.limits.max_join_rate:g} a second). "
                    "Try again in a few seconds."
                )
            self._seated += 1
            self._per_address[key] = self._per_address.get(key, 0) + 1
            budget = self._budgets.get(key)
            if budget is None and self.limits.max_address_rate > 0:
                rate = self.limits.max_address_rate
                budget = self._budgets[key] = SharedTokenBucket(rate, max(1, 2 * rate))
        return Seat(self, key, budget, recent.notices)

    def admit(self, host: str) -> "Seat | str":
        """Arrive and take a seat at once: for a client known to be about to chat."""
        arrival = self.arrive(host)
        return arrival if isinstance(arrival, str) else self.seat(arrival)

    def _recent_locked(self, key: str) -> _Recent:
        recent = self._recent.get(key)
        if recent is None:
            recent = self._recent[key] = _Recent(self.limits, self._clock)
            if len(self._recent) > MAX_REMEMBERED_ADDRESSES:
                self._recent.popitem(last=False)
        else:
            self._recent.move_to_end(key)
        return recent

    def _release_opening(self, arrival: Arrival) -> None:
        key = arrival.key
        with self._lock:
            del self._arrivals[arrival]
            self._opening -= 1
            if key is not None:
                self._opening_per_address[key] -= 1
                if not self._opening_per_address[key]:
                    del self._opening_per_address[key]

    def _release_seat(self, key: "str | None") -> None:
        with self._lock:
            self._seated -= 1
            if key is None:
                return
            self._per_address[key] -= 1
            if not self._per_address[key]:
                # The address's last connection is gone: so is its flood budget.
                del self._per_address[key]
                self._budgets.pop(key, None)
