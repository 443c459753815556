"""Handing items from any thread to one writer thread, which takes them in batches.

The server's log (``chat.logs``) and its store (``chat.store.archive``) both
take work from the threads that relay lines and do it on a thread of their
own, so that a relaying thread never waits for a terminal or a disk. Both
hand it over here: a deque (its ``append`` and ``popleft`` are thread-safe,
so the giver takes no lock) and an event that wakes the writer. While the
writer lets a batch gather, the event stays set, and handing more over
wakes nobody.
"""

import threading
from collections import deque


class Handover:
    """At most ``max_items`` items waiting for one taker; giving never blocks."""

    def __init__(self, max_items: int) -> None:
        self.max_items = max_items
        self._items: deque = deque()
        self._ready = threading.Event()  # set when items wait, or to wake the taker

    def __len__(self) -> int:
        return len(self._items)

    def put(self, item) -> bool:
        """Hand ``item`` over; False, dropping it, if ``max_items`` are waiting already."""
        if len(self._items) >= self.max_items:
            return False
        self._items.append(item)
        if not self._ready.is_set():
            self._ready.set()
        return True

    def wait(self) -> None:
        """Wait until items are waiting, or wake() was called (the taker's thread)."""
        self._ready.wait()

    def wake(self) -> None:
        """Wake the taker, with or without items: to make it see that it must stop."""
        self._ready.set()

    def take_all(self) -> list:
        """Everything waiting, oldest first (the taker's thread).

        The event is cleared first: an item handed over after that sets it
        again, so the taker's next wait() returns at once.
        """
        self._ready.clear()
        taken = []
        while self._items:
            taken.append(self._items.popleft())
        return taken
