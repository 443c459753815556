"""One client's conversation with the room: the password, joining, then chatting.

A :class:`Session` is fed the lines a client sends, as
:class:`chat.core.framing.LineFramer` cuts them (``bytes`` lines and
:class:`~chat.core.framing.LineTooLong` events), whichever wire they came
over, and acts on them in three stages::

    PASSWORD ──/pass right──► NAMING ──/nick NAME, another line, or time up──► CHATTING
       │                        │                                                 │
       └── wrong, or none ──────┴──────────────── the client quits, or is cut off ┴──► ENDED

While chatting, every line goes the same way: decoded, made safe and, if
blank, skipped (:func:`chat.core.commands.clean`), then counted by flood
control, then said or run as a command (:func:`chat.core.commands.act_on`).
Consecutive chat lines of one read are said together (``Room.say``), which
is what keeps a busy room fast.

It is the room's :class:`chat.core.room.Member`: ``queue``, ``flush`` and
``queue_private`` are its transport's, which turns lines into bytes for
the wire (raw lines, or WebSocket frames).

No sockets and no threads of its own: the connection's reader thread calls
:meth:`Session.receive` with what it read and :meth:`Session.on_due` when
:meth:`Session.seconds_until_due` has passed. It may block that thread
twice, on purpose: while a password guesser waits for its turn, and while
the client's own output is backed up (it then reads no more of its input).
"""

import enum
import logging
import threading
import time
from typing import Protocol

from chat.core import messages
from chat.core.commands import act_on, clean, parse_command, public_line, requested_name, silenced
from chat.core.flood import FloodControl, Verdict
from chat.core.framing import LineTooLong, decode_line
from chat.core.moderation import banned_refusal, muted_refusal
from chat.core.password import PasswordGate
from chat.core.room import Room

log = logging.getLogger(__name__)

# While a client's own output is backed up, how often its reader looks up from waiting.
BEHIND_WAIT_S = 1.0


class Stage(enum.Enum):
    PASSWORD = "password"  # waiting for "/pass SECRET", the first line
    NAMING = "naming"  # waiting briefly for "/nick NAME", the next line
    CHATTING = "chatting"  # in the room
    ENDED = "ended"  # refused, or gone


class Transport(Protocol):
    """What a session needs of the wire its client is on."""

    def queue(self, data: bytes) -> bool:
        """Queue newline-ended lines; True if flush() must follow. Never blocks."""

    def queue_private(self, data: bytes) -> "bool | None":
        """Like queue(), or None (queueing nothing) while the backlog is large."""

    def flush(self) -> None:
        """Start sending what was queued."""

    def close(self) -> None:
        """Send what is queued, then end the connection. Never blocks."""

    @property
    def backlog_bytes(self) -> int:
        """Bytes queued and not yet sent."""

    def wait_until_below(self, max_backlog: int, timeout: float) -> bool:
        """Wait until at most ``max_backlog`` bytes are queued, or the connection ends."""


