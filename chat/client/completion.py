"""Tab completion: who is online, as far as the client can tell, and what Tab offers.

:class:`Roster` follows the lines the server sends (welcome, joins, leaves,
renames, removals by operators, ``/users`` replies and the names on chat
lines) and keeps the set of names online, and whether we are an operator.
:func:`complete` is pure: given the text before the cursor, it returns the
words Tab may put there; :func:`offered_commands` says which commands those
are (the operators' own only to an operator). :class:`ChatCompleter` hands
them to prompt_toolkit.
"""

import re
import threading

from prompt_toolkit.completion import Completer, Completion

from chat.client.replay import JOINED, LEFT, RENAMED, WELCOME
from chat.core import messages
from chat.core.commands import COMMANDS

_NAME = r"([A-Za-z0-9_-]+)"
_ONLINE = re.compile(re.escape(messages.system("Online (")) + r"\d+\): (.*)")
# In a /users reply an operator's name comes after this mark: "@Ann".
OPERATOR_MARK = "@"
_REMOVED = re.compile(re.escape(messages.SYSTEM_PREFIX) + _NAME + " was removed by ")
# The server's answers to /op PASSWORD (the first line's start) and to /deop.
NOW_OPERATOR = messages.system("You are now an operator.")
NO_LONGER_OPERATOR = messages.system("You are no longer an operator.")


class Roster:
    """The names of the people online, learnt from the lines the server sends.

    The receiver thread calls :meth:`update`; the keyboard thread reads
    :meth:`others` when the user presses Tab.
    """

    def __init__(self) -> None:
        # Guards _me and _names.
        self._lock = threading.Lock()
        self._me: "str | None" = None  # our own name, once the welcome has arrived
        self._names: "dict[str, str]" = {}  # casefolded name -> name, as the server spells it
        self._operator = False  # the server made us an operator on this connection

    @property
    def operator(self) -> bool:
        """Whether the server said we are an operator, on the connection we have now."""
        with self._lock:
            return self._operator

    def connection_ended(self) -> None:
        """Operator status lasts as long as its connection: after a reconnect, /op must be given again."""
        with self._lock:
            self._operator = False

    @property
    def me(self) -> "str | None":
        with self._lock:
            return self._me

    def others(self) -> "list[str]":
        """Everyone known to be online except us, sorted regardless of case."""
        with self._lock:
            me = self._me.casefold() if self._me else None
            return sorted((name for key, name in self._names.items() if key != me), key=str.casefold)

    def forget_others(self) -> None:
        """Forget everyone but us: after a gap in what the client heard, who is online is unknown."""
        with self._lock:
            me = self._me.casefold() if self._me else None
            self._names = {key: name for key, name in self._names.items() if key == me}

    def update(self, line: str) -> None:
        """Learn what ``line`` (a sanitized line from the server) says about who is online."""
        with self._lock:
            if match := WELCOME.fullmatch(line):
                self._me = match.group(1)
                self._add(self._me)
                self._operator = False  # every connection starts without
            elif line.startswith(NOW_OPERATOR):
                self._operator = True
            elif line == NO_LONGER_OPERATOR:
                self._operator = False
            elif match := JOINED.fullmatch(line):
                self._add(match.group(1))
            elif (match := LEFT.fullmatch(line)) or (match := _REMOVED.match(line)):
                self._names.pop(match.group(1).casefold(), None)
            elif match := RENAMED.fullmatch(line):
                old, new = match.groups()
                self._names.pop(old.casefold(), None)
                self._add(new)
                if self._me and self._me.casefold() == old.casefold():
                    self._me = new
            elif match := _ONLINE.fullmatch(line):
                self._names = {}
                for name in match.group(1).split(", "):
                    name = name.removeprefix(OPERATOR_MARK)
                    if re.fullmatch(_NAME, name):
                        self._add(name)
            else:
                kind, name = messages.classify(line)
                if name:  # a chat line, an action or a private message names someone online
                    self._add(name)

    def _add(self, name: str) -> None:
        self._names[name.casefold()] = name


def complete(before_cursor: str, names: "list[str]", commands: "dict[str, str]") -> "list[str]":
    """The words Tab may put in place of the word that ends at the cursor.

    ``commands`` maps each command name to its arguments' help (``"NAME TEXT"``,
    or ``""``). A command is completed at the start of the line, followed by a
    space if it takes arguments. A name is completed anywhere, followed by
    ``": "`` at the start of the line, as chat users address one another, and
    by a space elsewhere.
    """
    start = before_cursor.rfind(" ") + 1
    word = before_cursor[start:]
    if not word:
        return []
    at_start = not before_cursor[:start].strip()
    if at_start and word.startswith("/"):
        return [
            f"/{name} " if args else f"/{name}"
            for name, args in sorted(commands.items())
            if name.startswith(word[1:].lower())
        ]
    folded = word.casefold()
    ending = ": " if at_start else " "
    return [name + ending for name in names if name.casefold().startswith(folded)]


def offered_commands(commands: "dict[str, object]", operator: bool) -> "dict[str, str]":
    """The commands Tab offers, each with its arguments' help, from a table like COMMANDS.

    A command marked ``operator`` is offered to an operator only: the server
    would refuse it to anyone else. (Tables without the mark offer everything.)
    """
    return {
        name: command.args
        for name, command in commands.items()
        if operator or not getattr(command, "operator", False)
    }


class ChatCompleter(Completer):
    """prompt_toolkit's view of :func:`complete`: slash commands and the names in a :class:`Roster`."""

    def __init__(self, roster: Roster) -> None:
        self.roster = roster

    def get_completions(self, document, complete_event):
        before_cursor = document.text_before_cursor
        word_length = len(before_cursor) - (before_cursor.rfind(" ") + 1)
        commands = offered_commands(COMMANDS, self.roster.operator)
        for word in complete(before_cursor, self.roster.others(), commands):
            yield Completion(word, start_position=-word_length)
