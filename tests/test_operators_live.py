"""Operators at raw clients against a real server.py process (the page and the console have their own tests)."""

import time

import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from chat.core.moderation import OrderKind, timed
from tests.helpers import TIMEOUT_S, Peer, ServerProgram
from tests.test_web_server import http_get, ws_url

OP_PASSWORD = "t0p-secret"


def test_an_operator_at_a_raw_client_mutes_sets_the_topic_and_kicks():
    server = ServerProgram(0, "--history", "0", env={"CHAT_OP_PASSWORD": OP_PASSWORD})
    try:
        ann, bob, cat = (Peer.joined(server.address, name) for name in ("Ann", "Bob", "Cat"))
        bob.send("/kick Cat")
        assert bob.expect(lambda line: line.startswith("[ERROR]")) == "[ERROR] Only operators can use /kick."

        ann.send("/op wrong-guess")
        assert ann.expect(lambda line: line.startswith("[ERROR]")) == "[ERROR] Wrong operator password."
        ann.send(f"/op {OP_PASSWORD}")  # a second try waits its turn (a second), then succeeds
        ann.expect("[SYSTEM] You are now an operator. Type /help to see the operator commands.")
        bob.send("/users")
        assert bob.expect(lambda line: line.startswith("[SYSTEM] Online")) == "[SYSTEM] Online (3): @Ann, Bob, Cat"

        ann.send("/topic Be kind")
        cat.expect("[SYSTEM] Ann set the topic: Be kind")
        ann.send("/mute Bob 5")
        cat.expect("[SYSTEM] Bob was muted by Ann for 5 minutes.")
        bob.send("can you hear me?")
        assert bob.expect(lambda line: line.startswith("[ERROR]")) == "[ERROR] You are muted for 5 more minutes."
        ann.send("/unmute Bob")
        cat.expect("[SYSTEM] Bob was unmuted by Ann.")
        bob.send("and now?")
        assert cat.read_line() == "Bob: and now?"  # nothing of the muted line came first

        ann.send("/kick Bob enough for today")
        assert bob.read_until_closed()[-1] == "[SYSTEM] You were removed by Ann: enough for today"
        cat.expect("[SYSTEM] Bob was removed by Ann: enough for today")

        dan = Peer(server.address, "Dan")
        dan.expect(lambda line: line.startswith("[SYSTEM] Welcome, Dan!"))
        assert dan.read_line() == "[SYSTEM] Topic: Be kind"
    finally:
        Peer.close_all()
        server.terminate()
        assert server.wait() == 0
    log = server.all_output()
    assert "Ann (from 127.0.0.1) gave a wrong operator password" in log
    assert "wrong-guess" not in log and OP_PASSWORD not in log
    assert "Ann is now an operator" in log
    assert "[SYSTEM] Bob was removed by Ann: enough for today" in log


def test_a_banned_client_behind_a_trusted_proxy_is_refused_the_page_and_the_chat(start_server):
    # In a Codespace everyone comes from its forwarder on loopback: the ban is on the address it names.
    server = start_server(trusted_proxies=("127.0.0.1",))
    ban = timed(OrderKind.BAN, "Ann", "Bob", 5, time.time(), reason="spam", address="198.51.100.7")
    server.room.moderation.apply(ban)
    refusal = "403 Forbidden. You are banned from this chat for 5 more minutes: spam\n"
    assert http_get(server, "/", headers={"X-Forwarded-For": "198.51.100.7"}) == (403, "text/plain; charset=utf-8", refusal.encode())
    with pytest.raises(InvalidStatus) as refused:
        connect(ws_url(server), open_timeout=TIMEOUT_S, additional_headers={"X-Forwarded-For": "198.51.100.7"})
    assert refused.value.response.status_code == 403
    assert http_get(server, "/", headers={"X-Forwarded-For": "198.51.100.8"})[0] == 200
    with connect(ws_url(server), open_timeout=TIMEOUT_S, additional_headers={"X-Forwarded-For": "198.51.100.8"}) as client:
        assert client.recv(timeout=TIMEOUT_S).startswith("[SYSTEM] Welcome, ")
