"""The benchmark: its WebSocket client (checked by websockets' ServerProtocol), the one-order check, the table,
and the shared-room scenarios in their smoke form.

The load generator's WebSocket client (bench/wsclient.py) is its own, for
speed; the library's server side, an independent implementation of
RFC 6455, checks every byte it writes and writes every byte it reads.

The shared-room scenarios start a throwaway redis-server and two of our
servers; without redis-server those tests skip, saying how to install it.
"""

import json
import os
import shutil
import sys
from array import array

import pytest
from websockets import CloseCode, Frame, Opcode, ServerProtocol
from websockets.frames import Close

from bench.__main__ import FULL, SMOKE, main, print_table
from bench.loadgen import Client, LoadGenerator, Scenario, Transport
from bench.servers import (
    Deployment,
    OurServer,
    ServerFailed,
    ServerUnderTest,
    shared_room_missing,
)
from bench.wsclient import (
    MAX_HEAD_BYTES,
    MAX_MESSAGE_BYTES,
    HandshakeFailed,
    ProtocolError,
    State,
    WebSocketClient,
    accept_key,
    mask,
)


def handshake(server: ServerProtocol, client: WebSocketClient, accept: bool = True) -> bytes:
    """Hand the client's request to the server; return the server's answer."""
    server.receive_data(client.data_to_send())
    [request] = server.events_received()
    assert request.path == "/ws"
    response = server.accept(request) if accept else server.reject(503, "Server is full")
    server.send_response(response)
    return b"".join(server.data_to_send())


def opened() -> "tuple[ServerProtocol, WebSocketClient]":
    server, client = ServerProtocol(), WebSocketClient("127.0.0.1:8080")
    assert client.receive_data(handshake(server, client)) == []
    assert client.state is State.OPEN
    return server, client


def frames_from(server: ServerProtocol, client: WebSocketClient) -> list:
    server.receive_data(client.data_to_send())
    return server.events_received()


def feed_in_pieces(client: WebSocketClient, data: bytes, cuts) -> list:
    messages, start = [], 0
    for cut in [*cuts, len(data)]:
        messages += client.receive_data(data[start:cut])
        start = cut
    return messages


# -- the opening handshake -----------------------------------------------------


def test_the_accept_key_is_the_one_rfc_6455_gives_for_its_sample_key():
    assert accept_key(b"dGhlIHNhbXBsZSBub25jZQ==") == b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


def test_the_library_accepts_the_request_and_the_client_opens():
    server, _ = opened()
    assert server.state.name == "OPEN"


def test_text_sent_before_the_handshake_leaves_after_it_in_order():
    server, client = ServerProtocol(), WebSocketClient("127.0.0.1:8080")
    client.send_text(b"/nick c1")
    client.send_text(b"SYNC 0")
    answer = handshake(server, client)  # only the request went out
    assert server.events_received() == []
    client.receive_data(answer)
    assert [frame.data for frame in frames_from(server, client)] == [b"/nick c1", b"SYNC 0"]


def test_a_response_head_split_anywhere_opens_the_connection_once_whole():
    server, probe = ServerProtocol(), WebSocketClient("127.0.0.1:8080")
    answer = handshake(server, probe)
    for cut in range(len(answer) + 1):
        client = WebSocketClient("127.0.0.1:8080")
        client.key = probe.key  # the answer was made for this key
        client.receive_data(answer[:cut])
        assert client.state is (State.OPEN if cut == len(answer) else State.CONNECTING)
        client.receive_data(answer[cut:])
        assert client.state is State.OPEN


def test_frames_in_the_same_chunk_as_the_response_are_not_lost():
    server, client = ServerProtocol(), WebSocketClient("127.0.0.1:8080")
    answer = handshake(server, client)
    server.send_text(b"[SYSTEM] Welcome, c1!")
    assert client.receive_data(answer + b"".join(server.data_to_send())) == [b"[SYSTEM] Welcome, c1!"]


def test_a_refusal_fails_the_handshake_and_names_the_status():
    server, client = ServerProtocol(), WebSocketClient("127.0.0.1:8080")
    with pytest.raises(HandshakeFailed, match="503 Service Unavailable") as failure:
        client.receive_data(handshake(server, client, accept=False))
    assert failure.value.reason == "the status is not 101 Switching Protocols"


def test_a_wrong_accept_key_fails_the_handshake():
    server, client = ServerProtocol(), WebSocketClient("127.0.0.1:8080")
    answer = handshake(server, client)
    client.key = b"c29tZSBvdGhlciBrZXkxMg=="
    with pytest.raises(HandshakeFailed, match="Sec-WebSocket-Accept"):
        client.receive_data(answer)


