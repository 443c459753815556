"""Flood control: a token bucket per client.

The bucket holds up to ``burst`` tokens and refills at ``rate`` tokens per
second. Each line takes one token; a line that finds the bucket empty is
dropped. So a client may paste ``burst`` lines at once, but cannot keep up
more than ``rate`` lines per second.
"""

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
