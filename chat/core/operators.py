"""The operators' commands: /op and /deop, then /kick, /ban, /mute and /topic.

An operator is a member who gave the operator password (``/op PASSWORD``;
the server's ``--op-password``), or the server's own console, which is
always one. Each handler here checks what it was asked, tells the operator
what is wrong if anything is, and otherwise gives an
:class:`~chat.core.moderation.Order`, which the room carries out on every
server sharing it (:meth:`chat.core.room.Room.give`).

Operators cannot act on one another: only the console can remove, ban or
mute an operator. Loopback cannot be banned, since every client on the
server's own machine shares it.

:mod:`chat.core.commands` puts these handlers in its table, so that
``/help`` lists them, to operators only.
"""

import logging
from typing import Protocol

from chat.core import messages
from chat.core.addresses import is_loopback
from chat.core.members import Member
from chat.core.moderation import (
    DEFAULT_BAN_MINUTES,
    DEFAULT_MUTE_MINUTES,
    MAX_MINUTES,
    Order,
    OrderKind,
    Whois,
    timed,
)
from chat.core.room import Room
from chat.core.text import name_key

log = logging.getLogger(__name__)

NOW_OPERATOR = messages.system("You are now an operator. Type /help to see the operator commands.")
NO_LONGER_OPERATOR = messages.system("You are no longer an operator.")
# How many of the names sharing an address a confirmation lists.
SHARING_NAMES_SHOWN = 5


class Operator(Member, Protocol):
    """What the operators' commands need of whoever types them, besides the Member interface."""

    operator: bool  # an operator now
    console: bool  # the server's own console: it may act on operators too
    confirming: "str | None"  # a command waiting to be repeated (see ban)

    def pause(self, seconds: float) -> bool:
        """Wait ``seconds`` (a password check's turn); False if the connection ends first."""


def op(room: Room, member: Operator, arg: str) -> None:
    if member.operator:
        room.send_to(member, messages.error("You are already an operator."))
        return
    if room.operator_password is None:
        room.send_to(member, messages.error("This server has no operator password (--op-password)."))
        return
    interrupted = []

    def pause(seconds: float) -> bool:  # its turn to be checked; False if the connection ends first
        waited = member.pause(seconds)
        interrupted.extend([] if waited else [True])
        return waited

    refusal = room.operator_password.check(arg, member.address or "", pause)
    if interrupted:
        return  # it left, or the server is stopping: nothing was checked
    if refusal is not None:
        log.warning("🔒 %s (from %s) gave a wrong operator password", member.name, member.address or "this machine")
        room.send_to(member, refusal)
        return
    room.set_operator(member, True)
    room.send_to(member, NOW_OPERATOR)


def deop(room: Room, member: Operator, arg: str) -> None:
    if member.console:
        room.send_to(member, messages.error("The server's console is always an operator."))
        return
    if not member.operator:
        room.send_to(member, messages.error("You are not an operator."))
        return
    room.set_operator(member, False)
    room.send_to(member, NO_LONGER_OPERATOR)


def kick(room: Room, member: Operator, arg: str) -> None:
    name, _, reason = arg.partition(" ")
    target = _target(room, member, name, "kick")
    if target is not None:
        room.give(Order(OrderKind.KICK, member.name, target.name, reason.strip()))


def ban(room: Room, member: Operator, arg: str) -> None:
    """Remove a member and refuse its address; if others share it, only once the command is repeated."""
    name, minutes, reason = _name_minutes_rest(room, member, arg, DEFAULT_BAN_MINUTES)
    if minutes is None:
        return
    target = _target(room, member, name, "ban")
    if target is None:
        return
    if _shared_by_everyone(target.address):
        room.send_to(
            member,
            messages.error(
                f"{target.name} connects from this machine, whose address every local client shares: "
                "it cannot be banned. Use /kick or /mute."
            ),
        )
        return
    if room.moderation.full(OrderKind.BAN):
        room.send_to(member, messages.error("There are too many bans: lift some with /unban first."))
        return
    others = [n for n in room.sharing(target.address) if name_key(n) != name_key(target.name)]
    confirmation = f"ban {name_key(target.name)} {target.address} {minutes} {reason}"
    if others and member.confirming != confirmation:
        member.confirming = confirmation
        room.send_to(member, messages.system(_sharing_warning(target.name, others)))
        return
    member.confirming = None
    now = room.moderation.clock()
    room.give(timed(OrderKind.BAN, member.name, target.name, minutes, now, reason=reason, address=target.address))


