"""The lines the server sends, one function per kind, and how to tell them apart.

Every line on the wire is plain text that a person can read in ``nc``::

    Alice: hello                 a chat message (Kind.CHAT)
    * Alice waves                an action, from /me (Kind.ACTION)
    [PM from Alice] psst         a private message, from /msg (Kind.PRIVATE)
    [PM to Bob] psst             the sender's copy of it (Kind.PRIVATE)
    [SYSTEM] Bob joined the chat!  a notice from the server (Kind.SYSTEM)
    [ERROR] Unknown command ...  a reply saying a command failed (Kind.ERROR)

Names can only hold letters, digits, ``_`` and ``-`` (see :mod:`chat.core.text`),
so no user can make a chat line that looks like any other kind.
"""

import enum
import re

SYSTEM_PREFIX = "[SYSTEM] "
ERROR_PREFIX = "[ERROR] "


class Kind(enum.Enum):
    CHAT = "chat"
    ACTION = "action"
    PRIVATE = "private"
    SYSTEM = "system"
    ERROR = "error"


def chat(name: str, text: str) -> str:
    return f"{name}: {text}"


def action(name: str, text: str) -> str:
    return f"* {name} {text}"


def private_from(sender: str, text: str) -> str:
    return f"[PM from {sender}] {text}"


def private_to(recipient: str, text: str) -> str:
    return f"[PM to {recipient}] {text}"


def system(text: str) -> str:
    return SYSTEM_PREFIX + text


def error(text: str) -> str:
    return ERROR_PREFIX + text


def welcome(name: str, others_online: int) -> str:
    return system(f"Welcome, {name}! {others_online} other user(s) online. Type /help for commands.")


def joined(name: str) -> str:
    return system(f"{name} joined the chat!")


def left(name: str) -> str:
    return system(f"{name} left the chat.")


def renamed(old: str, new: str) -> str:
    return system(f"{old} is now known as {new}")


def topic(text: str) -> str:
    """The line after every welcome while the room has a topic."""
    return system(f"Topic: {text}")


SHUTTING_DOWN = system("Server is shutting down.")

# About the room's password (chat.core.password). The page and the terminal
# client match these lines exactly.
PASSWORD_NEEDED = system("This chat needs a password: send /pass PASSWORD first.")
PASSWORD_WRONG = error("Wrong password.")
PASSWORD_TOO_MANY_TRIES = error("Too many wrong passwords from your address. Try again in a minute.")

_COMING_OR_GOING = re.compile(r"\[SYSTEM\] [A-Za-z0-9_-]+ (?:joined the chat!|left the chat\.)")
_CHAT = re.compile(r"([A-Za-z0-9_-]+): ")
_ACTION = re.compile(r"\* ([A-Za-z0-9_-]+) ")
_PRIVATE = re.compile(r"\[PM (?:from|to) ([A-Za-z0-9_-]+)\] ")


def is_coming_or_going(line: str) -> bool:
    """True for a notice that someone joined or left (see :func:`joined` and :func:`left`)."""
    return _COMING_OR_GOING.fullmatch(line) is not None


def classify(line: str) -> "tuple[Kind, str | None]":
    """Return the kind of a received line and the user name it is about, if any.

    A line that fits no pattern is treated as a system notice, so that a
    line from a different server still displays sensibly.
    """
    if line.startswith(SYSTEM_PREFIX):
        return Kind.SYSTEM, None
    if line.startswith(ERROR_PREFIX):
        return Kind.ERROR, None
    for kind, pattern in (
        (Kind.PRIVATE, _PRIVATE),
        (Kind.ACTION, _ACTION),
        (Kind.CHAT, _CHAT),
    ):
        match = pattern.match(line)
        if match:
            return kind, match.group(1)
    return Kind.SYSTEM, None
