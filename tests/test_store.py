"""The store (chat.store): rows checked as hostile, a writer that never blocks, and a room that outlives its server.

The pure part (chat.store.rows) is tested on values; the writer on a real
SQLite file in a temporary folder; restarts, refusals and ``--store none``
with real server.py processes (few, and each checks several things).
"""

import logging
import os
import shutil
import sqlite3
import subprocess
import sys
import time

import pytest

from chat.bus.entry import UnsharableLine
from chat.core import messages
from chat.core.moderation import Order, OrderKind, timed
from chat.store.archive import Archive, StoreError
from chat.store.rows import MalformedRow, line_of, line_row, order_row, standing_of, standing_row
from tests.helpers import PROJECT, PROGRAM_START_S, TIMEOUT_S, Peer, free_port, wait_until
from tests.test_client_reconnect import PLAIN, RECONNECT_TIMEOUT_S, SOON

NOW = 1_700_000_000.0
MAX_BYTES = 4 * 4096
SECRET = "the-private-words-xyzzy"


def round_trip(line: str) -> str:
    row = line_row(line, NOW)
    return line_of(row.said, row.kind, row.name, row.body, MAX_BYTES)[1]


# -- the pure part -----------------------------------------------------------------


def test_public_lines_and_orders_come_back_from_their_rows_as_they_were_said():
    for line in ["Ann: hello, world", "* Ann waves", messages.renamed("Ann", "Anna")]:
        assert round_trip(line) == line
    ban = timed(OrderKind.BAN, "Server", "Eve", 5, NOW, address="10.0.0.1", reason="spam")
    row = order_row(ban, NOW)
    assert line_of(row.said, row.kind, row.name, row.body, MAX_BYTES) == (NOW, ban.notice())
    kept = standing_row(ban)
    assert (kept.key, kept.until) == ("ban 10.0.0.1", ban.until)
    assert standing_of(kept.key, kept.body, MAX_BYTES) == ban


def test_joins_and_leaves_are_not_kept_and_a_private_line_is_refused_as_our_bug():
    assert line_row(messages.joined("Ann"), NOW) is None
    assert line_row(messages.left("Ann"), NOW) is None
    with pytest.raises(UnsharableLine):
        line_row(messages.private_from("Ann", "psst"), NOW)


def test_lifting_an_order_deletes_what_it_left_and_a_kick_leaves_nothing():
    assert standing_row(Order(OrderKind.UNBAN, "Server", "Eve", address="10.0.0.1")).body is None
    assert standing_row(Order(OrderKind.UNMUTE, "Ann", "Bob")).key == "mute bob"
    assert standing_row(Order(OrderKind.TOPIC, "Ann")).body is None  # cleared
    assert standing_row(Order(OrderKind.KICK, "Ann", "Bob")) is None


@pytest.mark.parametrize(
    "row, problem",
    [
        ((NOW, "chat", "SYSTEM", "hi"), "name 'SYSTEM'"),
        ((NOW, "chat", "Ann: x", "hi"), "name 'Ann: x'"),
        ((NOW, "private", "Ann", "hi"), "kind 'private'"),
        ((NOW, "joined", "Ann", ""), "kind 'joined'"),
        ((NOW, "chat", "Ann", "\x1b[2J"), "blank text"),
        ((NOW, "chat", "Ann", b"bytes"), "body is bytes, not text"),
        ((NOW, "chat", "Ann", "x" * (MAX_BYTES + 1)), f"body of over {MAX_BYTES} bytes"),
        (("yesterday", "chat", "Ann", "hi"), "said is str, not a number"),
        ((float("nan"), "chat", "Ann", "hi"), "said nan"),
        ((-1, "chat", "Ann", "hi"), "said -1"),
        ((NOW, "renamed", "Ann", "[SYSTEM]"), "new name '[SYSTEM]'"),
        ((NOW, "order", "Ann", "do\tban\tn\tAnn\tw\tEve\ta\t127.0.0.1"), "loopback cannot be banned"),
        ((NOW, "order", "Ann", "do\tsay\tn"), "not an order's fields"),
        ((NOW, "order", "Ann", "do\tsay\tn\tAnn\tq\tx"), "an order has no field 'q'"),
    ],
)
def test_a_row_that_breaks_a_rule_is_refused_with_its_reason(row, problem):
    with pytest.raises(MalformedRow) as refused:
        line_of(*row, max_bytes=MAX_BYTES)
    assert problem in refused.value.problem