def bans(room: Room, member: Operator, arg: str) -> None:
    in_force = room.moderation.bans()
    if not in_force:
        room.send_to(member, messages.system("No bans."))
        return
    now = room.moderation.clock()
    lines = [f"Bans ({len(in_force)}):"]
    for order in in_force:
        left = order.minutes_left(now)
        lasting = "until lifted" if left is None else f"{left} minute{'' if left == 1 else 's'} left"
        lines.append(f"  {order.address}  {order.name}: {order.reason or 'no reason given'} ({lasting}, by {order.by})")
    for line in lines:
        room.send_to(member, messages.system(line))


def unban(room: Room, member: Operator, arg: str) -> None:
    if not arg:
        raise WrongUsage
    matching = room.moderation.bans_matching(arg)
    if not matching:
        room.send_to(member, messages.error(f"No ban on {arg}. Type /bans for the list."))
        return
    for order in matching:
        room.give(Order(OrderKind.UNBAN, member.name, order.name, address=order.address))


def mute(room: Room, member: Operator, arg: str) -> None:
    name, minutes, rest = _name_minutes_rest(room, member, arg, DEFAULT_MUTE_MINUTES)
    if minutes is None:
        return
    if rest:
        raise WrongUsage  # a mute has no reason: that text was meant as something else
    target = _target(room, member, name, "mute")
    if target is None:
        return
    if room.moderation.full(OrderKind.MUTE):
        room.send_to(member, messages.error("There are too many mutes: lift some with /unmute first."))
        return
    room.give(timed(OrderKind.MUTE, member.name, target.name, minutes, room.moderation.clock()))


def unmute(room: Room, member: Operator, arg: str) -> None:
    if not arg:
        raise WrongUsage
    muted = room.moderation.mute_on(arg)
    if muted is None:
        room.send_to(member, messages.error(f"{arg} is not muted."))
        return
    room.give(Order(OrderKind.UNMUTE, member.name, muted.name))


def topic(room: Room, member: Operator, arg: str) -> None:
    room.give(Order(OrderKind.TOPIC, member.name, reason=arg))


def say(room: Room, member: Operator, arg: str) -> None:
    if not arg:
        raise WrongUsage
    room.give(Order(OrderKind.SAY, member.name, reason=arg))


# -- helpers -------------------------------------------------------------------


def _target(room: Room, member: Operator, name: str, command: str) -> "Whois | None":
    """The member an order of ``command`` is about, if it may be given; else None, and the operator is told why."""
    if not name:
        raise WrongUsage
    target = room.whois(name)
    problem = None
    if target is None:
        problem = f"No user named {name} is online."
    elif name_key(target.name) == name_key(member.name):
        problem = f"You cannot {command} yourself."
    elif target.operator and not member.console:
        problem = f"{target.name} is an operator: only the server's console can {command} an operator."
    if problem is not None:
        room.send_to(member, messages.error(problem))
        return None
    return target


def _name_minutes_rest(room: Room, member: Operator, arg: str, default: int) -> "tuple[str, int | None, str]":
    """``NAME [minutes] [rest]`` split up; minutes None (the operator told why) if they are no whole number in range.

    Minutes are ASCII digits. A word after the name that starts like a
    number (``-1``, ``1e9``, ``5m``, ``²``) is a mistake, not the start of a
    reason; any other word starts the rest.
    """
    name, _, rest = arg.partition(" ")
    first, _, after = rest.strip().partition(" ")
    if not first[:2].lstrip("+-")[:1].isdigit():
        return name, default, rest.strip()  # no minutes given
    if not (first.isascii() and first.isdigit()) or int(first) > MAX_MINUTES:
        room.send_to(member, messages.error(f"Minutes are a whole number from 0 to {MAX_MINUTES} (a year); 0 lasts until lifted."))
        return name, None, ""
    return name, int(first), after.strip()


def _shared_by_everyone(address: "str | None") -> bool:
    """Whether ``address`` is one that every client on the server's own machine has (loopback)."""
    return address is None or is_loopback(address)


def _sharing_warning(name: str, others: "list[str]") -> str:
    shown = ", ".join(others[:SHARING_NAMES_SHOWN]) + (" and more" if len(others) > SHARING_NAMES_SHOWN else "")
    count = "1 other member" if len(others) == 1 else f"{len(others)} other members"
    return (
        f"{name} shares an address with {count} online ({shown}): "
        "the ban would refuse them too when they next connect. Repeat the command to ban it."
    )


class WrongUsage(Exception):
    """Raised by a command's handler when its arguments are missing: the caller replies with the usage."""
