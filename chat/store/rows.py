"""The rows of the store's SQLite file: what each column holds, and what a reader accepts.

The store keeps what :mod:`chat.core.history` keeps, the room's public
lines, and what :class:`chat.core.moderation.Moderation` keeps: the topic,
the bans and the mutes. Its file may be edited by hand, or be some other
program's, so a row is data to check, never a line to pass on: as in the
shared room's stream (:mod:`chat.bus.entry`, whose rules these are), a row
holds what was said (its kind, who said it, the text) and the line is
made again from it; an order is kept as its fields and read back with
:func:`chat.bus.entry.order_of`. A row that fits no rule is skipped whole.

Table ``lines``: one row per public line, oldest first (by ``id``).

========  ============================================================================
Column    Meaning
========  ============================================================================
``id``    its number, in the order the lines were said
``said``  when, in seconds since the epoch (``time.time()``)
``kind``  ``chat``, ``action``, ``renamed`` or ``order`` (an operator's, whose
          notice is the line)
``name``  who said it (chat, action), the old name (renamed), or the operator who
          gave the order (a user name, or ``Server``)
``body``  what was said (chat, action), the new name (renamed), or the order's
          fields (see below)
========  ============================================================================

Table ``standing``: what orders leave behind, one row each.

=========  ===========================================================================
Column     Meaning
=========  ===========================================================================
``key``    ``topic``; ``ban ADDRESS``; or ``mute NAME`` (the name as
           :func:`chat.core.text.name_key` makes it)
``body``   the order that left it: a TOPIC, BAN or MUTE order's fields
``until``  when it ends (``time.time()``); NULL: until lifted. Kept apart so that
           those over can be deleted without reading them
=========  ===========================================================================

An order's fields are those of :func:`chat.bus.entry.order_fields`, names
and values separated by tabs: ``"do\\tban\\tn\\tAnn\\tw\\tBob..."`` (the
only tabs: a reason is sanitized, and sanitizing turns tabs into spaces).

Join and leave notices are not kept (the history does not keep them),
and private messages never reach the store: they never go through the
room's history. Like :mod:`chat.core`, this module does no I/O.
"""

import math
import re
from dataclasses import dataclass
from typing import NamedTuple

from chat.bus.entry import (
    LATEST_TIME,
    ORDER_FIELDS,
    Kind,
    MalformedEntry,
    UnsharableLine,
    order_fields,
    order_of,
    quoted,
    render,
)
from chat.core import messages
from chat.core.commands import clean
from chat.core.moderation import Order, OrderKind
from chat.core.text import name_key, name_problem

# What the store keeps of a line, by kind: the history's kinds, orders apart.
_LINE_KINDS = {Kind.CHAT, Kind.ACTION, Kind.RENAMED}
TOPIC_KEY = "topic"
_RENAMED = re.compile(re.escape(messages.renamed("\0", "\1")).replace("\0", "([A-Za-z0-9_-]+)").replace("\1", "([A-Za-z0-9_-]+)"))


class MalformedRow(ValueError):
    """A row the store does not accept, and why: the file's fault (edited, or another program's).

    ``problem`` is short and quotes at most a few dozen characters of any
    value, escaped: it is fit for a log line whatever the row held.
    """

    def __init__(self, problem: str) -> None:
        super().__init__(problem)
        self.problem = problem


class LineRow(NamedTuple):
    """One row of ``lines``, without its id (a tuple: the writer hands it to SQLite as it is)."""

    said: float
    kind: str
    name: str
    body: str


@dataclass(frozen=True)
class StandingRow:
    """One row of ``standing``; ``body`` None: the row under ``key`` is to be deleted."""

    key: str
    body: "str | None"
    until: "float | None" = None


def line_row(line: str, when: float) -> "LineRow | None":
    """The row that keeps public ``line``, said at ``when``; None for a line the history does not keep.

    :class:`chat.bus.entry.UnsharableLine` for a line of no known kind: our
    bug. Run for every line said (by the writer thread), so it is cheap:
    the lines come from the room, and :func:`line_of` checks what is read.
    """
    kind, name = messages.classify(line)
    if kind is messages.Kind.CHAT:
        return LineRow(when, "chat", name, line[len(name) + 2 :])
    if kind is messages.Kind.ACTION:
        return LineRow(when, "action", name, line[len(name) + 3 :])
    if kind is messages.Kind.SYSTEM:
        if messages.is_coming_or_going(line):
            return None
        renamed = _RENAMED.fullmatch(line)
        if renamed is not None:
            return LineRow(when, "renamed", renamed.group(1), renamed.group(2))
    raise UnsharableLine(line)  # a private line, or a notice the store was not taught


