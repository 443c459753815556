"""Properties of the pure code that must hold for any input at all (hypothesis).

Inputs are kept small and examples few, so the file takes about a second: a
framer limit of a few bytes meets its edge cases in short streams, and the
exact edges (at the limit, one over it) have unit tests of their own.
"""

import unicodedata

from hypothesis import given, settings
from hypothesis import strategies as st

from chat.core.framing import LineFramer, LineTooLong, decode_line
from chat.core.ratelimit import TokenBucket
from chat.core.text import sanitize

# Few examples, and no deadline: a loaded machine must not fail a property for being slow.
QUICK = settings(max_examples=40, deadline=None)

BIDI_CONTROLS = set("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200e\u200f\u061c\u2028\u2029")

# Bytes rich in what matters to a framer: newlines, carriage returns, escapes, broken UTF-8.
stream_bytes = st.lists(
    st.one_of(st.binary(max_size=12), st.sampled_from([b"\n", b"\r\n", b"\x1b[", b"\xe2\x82", b"\xff"])),
    max_size=12,
).map(b"".join)


def feed_in_pieces(data: bytes, cuts: "list[int]", limit: int) -> list:
    framer = LineFramer(limit)
    events, start = [], 0
    for cut in sorted(c % (len(data) + 1) for c in cuts) + [len(data)]:
        events += framer.feed(data[start:cut])
        start = cut
    return events


@QUICK
@given(stream_bytes, st.lists(st.integers(min_value=0, max_value=10_000), max_size=8), st.integers(1, 16))
def test_the_framer_gives_the_same_events_however_the_stream_is_split(data, cuts, limit):
    assert feed_in_pieces(data, cuts, limit) == LineFramer(limit).feed(data)


@QUICK
@given(stream_bytes, st.lists(st.integers(min_value=0, max_value=10_000), max_size=8), st.integers(1, 16))
def test_the_framer_never_yields_or_holds_more_than_its_limit(data, cuts, limit):
    framer = LineFramer(limit)
    start = 0
    for cut in sorted(c % (len(data) + 1) for c in cuts) + [len(data)]:
        for event in framer.feed(data[start:cut]):
            if not isinstance(event, LineTooLong):
                assert b"\n" not in event
                assert len(event.removesuffix(b"\r")) <= limit  # the terminator does not count
        assert len(framer._partial) <= limit or framer._partial == framer._partial[:limit] + b"\r"
        start = cut


@QUICK
@given(st.binary(max_size=100), st.integers(8, 64))
def test_any_bytes_decode_to_text_that_re_encodes_within_the_limit(raw, limit):
    text = decode_line(raw, max_bytes=limit)
    encoded = text.encode("utf-8")  # no lone surrogate, or this raises
    # Each invalid sequence becomes one U+FFFD (three bytes), and a final \r goes.
    full = raw.decode("utf-8", "replace").removesuffix("\r")
    if len(full.encode("utf-8")) <= limit or "\ufffd" not in full:
        assert text == full
    else:  # the replacements made it longer than the limit: cut, at a character's end
        assert len(encoded) <= limit and full.encode("utf-8").startswith(encoded)


def is_unsafe(char: str) -> bool:
    return unicodedata.category(char) == "Cc" or char in BIDI_CONTROLS


@QUICK
@given(
    st.text(
        alphabet=st.one_of(st.characters(), st.sampled_from("\x1b[]\\;\x07\x9b\x9d\u202e\u2066\u200f\u2028\t")),
        max_size=30,
    )
)
def test_sanitized_text_has_no_control_character_escape_or_bidi_override(text):
    clean = sanitize(text)
    assert not any(is_unsafe(char) for char in clean)
    assert sanitize(clean) == clean


@QUICK
@given(st.text(alphabet=st.characters(blacklist_categories=("Cc", "Cf", "Zl", "Zp", "Cs")), max_size=30))
def test_sanitize_leaves_ordinary_text_alone(text):
    assert sanitize(text) == text


@QUICK
@given(st.lists(st.floats(min_value=0, max_value=2, allow_nan=False), max_size=50), st.integers(1, 20))
def test_the_token_bucket_never_lets_through_more_than_burst_plus_refill(gaps, rate):
    now = [0.0]
    bucket = TokenBucket(rate, 2 * rate, clock=lambda: now[0])
    allowed = 0
    for gap in gaps:
        now[0] += gap
        allowed += bucket.allow()
    assert allowed <= 2 * rate + now[0] * rate