class Session:
    """One client from its first line to its last; the room's member for it."""

    def __init__(
        self,
        room: Room,
        transport: Transport,
        name: str,
        flood: FloodControl,
        first_line_wait_s: float,
        max_line_bytes: int,
        max_queue_bytes: int,
        password: "PasswordGate | None" = None,
        clock=time.monotonic,
        connected_at: "float | None" = None,
        may_announce=lambda: True,
        address: "str | None" = None,
        peer: "str | None" = None,
    ) -> None:
        self.room = room
        self.transport = transport
        self.name = name  # the default name until the room gives one
        self.member_id = 0  # given by the room on joining
        self.address = address  # where the client connects from (see Member)
        self.peer = peer  # the same, for the log
        self.operator = False  # set by the room: /op
        self.console = False  # a member of the chat, not the server's console
        self.confirming: "str | None" = None  # an operator's command waiting to be repeated (chat.core.operators)
        # The room calls these once per recipient of every line: the
        # transport's own, with nothing in between.
        self.queue = transport.queue
        self.flush = transport.flush
        self.queue_private = transport.queue_private
        self.flood = flood
        self._max_line_bytes = max_line_bytes
        # Past this backlog of its own, the client's input waits (see _wait_while_behind).
        self._behind_bytes = max_queue_bytes // 2
        self._password = password
        self._first_line_wait_s = first_line_wait_s
        self._clock = clock
        self._may_announce = may_announce  # () -> whether joining may be announced
        self.stage = Stage.PASSWORD if password is not None else Stage.NAMING
        # The first line of the stage is due by then. The first stage's wait
        # began when the client connected, if that was before (by ``clock``).
        self._deadline = (clock() if connected_at is None else connected_at) + first_line_wait_s
        self._quitting = threading.Event()  # set by quit(), from any thread

    # -- the Member interface (queue, flush and queue_private are the transport's) --

    def quit(self) -> None:
        """Close the connection once what is queued has been sent. Never blocks."""
        self._quitting.set()
        self.transport.close()

    def tell(self, line: str) -> None:
        """Send one line to this client alone."""
        self.room.send_to(self, line)

    def pause(self, seconds: float) -> bool:
        """Wait ``seconds`` on this client's reader thread; False if the connection ends first.

        What this thread queued for members so far goes out first, not after the wait.
        """
        self.room.flush_deferred()
        return not self._quitting.wait(seconds)

    # -- driven by the connection's reader thread ------------------------------

    @property
    def ended(self) -> bool:
        return self.stage is Stage.ENDED or self._quitting.is_set()

    def receive(self, events: list) -> bool:
        """Act on the lines of one read; False once the connection must end."""
        if self.stage is Stage.PASSWORD and events:
            if not self._let_in(events[0]):
                return self._end()
            events = events[1:]
            self.stage = Stage.NAMING
            self._deadline = self._clock() + self._first_line_wait_s
        with self.room.deferred_flushes():  # each member's lines go out together
            if self.stage is Stage.NAMING and events:
                wanted = name_asked_for(events[0])
                if not self._join(wanted):
                    return self._end()
                events = events[1:] if wanted is not None else events
            if self.stage is Stage.CHATTING and not self._chat(events):
                return self._end()
        return not self.ended

    def seconds_until_due(self) -> "float | None":
        """How long until on_due() has something to do; None if nothing is due."""
        if self.stage in (Stage.PASSWORD, Stage.NAMING):
            return max(0.0, self._deadline - self._clock())
        if self.stage is Stage.CHATTING and self.flood.dropped:
            return self.flood.seconds_until_calm()
        return None

    def on_due(self) -> bool:
        """Do what the time calls for; False once the connection must end."""
        if self.stage is Stage.PASSWORD and self._clock() >= self._deadline:
            self.tell(messages.PASSWORD_NEEDED)  # a client that says nothing gets the same answer
            return self._end()
        if self.stage is Stage.NAMING and self._clock() >= self._deadline:
            with self.room.deferred_flushes():
                return self._join(None) or self._end()
        if self.stage is Stage.CHATTING and self.flood.dropped and self.flood.seconds_until_calm() <= 0:
            self._report_dropped_lines()  # the flood is over, and nothing more came
        return not self.ended

    # -- the stages -------------------------------------------------------------

    def _let_in(self, first) -> bool:
        """Check the password in the client's first line; tell it why not, if not."""
        given = None
        if isinstance(first, bytes) and first.startswith(b"/"):
            command, argument = parse_command(decode_line(first))
            given = argument if command == "pass" else None
        refusal = self._password.check(given, pause=self.pause)
        if refusal is None:
            return True
        if refusal is messages.PASSWORD_WRONG:
            log.warning("🔒 %s gave a wrong password", self.name)
        if not self._quitting.is_set():
            self.tell(refusal)
        return False

    def _join(self, wanted_name: "str | None") -> bool:
        """Join the room, under ``wanted_name`` if it may be had; False if the room is closed or the address banned."""
        moderation = self.room.moderation
        ban = moderation.ban_on(self.address) if self.address is not None else None
        if ban is not None:  # banned after it connected (it was let in at the door)
            self.tell(messages.system(banned_refusal(ban, moderation.clock())))
            return False
        name, _ = self.room.join(self, self.name, wanted_name, announce=self._may_announce())
        if name is None:
            return False
        self.stage = Stage.CHATTING
        return True

    def _chat(self, events: list) -> bool:
        """Act on chat lines in order; False if the client must be disconnected.

        Consecutive chat lines are said together; anything else (a command,
        a notice) first has those said, so that the order holds.
        """
        said: "list[str]" = []
        moderation = self.room.moderation
        try:
            for event in events:
                if self._quitting.is_set():
                    return False
                line = None if isinstance(event, LineTooLong) else clean(decode_line(event, self._max_line_bytes))
                if line is None and not isinstance(event, LineTooLong):
                    continue  # a blank line
                verdict = self.flood.check()
                if verdict is Verdict.ALLOWED and line is not None:
                    mute = moderation.mute_on(self.name)
                    if mute is not None and silenced(line):
                        self.tell(muted_refusal(mute, moderation.clock()))
                        continue
                if verdict is Verdict.ALLOWED and line is not None and not self.flood.dropped:
                    public = public_line(self.name, line)
                    if public is not None:
                        said.append(public)
                        continue
                self._say(said)
                if not self._act_on(event, line, verdict):
                    return False
                self._wait_while_behind()
        finally:
            self._say(said)
        return True

    def _say(self, said: "list[str]") -> None:
        if said and not self._quitting.is_set():  # not after an operator removed it meanwhile
            self.room.say(self, *said)
            said.clear()

    def _act_on(self, event, line: "str | None", verdict: Verdict) -> bool:
        """Anything but a chat line said in time: a command, a line too long, a flood verdict."""
        if verdict is Verdict.EXCESS_FLOOD:
            log.warning("⛔ Disconnecting %s: excess flood", self.name)
            self.tell(messages.system("Disconnected: excess flood."))
            self.quit()
            return False
        if verdict is not Verdict.ALLOWED:
            if verdict is not Verdict.DROPPED_AGAIN:
                self.tell(messages.system(flood_notice(verdict, self.flood)))
            return True
        if self.flood.dropped:
            self._report_dropped_lines()
        if line is None:
            limit = event.max_line_bytes
            self.tell(messages.system(f"Line too long: the limit is {limit} bytes. It was not sent."))
        else:
            act_on(self.room, self, line)
        return True

    def _report_dropped_lines(self) -> None:
        count = self.flood.take_dropped()
        lines = "1 line was" if count == 1 else f"{count} lines were"
        self.tell(messages.system(f"{lines} not sent."))

    def _wait_while_behind(self) -> None:
        """Read no more of this client's input while its own output is backed up.

        A client that pipelines many commands (say fifty "/users") would
        otherwise queue more replies than its bound before any is sent, and
        be dropped although it reads.
        """
        if self.transport.backlog_bytes <= self._behind_bytes:
            return
        self.room.flush_deferred()  # what is queued for the others goes out now, not after our wait
        while not self._quitting.is_set() and not self.transport.wait_until_below(self._behind_bytes, BEHIND_WAIT_S):
            pass

    def _end(self) -> bool:
        self.stage = Stage.ENDED
        return False


def name_asked_for(first_line) -> "str | None":
    """The NAME of a first line that says ``/nick NAME``; None for any other line."""
    if not isinstance(first_line, bytes):
        return None  # a line too long
    return requested_name(clean(decode_line(first_line)) or "")


def flood_notice(verdict: Verdict, flood: FloodControl) -> str:
    """What a sender is told when its lines start being dropped, with the limit it ran into."""
    if verdict is Verdict.ADDRESS_TOO_FAST:
        return (
            f"Your address is sending too fast (limit: {flood.address_budget.rate:g} lines per second "
            "from one address, all its connections together). Lines are being dropped."
        )
    return f"You are sending too fast (limit: {flood.own.rate:g} lines per second). Lines are being dropped."
