"""Making untrusted text safe to show, and the rules for user names.

Anything a peer sends ends up on somebody's terminal. Control characters and
escape sequences could clear that screen, retitle the window, move the cursor
to overwrite earlier lines or, on some terminals, do worse; Unicode
bidirectional overrides can make text read differently from what it is.
:func:`sanitize` removes all of them. The server applies it before relaying or
logging, and the client applies it again before printing, because it may be
talking to a server it does not trust.
"""

import re

# Whole escape sequences are removed, not just their ESC byte, so that no
# debris such as "[31m" is left behind. Every lone control character that is
# not part of a recognised sequence is caught by the last alternatives.
_UNSAFE = re.compile(
    r"""
      \x1b\[ [0-?]* [ -/]* [@-~]?           # CSI: ESC [ params intermediates final
    | \x1b\] [^\x07\x1b]* (?:\x07|\x1b\\)?  # OSC: ESC ] ... ended by BEL or ST
    | \x1b [PX^_] [^\x1b]* (?:\x1b\\)?      # DCS, SOS, PM, APC strings, ended by ST
    | \x1b [ -/]* [0-~]?                    # any other ESC sequence
    | [\x00-\x1f\x7f-\x9f]                  # C0 controls, DEL, C1 controls
    | [\u202a-\u202e\u2066-\u2069]          # bidirectional embeddings, overrides, isolates
    | [\u200e\u200f\u061c]                  # bidirectional marks
    | [\u2028\u2029]                        # line and paragraph separators
    """,
    re.VERBOSE,
)

NAME_MAX_CHARS = 20
_VALID_NAME = re.compile(r"[A-Za-z0-9_-]{1,%d}" % NAME_MAX_CHARS)
# Names that imitate the server's own labels ([SYSTEM], [ERROR], [PM ...], the
# server), alone or followed only by digits, "_" or "-": "SYSTEM_", "Error-2".
_RESERVED_NAME = re.compile(r"(?:system|error|pm|server)[0-9_-]*", re.IGNORECASE)


def sanitize(text: str) -> str:
    """Return ``text`` without control characters, escape sequences or bidi overrides.

    A tab becomes a space. Printable text, the common case, is returned as is.
    """
    if text.isprintable():  # every character removed below is unprintable
        return text
    return _UNSAFE.sub("", text.replace("\t", " "))


def name_problem(name: str) -> "str | None":
    """Say why ``name`` cannot be a user name, or return None if it can.

    Names are ASCII letters, digits, ``_`` and ``-`` so that they are easy to
    type in ``/msg`` and cannot imitate one another with look-alike letters.
    """
    if not _VALID_NAME.fullmatch(name):
        return (
            f"Names are 1 to {NAME_MAX_CHARS} characters, each an ASCII letter (A-Z, a-z), "
            "a digit, '_' or '-'."
        )
    if _RESERVED_NAME.fullmatch(name):
        return f"The name {name} is reserved."
    return None


def name_key(name: str) -> str:
    """The form of a name used to compare names: unique regardless of case."""
    return name.casefold()
