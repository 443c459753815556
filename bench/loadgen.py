"""A load generator for line-based chat servers: many clients, one process, one selector.

Each client is a non-blocking socket. Senders write lines of the form::

    ~SENDER SEQUENCE SEND_TIME_NS PADDING

and every client reads whatever the server relays, whatever prefix the
server puts in front ("c7: ~7 ..." here, "<user9> ~7 ..." for ncat). From the
receipts it measures deliveries per second, end-to-end latency (send to
receipt at each other client), lost, duplicated and reordered lines, and
whether all clients saw the lines in one order.

Senders keep at most ``window`` lines in flight (sent, but not yet received
by every reading client), so the figures describe steady throughput rather
than how fast socket buffers fill.
"""

import errno
import selectors
import socket
import time
from array import array
from dataclasses import dataclass

MARK = b"~"
SYNC = b"SYNC"
RECV_BYTES = 256 * 1024
CONNECT_TIMEOUT_S = 30.0
SYNC_TIMEOUT_S = 10.0
DRAIN_TIMEOUT_S = 3.0
SYNC_READ_PAUSE_S = 0.005
CONNECT_WAVE = 5  # clients connecting at a time, outside storm scenarios
WAVE_PAUSE_S = 0.005
# At the end, how long a non-reader's socket must stay silent to count as still connected.
NON_READER_CHECK_S = 2.0


class NotAllJoined(TimeoutError):
    """Some clients were still not in the chat when SYNC_TIMEOUT_S ran out."""

    def __init__(self, missing: int) -> None:
        super().__init__(f"{missing} clients were not in the chat after {SYNC_TIMEOUT_S:g} s")
        self.missing = missing


@dataclass(frozen=True)
class Scenario:
    name: str
    title: str
    clients: int
    senders: int  # clients 0 .. senders-1 send; all readers receive
    window: int  # most lines a sender has in flight
    payload_bytes: int
    duration_s: float
    rate_hz: "float | None" = None  # lines per second per sender; None: as fast as the window allows
    non_readers: int = 0  # the last clients connect but never read
    connect_storm: bool = False  # all clients connect at the same moment


@dataclass
class Outcome:
    """What one run of a scenario measured (the load generator's side)."""

    connect_s: float  # until a line reached every client
    accepted_s: float  # until every client had its first line from the server
    cpu_s: float  # the server's, from the start of measuring to the end of the drain
    deliveries: int
    duration_s: float
    latencies_ns: array
    lost: int
    duplicated: int
    reordered: int
    same_order: bool
    sent: int
    non_readers_dropped: int = 0

    @property
    def deliveries_per_s(self) -> float:
        return self.deliveries / self.duration_s if self.duration_s else 0.0

    def latency_ms(self, percentile: float) -> float:
        if not self.latencies_ns:
            return float("nan")
        ordered = sorted(self.latencies_ns)
        index = min(len(ordered) - 1, int(round(percentile / 100 * (len(ordered) - 1))))
        return ordered[index] / 1e6


class Client:
    __slots__ = ("index", "sock", "reading", "partial", "outgoing", "order", "next_seq",
                 "in_flight", "next_send", "last_seq", "synced", "connected", "heard")

    def __init__(self, index: int, sock: socket.socket, reading: bool, clients: int) -> None:
        self.index = index
        self.sock = sock
        self.reading = reading
        self.partial = b""  # an unfinished line
        self.outgoing = bytearray()
        self.order = array("q")  # (sender << 32 | seq) of each line received, in order
        self.next_seq = 0
        self.in_flight = 0
        self.next_send = 0.0
        self.last_seq = [-1] * clients  # highest sequence seen from each sender
        self.synced = False
        self.connected = False
        self.heard = False  # has received anything from the server