def test_a_response_head_that_never_ends_is_refused_at_the_limit():
    client = WebSocketClient("127.0.0.1:8080")
    client.receive_data(b"HTTP/1.1 101 Switching Protocols\r\n")
    with pytest.raises(HandshakeFailed, match=f"over {MAX_HEAD_BYTES} bytes"):
        for _ in range(MAX_HEAD_BYTES // 16 + 1):
            client.receive_data(b"X-Padding: 1234\r\n")


def test_a_response_head_over_the_limit_is_refused_even_when_its_end_comes_in_the_same_chunk():
    client = WebSocketClient("127.0.0.1:8080")
    head = b"HTTP/1.1 101 Switching Protocols\r\nX-Padding: " + b"x" * MAX_HEAD_BYTES + b"\r\n\r\n"
    with pytest.raises(HandshakeFailed, match=f"over {MAX_HEAD_BYTES} bytes"):
        client.receive_data(head)


# -- frames out --------------------------------------------------------------


def test_masking_matches_the_example_of_rfc_6455():
    assert mask(b"Hello", bytes.fromhex("37fa213d")) == bytes.fromhex("7f9f4d5158")


@pytest.mark.parametrize("size", [0, 1, 125, 126, 127, 65535, 65536])
def test_text_of_every_length_encoding_reaches_the_library_intact(size):
    server, client = opened()
    payload = bytes(i % 251 for i in range(size))
    client.send_text(payload)
    [frame] = frames_from(server, client)  # the library refuses unmasked client frames
    assert (frame.opcode, frame.fin, frame.data) == (Opcode.TEXT, True, payload)


def test_every_frame_has_a_fresh_mask():
    _, client = opened()
    client.send_text(b"same")
    first = client.data_to_send()
    client.send_text(b"same")
    assert client.data_to_send() != first


# -- frames in ---------------------------------------------------------------


def test_server_frames_split_at_any_two_points_give_the_same_messages():
    server, _ = opened()
    lines = [b"c3: ~3 0 123 xx", "c4: h\u00e9llo \U0001f680".encode(), b"", b"x" * 300]
    for line in lines:
        server.send_text(line)
    data = b"".join(server.data_to_send())
    for i in range(0, len(data) + 1, 7):
        for j in range(i, len(data) + 1, 5):
            _, fresh = opened()
            assert feed_in_pieces(fresh, data, [i, j]) == lines


def test_a_fragmented_message_comes_out_whole():
    server, client = opened()
    server.send_text(b"c1: one ", fin=False)
    server.send_ping(b"p")  # a control frame may come between the fragments
    server.send_continuation(b"two ", fin=False)
    server.send_continuation(b"three", fin=True)
    assert client.receive_data(b"".join(server.data_to_send())) == [b"c1: one two three"]


def test_a_ping_is_answered_with_a_pong_carrying_its_data():
    server, client = opened()
    server.send_ping(b"1")
    assert client.receive_data(b"".join(server.data_to_send())) == []
    [pong] = frames_from(server, client)
    assert (pong.opcode, pong.data) == (Opcode.PONG, b"1")


def test_a_close_frame_is_echoed_and_nothing_after_it_is_read():
    server, client = opened()
    server.send_text(b"last")
    server.send_close(CloseCode.GOING_AWAY, "bye")
    after = Frame(Opcode.TEXT, b"too late").serialize(mask=False)
    assert client.receive_data(b"".join(server.data_to_send()) + after) == [b"last"]
    assert client.state is State.CLOSED
    [close] = frames_from(server, client)
    assert Close.parse(close.data).code == CloseCode.GOING_AWAY
    client.send_text(b"not sent")
    assert client.data_to_send() == b""


def test_a_masked_frame_from_the_server_is_a_protocol_error():
    _, client = opened()
    with pytest.raises(ProtocolError, match="must not mask"):
        client.receive_data(Frame(Opcode.TEXT, b"hi").serialize(mask=True))


def test_a_binary_frame_is_a_protocol_error():
    _, client = opened()
    with pytest.raises(ProtocolError, match="text only"):
        client.receive_data(Frame(Opcode.BINARY, b"hi").serialize(mask=False))


def test_a_frame_over_the_limit_is_refused_from_its_header_alone():
    _, client = opened()
    header = bytes((0x81, 127)) + (MAX_MESSAGE_BYTES + 1).to_bytes(8, "big")
    with pytest.raises(ProtocolError, match="over the limit"):
        client.receive_data(header)


# -- scenarios and the table ----------------------------------------------------


def test_a_mixed_room_alternates_raw_and_websocket_clients():
    room = Scenario("mixed", "", clients=4, senders=4, window=1, payload_bytes=64, duration_s=1, transport=Transport.MIXED)
    assert [room.uses_websocket(i) for i in range(4)] == [False, True, False, True]
    assert room.needs_websocket


def test_each_server_is_compared_with_the_last_one_in_a_column_of_its_own(capsys):
    room = Scenario("small-room", "small", clients=2, senders=2, window=1, payload_bytes=64, duration_s=1)
    results = {label: {"small-room": {"deliveries_per_s": rate}} for label, rate in (("ours", 1500.0), ("ours-one-cpu", 3000.0), ("ncat", 2000.0))}
    table = print_table([room], results, ["ours", "ours-one-cpu", "ncat"])
    header = next(line for line in table.splitlines() if line.strip().startswith("figure"))
    assert header.split()[-2:] == ["ours/ncat", "ours-one-cpu/ncat"]
    row = next(line for line in table.splitlines() if "deliveries/s" in line)
    assert row.split()[-5:] == ["1,500", "3,000", "2,000", "0.75×", "1.50×"]


def test_a_scenario_a_server_did_not_run_shows_dashes(capsys):
    room = Scenario("small-room-ws", "over WebSocket", clients=2, senders=2, window=1, payload_bytes=64, duration_s=1)
    ours = {"deliveries_per_s": 1000.0, "p50_ms": 0.5}
    table = print_table([room], {"ours": {"small-room-ws": ours}, "ncat": {}}, ["ours", "ncat"])
    rows = {line.split("  ")[1].strip(): line.split() for line in table.splitlines() if line.startswith("  ")}
    assert rows["deliveries/s"][-2:] == ["-", "-"]
    assert rows["deliveries/s"][-3] == "1,000"
    assert "latency p99 ms" not in rows  # a figure nobody measured has no row


def orders_agree(senders: int, *orders) -> bool:
    """LoadGenerator's one-order check over readers that received ``orders`` (raw, WebSocket, raw...).

    Clients 0 .. senders-1 are the senders.
    """
    room = Scenario(
        "mixed", "", clients=len(orders), senders=senders, window=1, payload_bytes=64, duration_s=1,
        transport=Transport.MIXED,
    )
    generator = LoadGenerator([("127.0.0.1", 0)], room)
    for index, order in enumerate(orders):
        client = Client(index, None, True, len(orders), None)
        client.order = array("q", order)
        generator.clients.append(client)
    generator.selector.close()
    return generator._one_order()


def test_one_order_holds_when_every_client_sees_the_lines_in_the_same_order():
    # Each client lacks its own lines (client 0 sent 1 and 4, client 1 sent 2, client 3 sent 3).
    assert orders_agree(4, [2, 3, 5], [1, 3, 4, 5], [1, 2, 3, 4, 5], [1, 2, 4, 5])


def test_one_order_fails_when_a_websocket_client_sees_two_lines_the_other_way_round():
    assert not orders_agree(4, [2, 3, 5], [1, 4, 3, 5], [1, 2, 3, 4, 5], [1, 2, 4, 5])


def test_one_order_fails_when_two_listeners_see_the_two_senders_lines_the_other_way_round():
    # As in fan-out-200-redis: client 0 (one server) sent 1, client 1 (the other) sent 2.
    # Neither sender sees both lines; only the listeners can tell.
    assert orders_agree(2, [2], [1], [1, 2], [1, 2])
    assert not orders_agree(2, [2], [1], [1, 2], [2, 1])


def test_one_order_fails_when_everyone_sends_and_only_a_third_client_sees_two_lines_the_other_way_round():
    # Client k sent line k + 1; clients 0 and 1 never see each other's line.
    everyone = [[2, 3, 4, 5], [1, 3, 4, 5], [1, 2, 4, 5], [1, 2, 3, 5], [1, 2, 3, 4]]
    assert orders_agree(5, *everyone)
    assert not orders_agree(5, *everyone[:4], [2, 1, 3, 4])


# -- a room shared by two servers through Redis -------------------------------------

SHARED_SMOKE = [scenario.name for scenario in SMOKE if scenario.shares_room]


def test_each_client_connects_to_the_server_its_number_picks_in_turn():
    room = Scenario("shared", "", clients=5, senders=2, window=1, payload_bytes=64, duration_s=1, servers=2)
    first, second = ("127.0.0.1", 1001), ("127.0.0.1", 1002)
    generator = LoadGenerator([first, second], room)
    generator.selector.close()
    assert [generator.address_of(i) for i in range(5)] == [first, second, first, second, first]


@pytest.mark.parametrize("scenario", [s for s in FULL + SMOKE if s.shares_room], ids=lambda s: s.name)
def test_a_shared_room_has_as_many_clients_and_senders_on_each_server(scenario):
    per_server = [[i for i in range(scenario.clients) if i % scenario.servers == n] for n in range(scenario.servers)]
    assert len({len(clients) for clients in per_server}) == 1
    assert len({sum(i < scenario.senders for i in clients) for clients in per_server}) == 1
    assert scenario.senders >= scenario.servers


def test_there_is_a_shared_room_beside_the_small_room_and_the_fan_out_at_both_sizes():
    for scenarios in (FULL, SMOKE):
        names = {scenario.name for scenario in scenarios}
        assert {"small-room-redis", "fan-out-200-redis"} <= names


def children() -> "set[int]":
    """The processes this one started that have not been waited for."""
    mine = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as stat:
                parent = int(stat.read().rpartition(")")[2].split()[1])
        except (OSError, ValueError, IndexError):
            continue  # it ended meanwhile
        if parent == os.getpid():
            mine.add(int(entry))
    return mine


@pytest.fixture
def redis_available():
    missing = shared_room_missing()
    if missing:
        pytest.skip(f"{missing}: the shared-room scenarios cannot run")


def test_the_smoke_run_shares_a_room_between_two_servers_losing_nothing_in_one_order(redis_available, tmp_path):
    before = children()
    # One shared scenario is enough to check the machinery (CI's smoke run runs them all).
    assert "small-room-redis" in SHARED_SMOKE
    argv = ["--smoke", "--only", "ours", "--scenario=small-room-redis", "--no-plot", "--output", str(tmp_path)]
    assert main(argv) == 0
    assert children() <= before  # both servers and redis-server stopped
    results = json.loads((tmp_path / "results.json").read_text())["results"]["ours"]
    assert sorted(results) == ["small-room-redis"]
    for name, figures in results.items():
        assert figures["deliveries_per_s"] > 0, name
        assert figures["not_joined"] == figures["lost"] == figures["duplicated"] == figures["reordered"] == 0, name
        assert figures["one_order"] == 1, name
        # The cost is the three processes': the chat servers' and redis-server's add up to it.
        assert figures["cpu_ms_per_1000"] == pytest.approx(
            figures["cpu_chat_ms_per_1000"] + figures["cpu_redis_ms_per_1000"]
        ), name
        assert figures["rss_mb"] == pytest.approx(figures["rss_chat_mb"] + figures["rss_redis_mb"]), name
        assert figures["rss_chat_mb"] > 0 and figures["rss_redis_mb"] > 0, name
    table = (tmp_path / "table.txt").read_text()
    assert table.count("    redis-server ") == 2  # a CPU row and a memory row


def test_ctrl_c_during_a_shared_room_run_stops_every_process_the_benchmark_started(
    redis_available, tmp_path, monkeypatch, capsys
):
    started = []

    def interrupted(generator):
        started.append(children())
        raise KeyboardInterrupt

    monkeypatch.setattr(LoadGenerator, "run", interrupted)
    before = children()
    assert main(["--smoke", "--only", "ours", "--scenario", SHARED_SMOKE[0], "--no-plot", "--output", str(tmp_path)]) == 130
    assert len(started[0] - before) == 3  # redis-server and two chat servers were running
    assert children() <= before
    assert "Interrupted" in capsys.readouterr().err


class Exits(ServerUnderTest):
    label = "a server that exits at once"

    def command(self):
        return [sys.executable, "-c", "raise SystemExit(3)"]


class Listens(ServerUnderTest):
    label = "a server that listens"

    def command(self):
        serve = f"import socket, time; listener = socket.create_server(('127.0.0.1', {self.port})); time.sleep(60)"
        return [sys.executable, "-c", serve]


def test_a_deployment_whose_start_fails_stops_what_it_had_started(tmp_path):
    listens, exits = Listens(tmp_path / "listens.log"), Exits(tmp_path / "exits.log")
    with pytest.raises(ServerFailed, match="exited at start with status 3") as failure:
        Deployment([[listens], [exits, Listens(tmp_path / "other.log")]])
    assert failure.value.log_path == tmp_path / "exits.log"
    assert listens.process.poll() is not None  # the first stage was running, and was stopped


def test_without_redis_server_the_shared_room_scenarios_are_skipped_with_a_note(tmp_path, monkeypatch, capsys):
    which = shutil.which
    monkeypatch.setattr(shutil, "which", lambda name, *args: None if name == "redis-server" else which(name, *args))
    assert main(["--smoke", "--only", "ours", "--scenario", SHARED_SMOKE[0], "--no-plot", "--output", str(tmp_path / "out")]) == 0
    notes = capsys.readouterr().err.splitlines()
    assert notes == [f"Skipping {SHARED_SMOKE[0]}: redis-server is not installed (apt-get install redis-server)."]
    assert not (tmp_path / "out").exists()  # nothing else ran



def test_our_server_is_benchmarked_with_the_flood_control_of_lines_and_of_websocket_frames_off(tmp_path):
    # Either limit would measure itself: 10 lines, or 50 frames, a second per sender.
    command = " ".join(OurServer(tmp_path / "ours.log").command())
    assert "--max-rate 0" in command and "--max-frame-rate 0" in command
