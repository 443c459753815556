"""A load generator for line-based chat servers: many clients, one process, one selector.

Each client is a non-blocking socket, speaking raw lines or WebSocket (the
HTTP upgrade to ``/ws``, then one text message per line); a room may hold
both kinds. The WebSocket side is a minimal client of our own,
:mod:`bench.wsclient`, rather than websockets' ``ClientProtocol``, which
costs this process too much CPU per frame: that module says how much.

Senders write lines of the form::

    ~SENDER SEQUENCE SEND_TIME_NS PADDING

and every client reads whatever the server relays, whatever prefix the
server puts in front ("c7: ~7 ..." here, "<user9> ~7 ..." for ncat). From the
receipts it measures deliveries per second, end-to-end latency (send to
receipt at each other client), lost, duplicated and reordered lines, and
whether all clients saw the lines in one order.

The clients may be spread over several servers that share one room (through
Redis): given several addresses, client ``i`` connects to
``addresses[i % len(addresses)]``, so the clients, and the senders among them
(the first clients), are dealt out evenly.

Senders keep at most ``window`` lines in flight (sent, but not yet received
by every reading client), so the figures describe steady throughput rather
than how fast socket buffers fill.
"""

import enum
import errno
import re
import selectors
import socket
import time
from array import array
from dataclasses import dataclass

from bench.wsclient import State as WebSocketState
from bench.wsclient import WebSocketClient

MARK = b"~"
SYNC = b"SYNC"
# Found wherever the server's prefix puts them ("c7: ~7 ...", "<user9> ~7 ..."):
NUMBERED_LINE = re.compile(rb"~(\d+) (\d+) (\d+) ")  # a sender's line: its number, sequence and time sent
SYNC_LINE = re.compile(rb"SYNC (\d+)")
RECV_BYTES = 256 * 1024
CONNECT_TIMEOUT_S = 30.0
SYNC_INTERVAL_S = 0.05  # how often a sync line goes out while clients are still joining
SYNC_READ_PAUSE_S = 0.005
CONNECT_WAVE = 5  # clients connecting at a time, outside storm scenarios
WAVE_PAUSE_S = 0.005


@dataclass(frozen=True)
class Patience:
    """How long the generator waits for what may never come.

    A full run waits long enough to tell a slow server from a stuck one; a
    smoke run only checks that everything works, so it waits less.
    """

    join_s: float = 10.0  # for every client to be in the chat (ncat's storm never gets there)
    # Give up on joining sooner if this long passes without one more client
    # in the chat (None: wait the whole join_s).
    join_stall_s: "float | None" = None
    settle_s: float = 0.2  # after joining, before measuring: the server's log and threads catch up
    drain_s: float = 3.0  # after sending stops, for the lines still in flight
    quiet_s: float = 2.0  # at the end, how long a non-reader that has stopped receiving may stay silent


THOROUGH = Patience()
QUICK = Patience(join_s=5.0, join_stall_s=0.5, settle_s=0.0, drain_s=1.0, quiet_s=0.5)


class NotAllJoined(TimeoutError):
    """Some clients were still not in the chat when the wait for them ran out."""

    def __init__(self, missing: int, waited_s: float) -> None:
        super().__init__(f"{missing} clients were not in the chat after {waited_s:.1f} s")
        self.missing = missing
        self.waited_s = waited_s


class Transport(enum.Enum):
    """How a scenario's clients talk to the server."""

    RAW = "raw"  # lines over TCP
    WEBSOCKET = "websocket"  # text messages over WebSocket
    MIXED = "mixed"  # odd-numbered clients WebSocket, the others raw


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
    transport: Transport = Transport.RAW
    servers: int = 1  # servers sharing the room (through Redis); the clients are dealt out among them in turn

    def uses_websocket(self, index: int) -> bool:
        """Whether client number ``index`` speaks WebSocket."""
        if self.transport is Transport.MIXED:
            return index % 2 == 1
        return self.transport is Transport.WEBSOCKET

    @property
    def needs_websocket(self) -> bool:
        return self.transport is not Transport.RAW

    @property
    def shares_room(self) -> bool:
        """Whether the room is shared by several servers."""
        return self.servers > 1


