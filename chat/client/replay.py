"""What the client shows of the room's history, the first time and after each reconnect.

A server started with ``--history N`` sends a newcomer the room's last public
lines, each with the time it was said, between two marker lines (see
:mod:`chat.core.history`), and then the welcome. The first time, the client
shows that block as it comes. After a reconnect most of it is already on the
screen: :func:`unseen` finds where the replay and the lines already shown
overlap, and only what comes after the overlap is shown, under one note::

    📜 2 messages while you were away:
    📨 [14:02:01] Ann: are you there?
    📨 [14:02:09] [SYSTEM] Cid joined the chat!

Lines are matched by their text alone, so an overlap must hold at least one
thing a person said (a chat line or an action): join, leave and rename
notices repeat word for word, across a server restart too, while people's
words seldom do. An overlap of notices only is no overlap, and the whole
replay is shown under a note that earlier lines may be missing: showing a
notice twice is better than hiding what someone said.

"Own lines" (what this user said, and the notices about its joins, leaves
and renames) are left out of the matching and never shown again: the user
typed or saw them already, and the replay after a reconnect holds the notice
of the user's own leave, which it never saw live.

Like :mod:`chat.core`, this module does no I/O: :class:`Transcript` is fed
each line the server sends and returns what to show. The terminal client and
the chat page use the same algorithm, so both show the same lines.
"""

import re
from collections import deque
from dataclasses import dataclass

from chat.core import messages
from chat.core.history import HISTORY_END, is_history_start, unstamped

# How many of the public lines shown the client remembers, for matching a replay.
MAX_SEEN_LINES = 200
# The most lines of one replay kept for matching: the server keeps at most
# 10,000 (server.py --history), and a misbehaving server must not make the
# client buffer without bound.
MAX_REPLAY_LINES = 10_000

_NAME = r"([A-Za-z0-9_-]+)"


def line_pattern(line: str) -> "re.Pattern":
    """A pattern for a line made by a :mod:`chat.core.messages` function given placeholders.

    ``"\\0"`` stands for a name and ``"\\1"`` for a number, so the client
    recognises exactly the lines the server's own functions make.
    """
    return re.compile(re.escape(line).replace("\x00", _NAME).replace("\x01", r"\d+"))


WELCOME = line_pattern(messages.welcome("\x00", "\x01"))
JOINED = line_pattern(messages.joined("\x00"))
LEFT = line_pattern(messages.left("\x00"))
RENAMED = line_pattern(messages.renamed("\x00", "\x00"))


def notice_names(line: str) -> "tuple[str, ...]":
    """The names a join, leave or rename notice is about; () for any other line."""
    for pattern in (JOINED, LEFT, RENAMED):
        if match := pattern.fullmatch(line):
            return match.groups()
    return ()


def is_public(line: str) -> bool:
    """Whether the room's history keeps ``line``: a chat line, an action, or a rename notice.

    Not a join or leave notice (chat.core.history): remembered, they would
    end what was seen with lines no replay holds, and nothing would match.
    """
    if messages.is_coming_or_going(line):
        return False
    kind, _ = messages.classify(line)
    return kind in (messages.Kind.CHAT, messages.Kind.ACTION) or bool(notice_names(line))


def unseen(seen: "list[str]", replayed: "list[str]") -> "tuple[list[str], int]":
    """The lines at the end of ``replayed`` that follow its longest overlap with the end of ``seen``.

    Returns those lines and the overlap's length. The overlap is a run of
    ``replayed`` that ends some lines of ``seen``; of equally long ones the
    latest wins, so that a line said twice is matched at its second saying.
    An overlap counts only if it holds a line that is not a ``[SYSTEM]``
    notice: a client that saw "Cid left the chat." before a server restart
    must not take the same words in the new history for the point where it
    left off, and hide what was said before them. With no overlap that
    counts (nothing matches, or the client was away for longer than the
    history holds), every replayed line is new, and the overlap is 0.
    """
    best_end, best_length = 0, 0
    for end in range(len(replayed), 0, -1):
        length = 0
        while length < end and length < len(seen) and replayed[end - 1 - length] == seen[-1 - length]:
            length += 1
        if length > best_length:
            best_end, best_length = end, length
    # Every overlap is the end of ``seen``, so each shorter one lies within the
    # longest: if the longest holds only notices, no overlap holds a person's line.
    if not any(_is_said(line) for line in seen[len(seen) - best_length :]):
        return list(replayed), 0
    return replayed[best_end:], best_length


def _is_said(line: str) -> bool:
    """Whether a public line is something a person said (a chat line or an action), not a server notice."""
    return not line.startswith(messages.SYSTEM_PREFIX)