def order_row(order: Order, when: float) -> LineRow:
    """The row that keeps ``order``'s notice in the history (the order itself, its notice made again)."""
    return LineRow(when, Kind.ORDER.value, order.by, order_text(order))


def standing_row(order: Order) -> "StandingRow | None":
    """What ``order`` leaves in ``standing``: a row to write, a key to delete (body None), or None (a kick, a notice)."""
    if order.kind is OrderKind.TOPIC:
        return StandingRow(TOPIC_KEY, order_text(order) if order.reason else None)
    if order.kind in (OrderKind.BAN, OrderKind.UNBAN):
        if order.address is None:
            return None
        key = f"ban {order.address}"
    elif order.kind in (OrderKind.MUTE, OrderKind.UNMUTE):
        key = f"mute {name_key(order.name)}"
    else:
        return None
    if order.kind in (OrderKind.UNBAN, OrderKind.UNMUTE):
        return StandingRow(key, None)
    return StandingRow(key, order_text(order), order.until)


def order_text(order: Order) -> str:
    """``order`` as a ``body`` keeps it: its fields, names and values separated by tabs."""
    return "\t".join(part for item in order_fields(order).items() for part in item)


def line_of(said, kind, name, body, max_bytes: int) -> "tuple[float, str]":
    """The line a row of ``lines`` keeps, and when it was said; :class:`MalformedRow` if the row keeps none.

    The columns are taken as SQLite returned them, of whatever type: a
    column may hold anything in a file edited by hand.
    """
    when = _time(said)
    kind_text, name, body = _text(kind, "kind", max_bytes), _text(name, "name", max_bytes), _text(body, "body", max_bytes)
    try:
        kind = Kind(kind_text)
    except ValueError:
        kind = None
    if kind is Kind.ORDER:
        return when, order_from(body).notice()
    if kind not in _LINE_KINDS:
        raise MalformedRow(f"kind {quoted(kind_text)}")
    _name(name, "name")
    if kind is Kind.RENAMED:
        text = _name(body, "new name")
    else:
        text = clean(body)  # as a client's line: no control characters, escapes, bidi overrides
        if text is None:
            raise MalformedRow("blank text")
    return when, render(kind, name, text)


def standing_of(key, body, max_bytes: int) -> Order:
    """The order a row of ``standing`` keeps, checked to be kept where it belongs; :class:`MalformedRow` if none."""
    key, body = _text(key, "key", max_bytes), _text(body, "body", max_bytes)
    order = order_from(body)
    if order.kind is OrderKind.TOPIC:
        where = TOPIC_KEY
    elif order.kind is OrderKind.BAN:
        where = f"ban {order.address}"
    elif order.kind is OrderKind.MUTE:
        where = f"mute {name_key(order.name)}"
    else:
        raise MalformedRow(f"{order.kind.value}: not an order that is kept")
    if key != where:
        raise MalformedRow(f"kept under {quoted(key)}, not {quoted(where)}")
    return order


def order_from(body: str) -> Order:
    """The order whose fields ``body`` holds; :class:`MalformedRow` if it holds none."""
    parts = body.split("\t")
    if len(parts) % 2:
        raise MalformedRow(f"not an order's fields: {quoted(body)}")
    fields = dict(zip(parts[::2], parts[1::2]))
    if len(fields) != len(parts) // 2:
        raise MalformedRow(f"a field twice: {quoted(body)}")
    unknown = sorted(set(fields) - ORDER_FIELDS)
    if unknown:
        raise MalformedRow(f"an order has no field {quoted(unknown[0])}")
    try:
        return order_of(fields)
    except MalformedEntry as error:
        raise MalformedRow(error.problem) from None


def _text(value, what: str, max_bytes: int) -> str:
    if not isinstance(value, str):
        raise MalformedRow(f"{what} is {type(value).__name__}, not text")
    if len(value) > max_bytes or len(value.encode(errors="replace")) > max_bytes:
        raise MalformedRow(f"{what} of over {max_bytes} bytes")
    return value


def _time(value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise MalformedRow(f"said is {type(value).__name__}, not a number")
    if not (math.isfinite(value) and 0 <= value < LATEST_TIME):
        raise MalformedRow(f"said {quoted(value)}")
    return float(value)


def _name(value: str, what: str) -> str:
    problem = name_problem(value)
    if problem:
        raise MalformedRow(f"{what} {quoted(value)}: {problem}")
    return value
