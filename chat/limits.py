"""The server's protections against misbehaving clients, in one value passed to every connection."""

from dataclasses import dataclass

from chat.core.framing import DEFAULT_MAX_LINE_BYTES
from chat.transports.outbox import DEFAULT_MAX_QUEUE_BYTES


@dataclass(frozen=True)
class Limits:
    """The server's protections against misbehaving clients (see README, "Limits and safety")."""

    max_line_bytes: int = DEFAULT_MAX_LINE_BYTES
    max_rate: float = 10.0  # lines per second per client, bursts of twice that; 0: no limit
    max_queue_bytes: int = DEFAULT_MAX_QUEUE_BYTES
    max_total_queue_bytes: int = 64 * 1024 * 1024  # all clients' unsent bytes together
    max_clients: int = 1000
    # Connections from one address at once: a class of 30 to 50 behind one
    # router (NAT), each with a laptop and a phone, still fits.
    max_per_address: int = 100
    # Lines per second from one address, all its connections together, bursts of twice that; 0: no limit.
    max_address_rate: float = 40.0
    keepalive_idle_s: int = 60
    # Loopback peers are not counted per address; tests switch this off to
    # check the per-address limits with clients on this machine.
    exempt_loopback: bool = True
