"""Flood control: token buckets, and a meter for how far a client goes past its rate.

A :class:`TokenBucket` holds up to ``burst`` tokens and refills at ``rate``
tokens per second. Each line takes one token; a line that finds the bucket
empty is dropped. So a client may paste ``burst`` lines at once, but cannot
keep up more than ``rate`` lines per second.

Dropping lines protects the room, but reading and dropping them still costs
the server: a client that sends as fast as TCP allows would keep a core busy
for as long as it likes. An :class:`ExcessMeter` counts the dropped lines and
forgets them at the permitted rate; when the count passes its limit, the
client is far beyond its rate for seconds on end ("excess flood", as IRC
servers call it) and is disconnected.
"""

import threading
import time


class TokenBucket:
    def __init__(self, rate: float, burst: float, clock=time.monotonic) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("rate must be positive and burst at least 1")
        self.rate = rate
        self.burst = burst
        self._clock = clock
        self._tokens = burst
        self._last = clock()

    def allow(self) -> bool:
        """Take a token if there is one; True if the line may pass."""
        now = self._clock()
        self._tokens = min(self.burst, self._tokens + (now - self._last) * self.rate)
        self._last = now
        if self._tokens >= 1:
            self._tokens -= 1
            return True
        return False

    def available(self) -> float:
        """How many tokens the bucket holds now."""
        return min(self.burst, self._tokens + (self._clock() - self._last) * self.rate)

    def seconds_until_allowed(self) -> float:
        """How long until a token is back (0 if one is there now)."""
        return max(0.0, (1 - self.available()) / self.rate)


class SharedTokenBucket(TokenBucket):
    """A TokenBucket that several connections' threads draw from at once."""

    def __init__(self, rate: float, burst: float, clock=time.monotonic) -> None:
        super().__init__(rate, burst, clock)
        self._lock = threading.Lock()  # guards _tokens and _last

    def allow(self) -> bool:
        with self._lock:
            return super().allow()


class ExcessMeter:
    """Counts lines sent beyond the rate, forgetting them at ``rate`` per second.

    :meth:`add` returns True once more than ``limit`` are counted: the client
    has kept sending far faster than allowed, not just pasted a few lines.
    """

    def __init__(self, rate: float, limit: float, clock=time.monotonic) -> None:
        self.rate = rate
        self.limit = limit
        self._clock = clock
        self._level = 0.0
        self._last = clock()

    def add(self) -> bool:
        now = self._clock()
        self._level = max(0.0, self._level - (now - self._last) * self.rate) + 1
        self._last = now
        return self._level > self.limit