def test_escape_sequences_in_a_kept_line_are_removed_as_from_a_client():
    assert line_of(NOW, "chat", "Ann", "hi\x1b[31m there\x07", MAX_BYTES)[1] == "Ann: hi there"


def test_an_order_kept_under_another_key_is_refused():
    mute = timed(OrderKind.MUTE, "Ann", "Bob", 5, NOW)
    with pytest.raises(MalformedRow, match="kept under 'mute ann'"):
        standing_of("mute ann", standing_row(mute).body, MAX_BYTES)
    with pytest.raises(MalformedRow, match="kick: not an order that is kept"):
        standing_of("topic", "do\tkick\tn\tAnn\tw\tBob", MAX_BYTES)


# -- the writer, on a real file ----------------------------------------------------


def test_the_writer_keeps_the_newest_lines_and_the_orders_in_force_and_skips_hostile_rows(tmp_path):
    path = str(tmp_path / "chat.db")
    archive = Archive.open(path, keep=5, prune_every=3)
    archive.start()
    now = time.time()
    for number in range(20):
        archive.add_lines([f"Ann: line {number}", messages.joined("Bob")], now)
    archive.keep_order(Order(OrderKind.TOPIC, "Ann", reason="Fractions"), now)
    archive.keep_order(timed(OrderKind.MUTE, "Ann", "Bob", 5, now), now)
    archive.keep_order(timed(OrderKind.BAN, "Ann", "Eve", 5, now, address="10.0.0.9"), now)
    archive.keep_order(Order(OrderKind.UNBAN, "Ann", "Eve", address="10.0.0.9"), now)
    assert archive.close()
    with sqlite3.connect(path) as db:  # edited by hand: one bad line, a ban over, a ban in the wrong place
        db.execute("INSERT INTO lines (said, kind, name, body) VALUES (?, 'chat', 'SYSTEM', 'fake')", (now,))
        db.execute("INSERT INTO standing VALUES ('ban 10.0.0.2', ?, ?)", (order_row(timed(OrderKind.BAN, "Ann", "Old", 1, now - 120, address="10.0.0.2"), now).body, now - 60))
        db.execute("INSERT INTO standing VALUES ('ban 10.0.0.3', ?, NULL)", (order_row(timed(OrderKind.BAN, "Ann", "X", 0, now, address="10.0.0.4"), now).body,))
    db.close()

    again = Archive.open(path)
    loaded = again.load(50)
    again.close()
    lines = [line for _, line in loaded.said]
    # The newest five when it was pruned (the orders' notices are lines too), then the edited one was skipped.
    assert lines == [
        "Ann: line 19",
        "[SYSTEM] Ann set the topic: Fractions",
        "[SYSTEM] Bob was muted by Ann for 5 minutes.",
        "[SYSTEM] Eve was removed by Ann and banned for 5 minutes.",
        "[SYSTEM] The ban on Eve was lifted by Ann.",
    ]
    assert [(order.kind, order.name or order.reason) for order in loaded.orders] == [
        (OrderKind.TOPIC, "Fractions"),
        (OrderKind.MUTE, "Bob"),
    ]
    assert [where for where, _ in loaded.skipped] == ["line 25", "standing 'ban 10.0.0.3'"]


