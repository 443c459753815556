"""The room password: checking it, and slowing down whoever keeps guessing.

A public port means anyone with the address can reach the chat, so the
server may require a password (``--password``, or ``CHAT_PASSWORD``). A
client gives it as its first line, ``/pass SECRET``.

Two things protect the password from being guessed:

* :func:`password_matches` compares in constant time, so the time an answer
  takes does not tell how many leading characters were right.
* :class:`FailureTracker` remembers failures per address. Each failure from
  an address makes its next check wait longer (doubling, up to a bound), so
  trying a thousand passwords takes hours instead of seconds. An address that
  stays quiet for a while is forgotten, and a success forgets it at once.
  The addresses with three failures or more also take turns room-wide
  (``room_rate`` checks a second), so guessing from many addresses is no
  faster, while a newcomer, or a member who mistyped once or twice, never
  waits for them.

Like the rest of ``chat.core`` this module does no I/O and never sleeps: the
tracker says how long to wait, and the connection's own thread waits, so a
guesser only ever delays itself. The clock is a parameter, so tests need no
real time to pass.
"""

import hmac
import threading
import time
from dataclasses import dataclass

from chat.core.messages import PASSWORD_NEEDED, PASSWORD_TOO_MANY_TRIES, PASSWORD_WRONG, error

# After the first failure from an address, checks from it are at least this
# far apart; the gap doubles with each further failure, up to MAX_DELAY_S.
FIRST_DELAY_S = 1.0
MAX_DELAY_S = 30.0
# From this many failures on, an address is guessing: its checks take turns room-wide.
GUESSING_AFTER_FAILURES = 3
# An address with no failure for this long starts again from no delay.
FORGET_AFTER_S = 15 * 60.0
# At most this many addresses are remembered: a flood of addresses cannot
# fill the server's memory. The ones quiet for longest are dropped first.
MAX_ADDRESSES = 10_000
# The operators' own answers, told apart from the room password's by clients (which stop on those).
OPERATOR_PASSWORD_WRONG = error("Wrong operator password.")
OPERATOR_PASSWORD_TOO_MANY_TRIES = error("Too many wrong operator passwords from your address. Try again in a minute.")


def password_matches(given: str, expected: str) -> bool:
    """True if ``given`` is ``expected``, taking the same time wherever they differ.

    Both are encoded to UTF-8 first: ``hmac.compare_digest`` accepts only
    ASCII ``str``, and a password may hold any character.
    """
    return hmac.compare_digest(given.encode("utf-8"), expected.encode("utf-8"))


@dataclass
class _Record:
    failures: int
    last_failure: float  # by the tracker's clock
    next_check: float  # the earliest time the next check from this address may happen


