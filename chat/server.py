"""The TCP chat server: one thread per client, one shared room.

How it fits together::

    main thread            accept loop (ChatServer.serve_forever)
      │  accept() ──────►  ClientConnection (chat.transports.connection)
      │                      ├─ reader thread: recv → transport → Session → Room
      │                      └─ writer thread: Outbox → sendall (only when a client falls behind)
      ▼
    Ctrl+C / SIGTERM ────► request_stop(): wakes the accept loop, which closes everything
    store-writer thread (chat.store.archive, unless --store none or --redis):
      Room ──► bounded queue ──► one SQLite transaction per quarter second; drained at the close
    console thread (chat.console, only when a person sits at the terminal):
      Server> /kick, /ban, /say... ──► the room, as an operator; /quit ──► request_stop()

The room (``chat.core.room``) holds the lock-guarded table of members; each
connection's reader thread owns its socket and its writer thread (see
``chat.transports.connection``). This module accepts clients, turns away
those it has no seat for, watches the total of unsent bytes, and stops it
all. Its one blocking call, ``select``, is woken by a socket pair.
"""

import errno
import logging
import os
import selectors
import signal
import socket
import sys
import threading
import time
from typing import TYPE_CHECKING

from chat.admission import Admission, Arrival, address_key
from chat.codespaces import forwarded_address
from chat.core import messages
from chat.core.addresses import format_address, format_peer, unmapped
from chat.core.moderation import banned_refusal
from chat.core.password import FailureTracker, OperatorPassword
from chat.core.room import Room
from chat.config import EVERY_INTERFACE, ServerConfig
from chat.console import operator_console
from chat.logs import VERBATIM, configure_logging
from chat.qr import address_to_share, terminal_code
from chat.transports.refusals import RefusalLog, Refusals
from chat.sockets import enable_keepalive
from chat.store import StoreError
from chat.transports.connection import THREAD_JOIN_S, ClientConnection

if TYPE_CHECKING:
    from chat.store.archive import Archive

log = logging.getLogger(__name__)

# On shutdown, how long clients get to receive the notice and close.
SHUTDOWN_GRACE_S = 1.0
THREAD_STACK_BYTES = 512 * 1024
# After accept() fails (out of file descriptors, say), wait this long before trying again.
ACCEPT_RETRY_S = 0.1
# With half of the opening places taken, the acceptor pauses this long after each connection.
CROWD_PAUSE_S = 0.001
# How often the accept loop adds up every client's unsent bytes (Limits.max_total_queue_bytes).
QUEUE_CHECK_S = 0.1
# How often the leave-notices thread looks for leaves whose grace is over (Timings.rejoin_grace_s).
LEAVE_CHECK_S = 0.25
# Each client socket's send buffer in the kernel (Linux doubles the figure for
# its own bookkeeping). Left alone, Linux grows it up to 4 MiB for a client
# that stops reading, memory our queue limits do not see.
SEND_BUFFER_BYTES = 128 * 1024
# The store's rows that fail its checks are logged at start, at most this many one by one.
LOGGED_SKIPPED_MAX = 10


