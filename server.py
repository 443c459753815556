"""Start the chat server: python server.py [--host HOST] [--port PORT] [--password P] [--op-password P] [--history N] [--store PATH] [--keep N] [--redis URL] [limits...]"""

import argparse
import ipaddress
import os
import sys

from chat.codespaces import forwarded_address
from chat.core.history import DEFAULT_HISTORY_LINES
from chat.config import DEFAULT_KEEP_LINES, EVERY_INTERFACE, Limits, ServerConfig, Timings
from chat.transports.handshake import origin_host
from chat.server import run

DEFAULT_STORE = "chat.db"  # in the folder the server is started from


def bounded_int(low: int, high: int, name: str):
    """An argparse type: an integer from low to high."""

    def parse(text: str) -> int:
        if not text.isdigit() or not low <= int(text) <= high:
            raise argparse.ArgumentTypeError(f"{text!r} is not a {name} from {low} to {high}")
        return int(text)

    return parse


def rate(text: str) -> float:
    value = float(text)
    if not value >= 0:
        raise ValueError(text)
    return value


def proxy(text: str) -> str:
    """An argparse type: an IP address or network (``127.0.0.1``, ``10.0.0.0/8``)."""
    try:
        ipaddress.ip_network(text, strict=False)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an IP address or network") from None
    return text


