"""The store's file and its writer thread: the room's lines and orders, kept in SQLite.

The room must never wait for the disk. So it only hands records to an
:class:`Archive` (``add_lines``, ``keep_order``), after releasing its lock;
they go into a bounded queue without waiting, and one writer thread, the
only user of the SQLite connection once the server serves, writes them::

    room (any thread) ── add_lines / keep_order ──► bounded queue ──► writer thread ──► chat.db (WAL)
                         (never blocks: when full, a record is dropped and counted)

The writer commits in batches: it waits for a record, lets
``COMMIT_EVERY_S`` of them gather, and writes them in one transaction, so
a line is in the file within a second of being said. With WAL and
``synchronous=NORMAL`` a commit is a write to the ``-wal`` file, not an
fsync: a killed process (SIGKILL) loses at most the batch being gathered,
a power cut may lose more. ``close`` (SIGTERM, Ctrl+C) writes what is
queued, prunes, and waits at most ``CLOSE_WAIT_S``.

Retention: the writer deletes all but the newest ``keep`` lines once
``prune_every`` lines were added since the last time, at start and at
close, and the bans and mutes that are over; so the file never grows
without bound.

One file, one server: :meth:`Archive.open` takes an exclusive ``flock`` on
the database file itself and holds it until the process ends, so a second
server on the same file is refused. The kernel drops the lock when the
process dies, even by SIGKILL. (SQLite's own locks are POSIX record locks,
which Linux keeps apart from ``flock``.)

Errors: whatever keeps the file from being opened, written and read at
start is a :class:`StoreError`, one sentence for the user. A write that
fails while serving (the disk is full) is logged once, and the chat goes on
from memory: the room never depended on the store.
"""

import errno
import fcntl
import logging
import os
import sqlite3
import threading
import time
from dataclasses import dataclass, field

from chat.bus.entry import DEFAULT_MAX_ENTRY_BYTES, UnsharableLine
from chat.config import DEFAULT_KEEP_LINES
from chat.handover import Handover
from chat.core.moderation import MAX_BANS, MAX_MUTES, Order, OrderKind
from chat.store import StoreError
from chat.store.rows import MalformedRow, line_of, line_row, order_row, standing_of, standing_row

log = logging.getLogger(__name__)

# A line is in the file at most this long after it was said (plus the commit's own time).
COMMIT_EVERY_S = 0.25
# Records (one per Room.deliver or order) waiting for the writer at most: at
# one commit per COMMIT_EVERY_S, far more than a busy room says meanwhile.
MAX_QUEUED_RECORDS = 20_000
# On shutdown, how long the writer gets to write what is queued.
CLOSE_WAIT_S = 5.0
# Marks the file as ours ("chat" in ASCII): another program's SQLite file is refused, not written to.
APPLICATION_ID = 0x63686174
SCHEMA = """
CREATE TABLE IF NOT EXISTS lines (
    id INTEGER PRIMARY KEY,
    said REAL NOT NULL,
    kind TEXT NOT NULL,
    name TEXT NOT NULL,
    body TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS standing (
    key TEXT PRIMARY KEY,
    body TEXT NOT NULL,
    until REAL
);
"""


@dataclass
class Loaded:
    """What a store held at start: the last lines ``(when, line)``, oldest first, and the orders in force."""

    said: "list[tuple[float, str]]" = field(default_factory=list)
    orders: "list[Order]" = field(default_factory=list)
    skipped: "list[tuple[str, str]]" = field(default_factory=list)  # (where, why) of each row not accepted


