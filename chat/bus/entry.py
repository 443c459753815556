"""The entries of the shared room's Redis stream: what each field means, in one place.

A stream entry is a flat map from field names to strings. :class:`Entry`
is the only code that writes or reads one (``to_fields``, ``from_fields``);
the rest of the bus speaks of its attributes:

======  ==================  ================================================================
Field   ``Entry``           Meaning
======  ==================  ================================================================
``s``   ``server``          the server that added the entry (its id)
``i``   ``number``          that server's number for the entry, if it has one: how it
                            recognises an entry it already delivered itself (absent: none)
``o``   ``origin``          the sender's member number on that server; ``0``: nobody (a notice)
``t``   ``when``            when it was said, in seconds since the epoch (a float, as text)
``g``   ``log_it``          ``1``: the writing server logs the lines when they come back
                            to it (``0``: it logged them when they happened); the other
                            servers always log public lines
``l``   ``lines``           the lines, joined by ``\\n`` (a private message: its one line)
``to``  ``to_server``       present only in a private message: the server of its recipient
``n``   ``recipient``       a private message's recipient, by name
``e``   ``elsewhere_only``  ``1``: for the other servers only (the writer's members know)
``r``   ``about``           in a notice that a server's members left, given by another
                            server that took it for dead: that server (which skips it)
======  ==================  ================================================================

Public lines, notices and private messages are all entries, so that they
keep one order. A private entry is never history: only public entries are
replayed to newcomers.

The wire format is the one servers wrote before these fields had names
(short names keep each of the stream's entries small), so servers of this
version and of the one before can share a stream while they are upgraded.
"""

import math
from dataclasses import dataclass

# Stream entry times beyond this (the year 5138) are taken for garbage: they are shown to newcomers.
LATEST_TIME = 1e11


class MalformedEntry(ValueError):
    """An entry this version cannot read: a field missing or unreadable. Someone else's fault, or an old bug's."""

    def __init__(self, fields: dict, problem: str) -> None:
        super().__init__(f"{problem} in {fields!r}")
        self.fields = fields
        self.problem = problem


@dataclass(frozen=True)
class Entry:
    """One entry of the stream; see the module's table for each field."""

    server: str
    lines: "tuple[str, ...]"
    when: float
    origin: int = 0
    log_it: bool = True
    number: "int | None" = None
    to_server: "str | None" = None
    recipient: "str | None" = None
    elsewhere_only: bool = False
    about: "str | None" = None

    @property
    def private(self) -> bool:
        return self.to_server is not None

    def to_fields(self) -> "dict[str, str]":
        fields = {"s": self.server, "o": str(self.origin), "t": repr(self.when), "g": str(int(self.log_it))}
        fields["l"] = "\n".join(self.lines)
        optional = {"i": self.number, "to": self.to_server, "n": self.recipient, "r": self.about}
        fields.update((key, str(value)) for key, value in optional.items() if value is not None)
        if self.elsewhere_only:
            fields["e"] = "1"
        return fields

    @classmethod
    def from_fields(cls, fields: "dict[str, str]") -> "Entry":
        """The entry these fields stand for; :class:`MalformedEntry` if they stand for none."""
        try:
            private = "to" in fields
            return cls(
                server=fields["s"],
                lines=tuple(fields["l"].split("\n")),
                # Private messages of the version before had no time: they are never shown late.
                when=_plausible_time(fields["t"]) if "t" in fields or not private else 0.0,
                origin=int(fields["o"]),
                log_it=fields.get("g") == "1",
                number=int(fields["i"]) if "i" in fields else None,
                to_server=fields.get("to"),
                recipient=fields["n"] if private else None,
                elsewhere_only=fields.get("e") == "1",
                about=fields.get("r"),
            )
        except KeyError as error:
            raise MalformedEntry(fields, f"no field {error}") from None
        except (ValueError, TypeError, AttributeError) as error:
            raise MalformedEntry(fields, str(error)) from None


def _plausible_time(text: str) -> float:
    when = float(text)
    if not (math.isfinite(when) and 0 <= when < LATEST_TIME):
        raise ValueError(f"time {text!r}")
    return when
