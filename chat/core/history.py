"""The room's recent past: the last N public lines, replayed to whoever joins.

Chat lines, actions and rename notices are kept. Join and leave notices
are not: a crowd coming and going (a class after a restart, or someone
reconnecting on purpose, again and again) would push the conversation out.
Private messages and replies to commands never are. A newcomer gets them
first, marked off from the live chat and each with the time it was said::

    [SYSTEM] Last 2 messages:
    [14:02:01] Alice: hello
    [14:02:09] [SYSTEM] Bob is now known as Robert
    [SYSTEM] End of history.

The lines between the markers are ordinary lines with ``[HH:MM:SS] `` in
front, so ``nc`` shows them as they are, and a client that knows the markers
can tell them from live lines (a user cannot fake a marker: every chat line
starts with its sender's name, and no name can be ``SYSTEM``).

Memory is bounded: at most ``max_lines`` lines, each of them no longer than
the server's line limit.
"""

import re
import time
from collections import deque

from chat.core import messages

DEFAULT_HISTORY_LINES = 50
HISTORY_END = messages.system("End of history.")
_START = re.compile(r"\[SYSTEM\] Last (\d+) messages?:")
_STAMP = re.compile(r"\[(\d\d:\d\d:\d\d)\] ")


def history_start(count: int) -> str:
    return messages.system(f"Last {count} message{'' if count == 1 else 's'}:")


def is_history_start(line: str) -> bool:
    return _START.fullmatch(line) is not None


def stamped(when: float, line: str) -> str:
    """``line`` as it appears in a replay: after the local time it was said."""
    return f"[{time.strftime('%H:%M:%S', time.localtime(when))}] {line}"


def unstamped(line: str) -> "tuple[str | None, str]":
    """Split a replayed line into its time (None if it has none) and the line as it was said."""
    match = _STAMP.match(line)
    if match is None:
        return None, line
    return match.group(1), line[match.end() :]


class History:
    """The last ``max_lines`` public lines, with when each was said. Not thread-safe: the room's lock guards it."""

    def __init__(self, max_lines: int) -> None:
        self.max_lines = max_lines
        self._lines: "deque[tuple[float, str]]" = deque(maxlen=max_lines)

    def __len__(self) -> int:
        return len(self._lines)

    def add(self, line: str, when: "float | None" = None) -> None:
        """Keep ``line``, said at ``when`` (now if None), unless it is a join or leave notice."""
        if self.max_lines and not messages.is_coming_or_going(line):
            self._lines.append((time.time() if when is None else when, line))

    def add_earlier(self, said: "list[tuple[float, str]]") -> None:
        """Put lines said before all those kept in front of them (``(when, line)``, oldest first)."""
        if self.max_lines:
            kept = [(when, line) for when, line in said if not messages.is_coming_or_going(line)]
            self._lines = deque([*kept, *self._lines], maxlen=self.max_lines)  # keeps the newest

    def replay(self) -> "list[str]":
        """The lines a newcomer gets: nothing if there is no history, else the block with its markers."""
        if not self._lines:
            return []
        return [history_start(len(self._lines)), *(stamped(when, line) for when, line in self._lines), HISTORY_END]
