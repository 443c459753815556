"""Flood control for one connection: what to do with each line it sends.

A line must find a token in the connection's own bucket and, for a client
that is not on this machine, in its address's bucket, which all connections
from that address share (so opening more connections does not multiply the
allowance). A line that does not is dropped:

* the first line dropped in a flood earns the sender a notice;
* when the flood is over, the sender is told how many lines were lost;
* a sender that keeps going far beyond its rate is an "excess flood" and is
  disconnected, rather than read and discarded for as long as it likes.

No I/O: :meth:`FloodControl.check` returns a :class:`Verdict` and the
connection acts on it.
"""

import enum
import time

from chat.core.ratelimit import ExcessMeter, TokenBucket

# An excess flood: more than this many bursts dropped, net of what the rate
# forgives, within a few seconds.
EXCESS_BURSTS = 10


class Verdict(enum.Enum):
    ALLOWED = "allowed"
    TOO_FAST = "too fast"  # dropped, the first of a flood: tell the sender
    ADDRESS_TOO_FAST = "address too fast"  # dropped by the address's shared budget, the first
    DROPPED_AGAIN = "dropped again"  # dropped, the sender was told already
    EXCESS_FLOOD = "excess flood"  # far beyond the rate for too long: disconnect


class FloodControl:
    """The flood rules for one connection; ``rate`` 0 and no address budget turn them off."""

    def __init__(self, rate: float, address_budget: "TokenBucket | None" = None, clock=time.monotonic) -> None:
        self.own = TokenBucket(rate, max(1, 2 * rate), clock) if rate > 0 else None
        self.address_budget = address_budget
        buckets = [b for b in (self.own, address_budget) if b is not None]
        self.enabled = bool(buckets)
        # The rate that excess is forgiven at: the strictest of the two.
        forgiving_rate = min(b.rate for b in buckets) if buckets else 1
        self._excess = ExcessMeter(forgiving_rate, EXCESS_BURSTS * 2 * forgiving_rate, clock)
        self.dropped = 0  # lines dropped since the sender was last told how many

    def check(self) -> Verdict:
        """Take one line's tokens if there are any, and say what becomes of the line."""
        if not self.enabled:
            return Verdict.ALLOWED
        if self.own is not None and not self.own.allow():
            return self._drop(Verdict.TOO_FAST)
        if self.address_budget is not None and not self.address_budget.allow():
            return self._drop(Verdict.ADDRESS_TOO_FAST)
        return Verdict.ALLOWED

    def take_dropped(self) -> int:
        """How many lines were dropped since the last call; the next flood is announced again."""
        count, self.dropped = self.dropped, 0
        return count

    def seconds_until_calm(self) -> float:
        """How long until a line would pass again: the flood is over if none comes meanwhile."""
        waits = [b.seconds_until_allowed() for b in (self.own, self.address_budget) if b is not None]
        return max(waits, default=0.0)

    def _drop(self, first_verdict: Verdict) -> Verdict:
        self.dropped += 1
        if self._excess.add():
            return Verdict.EXCESS_FLOOD
        return first_verdict if self.dropped == 1 else Verdict.DROPPED_AGAIN