class FailureTracker:
    """Remembers failed attempts per address and spaces out the checks that follow.

    Typical use, in the thread that serves one connection::

        wait = tracker.wait_before_check(address)
        if wait is None:                  # too many attempts from there already waiting
            refuse, without checking
        time.sleep(wait)
        if password_matches(given, expected):
            tracker.succeeded(address)
        else:
            tracker.failed(address)

    Checks from one address take turns: each one books the next free turn, so
    opening many connections at once does not make guessing any faster. An
    attempt whose turn is more than ``max_delay_s`` away gets None and should
    be refused at once, so no thread waits for long. (People behind one
    router share an address, and so share its record: a success clears it.)

    Thread-safe: all client threads share one tracker.
    """

    def __init__(
        self,
        first_delay_s: float = FIRST_DELAY_S,
        max_delay_s: float = MAX_DELAY_S,
        forget_after_s: float = FORGET_AFTER_S,
        max_addresses: int = MAX_ADDRESSES,
        room_rate: float = 0.0,
        guessing_after_failures: int = GUESSING_AFTER_FAILURES,
        clock=time.monotonic,
    ) -> None:
        self.first_delay_s = first_delay_s
        self.max_delay_s = max_delay_s
        self.forget_after_s = forget_after_s
        self.max_addresses = max_addresses
        # Checks a second for all addresses with failures together (0: no limit).
        self.room_gap_s = 1 / room_rate if room_rate > 0 else 0.0
        # From this many failures on, an address takes turns room-wide.
        self.guessing_after_failures = guessing_after_failures
        self._clock = clock
        # Guards the two below. _room_next_check: the earliest time the next
        # check from any address with failures may happen. _records: address
        # -> its failures; insertion order is the order of last failure,
        # oldest first (a failure moves it to the end).
        self._lock = threading.Lock()
        self._room_next_check = 0.0
        self._records: "dict[str, _Record]" = {}

    def delay_after(self, failures: int) -> float:
        """The gap between checks from an address that has failed ``failures`` times."""
        if failures < 1:
            return 0.0
        return min(self.max_delay_s, self.first_delay_s * 2 ** (failures - 1))

    def wait_before_check(self, address: str) -> "float | None":
        """Book a turn to check a password from ``address``; return the seconds to wait for it.

        0 for an address with no recent failure. None if the turn would be
        more than ``max_delay_s`` away: refuse that attempt without checking.
        """
        with self._lock:
            now = self._clock()
            record = self._current_locked(address, now)
            if record is None:
                return 0.0
            # The room's turns come room_gap_s apart, for guessers only (a
            # member who mistyped once or twice is not made to wait for
            # them); the address's own come later still.
            guessing = record.failures >= self.guessing_after_failures
            room_turn = max(now, self._room_next_check) if guessing else now
            turn = max(room_turn, record.next_check)
            if turn - now > self.max_delay_s:
                return None
            record.next_check = turn + self.delay_after(record.failures)
            if guessing:
                self._room_next_check = room_turn + self.room_gap_s
            return turn - now

    def failed(self, address: str) -> None:
        """Count a wrong (or missing) password from ``address``."""
        with self._lock:
            now = self._clock()
            record = self._current_locked(address, now) or _Record(0, now, now)
            record.failures += 1
            record.last_failure = now
            record.next_check = max(record.next_check, now + self.delay_after(record.failures))
            self._records.pop(address, None)
            self._records[address] = record
            self._forget_oldest_locked(now)

    def succeeded(self, address: str) -> None:
        """The right password came from ``address``: forget its failures."""
        with self._lock:
            self._records.pop(address, None)

    def __len__(self) -> int:
        """How many addresses are remembered (expired ones included until next touched)."""
        with self._lock:
            return len(self._records)

    def _current_locked(self, address: str, now: float) -> "_Record | None":
        """The record of ``address``, or None if it has none or it has expired."""
        record = self._records.get(address)
        if record is not None and now - record.last_failure >= self.forget_after_s:
            del self._records[address]
            return None
        return record

    def _forget_oldest_locked(self, now: float) -> None:
        for address in list(self._records):
            expired = now - self._records[address].last_failure >= self.forget_after_s
            if not expired and len(self._records) <= self.max_addresses:
                return  # every remaining record failed more recently
            del self._records[address]


class PasswordGate:
    """The room's password as one client meets it: checked once, slowed down after failures.

    ``address`` is what failures are counted by: the client's address (or,
    behind a proxy on this machine, the address the proxy saw).
    """

    def __init__(self, password: str, failures: FailureTracker, address: str) -> None:
        self.password = password
        self.failures = failures
        self.address = address

    def check(self, given: "str | None", pause) -> "str | None":
        """None if ``given`` is the password; else the line that tells the client why not.

        ``given`` is None if the client's first line was no ``/pass``.
        ``pause(seconds)`` waits for this address's turn, and returns False
        if the connection is closing meanwhile (the answer is then
        :data:`PASSWORD_WRONG`, though nobody will read it).
        """
        if given is None:
            return PASSWORD_NEEDED
        wait = self.failures.wait_before_check(self.address)
        if wait is None:
            return PASSWORD_TOO_MANY_TRIES
        if wait and not pause(wait):
            return PASSWORD_WRONG
        if not password_matches(given, self.password):
            self.failures.failed(self.address)
            return PASSWORD_WRONG
        self.failures.succeeded(self.address)
        return None


class OperatorPassword:
    """The operators' password (``--op-password``): checked like the room's, its failures counted apart."""

    def __init__(self, password: str, failures: FailureTracker) -> None:
        self.password = password
        self.failures = failures

    def check(self, given: str, address: str, pause) -> "str | None":
        """None if ``given`` is the password; else the [ERROR] line that says why not (see PasswordGate.check)."""
        refusal = PasswordGate(self.password, self.failures, address).check(given, pause)
        if refusal is PASSWORD_TOO_MANY_TRIES:
            return OPERATOR_PASSWORD_TOO_MANY_TRIES
        return None if refusal is None else OPERATOR_PASSWORD_WRONG