@dataclass
class Outcome:
    """What one run of a scenario measured (the load generator's side)."""

    connect_s: float  # until a line reached every client
    accepted_s: float  # until every client had its first line from the server
    # Each server process's CPU seconds, from the start of measuring to the end of the drain.
    cpu_s_each: "list[float]"
    deliveries: int
    duration_s: float
    latencies_ns: array  # every receipt's, at clients of both kinds
    lost: int
    duplicated: int
    reordered: int
    same_order: bool
    sent: int
    non_readers_dropped: int = 0
    # Receipts' latencies by the receiving client's kind: "raw", "websocket".
    latencies_by_kind: "dict[str, array] | None" = None
    generator_cpu_s: float = 0.0  # this process's, while sending

    @property
    def cpu_s(self) -> float:
        """The CPU seconds of all server processes together."""
        return sum(self.cpu_s_each)

    @property
    def deliveries_per_s(self) -> float:
        return self.deliveries / self.duration_s if self.duration_s else 0.0

    def latency_ms(self, percentile: float, kind: "str | None" = None) -> float:
        """The latency at ``percentile`` (0 to 100), over all receipts or those at clients of ``kind``."""
        latencies = self.latencies_ns if kind is None else self.latencies_by_kind[kind]
        if not latencies:
            return float("nan")
        ordered = sorted(latencies)
        index = min(len(ordered) - 1, int(round(percentile / 100 * (len(ordered) - 1))))
        return ordered[index] / 1e6


class Client:
    __slots__ = ("index", "sock", "reading", "listening", "ws", "partial", "outgoing", "order", "latencies",
                 "next_seq", "in_flight", "next_send", "last_seq", "synced", "sync_seen", "connected", "heard")

    def __init__(
        self, index: int, sock: socket.socket, reading: bool, clients: int, ws: "WebSocketClient | None"
    ) -> None:
        self.index = index
        self.sock = sock
        self.reading = reading
        # Registered for reading: a reader, or any WebSocket client until its handshake is done.
        self.listening = reading or ws is not None
        self.ws = ws  # the WebSocket protocol, for a WebSocket client; None for a raw one
        self.partial = b""  # an unfinished line (raw clients)
        self.outgoing = bytearray()
        self.order = array("q")  # (sender << 32 | seq) of each line received, in order
        self.latencies: "array | None" = None  # where this client's receipts' latencies go
        self.next_seq = 0
        self.in_flight = 0
        self.next_send = 0.0
        self.last_seq = [-1] * clients  # highest sequence seen from each sender
        self.synced = False
        self.sync_seen = -1  # the number of the last sync line received
        self.connected = False
        self.heard = False  # has received a line from the server