class OwnNames:
    """Every name this client has had in the session, learnt from its welcomes and renames."""

    def __init__(self) -> None:
        self.current: "str | None" = None  # the name now, once welcomed
        self._names: "set[str]" = set()  # casefolded: names are unique regardless of case

    def update(self, line: str) -> None:
        """Learn from a live line: a welcome names us; a rename of our current name renames us."""
        if match := WELCOME.fullmatch(line):
            self.current = match.group(1)
        elif (match := RENAMED.fullmatch(line)) and self._is_current(match.group(1)):
            self.current = match.group(2)
        else:
            return
        self._names.add(self.current.casefold())

    def _is_current(self, name: str) -> bool:
        return self.current is not None and name.casefold() == self.current.casefold()

    def is_own(self, line: str) -> bool:
        """A chat line or action by one of our names, or a notice naming one of them."""
        kind, name = messages.classify(line)
        if kind in (messages.Kind.CHAT, messages.Kind.ACTION):
            names = (name,)
        else:
            names = notice_names(line)
        return any(name.casefold() in self._names for name in names)


@dataclass(frozen=True)
class Live:
    """A line to show as it came."""

    line: str


@dataclass(frozen=True)
class Replayed:
    """A line from the room's history, to show with the time it was said (None if it came without one)."""

    line: str
    stamp: "str | None"


@dataclass(frozen=True)
class AwayNote:
    """Shown before the lines said while the client was away.

    ``gap`` is True when the replay did not reach back to what the client had
    seen, or met it only in notices (see :func:`unseen`): earlier lines may be
    missing.
    """

    count: int
    gap: bool


@dataclass(frozen=True)
class Admitted:
    """Shown once per connection, before the first line that says the server let the client in.

    That line is the first of the room's history, or else the welcome: until
    then the connection may still be refused (a wrong password, a ban, a full
    room), and nothing else comes first. ``again`` is True on a reconnect.
    """

    again: bool


Shown = Live | Replayed | AwayNote | Admitted  # what Transcript.feed returns


class Transcript:
    """Decides what to show of each line the server sends, across connections. No I/O; not thread-safe.

    Call :meth:`new_connection` before the first line of each connection,
    then :meth:`feed` with every line (sanitized). It remembers the last
    :data:`MAX_SEEN_LINES` public lines shown that are not our own, and our
    names (:attr:`names`).
    """

    def __init__(self, max_seen: int = MAX_SEEN_LINES, max_replay: int = MAX_REPLAY_LINES) -> None:
        self.names = OwnNames()
        self.joined = False  # a welcome has come, on any connection
        self.welcomed = False  # a welcome has come on this connection
        self.admitted = False  # the server let us in on this connection (see Admitted)
        self._seen: "deque[str]" = deque(maxlen=max_seen)
        self._max_replay = max_replay
        self._rejoining = False  # this connection is a reconnect: its replay is matched, not shown whole
        self._block: "deque[tuple[str | None, str]] | None" = None  # a replay being read: (stamp, line)

    @property
    def name(self) -> "str | None":
        """Our current name, to ask for again when reconnecting."""
        return self.names.current

    def new_connection(self) -> None:
        self._rejoining = self.joined
        self.welcomed = self.admitted = False
        self._block = None

    def feed(self, line: str) -> "list[Shown]":
        """What to show for ``line``: nothing while a reconnect's replay is read, the rest at its end."""
        if not self.admitted and (is_history_start(line) or WELCOME.fullmatch(line)):
            self.admitted = True
            return [Admitted(again=self._rejoining), *self.feed(line)]
        if self._block is not None:
            if line == HISTORY_END:
                return self._end_of_replay(line)
            stamp, said = unstamped(line)
            if stamp is not None:
                if self._rejoining:
                    self._block.append((stamp, said))
                    return []
                self._remember(said)
                return [Replayed(said, stamp)]
            # Only replayed lines come between the markers: a server that
            # did not end its block ended it here.
            return [*self._end_of_replay(None), *self.feed(line)]
        if is_history_start(line) and not self.welcomed:  # a replay comes just before the welcome
            self._block = deque(maxlen=self._max_replay)
            return [] if self._rejoining else [Live(line)]
        self.names.update(line)
        if WELCOME.fullmatch(line):
            self.joined = self.welcomed = True
        self._remember(line)
        return [Live(line)]

    def _end_of_replay(self, end_marker: "str | None") -> "list[Shown]":
        block, self._block = self._block, None
        if not self._rejoining:
            return [Live(end_marker)] if end_marker else []
        is_own = self.names.is_own
        replayed = [(stamp, line) for stamp, line in block if is_public(line) and not is_own(line)]
        # Our names may have grown since a line was remembered.
        seen = [line for line in self._seen if not is_own(line)]
        new_lines, overlap = unseen(seen, [line for _, line in replayed])
        if not new_lines:
            return []
        new = replayed[len(replayed) - len(new_lines) :]
        for _, line in new:
            self._remember(line)
        return [AwayNote(len(new), gap=overlap == 0), *(Replayed(line, stamp) for stamp, line in new)]

    def _remember(self, line: str) -> None:
        if is_public(line) and not self.names.is_own(line):
            self._seen.append(line)