def origin(text: str) -> str:
    """An argparse type: an origin (``https://chat.example.org``) or a host name, checked now rather than at a first visit."""
    try:
        origin_host(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
    return text


def redis_url(text: str) -> str:
    """An argparse type: a URL redis-py can use (checked only when given, so Redis is imported only then)."""
    try:
        from chat.bus.redis_bus import check_url
    except ImportError:
        raise argparse.ArgumentTypeError("sharing a room needs the redis package: pip install redis") from None
    try:
        return check_url(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def parse_args(argv=None) -> argparse.Namespace:
    defaults = Limits()
    parser = argparse.ArgumentParser(description="A TCP chat server: one thread per client.")
    parser.add_argument("--host", default=EVERY_INTERFACE, help="address to listen on (default: every interface, IPv4 and IPv6; 0.0.0.0 for IPv4 alone, 127.0.0.1 for this machine alone)")
    parser.add_argument("--port", type=bounded_int(0, 65535, "port number"), default=8080, help="TCP port to listen on (default: 8080; 0 picks a free one)")
    parser.add_argument("--password", default=os.environ.get("CHAT_PASSWORD"), help="a password everyone must give to join (better: set CHAT_PASSWORD, which other users of this machine cannot see in the process list)")
    parser.add_argument("--op-password", default=os.environ.get("CHAT_OP_PASSWORD"), metavar="P", help="a password that makes whoever sends /op P an operator, who may /kick, /ban, /mute and set the /topic (better: set CHAT_OP_PASSWORD; default: none, and only the server's console is an operator)")
    parser.add_argument("--history", type=bounded_int(0, 10_000, "line count"), default=DEFAULT_HISTORY_LINES, metavar="N", help="public lines kept and replayed to each newcomer; 0 keeps none (default: %(default)s)")
    parser.add_argument("--store", default=None, metavar="PATH", help="the SQLite file that keeps the history, topic, bans and mutes across restarts; none keeps nothing on disk (default: CHAT_STORE, else chat.db in the current folder)")
    parser.add_argument("--keep", type=bounded_int(0, 100_000_000, "line count"), default=DEFAULT_KEEP_LINES, metavar="N", help="public lines the store keeps; older ones are deleted (default: %(default)s)")
    parser.add_argument("--redis", type=redis_url, default=os.environ.get("CHAT_REDIS_URL"), metavar="URL", help="share one room with other servers through Redis: redis://HOST:PORT/DB, rediss://... (TLS) or unix:///PATH (default: CHAT_REDIS_URL, else none)")
    parser.add_argument("--heartbeat", type=float, default=Timings().heartbeat_s, metavar="S", help="with --redis: seconds between this server's heartbeats in Redis; the others take it for dead after 4 missed (default: %(default)g)")
    parser.add_argument("--trusted-proxy", type=proxy, action="append", default=[], metavar="ADDRESS", help="a proxy in front of the server (an address or network; may be repeated): the client address it adds to X-Forwarded-For is the one counted (default: none; in a Codespace, its port forwarder on 127.0.0.1 and ::1)")
    parser.add_argument("--allowed-origin", type=origin, action="append", default=[], metavar="ORIGIN", help="another name under which the chat page is served, e.g. https://chat.example.org behind a proxy (may be repeated): its pages may join; this machine's own names always may")
    parser.add_argument("--no-qr", dest="qr_code", action="store_false", help="print no QR code of the page's address at start (it is printed only to a terminal, when other devices can reach the server)")
    parser.add_argument("--one-cpu", action="store_true", help="keep all the server's threads on one CPU (Linux): faster in a busy room when the server has a CPU to itself, as only one thread runs Python at a time (see docs/performance.md)")
    parser.add_argument("--rejoin-grace", type=float, default=Timings().rejoin_grace_s, metavar="S", help="seconds before a leave is announced: a name back within them (a reloaded page, a reconnecting client) was never gone, for the others; 0 announces at once (default: %(default)g)")
    limits = parser.add_argument_group("limits", "protections against misbehaving clients (see the README)")
    limits.add_argument("--max-line-bytes", type=bounded_int(64, 1 << 20, "byte count"), default=defaults.max_line_bytes, metavar="N", help="longest line a client may send (default: %(default)s)")
    limits.add_argument("--max-rate", type=rate, default=defaults.max_rate, metavar="N", help="lines per second per client, bursts of 2N; 0 turns flood control off (default: %(default)g)")
    limits.add_argument("--max-queue-bytes", type=bounded_int(1024, 1 << 30, "byte count"), default=defaults.max_queue_bytes, metavar="N", help="unsent bytes a client may fall behind before it is dropped (default: %(default)s)")
    limits.add_argument("--max-total-queue-bytes", type=bounded_int(1024, 1 << 40, "byte count"), default=defaults.max_total_queue_bytes, metavar="N", help="unsent bytes for all clients together; past it the furthest behind are dropped (default: %(default)s)")
    limits.add_argument("--max-clients", type=bounded_int(1, 100_000, "client count"), default=defaults.max_clients, metavar="N", help="most clients connected at once (default: %(default)s)")
    limits.add_argument("--max-per-address", type=bounded_int(1, 100_000, "connection count"), default=defaults.max_per_address, metavar="N", help="most connections from one IP address at once; not for this machine's own (default: %(default)s)")
    limits.add_argument("--max-address-rate", type=rate, default=defaults.max_address_rate, metavar="N", help="lines per second from one IP address, all its connections together, bursts of 2N; 0 turns it off (default: %(default)g)")
    limits.add_argument("--max-frame-rate", type=rate, default=defaults.max_frame_rate, metavar="N", help="WebSocket frames per second per client, pings and empty ones included, bursts of 2N; far beyond it is an excess flood; 0 turns it off (default: %(default)g)")
    limits.add_argument("--max-opening", type=bounded_int(1, 100_000, "connection count"), default=defaults.max_opening, metavar="N", help="most connections still opening (sending an HTTP head, or their first line) at once (default: %(default)s)")
    limits.add_argument("--max-opening-per-address", type=bounded_int(1, 100_000, "connection count"), default=defaults.max_opening_per_address, metavar="N", help="most connections still opening from one IP address; not for this machine's own (default: %(default)s)")
    limits.add_argument("--max-connect-rate", type=rate, default=defaults.max_connect_rate, metavar="N", help=f"new connections per second from one IP address, bursts of {defaults.max_connect_burst}; 0 turns it off (default: %(default)g)")
    limits.add_argument("--max-join-rate", type=rate, default=defaults.max_join_rate, metavar="N", help=f"joins per second from one IP address, bursts of {defaults.max_join_burst}; 0 turns it off (default: %(default)g)")
    limits.add_argument("--max-password-rate", type=rate, default=defaults.max_password_rate, metavar="N", help="password checks per second for all addresses that gave a wrong one lately (default: %(default)g)")
    limits.add_argument("--keepalive-idle", type=bounded_int(1, 86_400, "number of seconds"), default=defaults.keepalive_idle_s, metavar="S", help="seconds of silence before TCP keepalive probes a client (default: %(default)s)")
    args = parser.parse_args(argv)
    if args.store is not None and args.store != "none" and args.redis:
        parser.error("argument --store: with --redis, Redis keeps the room's history, topic and bans: leave --store out")
    if args.store is None:
        args.store = os.environ.get("CHAT_STORE") or DEFAULT_STORE
    if args.store == "":
        parser.error("argument --store: give a file, or none")
    if not 0 <= args.rejoin_grace <= 3600:
        parser.error(f"argument --rejoin-grace: {args.rejoin_grace:g} is not a number of seconds from 0 to 3600")
    if not 0.01 <= args.heartbeat <= 3600:
        parser.error(f"argument --heartbeat: {args.heartbeat:g} is not a number of seconds from 0.01 to 3600")
    return args


def limits_from(args: argparse.Namespace) -> Limits:
    return Limits(
        max_line_bytes=args.max_line_bytes,
        max_rate=args.max_rate,
        max_queue_bytes=args.max_queue_bytes,
        max_total_queue_bytes=args.max_total_queue_bytes,
        max_clients=args.max_clients,
        max_per_address=args.max_per_address,
        max_address_rate=args.max_address_rate,
        max_frame_rate=args.max_frame_rate,
        max_opening=args.max_opening,
        max_opening_per_address=args.max_opening_per_address,
        max_connect_rate=args.max_connect_rate,
        max_join_rate=args.max_join_rate,
        max_password_rate=args.max_password_rate,
        keepalive_idle_s=args.keepalive_idle,
    )


def config_from(args: argparse.Namespace) -> ServerConfig:
    return ServerConfig(
        host=args.host,
        port=args.port,
        limits=limits_from(args),
        timings=Timings(heartbeat_s=args.heartbeat, alive_ttl_s=4 * args.heartbeat, rejoin_grace_s=args.rejoin_grace),
        password=args.password,
        op_password=args.op_password,
        history_lines=args.history,
        redis_url=args.redis,
        trusted_proxies=tuple(args.trusted_proxy) or default_proxies(args.port),
        allowed_origins=tuple(args.allowed_origin),
        qr_code=args.qr_code,
        one_cpu=args.one_cpu,
        store_path=None if args.store == "none" else args.store,
        keep_lines=args.keep,
    )


def default_proxies(port: int) -> "tuple[str, ...]":
    """In a Codespace, its port forwarder: it connects from this machine and adds the client to X-Forwarded-For."""
    return ("127.0.0.1", "::1") if forwarded_address(port) is not None else ()


def main(argv=None) -> int:
    args = parse_args(argv)
    # Never fail on an emoji when the console cannot show it.
    sys.stdout.reconfigure(errors="replace")
    return run(config_from(args))


if __name__ == "__main__":
    sys.exit(main())