def test_a_full_disk_is_logged_once_and_the_writer_goes_on(tmp_path, caplog):
    archive = Archive.open(str(tmp_path / "chat.db"))
    # SQLite's own cap on the file's pages: the same "database or disk is full" as a full disk.
    pages = archive._db.execute("PRAGMA page_count").fetchone()[0]
    archive._db.execute(f"PRAGMA max_page_count = {pages}")
    archive.start()
    for number in range(2):
        archive.add_lines([f"Ann: {'long words ' * 1000} {number}"], time.time())
        assert wait_until(lambda: archive.lost > number)  # each batch fails on its own
    assert archive.close()
    failures = [r.getMessage() for r in caplog.records if "cannot be written" in r.getMessage()]
    assert len(failures) == 1 and "database or disk is full" in failures[0]


def test_a_store_that_is_not_sqlite_or_in_use_cannot_be_opened(tmp_path):
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"not a database, just some bytes " * 200)
    with pytest.raises(StoreError, match="is not a SQLite database"):
        Archive.open(str(junk))
    other = tmp_path / "other.db"
    sqlite3.connect(other).execute("CREATE TABLE notes (x)").connection.close()
    with pytest.raises(StoreError, match="another program's SQLite database"):
        Archive.open(str(other))
    first = Archive.open(str(tmp_path / "chat.db"))
    with pytest.raises(StoreError, match="in use by another server"):
        Archive.open(str(tmp_path / "chat.db"))
    first.close()
    Archive.open(str(tmp_path / "chat.db")).close()  # released on close


# -- real processes ------------------------------------------------------------------


def server_command(*options: str) -> "list[str]":
    return [sys.executable, str(PROJECT / "server.py"), "--host", "127.0.0.1", "--port", "0", *options]


def refusal(process: subprocess.Popen) -> "tuple[int, list[str]]":
    output, _ = process.communicate(timeout=PROGRAM_START_S)
    return process.returncode, [line for line in output.splitlines() if "❌" in line]


def without_root_powers() -> "list[str] | None":
    """A prefix that runs a command without root's power to write anywhere (None: not possible here).

    Root passes permission checks by CAP_DAC_OVERRIDE: setpriv drops it, so
    that a folder of mode 555 is as read-only for the server as for anyone.
    """
    if os.geteuid() != 0:
        return []
    if shutil.which("setpriv") is None:
        return None
    return ["setpriv", "--bounding-set=-dac_override,-dac_read_search", "--inh-caps=-dac_override,-dac_read_search"]


def in_file(path: str, line: str) -> bool:
    """Whether ``line`` is in the store at ``path`` (read by this process, beside the server)."""
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
        found = db.execute("SELECT count(*) FROM lines WHERE body = ?", (line,)).fetchone()[0]
    db.close()
    return found > 0


def files_hold(folder, text: str) -> "list[str]":
    """The files in ``folder`` (chat.db, -wal, -shm...) whose bytes hold ``text``."""
    return [path.name for path in folder.iterdir() if path.is_file() and text.encode() in path.read_bytes()]