class Archive:
    """One server's store: open it, ``load`` it, ``start`` its writer, hand it records, ``close`` it.

    ``add_lines`` and ``keep_order`` never block and may be called from any
    thread; the rest is for the thread that owns the server.
    """

    def __init__(
        self,
        path: str,
        connection: sqlite3.Connection,
        lock_fd: int,
        keep: int = DEFAULT_KEEP_LINES,
        prune_every: "int | None" = None,
        max_bytes: int = DEFAULT_MAX_ENTRY_BYTES,
        max_queued: int = MAX_QUEUED_RECORDS,
    ) -> None:
        self.path = path
        self.keep = keep
        self.prune_every = prune_every if prune_every is not None else max(1, keep // 10)
        self.max_bytes = max_bytes
        self._db = connection  # used by the writer thread alone once started
        self._lock_fd = lock_fd  # holds the flock: closed last
        # Records for the writer. A Handover rather than a queue.Queue:
        # every public line said passes here, on the reader thread that
        # relays it, and a Queue's locks and conditions cost that thread
        # several times more.
        self._queued = Handover(max_queued)
        self._stopping = threading.Event()
        self._writer = threading.Thread(target=self._write_until_closed, name="store-writer", daemon=True)
        self._started = False
        self._closed = False
        self._since_prune = 0
        # Counted by whoever drops (any thread) or writes (the writer): read for logs and tests.
        self.dropped = 0
        self.lost = 0  # lines and orders whose write failed
        self.written = 0
        self._failing = False  # the last write failed: the next failure is not logged again

    # -- opening ----------------------------------------------------------------

    @classmethod
    def open(cls, path: str, **options) -> "Archive":
        """Open (or create) the store at ``path`` and lock it for this process; :class:`StoreError` if it cannot be used."""
        try:
            lock_fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as error:
            raise StoreError(path, _cannot_open(path, error)) from None
        try:
            try:
                fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as error:
                if error.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                    raise StoreError(
                        path, f"The store {path} is in use by another server: give this one another file with "
                        "--store PATH, or keep nothing with --store none."
                    ) from None
                raise StoreError(path, _cannot_open(path, error)) from None
            connection = _connect(path)
        except BaseException:
            os.close(lock_fd)
            raise
        return cls(path, connection, lock_fd, **options)

    def load(self, history_lines: int, now: "float | None" = None) -> Loaded:
        """The last ``history_lines`` lines and the orders in force (those over are deleted); before ``start``.

        Every row is checked (:mod:`chat.store.rows`); those that fail are
        skipped and listed in ``Loaded.skipped``.
        """
        now = time.time() if now is None else now
        loaded = Loaded()
        db = self._db
        try:
            rows = db.execute(
                "SELECT id, said, kind, name, body FROM lines ORDER BY id DESC LIMIT ?", (history_lines,)
            ).fetchall()
            for row_id, *columns in reversed(rows):
                try:
                    loaded.said.append(line_of(*columns, max_bytes=self.max_bytes))
                except MalformedRow as error:
                    loaded.skipped.append((f"line {row_id}", error.problem))
            db.execute("DELETE FROM standing WHERE typeof(until) IN ('real', 'integer') AND until <= ?", (now,))
            bans = mutes = 0
            for key, body in db.execute(
                "SELECT key, body FROM standing ORDER BY rowid LIMIT ?", (1 + MAX_BANS + MAX_MUTES,)
            ):
                try:
                    order = standing_of(key, body, self.max_bytes)
                except MalformedRow as error:
                    loaded.skipped.append((f"standing {key!r}"[:60], error.problem))
                    continue
                if order.over(now):
                    continue
                bans += order.kind is OrderKind.BAN
                mutes += order.kind is OrderKind.MUTE
                if bans <= MAX_BANS and mutes <= MAX_MUTES:
                    loaded.orders.append(order)
        except sqlite3.Error as error:
            raise StoreError(self.path, f"The store {self.path} cannot be read: {error}.") from None
        return loaded

    def start(self) -> None:
        """Start the writer thread (and prune what is over the count)."""
        self._started = True
        self._writer.start()

    # -- any thread --------------------------------------------------------------

    def add_lines(self, lines: "list[str]", when: float) -> None:
        """Keep public ``lines`` said at ``when`` (those the history keeps); never waits."""
        self._put(("lines", lines, when))

    def keep_order(self, order: Order, when: float) -> None:
        """Keep ``order``'s notice in the history, and what it leaves behind; never waits."""
        self._put(("order", order, when))

    def _put(self, record) -> None:
        if self._closed:
            return
        if not self._queued.put(record):
            self.dropped += 1  # one thread at a time gets here only under heavy load: a lost count is harmless
            if self.dropped == 1:
                log.warning("⚠️  The store's writer is falling behind: lines are not kept until it catches up (counted at the end).")

    # -- closing -------------------------------------------------------------------

    def close(self, timeout_s: float = CLOSE_WAIT_S) -> bool:
        """Write what is queued, prune, and close the file (releasing its lock); True if done in time. Idempotent."""
        if self._closed:
            return not self._writer.is_alive()
        self._closed = True
        if not self._started:
            self._close_file()
            return True
        self._stopping.set()
        self._queued.wake()
        self._writer.join(timeout_s)
        if self._writer.is_alive():
            log.warning("⚠️  The store was still writing after %g s: its last lines may be lost.", timeout_s)
            return False
        if self.dropped or self.lost:
            log.warning("⚠️  The store did not keep %d record(s): %d dropped, %d not written.", self.dropped + self.lost, self.dropped, self.lost)
        return True

    # -- the writer thread -------------------------------------------------------------

    def _write_until_closed(self) -> None:
        try:
            self._prune()
            while True:
                self._queued.wait()
                if not self._stopping.is_set():
                    self._stopping.wait(COMMIT_EVERY_S)  # let a batch gather; close() cuts it short
                self._write(self._queued.take_all())
                if self._stopping.is_set() and not self._queued:
                    break
            self._prune()
        except Exception:  # our bug: what is queued is lost, the chat goes on
            log.exception("The store's writer failed")
        finally:
            self._close_file()

    def _write(self, records: list) -> None:
        lines, standing = [], []
        for kind, value, when in records:
            if kind == "order":
                lines.append(order_row(value, when))
                change = standing_row(value)
                if change is not None:
                    standing.append(change)
                continue
            for line in value:
                try:
                    row = line_row(line, when)
                except UnsharableLine:
                    log.exception("The store cannot keep a line: our bug")
                    continue
                if row is not None:
                    lines.append(row)
        if not lines and not standing:
            return
        try:
            with self._db:  # one transaction: committed, or rolled back on an error
                self._db.executemany(
                    "INSERT INTO lines (said, kind, name, body) VALUES (?, ?, ?, ?)", lines
                )
                for change in standing:
                    if change.body is None:
                        self._db.execute("DELETE FROM standing WHERE key = ?", (change.key,))
                    else:
                        self._db.execute(
                            "INSERT OR REPLACE INTO standing (key, body, until) VALUES (?, ?, ?)",
                            (change.key, change.body, change.until),
                        )
        except sqlite3.Error as error:
            self.lost += len(lines) + len(standing)
            if not self._failing:
                log.error("❌ The store %s cannot be written (%s): the chat goes on from memory, and what is said meanwhile is not kept.", self.path, error)
            self._failing = True
            return
        if self._failing:
            log.warning("💾 The store %s is written again.", self.path)
            self._failing = False
        self.written += len(lines)
        self._since_prune += len(lines)
        if self._since_prune >= self.prune_every:
            self._prune()

    def _prune(self) -> None:
        """Delete all but the newest ``keep`` lines, and the bans and mutes that are over."""
        self._since_prune = 0
        try:
            with self._db:
                self._db.execute(
                    "DELETE FROM lines WHERE id <= (SELECT id FROM lines ORDER BY id DESC LIMIT 1 OFFSET ?)", (self.keep,)
                )
                self._db.execute("DELETE FROM standing WHERE typeof(until) IN ('real', 'integer') AND until <= ?", (time.time(),))
        except sqlite3.Error as error:
            if not self._failing:
                log.error("❌ The store %s cannot be pruned (%s).", self.path, error)
            self._failing = True

    def _close_file(self) -> None:
        try:
            self._db.close()
        except sqlite3.Error as error:
            log.error("❌ The store %s was not closed cleanly: %s.", self.path, error)
        finally:
            os.close(self._lock_fd)  # after SQLite's own descriptors: closing ours would drop their POSIX locks


def _connect(path: str) -> sqlite3.Connection:
    """A connection to ``path`` in WAL mode, its tables made; :class:`StoreError` if the file is not (or cannot be) ours."""
    connection = None
    try:
        # isolation_level None: no implicit transactions; "with connection" makes them.
        connection = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=0)
        mode = connection.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if mode != "wal":
            raise StoreError(path, f"The store {path} cannot be put in WAL mode (it stays in {mode} mode).")
        connection.execute("PRAGMA synchronous=NORMAL")
        application_id = connection.execute("PRAGMA application_id").fetchone()[0]
        tables = connection.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
        if application_id != APPLICATION_ID and (application_id or tables):
            raise StoreError(path, f"The store {path} is another program's SQLite database: give the server another file with --store PATH.")
        with connection:
            connection.execute("BEGIN IMMEDIATE")  # a write now: a file we cannot write is found at start
            for statement in SCHEMA.split(";"):
                if statement.strip():
                    connection.execute(statement)
            connection.execute(f"PRAGMA application_id = {APPLICATION_ID}")
        return connection
    except StoreError:
        if connection is not None:
            connection.close()
        raise
    except sqlite3.Error as error:
        if connection is not None:
            connection.close()
        raise StoreError(path, _cannot_use(path, error)) from None


def _cannot_open(path: str, error: OSError) -> str:
    if error.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return f"The store {path} cannot be opened: no permission to write it or its folder. Give another file with --store PATH, or keep nothing with --store none."
    if error.errno == errno.EISDIR:
        return f"The store {path} is a folder: give a file with --store PATH."
    return f"The store {path} cannot be opened: {error.strerror or error}."


def _cannot_use(path: str, error: sqlite3.Error) -> str:
    text = str(error)
    if "not a database" in text:
        return f"The store {path} is not a SQLite database: give the server another file with --store PATH."
    if "readonly" in text or "unable to open" in text:
        return f"The store {path} cannot be written: the folder may be read-only. Give another file with --store PATH, or keep nothing with --store none."
    return f"The store {path} cannot be used: {text}."
