"""What a line from a client does: a chat message, or one of the slash commands.

Commands are data: :data:`COMMANDS` is a table of (name, arguments, help,
handler, who may use it), which drives dispatch, the refusals and the
``/help`` text. A handler gets the room, the member who typed the command
and the rest of the line; the operators' handlers are in
:mod:`chat.core.operators`. A handler that raises
:class:`~chat.core.operators.WrongUsage` gets its command's usage replied.
"""

import enum
from dataclasses import dataclass
from typing import Callable

from chat.core import messages, operators
from chat.core.members import Member
from chat.core.operators import WrongUsage
from chat.core.room import Room
from chat.core.text import sanitize


class Access(enum.Enum):
    """Who may use a command."""

    EVERYONE = "everyone"  # members and the server's console
    MEMBERS = "members"  # members of the chat only: not the console
    OPERATORS = "operators"  # operators, the console included
    CONSOLE = "console"  # the server's console only


@dataclass(frozen=True)
class Command:
    name: str
    args: str
    help: str
    handler: "Callable[[Room, Member, str], None]"
    access: Access = Access.EVERYONE
    # Whether it may ask to be repeated to confirm it (member.confirming);
    # any other command in between drops what was waiting.
    confirmed_by_repeating: bool = False

    @property
    def usage(self) -> str:
        return f"/{self.name} {self.args}".rstrip()

    @property
    def operator(self) -> bool:
        """Whether only operators (or the console) may use it."""
        return self.access in (Access.OPERATORS, Access.CONSOLE)

    def open_to(self, member) -> bool:
        """Whether ``member`` (a member of the chat, or the console) may use this command."""
        if member.console:
            return self.access is not Access.MEMBERS
        return self.access is Access.EVERYONE or self.access is Access.MEMBERS or (
            self.access is Access.OPERATORS and member.operator
        )


def handle_line(room: Room, member: Member, text: str) -> None:
    """Act on one line from ``member``, whatever it holds.

    Unsafe characters are removed first (:func:`clean`) and blank lines are
    ignored. A line starting with ``/`` is a command; start it with ``//``
    to send a chat message that begins with a slash.
    """
    line = clean(text)
    if line is not None:
        act_on(room, member, line)


def clean(text: str) -> "str | None":
    """``text`` made safe to show, or None if nothing is left to act on.

    Every line a client sends goes through here once, whichever way it
    came: blank lines (spaces only, say) are ignored, and so cost a sender
    no flood allowance.
    """
    text = sanitize(text)
    return text if text.strip() else None


def act_on(room: Room, member: Member, line: str) -> None:
    """Act on a line that :func:`clean` returned: say it, or run the command it is."""
    said = public_line(member.name, line)
    if said is None:
        run_command(room, member, unpadded(line))
    else:
        room.say(member, said)


def public_line(name: str, line: str) -> "str | None":
    """What the room hears when ``name`` sends ``line``; None if the line is a command."""
    message = chat_text(line)
    return None if message is None else messages.chat(name, message)


def chat_text(line: str) -> "str | None":
    """The chat message a line says, or None if the line is a command.

    ``//text`` is the message ``/text``.
    """
    line = unpadded(line)
    if line.startswith("/"):
        return line[1:] if line.startswith("//") else None
    return line


# Commands whose argument is a password: typed after a space by mistake,
# they are still commands, never said to the room (and kept in its history).
SECRET_COMMANDS = ("op", "pass")


def unpadded(line: str) -> str:
    """``line`` without the spaces before it if it is a command with a password (``" /op P"``); else as it is."""
    stripped = line.lstrip()
    if stripped != line and stripped.startswith("/") and parse_command(stripped)[0] in SECRET_COMMANDS:
        return stripped
    return line


def parse_command(text: str) -> "tuple[str, str]":
    """Split ``"/name rest of line"`` into ``("name", "rest of line")``."""
    name, _, arg = text[1:].partition(" ")
    return name.lower(), arg.strip()


def requested_name(line: str) -> "str | None":
    """The NAME of a ``/nick NAME`` line, or None for any other line."""
    if not line.startswith("/"):
        return None
    name, arg = parse_command(line)
    return arg if name == "nick" and arg else None