class LoadGenerator:
    def __init__(
        self,
        addresses: "list[tuple[str, int]]",
        scenario: Scenario,
        join_line: "bytes | None" = None,
        cpu_clock=lambda: [],
        patience: Patience = THOROUGH,
    ) -> None:
        """Client ``i`` connects to ``addresses[i % len(addresses)]``.

        ``join_line`` (with ``%d`` for the client number, no newline) is sent
        first by every client; ``cpu_clock`` returns the CPU seconds so far of
        each server process, as a list.
        """
        if not addresses:
            raise ValueError("no server address to connect to")
        self.addresses = list(addresses)
        self.cpu_clock = cpu_clock
        self.scenario = scenario
        self.join_line = join_line
        self.patience = patience
        self.selector = selectors.DefaultSelector()
        self.clients: "list[Client]" = []
        # (sender << 32 | seq) -> receipts still expected before the line is complete.
        self.pending: "dict[int, int]" = {}
        self.latencies_by_kind = {"raw": array("q"), "websocket": array("q")}
        self.deliveries = 0
        self.duplicated = 0
        self.reordered = 0
        self.measuring = False
        self.accepted_s: "float | None" = None  # when every reader had heard from the server
        self.heard_count = 0  # readers that have received a line
        self.synced_count = 0  # clients that have received a sync line
        self.syncs_sent = 0
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
            self._drive(until=time.perf_counter() + self.patience.join_s, done=self._syncs_all_arrived)
            self._drive(until=time.perf_counter() + self.patience.settle_s)
            cpu_before = self.cpu_clock()
            generator_cpu_before = time.process_time()
            start = time.perf_counter()
            self.measuring = True
            self._drive(until=start + self.scenario.duration_s, sending=True)
            duration = time.perf_counter() - start
            generator_cpu_s = time.process_time() - generator_cpu_before
            measured = self.deliveries
            self._drive(until=time.perf_counter() + self.patience.drain_s, done=lambda: not self.pending)
            lost = sum(self.pending.values())
            cpu_s_each = [after - before for after, before in zip(self.cpu_clock(), cpu_before)]
            dropped = self._count_dropped_non_readers()
            by_kind = self.latencies_by_kind
            return Outcome(
                accepted_s=self.accepted_s if self.accepted_s is not None else connect_s,
                cpu_s_each=cpu_s_each,
                connect_s=connect_s,
                deliveries=measured,
                duration_s=duration,
                latencies_ns=by_kind["raw"] + by_kind["websocket"],
                lost=lost,
                duplicated=self.duplicated,
                reordered=self.reordered,
                same_order=self._one_order(),
                non_readers_dropped=dropped,
                sent=sum(c.next_seq for c in self.clients),
                latencies_by_kind=by_kind,
                generator_cpu_s=generator_cpu_s,
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

    def address_of(self, index: int) -> "tuple[str, int]":
        """The server client number ``index`` connects to."""
        return self.addresses[index % len(self.addresses)]

    def _connect_wave(self, indexes: range) -> None:
        n = self.scenario.clients
        wave = []
        for index in indexes:
            address = self.address_of(index)
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setblocking(False)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            error = sock.connect_ex(address)
            if error not in (0, errno.EINPROGRESS):
                raise OSError(error, f"connect failed: {errno.errorcode.get(error)}")
            host, port = address[:2]
            ws = WebSocketClient(f"{host}:{port}") if self.scenario.uses_websocket(index) else None
            client = Client(index, sock, index < n - self.scenario.non_readers, n, ws)
            client.latencies = self.latencies_by_kind["raw" if ws is None else "websocket"]
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
                self._modify(client, selectors.EVENT_READ if client.listening else 0)
                if self.join_line:
                    self._send_line(client, self.join_line % client.index)
                if client.ws is not None:  # the upgrade request, with the join line waiting behind it
                    self._send(client, client.ws.data_to_send())

    def _sync(self, started: float) -> None:
        """Wait until a line from client 0 reaches every reader, so that all have joined.

        Meanwhile, note when the last client got its first line from the server
        (a welcome or an announcement): from then on the server had accepted them all.
        """
        began = progress_at = time.perf_counter()
        deadline = began + self.patience.join_s
        stall_s = self.patience.join_stall_s or self.patience.join_s
        readers = sum(c.reading for c in self.clients[1:])  # client 0 does not hear its own line
        all_readers = readers + self.clients[0].reading
        synced_before = 0
        while self.synced_count < readers:
            now = time.perf_counter()
            if self.synced_count > synced_before:
                synced_before, progress_at = self.synced_count, now
            if now > deadline or now > progress_at + stall_s:
                raise NotAllJoined(readers - self.synced_count, now - began)
            self._send_line(self.clients[0], SYNC + b" %d" % self.syncs_sent)
            self.syncs_sent += 1
            # Wait for the sync line, or for the moment every reader has heard
            # from the server: a server that greets (ours) has then let them
            # all in, and the next sync line, sent at once, reaches them all.
            # While waiting, let lines pile up between reads: one recv per
            # line would make this process the bottleneck.
            self._drive(
                until=time.perf_counter() + SYNC_INTERVAL_S,
                done=lambda greeting=self.accepted_s is None: self.synced_count >= readers
                or (greeting and self.heard_count >= all_readers),
                pause_s=SYNC_READ_PAUSE_S,
            )
            if self.accepted_s is None and self.heard_count >= all_readers:
                self.accepted_s = time.perf_counter() - started

    def _syncs_all_arrived(self) -> bool:
        """Whether every reader has the last sync line, and so everything sent before the measuring."""
        last = self.syncs_sent - 1
        return all(c.sync_seen == last for c in self.clients[1:] if c.reading)

    def _drive(self, until: float, sending: bool = False, done=None, pause_s: float = 0.0) -> None:
        """Send (if ``sending``) and receive until ``until``, or until ``done()`` is true when not sending."""
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
            elif done is not None and done():
                return
            if pause_s:
                time.sleep(pause_s)
            timeout = min(until - now, 0.002 if sending else 0.05)
            for key, events in self.selector.select(timeout):
                client = key.data
                if events & selectors.EVENT_READ:
                    self._receive(client)
                if events & selectors.EVENT_WRITE:
                    self._flush(client)

    # -- sending -------------------------------------------------------------------

    def _send_numbered(self, sender: Client) -> None:
        seq = sender.next_seq
        sender.next_seq += 1
        sender.in_flight += 1
        self.pending[sender.index << 32 | seq] = self.expected_receipts
        head = b"%c%d %d %d " % (MARK[0], sender.index, seq, time.perf_counter_ns())
        self._send_line(sender, head + b"x" * max(0, self.scenario.payload_bytes - len(head)))

    def _send_line(self, client: Client, line: bytes) -> None:
        """Send one line (without its newline): with a newline to a raw client, as a text message over WebSocket."""
        if client.ws is None:
            self._send(client, line + b"\n")
        else:
            client.ws.send_text(line)
            data = client.ws.data_to_send()
            if data:  # nothing while the handshake is still under way: the line waits in ws
                self._send(client, data)

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
            events = selectors.EVENT_WRITE | (selectors.EVENT_READ if client.listening else 0)
            self._modify(client, events)

    def _flush(self, client: Client) -> None:
        try:
            sent = client.sock.send(client.outgoing)
        except BlockingIOError:
            return
        del client.outgoing[:sent]
        if not client.outgoing:
            self._modify(client, selectors.EVENT_READ if client.listening else 0)

    def _modify(self, client: Client, events: int) -> None:
        registered = client.sock in self.selector.get_map()
        if events and registered:
            self.selector.modify(client.sock, events, client)
        elif events:
            self.selector.register(client.sock, events, client)
        elif registered:
            self.selector.unregister(client.sock)

    # -- receiving -----------------------------------------------------------------

    def _received_text(self, client: Client, data: bytes) -> bytes:
        """The whole lines (raw) or text messages (WebSocket) that ``data`` completes, newline-ended, as one chunk."""
        if client.ws is None:
            text = client.partial + data
            end = text.rfind(b"\n") + 1
            client.partial = text[end:]
            return text[:end]
        ws = client.ws
        opening = ws.state is WebSocketState.CONNECTING
        messages = ws.receive_data(data)
        if opening and ws.state is not WebSocketState.CONNECTING and not client.reading:
            client.listening = False  # a non-reader reads no further than the handshake
            self._modify(client, selectors.EVENT_WRITE if client.outgoing else 0)
        reply = ws.data_to_send()  # the lines that waited for the handshake, a pong or a close
        if reply:
            self._send(client, reply)
        return b"".join(message + b"\n" for message in messages)

    def _receive(self, client: Client) -> None:
        try:
            data = client.sock.recv(RECV_BYTES)
        except (BlockingIOError, InterruptedError):
            return
        except ConnectionError:
            data = b""
        if not data:  # dropped by the server
            client.listening = False
            self._modify(client, 0)
            return
        now = time.perf_counter_ns()  # one clock read per chunk: its lines arrived together
        text = self._received_text(client, data)
        if not text:
            return
        if not client.heard and client.reading:
            client.heard = True
            self.heard_count += 1
        if SYNC in text:
            client.sync_seen = int(SYNC_LINE.findall(text)[-1])
            if not client.synced:
                client.synced = True
                self.synced_count += 1
        # One regular expression over the whole chunk, rather than splitting
        # it into lines and each line into fields: this process must stay
        # cheaper than the fastest server it measures.
        for sender, seq, sent_ns in NUMBERED_LINE.findall(text):
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
        client.latencies.append(latency_ns)
        if self.measuring:
            self.deliveries += 1

    def _count_dropped_non_readers(self) -> int:
        """Read what each non-reader was sent, and count those the server had disconnected.

        A non-reader still connected receives every numbered line (all were
        sent after it joined) and then nothing more; one the server dropped
        reaches the end of its stream (or a WebSocket close frame). One that
        stops receiving before either, for ``patience.quiet_s``, counts as
        connected: the server still holds it, but sends it nothing.
        """
        sent = sum(c.next_seq for c in self.clients)
        dropped = 0
        for client in self.clients:
            if client.reading:
                continue
            client.sock.settimeout(self.patience.quiet_s)
            received = 0
            try:
                while received < sent:
                    data = client.sock.recv(RECV_BYTES)
                    if not data:
                        dropped += 1  # end of stream: the server closed it
                        break
                    received += self._received_text(client, data).count(MARK)
                    if client.ws is not None and client.ws.state is WebSocketState.CLOSED:
                        dropped += 1
                        break
            except ConnectionResetError:
                dropped += 1
            except OSError:  # TimeoutError above all: still connected, but silent
                pass
        return dropped

    def _one_order(self) -> bool:
        """Did every client see the lines in one total order?

        Each reference client's order ranks the lines it received, and every
        other client's lines must appear in increasing rank in each reference.
        A reader that sends nothing received every line, so it is the one
        reference needed. When everyone sends, each reader lacks its own
        lines, and four references are taken: whatever two lines a client
        saw, one of the four sent neither and is not that client. (Two would
        leave every line of the first unchecked against every line of the
        second, and three, two senders' lines as the third saw them.)

        Every client is compared, whichever server it is on and whatever it
        speaks. With four references, consecutive clients alternate between
        the servers of a shared room and between raw and WebSocket in a mixed
        room, so the references themselves are of every server and kind.
        """
        readers = [c for c in self.clients if c.reading]
        if len(readers) < 3:
            return True
        complete = [c for c in readers if c.index >= self.scenario.senders]
        references = complete[:1] or readers[:4]
        for reference in references:
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
