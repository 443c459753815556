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
    max_clients: int = 1000
    keepalive_idle_s: int = 60