def run_command(room: Room, member: Member, text: str) -> None:
    name, arg = parse_command(text)
    command = COMMANDS.get(name)
    if command is None:
        room.send_to(member, messages.error(f"Unknown command /{name}. Type /help for the list."))
    elif not command.open_to(member):
        room.send_to(member, messages.error(refusal(command)))
    else:
        if not command.confirmed_by_repeating:
            member.confirming = None
        try:
            command.handler(room, member, arg)
        except WrongUsage:
            room.send_to(member, messages.error(f"Usage: {command.usage}"))


def refusal(command: Command) -> str:
    """Why someone may not use ``command``."""
    if command.access is Access.MEMBERS:
        return f"/{command.name} is for members of the chat, not the console."
    if command.access is Access.CONSOLE:
        return f"Only the server's console can use /{command.name}."
    return f"Only operators can use /{command.name}."


def silenced(line: str) -> bool:
    """Whether a muted member may not send ``line``: a chat line, or /me, /msg or /nick."""
    return chat_text(line) is not None or parse_command(line)[0] in ("me", "msg", "nick")


def _nick(room: Room, member: Member, arg: str) -> None:
    if not arg:
        raise WrongUsage
    problem = room.rename(member, arg)
    if problem:
        room.send_to(member, messages.error(problem))


def _users(room: Room, member: Member, arg: str) -> None:
    names = room.roster()  # operators marked: @Ann
    room.send_to(member, messages.system(f"Online ({len(names)}): {', '.join(names)}"))


def _msg(room: Room, member: Member, arg: str) -> None:
    recipient, _, text = arg.partition(" ")
    if not text.strip():
        raise WrongUsage
    problem = room.send_private(member, recipient, text.strip())
    if problem:
        room.send_to(member, messages.error(problem))


def _me(room: Room, member: Member, arg: str) -> None:
    if not arg:
        raise WrongUsage
    room.say(member, messages.action(member.name, arg))


def _help(room: Room, member: Member, arg: str) -> None:
    """The commands ``member`` may use: operators see theirs after everyone's."""
    usable = [c for c in COMMANDS.values() if c.open_to(member)]
    width = max(len(c.usage) for c in usable)
    for command in usable:
        room.send_to(member, messages.system(f"{command.usage:<{width}}  {command.help}"))
    if not member.console:
        room.send_to(member, messages.system("Start a line with // to send a message that begins with /."))


def _quit(room: Room, member: Member, arg: str) -> None:
    room.send_to(member, messages.system("Goodbye!"))
    room.not_coming_back(member)
    member.quit()


MEMBERS, OPERATORS, CONSOLE = Access.MEMBERS, Access.OPERATORS, Access.CONSOLE

COMMANDS = {
    c.name: c
    for c in (
        Command("nick", "NAME", "change your name", _nick, MEMBERS),
        Command("users", "", "list who is online (@ marks operators)", _users),
        Command("msg", "NAME TEXT", "send a private message", _msg, MEMBERS),
        Command("me", "TEXT", "describe an action: * you TEXT", _me, MEMBERS),
        Command("op", "PASSWORD", "become an operator", operators.op, MEMBERS),
        Command("help", "", "show this list", _help),
        Command("quit", "", "leave the chat", _quit),
        Command("deop", "", "stop being an operator", operators.deop, OPERATORS),
        Command("kick", "NAME [reason]", "remove someone from the chat", operators.kick, OPERATORS),
        Command("ban", "NAME [minutes] [reason]", "remove someone and refuse their address (default 60 minutes; 0: until /unban)", operators.ban, OPERATORS, confirmed_by_repeating=True),
        Command("bans", "", "list the bans", operators.bans, OPERATORS),
        Command("unban", "ADDRESS|NAME", "lift a ban", operators.unban, OPERATORS),
        Command("mute", "NAME [minutes]", "refuse someone's lines (default 10 minutes; 0: until /unmute)", operators.mute, OPERATORS),
        Command("unmute", "NAME", "lift a mute", operators.unmute, OPERATORS),
        Command("topic", "[TEXT]", "set the topic everyone sees; alone, clear it", operators.topic, OPERATORS),
        Command("say", "TEXT", "tell everyone, as [SYSTEM]", operators.say, CONSOLE),
    )
}
