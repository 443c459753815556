"""What a server is started with: its address, its limits, its timings and its options.

Three plain values, made once (by ``server.py`` from its command line, or
by a test) and handed to whatever needs them:

* :class:`Limits`: the protections against misbehaving clients;
* :class:`Timings`: how long the server waits for things, which tests
  shorten so that they check behaviour instead of waiting on the defaults;
* :class:`ServerConfig`: everything :class:`chat.server.ChatServer` needs.
"""

from dataclasses import dataclass, field

from chat.core.framing import DEFAULT_MAX_LINE_BYTES
from chat.core.history import DEFAULT_HISTORY_LINES

# The default host: every interface, for IPv4 clients and, where the system
# has IPv6, IPv6 ones too (one dual-stack socket). "0.0.0.0" is IPv4 alone.
EVERY_INTERFACE = ""
# Public lines the store keeps (chat.store); older ones are pruned.
DEFAULT_KEEP_LINES = 10_000
# Unsent bytes one client may fall behind by before it is dropped ("SendQ exceeded").
DEFAULT_MAX_QUEUE_BYTES = 1024 * 1024


@dataclass(frozen=True)
class Limits:
    """The server's protections against misbehaving clients (see docs, "Limits and safety")."""

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
    # WebSocket frames per second per client, bursts of twice that; 0: no
    # limit. Pings, pongs and empty frames count too: line flood control
    # never sees them.
    max_frame_rate: float = 50.0
    # Connections still opening (an HTTP request's head, a WebSocket
    # handshake, a raw client's first second): they hold no seat, so a
    # crowd of half-open connections cannot keep anyone out. At most this
    # many at once from one address, and from all together.
    max_opening_per_address: int = 10
    max_opening: int = 200
    # New connections per second from one address, bursts of max_connect_burst;
    # 0: no limit. Loading the page takes four (the page, its script and
    # style, the WebSocket): a class of 50 behind one router loading it at once fits.
    max_connect_rate: float = 20.0
    max_connect_burst: int = 200
    # Joins per second from one address, bursts of max_join_burst; 0: no
    # limit. A class behind one router that comes back after a restart gets
    # in within a few seconds; one address reconnecting on purpose cannot
    # flood the room with comings and goings.
    max_join_rate: float = 5.0
    max_join_burst: int = 50
    # Join notices per minute for one address (bursts of that many); past it,
    # its joins, and their leaves, are not announced. 0: no limit.
    max_join_notices_per_minute: float = 10.0
    # Password checks per second, room-wide, for addresses that gave a wrong
    # one recently (a newcomer's first try is never held up by them); 0: no limit.
    max_password_rate: float = 2.0
    keepalive_idle_s: int = 60
    # Loopback peers are not counted per address; tests switch this off to
    # check the per-address limits with clients on this machine.
    exempt_loopback: bool = True


@dataclass(frozen=True)
class Timings:
    """How long the server waits for things, in seconds."""

    # A client may name itself with "/nick NAME" as its first line (after
    # "/pass" if the room has a password); one that sends nothing joins
    # under its default name after this long.
    first_line_wait_s: float = 1.0
    # A browser must send the whole head of its HTTP request within this long
    # of connecting: a connection still opening must not hold on for long.
    opening_wait_s: float = 5.0
    # A WebSocket client that has said nothing for this long gets a ping
    # (proxies drop connections idle for a minute or so); one that answers
    # none of two in a row has vanished.
    ping_interval_s: float = 20.0
    # A leave is announced this late: a name back within it (a page
    # reloaded, a client reconnecting) was never gone, for the others.
    rejoin_grace_s: float = 5.0
    # After a wrong password, checks from the same address are at least this
    # far apart, doubling with each further failure (chat.core.password).
    password_delay_s: float = 1.0
    # In a shared room (--redis): a server says it is alive this often, and is
    # taken for dead after alive_ttl_s without a word.
    heartbeat_s: float = 1.5
    alive_ttl_s: float = 6.0


@dataclass(frozen=True)
class ServerConfig:
    """Everything a server is started with."""

    host: str = EVERY_INTERFACE
    port: int = 8080
    limits: Limits = field(default_factory=Limits)
    timings: Timings = field(default_factory=Timings)
    password: "str | None" = None  # None or "": anyone may join
    history_lines: int = DEFAULT_HISTORY_LINES
    redis_url: "str | None" = None  # share the room with other servers through Redis
    # Proxies whose X-Forwarded-For header is believed (addresses or networks).
    trusted_proxies: "tuple[str, ...]" = ()
    # Other names than this server's own under which its page may open a WebSocket.
    allowed_origins: "tuple[str, ...]" = ()
    op_password: "str | None" = None  # None or "": only the server's console is an operator
    # The SQLite file that keeps the history, topic, bans and mutes across
    # restarts (chat.store); None keeps nothing, and so does a shared room (Redis keeps it).
    store_path: "str | None" = None
    keep_lines: int = DEFAULT_KEEP_LINES
    # At start, print a QR code of the page's address for other devices, if
    # the server knows one and standard output is a terminal (see chat.qr).
    qr_code: bool = True
    # Keep every thread on one CPU (see chat.server.keep_to_one_cpu): faster
    # when the room is busy and the server has a CPU to itself.
    one_cpu: bool = False
