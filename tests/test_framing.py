import pytest

from chat.core.framing import LineFramer, LineTooLong, decode_line, encode_line


def feed_in_pieces(data: bytes, cuts, max_line_bytes=4096) -> list:
    framer = LineFramer(max_line_bytes)
    events, start = [], 0
    for cut in [*cuts, len(data)]:
        events += framer.feed(data[start:cut])
        start = cut
    return events


def test_one_line_comes_out_without_its_newline():
    assert LineFramer().feed(b"hello\n") == [b"hello"]


def test_several_lines_in_one_chunk_all_come_out():
    assert LineFramer().feed(b"a\nbb\nccc\n") == [b"a", b"bb", b"ccc"]


def test_an_unfinished_line_waits_for_its_newline():
    framer = LineFramer()
    assert framer.feed(b"hel") == []
    assert framer.feed(b"lo") == []
    assert framer.feed(b"\nnext") == [b"hello"]
    assert framer.feed(b"\n") == [b"next"]


def test_every_split_of_a_stream_yields_the_same_lines():
    data = "héllo wörld\nsecond 🚀 line\n\nthird\n".encode()
    expected = LineFramer().feed(data)
    for i in range(len(data) + 1):
        for j in range(i, len(data) + 1):
            assert feed_in_pieces(data, [i, j]) == expected


def test_byte_by_byte_feeding_yields_the_same_lines():
    data = b"one\ntwo\r\nthree\n"
    assert feed_in_pieces(data, range(1, len(data))) == [b"one", b"two\r", b"three"]


def test_a_line_exactly_at_the_limit_is_accepted():
    assert LineFramer(5).feed(b"12345\n") == [b"12345"]


def test_a_line_exactly_at_the_limit_ending_in_a_carriage_return_and_newline_is_accepted():
    assert LineFramer(5).feed(b"12345\r\n") == [b"12345\r"]
    assert decode_line(b"12345\r") == "12345"


def test_a_line_at_the_limit_is_accepted_however_its_carriage_return_and_newline_arrive():
    data = b"12345\r\nok\n"
    for cut in range(len(data) + 1):
        assert feed_in_pieces(data, [cut], max_line_bytes=5) == [b"12345\r", b"ok"], cut


def test_a_line_one_byte_over_the_limit_is_too_long_even_before_its_carriage_return():
    assert LineFramer(5).feed(b"123456\r\n") == [LineTooLong(5)]
    assert LineFramer(5).feed(b"12345\r\r\n") == [LineTooLong(5)]


def test_a_line_over_the_limit_is_reported_once_and_dropped():
    framer = LineFramer(5)
    assert framer.feed(b"123456\nok\n") == [LineTooLong(5), b"ok"]


def test_an_over_long_line_is_reported_as_soon_as_it_passes_the_limit():
    framer = LineFramer(5)
    assert framer.feed(b"1234") == []
    assert framer.feed(b"56") == [LineTooLong(5)]
    assert framer.feed(b"789" * 1000) == []
    assert framer.feed(b"0\nafter\n") == [b"after"]


def test_a_stream_without_newlines_is_never_buffered_past_the_limit():
    framer = LineFramer(100)
    for _ in range(1000):
        framer.feed(b"x" * 1000)
        assert len(framer._partial) <= 100


def test_the_limit_must_be_positive():
    with pytest.raises(ValueError):
        LineFramer(0)


def test_decoding_drops_a_final_carriage_return():
    assert decode_line(b"hello\r") == "hello"


def test_invalid_utf8_decodes_to_replacement_characters():
    assert decode_line(b"caf\xe9 \xff") == "caf\ufffd \ufffd"


def test_invalid_utf8_near_the_limit_is_cut_to_the_limit_after_its_replacement_characters():
    # 4090 letters and 6 invalid bytes fit the 4096-byte limit, but each
    # invalid byte becomes a three-byte U+FFFD: 4108 bytes, cut back to 4096.
    assert decode_line(b"a" * 4090 + b"\xff" * 6, max_bytes=4096) == "a" * 4090 + "\ufffd" * 2


def test_a_replacement_character_that_would_cross_the_limit_is_dropped_whole():
    assert decode_line(b"a" * 4091 + b"\xff" * 5, max_bytes=4096) == "a" * 4091 + "\ufffd"


def test_a_framed_line_of_invalid_utf8_is_relayed_within_the_limit():
    (line,) = LineFramer(10).feed(b"\xff" * 10 + b"\r\n")
    text = decode_line(line, max_bytes=10)
    assert text == "\ufffd" * 3
    assert len(text.encode()) == 9


def test_valid_text_at_the_limit_is_never_cut():
    text = "é" * 2048  # two bytes each: exactly 4096
    assert decode_line(text.encode(), max_bytes=4096) == text


def test_a_character_split_between_chunks_is_decoded_whole():
    data = "🚀\n".encode()
    assert [decode_line(line) for line in feed_in_pieces(data, [1, 2, 3])] == ["🚀"]


def test_encoding_appends_a_newline():
    assert encode_line("hé") == "hé\n".encode()