class ChatServer:
    """Accepts TCP clients and serves each in its own thread.

    Typical use: ``bind()``, then ``serve_forever()`` in some thread, then
    ``shutdown()`` (or ``request_stop()`` from a signal handler).
    """

    def __init__(self, config: ServerConfig = ServerConfig()) -> None:
        self.config = config
        self.limits = config.limits
        self.room = Room(
            config.history_lines,
            rejoin_grace_s=config.timings.rejoin_grace_s,
            operator_password=operator_password(config),
        )
        # The store, if any: opened and loaded before serving (StoreError if it cannot be used),
        # its writer thread started by serve_forever and stopped by _close_everything.
        self.archive: "Archive | None" = None
        self._store_summary: "str | None" = None  # what the store loaded, for the start lines
        if config.store_path is not None and config.redis_url is None:
            self.archive = self._open_store(config)
            self.room.archive = self.archive
        if config.redis_url is not None:  # only then is anything of Redis imported
            from chat.bus.redis_bus import RedisBus

            self.room.bus = RedisBus(
                config.redis_url, self.room, config.history_lines, config.timings,
                max_line_bytes=config.limits.max_line_bytes,
            )
        self.admission = Admission(
            config.limits, config.password, config.timings.password_delay_s, config.trusted_proxies
        )
        self.address: "tuple[str, int] | None" = None  # as IPv4 clients know it, if they may connect
        self.ipv6_too = False  # whether IPv6 clients may connect as well as IPv4 ones at self.address
        self.ipv6_missing: "str | None" = None  # why not, when every interface was asked for
        self._listener: "socket.socket | None" = None
        # Guards _connections: every client socket that is open, joined or not.
        self._connections_lock = threading.Lock()
        self._connections: "set[ClientConnection]" = set()
        # Writing a byte to _wake_writer wakes the accept loop's select().
        self._wake_reader, self._wake_writer = socket.socketpair()
        self._selector: "selectors.BaseSelector | None" = None
        # Clients refused (the server is full, or their address has too many
        # connections) that are being answered and closed. Only the accept
        # loop touches it.
        self._refusals: "Refusals | None" = None
        self._refusal_log = RefusalLog()  # refusals at the door and at the seat, logged sparingly
        self._stop_requested = threading.Event()
        self._stopped = threading.Event()
        # Announces leaves once their grace is over: it may wait on the bus,
        # which the accept loop must never do. Stops with _stop_requested.
        self._leave_notices = threading.Thread(target=self._announce_leaves, name="leave-notices", daemon=True)

    def _open_store(self, config: ServerConfig) -> "Archive":
        from chat.store.archive import Archive  # only with a store: it reads orders as the bus does (chat.bus.entry)

        archive = Archive.open(config.store_path, keep=config.keep_lines, max_bytes=4 * config.limits.max_line_bytes)
        try:
            loaded = archive.load(config.history_lines)
        except BaseException:
            archive.close()
            raise
        self.room.remember(loaded.said)
        for order in loaded.orders:
            self.room.moderation.apply(order)
        for where, why in loaded.skipped[:LOGGED_SKIPPED_MAX]:
            log.warning("⚠️  The store %s: %s skipped: %s", config.store_path, where, why)
        if len(loaded.skipped) > LOGGED_SKIPPED_MAX:
            log.warning("⚠️  The store %s: %d more rows skipped.", config.store_path, len(loaded.skipped) - LOGGED_SKIPPED_MAX)
        # Said with the start lines, after the design document's first three.
        self._store_summary = (
            f"💾 Keeping the room in {config.store_path}: {len(loaded.said)} line(s) of history "
            f"and {len(loaded.orders)} ban(s), mute(s) or topic loaded."
        )
        return archive

    def bind(self) -> None:
        """Open the listening socket. Raises OSError (e.g. port in use).

        The default host, EVERY_INTERFACE, listens for IPv4 and IPv6 clients
        alike on one dual-stack socket where the system has IPv6, so that
        ``localhost``, which may mean ``::1``, always finds the server.
        """
        host, port = self.config.host, self.config.port
        self.ipv6_too = False
        if host == EVERY_INTERFACE and socket.has_dualstack_ipv6():
            try:
                self._listen(socket.AF_INET6, "::", port, dual_stack=True)
                self.ipv6_too = True
                self.address = ("0.0.0.0", self.address[1])  # as IPv4 clients know it
                return
            except OSError as error:
                if error.errno == errno.EACCES:
                    raise
                # IPv6 is unusable (turned off in this network, say), or another
                # program holds the port's IPv6 side only: IPv4 alone, and say why.
                self.ipv6_missing = error.strerror or str(error)
        if host == EVERY_INTERFACE:
            host = "0.0.0.0"
        self._listen(socket.AF_INET6 if ":" in host else socket.AF_INET, host, port)

    def _listen(self, family: int, host: str, port: int, dual_stack: bool = False) -> None:
        listener = socket.socket(family, socket.SOCK_STREAM)
        try:
            # Lets a restarted server bind at once although the old
            # connections linger in TIME_WAIT.
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if dual_stack:  # IPv4 clients arrive as ::ffff:1.2.3.4 (see chat.core.addresses.unmapped)
                listener.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
            listener.bind((host, port))
            # Room for every client we would seat, and every connection we
            # would let open, to be waiting at once (the kernel caps it at
            # net.core.somaxconn). Past it, the kernel drops a new client's
            # SYN, and the client tries again only a second later.
            listener.listen(self.limits.max_clients + self.limits.max_opening)
        except OSError:
            listener.close()
            raise
        listener.setblocking(False)
        self._listener = listener
        self.address = listener.getsockname()[:2]

    def serve_forever(self, on_started=None) -> None:
        """Accept clients until request_stop(), then close every connection.

        ``on_started`` is called once the start lines are logged (the
        operator console then says it is there).
        """
        if self._listener is None:
            self.bind()
        log.info("🚀 Chat Server Started")
        log.info("📍 Listening on %s", format_address(self.address))
        if self.ipv6_too:
            log.info("📍 Listening on %s too, for IPv6", format_address(("::", self.address[1])))
        elif self.ipv6_missing is not None:
            log.warning("⚠️  Not listening for IPv6 clients (%s): IPv4 only.", self.ipv6_missing)
        log.info("⏳ Waiting for clients to connect...")
        self._log_where_to_connect()
        if self._store_summary is not None:
            log.info("%s", self._store_summary)
        if on_started is not None:
            on_started()
        if self.room.bus is not None:
            self.room.bus.start()
        if self.archive is not None:
            self.archive.start()
        self._leave_notices.start()
        try:
            with selectors.DefaultSelector() as self._selector:
                self._selector.register(self._listener, selectors.EVENT_READ)
                self._selector.register(self._wake_reader, selectors.EVENT_READ)
                self._refusals = Refusals(self._selector)
                next_queue_check = time.monotonic()
                while not self._stop_requested.is_set():
                    timeout = min(self._refusals.seconds_until_due(), max(0.0, next_queue_check - time.monotonic()))
                    for key, _ in self._selector.select(timeout):
                        if key.fileobj is self._listener:
                            self._accept_waiting_clients()
                        elif key.fileobj in self._refusals:
                            self._refusals.on_readable(key.fileobj)
                    self._refusals.handle_due()
                    if time.monotonic() >= next_queue_check:
                        self._enforce_total_queue_bound()
                        next_queue_check = time.monotonic() + QUEUE_CHECK_S
                self._refusals.close_all()
        finally:
            self._close_everything()
            self._stopped.set()

    def _log_where_to_connect(self) -> None:
        host, port = self.address
        local = "localhost" if host in ("0.0.0.0", "::", "127.0.0.1", "::1") else host
        log.info("🌐 Chat page: http://%s/ (a browser joins the same room)", format_address((local, port)))
        forwarded = forwarded_address(port)
        if forwarded is not None:
            log.info("🌍 From other devices, once port %d is Public in the Ports panel:", port)
            log.info("   in a browser: %s", forwarded.page_url)
            log.info("   in a terminal: %s", forwarded.client_command)
            log.info("🔓 Ports start Private. Make it Public in the Ports panel (right-click %d › Port Visibility › Public)", port)
            log.info("   or run: %s", forwarded.make_public_command)
            log.info("   and check with: %s", forwarded.check_command)
        self._log_address_to_share(host, port, forwarded is not None)
        if self.admission.password is not None:
            log.info("🔒 A password is needed to join.")

    def _log_address_to_share(self, host: str, port: int, in_codespace: bool) -> None:
        """This machine's address on its network, and a phone's way in: a QR code (see chat.qr)."""
        url = address_to_share(host, port)
        if url is None:
            return
        if not in_codespace:  # a Codespace's address is logged already
            log.info("🏠 From other devices on this network: %s", url)
        if not self.config.qr_code or not stdout_is_terminal():
            return
        try:
            code = terminal_code(url)
        except ImportError as error:  # segno is missing: the address is there in words
            log.warning("⚠️  No QR code (%s): pip install -r requirements.txt", error)
            return
        if code is not None:
            log.info("📱 To join from a phone, scan this code of %s", url)
            log.info("%s", code.rstrip("\n"), extra={VERBATIM: True})

    def request_stop(self) -> None:
        """Ask serve_forever() to stop. Safe from any thread and from a signal handler."""
        self._stop_requested.set()
        try:
            self._wake_writer.send(b"\0")
        except OSError:
            pass  # already woken and closed

    def shutdown(self, timeout: float = 5.0) -> bool:
        """Stop serving and wait until the accept loop has closed everything; True if in time."""
        self.request_stop()
        return self._stopped.wait(timeout)

    # -- inside the accept loop ----------------------------------------------

    def _accept_waiting_clients(self) -> None:
        # The listener is non-blocking: accept everyone who is waiting, then select again.
        while not self._stop_requested.is_set():
            try:
                sock, address = self._listener.accept()
                address = unmapped(address)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as error:  # e.g. out of file descriptors: keep serving the others
                log.warning("⚠️  Could not accept a connection: %s", error)
                # The listener stays readable, so without a pause this loop would spin.
                self._stop_requested.wait(ACCEPT_RETRY_S)
                return
            try:
                self._start_connection(sock, address)
            except Exception:  # a bug of ours or a failing system call: this client only
                log.exception("Could not start serving %s", address)
                sock.close()
            if self.admission.opening >= max(1, self.limits.max_opening // 2):
                # A crowd is arriving: let the connections opening read
                # their first lines before more come in, so that none of
                # those already talking is closed to make room. The rest
                # wait in the listen backlog meanwhile; back in the loop,
                # the timers (refusals, the total queue bound) get their turn.
                self._stop_requested.wait(CROWD_PAUSE_S)
                return

    def _start_connection(self, sock: socket.socket, address) -> None:
        ban = self._ban_on(address[0])
        if ban is not None:
            self._turn_away(sock, address, refusal=ban, forbidden=True)
            return
        arrival = self.admission.arrive(address[0])
        if not isinstance(arrival, Arrival):
            self._turn_away(sock, address, refusal=arrival)
            return
        try:
            sock.setblocking(True)
            # Chat lines are small and should leave at once, not wait to be merged.
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SEND_BUFFER_BYTES)
            enable_keepalive(sock, self.limits.keepalive_idle_s)
            connection = ClientConnection(
                sock, address, self.room, self.limits, self.config.timings, arrival, self._forget,
                allowed_origins=self.config.allowed_origins, refusal_log=self._refusal_log,
            )
            with self._connections_lock:
                self._connections.add(connection)
            # Its "connected" line is logged when it joins, under the name it chose.
        except BaseException:
            arrival.release()
            raise
        try:
            connection.start()
        except RuntimeError:  # the system has no thread left to give: this client only
            log.error("⚠️  Could not start a thread for %s: too many threads", connection.name)
            arrival.release()
            sock.close()
            self._forget(connection)

    def _ban_on(self, host: str) -> "str | None":
        """Why a client connecting from ``host`` is refused, if its address is banned.

        A trusted proxy is never refused here: the client behind it is,
        once its request names it (see ClientConnection).
        """
        if host in self.admission.proxies:
            return None
        ban = self.room.moderation.ban_on(address_key(host))
        return None if ban is None else banned_refusal(ban, self.room.moderation.clock())

    def _turn_away(self, sock: socket.socket, address, refusal: str, forbidden: bool = False) -> None:
        """Refuse a client: it is answered, then closed, by the accept loop (see chat.transports.refusals)."""
        self._refusal_log.refused(format_peer(address), address[0], refusal)
        self._refusals.add(sock, refusal, forbidden)

    def _forget(self, connection: "ClientConnection") -> None:
        with self._connections_lock:
            self._connections.discard(connection)

    def _enforce_total_queue_bound(self) -> None:
        """If all clients' unsent bytes add up to more than the limit, drop the furthest behind.

        Each client may fall max_queue_bytes behind, but a thousand of them
        doing so at once would take a gigabyte: so the clients with the
        largest backlogs are cut off first, as if each had overflowed.
        """
        with self._connections_lock:
            connections = list(self._connections)
        backlogs = [(c.outbox.backlog_bytes, c) for c in connections if c.outbox.is_open()]
        total = sum(size for size, _ in backlogs)
        if total <= self.limits.max_total_queue_bytes:
            return
        for size, connection in sorted(backlogs, key=lambda pair: pair[0], reverse=True):
            if total <= self.limits.max_total_queue_bytes or not size:
                break
            log.warning(
                "⚠️  Dropping %s: %d bytes were waiting for it, and %d for all clients together (limit: %d)",
                connection.name, size, total, self.limits.max_total_queue_bytes,
            )
            connection.outbox.overflow()
            total -= size

    def _announce_leaves(self) -> None:
        """The leave-notices thread's body (see Room.announce_due_leaves)."""
        try:
            while not self._stop_requested.wait(LEAVE_CHECK_S):
                self.room.announce_due_leaves()
        except Exception:  # a bug of ours: the leaves wait, the rest goes on
            log.exception("Unexpected error while announcing leaves")

    def _close_everything(self) -> None:
        self._listener.close()
        self._wake_reader.close()
        self._wake_writer.close()
        self._leave_notices.join(THREAD_JOIN_S)
        self.room.announce_due_leaves(all_now=True)  # the last word before the shutdown notice
        members = set(self.room.close(messages.SHUTTING_DOWN))
        if self.room.bus is not None:
            self.room.bus.close()  # the other servers hear that our members left
        with self._connections_lock:
            connections = list(self._connections)
        if connections:
            log.info("🛑 Closing %d connection(s)...", len(connections))
        for connection in connections:
            if connection.session not in members:  # still connecting: not in the room yet
                connection.stop(messages.SHUTTING_DOWN)
        deadline = time.monotonic() + SHUTDOWN_GRACE_S
        for connection in connections:
            connection.reader.join(max(0.0, deadline - time.monotonic()))
        for connection in connections:
            if connection.reader.is_alive():  # it did not close its end in time
                connection.outbox.abort()
        deadline = time.monotonic() + THREAD_JOIN_S
        for connection in connections:
            connection.reader.join(max(0.0, deadline - time.monotonic()))
        stuck = [c.name for c in connections if c.reader.is_alive()]
        if stuck:
            log.warning("⚠️  Threads still running for: %s", ", ".join(stuck))
        if self.archive is not None:
            self.archive.close()  # after the room closed: nothing is said any more
        log.info("👋 Server stopped.")