class LoadGenerator:
    def __init__(self, address, scenario: Scenario, join_line: "bytes | None" = None, cpu_clock=lambda: 0.0) -> None:
        """``join_line`` (with ``%d`` for the client number) is sent first by every client;
        ``cpu_clock`` returns the server's CPU seconds so far."""
        self.address = address
        self.cpu_clock = cpu_clock
        self.scenario = scenario
        self.join_line = join_line
        self.selector = selectors.DefaultSelector()
        self.clients: "list[Client]" = []
        # (sender << 32 | seq) -> receipts still expected before the line is complete.
        self.pending: "dict[int, int]" = {}
        self.latencies = array("q")
        self.deliveries = 0
        self.duplicated = 0
        self.reordered = 0
        self.measuring = False
        self.accepted_s: "float | None" = None  # when every reader had heard from the server
        self.heard_count = 0  # clients that have received anything
        self.synced_count = 0  # clients that have received the sync line
        readers = scenario.clients - scenario.non_readers
        self.expected_receipts = readers - 1  # every reader but the sender (senders all read)

    # -- phases ------------------------------------------------------------------

    def run(self) -> Outcome:
        try:
            started = time.perf_counter()
            self._connect_all()
            self._sync(started)
            # In the chat: a line sent now reaches every client.
            connect_s = time.perf_counter() - started
            self._drive(until=time.perf_counter() + 0.2, sending=False)  # let the last syncs drain
            cpu_before = self.cpu_clock()
            start = time.perf_counter()
            self.measuring = True
            self._drive(until=start + self.scenario.duration_s, sending=True)
            duration = time.perf_counter() - start
            measured = self.deliveries
            self._drive(until=time.perf_counter() + DRAIN_TIMEOUT_S, sending=False)
            lost = sum(self.pending.values())
            cpu_s = self.cpu_clock() - cpu_before
            dropped = self._count_dropped_non_readers()
            return Outcome(
                accepted_s=self.accepted_s if self.accepted_s is not None else connect_s,
                cpu_s=cpu_s,
                connect_s=connect_s,
                deliveries=measured,
                duration_s=duration,
                latencies_ns=self.latencies,
                lost=lost,
                duplicated=self.duplicated,
                reordered=self.reordered,
                same_order=self._one_order(),
                non_readers_dropped=dropped,
                sent=sum(c.next_seq for c in self.clients),
            )
        finally:
            for client in self.clients:
                client.sock.close()
            self.selector.close()

    def _connect_all(self) -> None:
        """Connect every client: all at once in a storm scenario, else a few at a time.

        A few at a time is how real users arrive, and it spares a server with
        a short listen backlog (ncat's is 10) from losing connections, which
        would measure its backlog instead of its relaying.
        """
        n = self.scenario.clients
        wave = n if self.scenario.connect_storm else CONNECT_WAVE
        for first in range(0, n, wave):
            self._connect_wave(range(first, min(n, first + wave)))
            if not self.scenario.connect_storm:
                time.sleep(WAVE_PAUSE_S)

    def _connect_wave(self, indexes: range) -> None:
        n = self.scenario.clients
        wave = []
        for index in indexes:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setblocking(False)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            error = sock.connect_ex(self.address)
            if error not in (0, errno.EINPROGRESS):
                raise OSError(error, f"connect failed: {errno.errorcode.get(error)}")
            client = Client(index, sock, index < n - self.scenario.non_readers, n)
            self.clients.append(client)
            wave.append(client)
            self.selector.register(sock, selectors.EVENT_WRITE, client)
        waiting = len(wave)
        deadline = time.perf_counter() + CONNECT_TIMEOUT_S
        while waiting:
            if time.perf_counter() > deadline:
                raise TimeoutError(f"{waiting} clients could not connect")
            for key, _ in self.selector.select(0.5):
                client = key.data
                if client.connected:
                    continue
                error = client.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                if error:
                    raise OSError(error, f"client {client.index} could not connect")
                client.connected = True
                waiting -= 1
                self._modify(client, selectors.EVENT_READ if client.reading else 0)
                if self.join_line:
                    self._send(client, self.join_line % client.index)

    def _sync(self, started: float) -> None:
        """Wait until a line from client 0 reaches every reader, so that all have joined.

        Meanwhile, note when the last client got its first line from the server
        (a welcome or an announcement): from then on the server had accepted them all.
        """
        deadline = time.perf_counter() + SYNC_TIMEOUT_S
        readers = sum(c.reading for c in self.clients[1:])  # client 0 does not hear its own line
        while self.synced_count < readers:
            if time.perf_counter() > deadline:
                raise NotAllJoined(readers - self.synced_count)
            self._send(self.clients[0], SYNC + b"\n")
            self._drive(until=time.perf_counter() + 0.05, sending=False, stop_when_synced=readers)
            if self.accepted_s is None and self.heard_count >= readers:
                self.accepted_s = time.perf_counter() - started

    def _drive(self, until: float, sending: bool, stop_when_synced=None) -> None:
        senders = self.clients[: self.scenario.senders]
        interval = 1.0 / self.scenario.rate_hz if self.scenario.rate_hz else 0.0
        if sending and interval:
            now = time.perf_counter()
            for i, sender in enumerate(senders):  # spread the senders over one interval
                sender.next_send = now + interval * i / len(senders)
        window = self.scenario.window
        while (now := time.perf_counter()) < until:
            if sending:
                for sender in senders:
                    if sender.in_flight < window and sender.next_send <= now:
                        self._send_numbered(sender)
                        if interval:
                            sender.next_send = max(sender.next_send + interval, now - interval)
            elif not self.pending and stop_when_synced is None and not self.measuring_drain_needed():
                return
            if stop_when_synced is not None:
                if self.synced_count >= stop_when_synced:
                    return
                # While waiting for everyone to join, let lines pile up between reads:
                # one recv per line would make this process the bottleneck.
                time.sleep(SYNC_READ_PAUSE_S)
            timeout = min(until - now, 0.002 if sending else 0.05)
            for key, events in self.selector.select(timeout):
                client = key.data
                if events & selectors.EVENT_READ:
                    self._receive(client)
                if events & selectors.EVENT_WRITE:
                    self._flush(client)

    def measuring_drain_needed(self) -> bool:
        return not self.measuring  # during sync and settling, run until the deadline

    # -- sending -------------------------------------------------------------------

    def _send_numbered(self, sender: Client) -> None:
        seq = sender.next_seq
        sender.next_seq += 1
        sender.in_flight += 1
        self.pending[sender.index << 32 | seq] = self.expected_receipts
        head = b"%c%d %d %d " % (MARK[0], sender.index, seq, time.perf_counter_ns())
        self._send(sender, head + b"x" * max(0, self.scenario.payload_bytes - len(head)) + b"\n")

    def _send(self, client: Client, data: bytes) -> None:
        if client.outgoing:
            client.outgoing += data
            return
        try:
            sent = client.sock.send(data)
        except BlockingIOError:
            sent = 0
        if sent < len(data):
            client.outgoing += data[sent:]
            events = selectors.EVENT_WRITE | (selectors.EVENT_READ if client.reading else 0)
            self._modify(client, events)

    def _flush(self, client: Client) -> None:
        try:
            sent = client.sock.send(client.outgoing)
        except BlockingIOError:
            return
        del client.outgoing[:sent]
        if not client.outgoing:
            self._modify(client, selectors.EVENT_READ if client.reading else 0)

    def _modify(self, client: Client, events: int) -> None:
        registered = client.sock in self.selector.get_map()
        if events and registered:
            self.selector.modify(client.sock, events, client)
        elif events:
            self.selector.register(client.sock, events, client)
        elif registered:
            self.selector.unregister(client.sock)

    # -- receiving -----------------------------------------------------------------

    def _receive(self, client: Client) -> None:
        try:
            data = client.sock.recv(RECV_BYTES)
        except (BlockingIOError, InterruptedError):
            return
        except ConnectionError:
            data = b""
        if not data:  # dropped by the server
            self._modify(client, 0)
            return
        if not client.heard:
            client.heard = True
            self.heard_count += 1
        now = time.perf_counter_ns()  # one clock read per chunk: its lines arrived together
        lines = (client.partial + data).split(b"\n")
        client.partial = lines.pop()
        for line in lines:
            mark = line.find(MARK)
            if mark < 0:
                if not client.synced and SYNC in line:
                    client.synced = True
                    self.synced_count += 1
                continue
            sender, seq, sent_ns, _ = line[mark + 1 :].split(b" ", 3)
            self._record(client, int(sender), int(seq), now - int(sent_ns))

    def _record(self, client: Client, sender: int, seq: int, latency_ns: int) -> None:
        key = sender << 32 | seq
        remaining = self.pending.get(key)
        if remaining is None:
            self.duplicated += 1
            return
        if remaining == 1:
            del self.pending[key]
            self.clients[sender].in_flight -= 1
        else:
            self.pending[key] = remaining - 1
        if seq < client.last_seq[sender]:
            self.reordered += 1
        else:
            client.last_seq[sender] = seq
        client.order.append(key)
        self.latencies.append(latency_ns)
        if self.measuring:
            self.deliveries += 1

    def _count_dropped_non_readers(self) -> int:
        """Read what each non-reader was sent, and count those the server had disconnected."""
        dropped = 0
        for client in self.clients:
            if client.reading:
                continue
            client.sock.settimeout(NON_READER_CHECK_S)
            try:
                while client.sock.recv(RECV_BYTES):
                    pass
                dropped += 1  # end of stream: the server closed it
            except ConnectionResetError:
                dropped += 1
            except (socket.timeout, OSError):
                pass  # still connected: nothing more came, and no end of stream
        return dropped

    def _one_order(self) -> bool:
        """Did every client see the lines in one total order?

        Ranks come from two reference clients (each lacks only its own lines,
        which the other has): every client's lines must appear in increasing
        rank order in both.
        """
        readers = [c for c in self.clients if c.reading]
        if len(readers) < 3:
            return True
        for reference in readers[:2]:
            rank = {key: i for i, key in enumerate(reference.order)}
            for client in readers:
                if client is reference:
                    continue
                previous = -1
                for key in client.order:
                    position = rank.get(key)
                    if position is None:
                        continue
                    if position < previous:
                        return False
                    previous = position
        return True