def test_the_room_outlives_a_sigterm_and_a_sigkill_and_no_private_message_is_kept(tmp_path, server_programs, terminals):
    store = str(tmp_path / "chat.db")
    port = free_port()
    options = ("--history", "50", "--store", store, "--op-password", "sesame")
    first = server_programs(port, *options)
    ann, bob = Peer.joined(first.address, "Ann"), Peer.joined(first.address, "Bob")
    client = terminals("127.0.0.1", str(port), "--name", "Cid", *SOON, env=PLAIN)
    ann.expect(messages.joined("Cid"), timeout=PROGRAM_START_S)
    ann.send("/op sesame")
    ann.send("/topic Fractions")
    ann.send("/mute Bob 5")
    ann.send("before the restart")
    ann.send(f"/msg Bob {SECRET}")
    assert bob.expect(lambda line: line.startswith("[PM from Ann]")) == f"[PM from Ann] {SECRET}"
    client.wait_for("📨 Ann: before the restart")
    first.terminate()
    assert first.wait() == 0  # the writer drained at the close: nothing is waited for here
    assert not files_hold(tmp_path, SECRET)

    second = server_programs(port, *options)
    # Meanwhile: a second server on the same file, a file that is not SQLite, and a read-only folder.
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"this is not a database " * 100)
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    powerless = without_root_powers()
    refused = [
        subprocess.Popen(server_command("--store", store), cwd=PROJECT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True),
        subprocess.Popen(server_command("--store", str(junk)), cwd=PROJECT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True),
    ]
    if powerless is not None:
        refused.append(subprocess.Popen([*powerless, *server_command("--store", str(locked / "chat.db"))], cwd=PROJECT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    client.wait_for(messages.welcome("Cid", 0), RECONNECT_TIMEOUT_S)  # back in the room, not only connected
    dan = Peer(second.address, "Dan")
    replay = [dan.read_line() for _ in range(7)]
    assert replay[0] == "[SYSTEM] Last 3 messages:"
    assert [line[11:] for line in replay[1:4]] == [  # after "[HH:MM:SS] "
        "[SYSTEM] Ann set the topic: Fractions",
        "[SYSTEM] Bob was muted by Ann for 5 minutes.",
        "Ann: before the restart",
    ]
    assert replay[4:] == ["[SYSTEM] End of history.", messages.welcome("Dan", 1), messages.topic("Fractions")]
    results = [refusal(process) for process in refused]
    for status, said in results:
        assert status == 2 and len(said) == 1, results
    assert "in use by another server" in results[0][1][0]
    assert "is not a SQLite database" in results[1][1][0]
    if powerless is not None:
        assert "cannot be opened: no permission" in results[2][1][0]
    bob = Peer.joined(second.address, "Bob")
    bob.send("am I still muted?")
    assert bob.expect(lambda line: line.startswith("[ERROR]")).startswith("[ERROR] You are muted for")

    dan.send("after the restart")
    dan.send(f"/msg Cid {SECRET}")
    client.wait_for(f"[PM from Dan] {SECRET}")
    assert wait_until(lambda: in_file(store, "after the restart"), TIMEOUT_S)  # in the file within a second
    second.kill()  # SIGKILL: the -wal file stays behind, as it is
    assert files_hold(tmp_path, "after the restart")  # the bytes searched are those of the lines
    assert not files_hold(tmp_path, SECRET)
    third = server_programs(port, *options)
    eve = Peer(third.address, "Eve")
    lines = [eve.read_line() for _ in range(6)]
    assert [line[11:] for line in lines[1:5]] == [
        "[SYSTEM] Ann set the topic: Fractions",
        "[SYSTEM] Bob was muted by Ann for 5 minutes.",
        "Ann: before the restart",
        "Dan: after the restart",
    ]
    client.wait_for("✅ Reconnected.", RECONNECT_TIMEOUT_S)
    client.type("/quit\r")
    assert client.wait() == 0
    # Across both restarts the client showed every line once: the replays matched what it had shown.
    for line in ("Ann: before the restart", "Dan: after the restart", "set the topic: Fractions"):
        assert client.transcript.count(line) == 1, (line, client.transcript)


def test_store_none_writes_nothing(tmp_path):
    process = subprocess.Popen(
        server_command("--store", "none", "--history", "50"), cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        port = None
        for line in process.stdout:
            port = port or (line.rpartition(":")[2].strip() if "📍 Listening on" in line else None)
            if "Waiting for clients" in line:
                break
        ann = Peer.joined(("127.0.0.1", int(port)), "Ann")
        ann.send("nothing of this is kept")
        ann.send("/users")  # answered after the line before it was handled
        ann.expect(lambda line: line.startswith("[SYSTEM] Online ("))
        ann.close()  # else the server gives it a second to read the shutdown notice
        process.terminate()
        assert process.wait(TIMEOUT_S) == 0
    finally:
        process.kill()
        process.communicate()
    assert list(tmp_path.iterdir()) == []