def operator_password(config: ServerConfig) -> "OperatorPassword | None":
    """The operators' password as the room checks it, or None if there is none."""
    if not config.op_password:
        return None
    # Nobody needs it to join, so no one mistyping it may be spared the
    # room-wide turns: from the first failure, an address takes its turn
    # with every other, and a crowd of addresses guesses no faster than one.
    failures = FailureTracker(
        first_delay_s=config.timings.password_delay_s,
        room_rate=config.limits.max_password_rate,
        guessing_after_failures=1,
    )
    return OperatorPassword(config.op_password, failures)


def run(config: ServerConfig) -> int:
    """Run a server until Ctrl+C or SIGTERM; return the process exit status.

    When a person sits at the terminal, it is an operator console meanwhile
    (see chat.console): /quit, Ctrl+C or Ctrl+D there stop the server too.
    """
    # Two threads per client: with the default 8 MiB stacks, 1000 clients
    # would reserve 16 GiB of address space. Our threads run shallow code.
    threading.stack_size(THREAD_STACK_BYTES)
    # Before any thread starts: each thread inherits the CPUs of the one that starts it.
    cpu = keep_to_one_cpu() if config.one_cpu else None
    log_writer = configure_logging()
    status = 1
    try:
        if config.redis_url is not None and config.store_path is not None:
            log.info("💾 With --redis, Redis keeps the room: nothing is kept in %s.", config.store_path)
        try:
            server = ChatServer(config)
        except StoreError as error:
            log.error("❌ %s", error)
            status = 2
            return status
        try:
            server.bind()
        except OSError as error:
            if server.archive is not None:
                server.archive.close()
            log.error("❌ %s", describe_bind_error(error, config.host, config.port))
            return status
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, lambda *_: server.request_stop())
        with operator_console(server.room, server.request_stop, log_writer) as console:

            def on_started() -> None:
                if config.one_cpu:
                    log_cpu(cpu)
                if console is not None:
                    console.say_hello()

            server.serve_forever(on_started=on_started)
        status = 0
        return status
    finally:
        logging.getLogger().removeHandler(log_writer)
        if not log_writer.close():
            # Standard output takes nothing (a paused terminal, a stalled
            # pipe), and Python's own exit would wait forever to flush it.
            os._exit(status)


