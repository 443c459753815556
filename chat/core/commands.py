"""What a line from a client does: a chat message, or one of the slash commands.

Commands are data: :data:`COMMANDS` is a table of (name, arguments, help,
handler), which drives both dispatch and the ``/help`` text. A handler gets
the room, the member who typed the command and the rest of the line.
"""

from dataclasses import dataclass
from typing import Callable

from chat.core import messages
from chat.core.members import Member
from chat.core.room import Room
from chat.core.text import sanitize


@dataclass(frozen=True)
class Command:
    name: str
    args: str
    help: str
    handler: "Callable[[Room, Member, str], None]"

    @property
    def usage(self) -> str:
        return f"/{self.name} {self.args}".rstrip()


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
        run_command(room, member, line)
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
    if line.startswith("/"):
        return line[1:] if line.startswith("//") else None
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
    else:
        command.handler(room, member, arg)


def _nick(room: Room, member: Member, arg: str) -> None:
    if not arg:
        _usage(room, member, "nick")
        return
    problem = room.rename(member, arg)
    if problem:
        room.send_to(member, messages.error(problem))


def _users(room: Room, member: Member, arg: str) -> None:
    names = room.names()
    room.send_to(member, messages.system(f"Online ({len(names)}): {', '.join(names)}"))


def _msg(room: Room, member: Member, arg: str) -> None:
    recipient, _, text = arg.partition(" ")
    if not text.strip():
        _usage(room, member, "msg")
        return
    problem = room.send_private(member, recipient, text.strip())
    if problem:
        room.send_to(member, messages.error(problem))


def _me(room: Room, member: Member, arg: str) -> None:
    if not arg:
        _usage(room, member, "me")
        return
    room.say(member, messages.action(member.name, arg))


def _help(room: Room, member: Member, arg: str) -> None:
    width = max(len(c.usage) for c in COMMANDS.values())
    for command in COMMANDS.values():
        room.send_to(member, messages.system(f"{command.usage:<{width}}  {command.help}"))
    room.send_to(member, messages.system("Start a line with // to send a message that begins with /."))


def _quit(room: Room, member: Member, arg: str) -> None:
    room.send_to(member, messages.system("Goodbye!"))
    room.not_coming_back(member)
    member.quit()


def _usage(room: Room, member: Member, name: str) -> None:
    room.send_to(member, messages.error(f"Usage: {COMMANDS[name].usage}"))


COMMANDS = {
    c.name: c
    for c in (
        Command("nick", "NAME", "change your name", _nick),
        Command("users", "", "list who is online", _users),
        Command("msg", "NAME TEXT", "send a private message", _msg),
        Command("me", "TEXT", "describe an action: * you TEXT", _me),
        Command("help", "", "show this list", _help),
        Command("quit", "", "leave the chat", _quit),
    )
}
