"""Who may connect: the client limit, the limit per address, and each address's flood budget.

Without a limit per address, one laptop could open a thousand sockets and
hold every seat; without a budget per address, the same laptop could open
many connections and multiply its flood allowance. IRC servers do the same
(ngircd's ``MaxConnectionsIP``, ergo's ``connection-limits``).

Loopback peers are exempt from both: whoever connects from this machine
already has a shell on it, and the tests and the benchmark connect from here.

No I/O: the server asks :meth:`Admission.admit` for a :class:`Seat` for each
new connection, and the connection releases its seat when it starts closing,
so that a client that reconnects at once is not refused by its own ghost.
"""

import ipaddress
import threading

from chat.core.password import FIRST_DELAY_S, FailureTracker
from chat.core.ratelimit import SharedTokenBucket
from chat.config import Limits


def address_key(host: str) -> str:
    """The address that limits are counted by: an IPv4-mapped IPv6 address counts as IPv4."""
    try:
        address = ipaddress.ip_address(host.partition("%")[0])
    except ValueError:
        return host
    mapped = getattr(address, "ipv4_mapped", None)
    return str(mapped or address)


def is_loopback(key: str) -> bool:
    try:
        return ipaddress.ip_address(key).is_loopback
    except ValueError:
        return False


def forwarded_client(peer_host: str, forwarded_for: "list[str]") -> "str | None":
    """The client's own address, when a proxy on this machine names it; else None.

    ``forwarded_for`` holds the request's ``X-Forwarded-For`` headers. They
    are believed only from a loopback peer, a proxy on this machine: anyone
    else could write whatever they like there. The proxy adds its own peer
    last; entries before it came from the client, and could be forged.
    """
    if not forwarded_for or not is_loopback(address_key(peer_host)):
        return None
    return address_in(",".join(forwarded_for).split(",")[-1])


def address_in(entry: str) -> "str | None":
    """The IP address in one X-Forwarded-For entry (``1.2.3.4``, ``1.2.3.4:5678``, ``[::1]:80``), or None."""
    entry = entry.strip()
    if entry.startswith("["):
        entry = entry[1:].partition("]")[0]
    elif entry.count(":") == 1:
        entry = entry.partition(":")[0]
    try:
        return str(ipaddress.ip_address(entry))
    except ValueError:
        return None


class Seat:
    """One admitted connection's place: its address's shared flood budget, and release()."""

    def __init__(self, admission: "Admission", key: "str | None", budget: "SharedTokenBucket | None") -> None:
        self.admission = admission
        self.key = key  # None for an exempt (loopback) peer
        self.address_budget = budget
        self._released = False

    def release(self) -> None:
        """Give the seat back. Idempotent."""
        if not self._released:
            self._released = True
            self.admission._release(self.key)


class Admission:
    """Seats for new connections, and the room's password, if it has one."""

    def __init__(self, limits: Limits, password: "str | None" = None, password_delay_s: float = FIRST_DELAY_S) -> None:
        self.limits = limits
        self.password = password or None  # an empty password means none
        self.password_failures = FailureTracker(first_delay_s=password_delay_s)
        # Guards every attribute below.
        self._lock = threading.Lock()
        self._seated = 0
        self._per_address: "dict[str, int]" = {}
        self._budgets: "dict[str, SharedTokenBucket]" = {}

    def admit(self, host: str) -> "Seat | str":
        """A seat for a client from ``host``, or the reason it is refused."""
        key = address_key(host)
        counted = not (self.limits.exempt_loopback and is_loopback(key))
        with self._lock:
            if self._seated >= self.limits.max_clients:
                users = "user" if self.limits.max_clients == 1 else "users"
                return f"Server is full ({self.limits.max_clients} {users}). Try again later."
            if not counted:
                self._seated += 1
                return Seat(self, None, None)
            if self._per_address.get(key, 0) >= self.limits.max_per_address:
                return (
                    f"Too many connections from your address (limit: {self.limits.max_per_address}). "
                    "Close one, or try again later."
                )
            self._seated += 1
            self._per_address[key] = self._per_address.get(key, 0) + 1
            budget = self._budgets.get(key)
            if budget is None and self.limits.max_address_rate > 0:
                rate = self.limits.max_address_rate
                budget = self._budgets[key] = SharedTokenBucket(rate, max(1, 2 * rate))
        return Seat(self, key, budget)

    def readmit(self, seat: Seat, host: str) -> "Seat | str":
        """Count a connection admitted as ``seat`` as coming from ``host`` instead (see forwarded_client).

        ``seat`` is given back either way; returns the new seat, or the reason it is refused.
        """
        seat.release()
        return self.admit(host)

    def _release(self, key: "str | None") -> None:
        with self._lock:
            self._seated -= 1
            if key is None:
                return
            self._per_address[key] -= 1
            if not self._per_address[key]:
                # The address's last connection is gone: so is its budget.
                del self._per_address[key]
                self._budgets.pop(key, None)