def keep_to_one_cpu() -> "int | None":
    """Keep this thread, and the threads it starts from now on, on one CPU; which one, or None if not possible.

    Only one thread at a time runs Python (the GIL), and whenever a thread
    blocks in a system call another takes it over. Between threads on two
    CPUs, each such hand-over wakes the other CPU, which costs more than
    the hand-over itself: in a busy room, waking and switching threads
    was most of the 30% of the server's CPU time spent in the kernel
    (docs/performance.md). The CPU kept is the last one this
    process may use, as the first usually takes the network's interrupts.
    Linux only: elsewhere there is no ``os.sched_setaffinity``.
    """
    try:
        cpu = max(os.sched_getaffinity(0))
        os.sched_setaffinity(0, {cpu})
    except (AttributeError, OSError):
        return None
    return cpu


def log_cpu(cpu: "int | None") -> None:
    """Say where --one-cpu put the server's threads."""
    if cpu is None:
        log.warning("⚠️  --one-cpu: this system cannot keep the server's threads on one CPU; they run on any.")
    else:
        log.info("🧵 Every thread of the server runs on CPU %d (--one-cpu).", cpu)


def stdout_is_terminal() -> bool:
    """Whether standard output is a terminal, where a person could scan what is printed."""
    try:
        return sys.stdout.isatty()
    except (AttributeError, ValueError):  # None (pythonw), or closed
        return False


def describe_bind_error(error: OSError, host: str, port: int) -> str:
    if error.errno == errno.EADDRINUSE:
        return (
            f"Port {port} is already in use. See which program has it with "
            f"`ss -ltnp 'sport = :{port}'` (or `lsof -i :{port}`), "
            "or pick another port with --port."
        )
    if error.errno == errno.EACCES:
        return f"Not allowed to listen on port {port}: pick a port above 1023 with --port."
    return f"Cannot listen on {format_address((host or '0.0.0.0', port))}: {error.strerror or error}."
