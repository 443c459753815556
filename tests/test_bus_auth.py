"""Sharing a room through a Redis server that asks for a password, or speaks only TLS: real ones, throwaway.

The URL carries both: ``redis://user:password@host:port/db`` (or
``redis://:password@...`` for Redis's default user), and ``rediss://`` for
TLS, checked against a CA file (``?ssl_ca_certs=``) or not checked at all
(``?ssl_cert_reqs=none``). No password ever reaches the log.
"""

import logging
import re
import shutil
import subprocess

import pytest
from redis.connection import SSLConnection

from tests.helpers import TIMEOUT_S, Peer, free_port, wait_until
from tests.test_redis import REDIS_SERVER, RedisServer, logged, relayed, shared_servers  # noqa: F401 (fixtures)

PASSWORD = "s3cret-default"
CHAT_PASSWORD = "s3cret-chat"  # the ACL user "chat"'s
ASKING = ["--requirepass", PASSWORD, "--user", "chat", "on", ">" + CHAT_PASSWORD, "~*", "&*", "+@all"]


@pytest.fixture
def redis_server():
    """A redis-server that lets in only its default user with PASSWORD and the user chat with CHAT_PASSWORD."""
    if REDIS_SERVER is None:
        pytest.skip("redis-server is not installed: apt-get install redis-server (bash .ci/run installs it)")
    server = RedisServer(options=ASKING)
    yield server
    server.kill()


def no_password_in(caplog) -> bool:
    return all(secret not in caplog.text for secret in (PASSWORD, CHAT_PASSWORD, "wrong-one"))


def test_servers_share_a_room_through_a_redis_that_asks_for_a_password_given_in_the_url(
    shared_servers, redis_server, caplog  # noqa: F811
):
    caplog.set_level(logging.INFO)
    port = redis_server.port
    one = shared_servers(url=f"redis://:{PASSWORD}@127.0.0.1:{port}/0")
    two = shared_servers(url=f"redis://chat:{CHAT_PASSWORD}@127.0.0.1:{port}/0")
    ann, bob = Peer.joined(one.address, "Ann"), Peer.joined(two.address, "Bob")
    ann.send("through a Redis with a password")
    bob.expect("Ann: through a Redis with a password")
    assert logged(caplog, f"Sharing the room through Redis at redis://:***@127.0.0.1:{port}/0 ")
    assert logged(caplog, f"Sharing the room through Redis at redis://chat:***@127.0.0.1:{port}/0 ")
    assert no_password_in(caplog)


def test_a_wrong_password_is_said_once_in_one_sentence_with_no_traceback_and_no_password(
    shared_servers, redis_server, caplog  # noqa: F811
):
    with relayed(redis_server) as relay:
        url = f"redis://chat:wrong-one@127.0.0.1:{relay.port}/0"
        server = shared_servers(url=url, wait=False)
        relay.wait_until_accepted(2)  # it tried twice
        ann, bob = Peer.joined(server.address, "Ann"), Peer.joined(server.address, "Bob")
        ann.send("alone but fine")
        bob.expect("Ann: alone but fine")
        said = [record for record in caplog.records if record.name.startswith("chat.bus")]
    assert [record.exc_info for record in said] == [None]
    wanted = (
        rf"⚠️  Redis at redis://chat:\*\*\*@127\.0\.0\.1:{relay.port}/0 refused to let this server in \(.+\): "
        r"check the user name and password in the URL; serving this server's clients alone, and trying again"
    )
    assert re.fullmatch(wanted, said[0].getMessage())
    assert no_password_in(caplog)


@pytest.fixture
def tls_redis(tmp_path):
    """A redis-server that speaks TLS on ``.tls_port`` with a self-signed certificate (``.cert``) and asks for PASSWORD."""
    if REDIS_SERVER is None or shutil.which("openssl") is None:
        pytest.skip("needs redis-server and openssl: apt-get install redis-server openssl")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
         "-keyout", str(key), "-out", str(cert), "-days", "1", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True, capture_output=True, timeout=TIMEOUT_S,
    )
    tls_port = free_port()
    tls = ["--tls-port", str(tls_port), "--tls-cert-file", str(cert), "--tls-key-file", str(key)]
    server = RedisServer(options=[*tls, "--tls-ca-cert-file", str(cert), "--tls-auth-clients", "no", *ASKING])
    server.tls_port, server.cert = tls_port, cert
    yield server
    server.kill()


def test_servers_share_a_room_over_tls_with_the_certificate_checked_or_not(shared_servers, tls_redis, caplog):  # noqa: F811
    address = f"rediss://:{PASSWORD}@127.0.0.1:{tls_redis.tls_port}/0"
    checked = shared_servers(url=f"{address}?ssl_ca_certs={tls_redis.cert}")
    unchecked = shared_servers(url=f"{address}?ssl_cert_reqs=none")
    assert checked.room.bus._redis.connection_pool.connection_class is SSLConnection
    ann, bob = Peer.joined(checked.address, "Ann"), Peer.joined(unchecked.address, "Bob")
    ann.send("over TLS")
    bob.expect("Ann: over TLS")
    shared_servers(url=address, wait=False)  # a self-signed certificate, and no CA file to check it against
    assert wait_until(lambda: logged(caplog, "certificate verify failed"))
    assert no_password_in(caplog)
