"""The client's pure parts: reading the address, describing errors, rendering lines, Tab completion."""

import colorsys
import io
import itertools
import math
import re
import socket
import zlib
from types import SimpleNamespace

import pytest
from prompt_toolkit.data_structures import Size
from prompt_toolkit.formatted_text import fragment_list_to_text
from prompt_toolkit.output import ColorDepth
from prompt_toolkit.output.vt100 import Vt100_Output
from prompt_toolkit.renderer import print_formatted_text
from prompt_toolkit.styles import Style
from prompt_toolkit.utils import get_cwidth

from chat.client.address import Address, format_address, is_local, parse_address
from chat.client.client import _quiet_about_interrupts, describe_connect_error, is_help, is_quit
from chat.client.completion import Roster, complete
from chat.client.link import describe_refusal
from chat.client.terminal import NAME_COLORS, name_style, render, wants_color, wrap
from chat.core import messages


@pytest.mark.parametrize(
    "host, port, address",
    [
        (None, None, ("localhost", 8080)),
        (None, "9000", ("localhost", 9000)),
        ("example.org", None, ("example.org", 8080)),
        ("example.org", "9000", ("example.org", 9000)),
        ("example.org:9000", None, ("example.org", 9000)),
        ("[::1]:9000", None, ("::1", 9000)),
        ("[::1]", "9000", ("::1", 9000)),
        ("[::1]", None, ("::1", 8080)),
        ("::1", None, ("::1", 8080)),
        ("fe80::1%eth0", None, ("fe80::1%eth0", 8080)),
        ("ws://localhost:8080", None, ("localhost", 8080, "ws", "/ws")),
        ("ws://[::1]:9000/", None, ("::1", 9000, "ws", "/ws")),
        ("wss://example.org", None, ("example.org", 443, "wss", "/ws")),
        ("WSS://example.org:8443/chat", None, ("example.org", 8443, "wss", "/chat")),
        ("http://localhost:8080", None, ("localhost", 8080, "ws", "/ws")),
        ("https://zany-space-8080.app.github.dev/", None, ("zany-space-8080.app.github.dev", 443, "wss", "/ws")),
        ("zany-space-8080.app.github.dev", None, ("zany-space-8080.app.github.dev", 443, "wss", "/ws")),
    ],
)
def test_addresses_are_read_in_every_accepted_form(host, port, address):
    assert parse_address(host, port) == Address(*address)


@pytest.mark.parametrize(
    "host, port, problem",
    [
        ("localhost", "http", "must be a number"),
        ("localhost", "0", "must be a number"),
        ("localhost", "٨٠", "must be a number"),
        ("localhost:70000", None, "must be a number"),
        ("localhost:", None, "must be a number"),
        ("localhost:9000", "9001", "give the port once"),
        ("[::1", None, "cannot read the address"),
        ("[localhost]:9000", None, "cannot read the address"),
        ("[::1]9000", None, "cannot read the address"),
        ("localhost:8080:junk", None, "cannot read the address 'localhost:8080:junk'"),
        (":8080", None, "the host is missing"),
        ("ftp://example.org", None, "cannot read the address"),
        ("ws://:8080", None, "the host is missing"),
        ("wss://example.org:port", None, "cannot read the address"),
        ("ws://localhost:8080", "9000", "give the port once"),
    ],
)
def test_bad_addresses_are_explained(host, port, problem):
    with pytest.raises(ValueError, match=problem.replace("(", r"\(")):
        parse_address(host, port)


@pytest.mark.parametrize(
    "argv, address",
    [
        (["--port", "9000"], ("localhost", 9000)),
        (["--host", "127.0.0.1", "--port", "9000"], ("127.0.0.1", 9000)),
        (["127.0.0.1:9000"], ("127.0.0.1", 9000)),
        (["127.0.0.1", "9000"], ("127.0.0.1", 9000)),
    ],
    ids=["port-option", "host-and-port-options", "host-colon-port", "host-and-port"],
)
def test_the_client_takes_the_address_as_the_server_does(argv, address):
    import client

    assert client.parse_args(argv).address == Address(*address)


@pytest.mark.parametrize(
    "argv, problem",
    [
        (["localhost:8080:junk"], "cannot read the address"),
        (["ftp://localhost:8080"], "cannot read the address"),
        (["ws://localhost:8080", "9000"], "give the port once"),
    ],
)
def test_an_address_that_cannot_be_read_gets_a_clear_message_and_status_2(argv, problem, capsys):
    import client

    with pytest.raises(SystemExit) as exited:
        client.main(argv)
    assert exited.value.code == 2
    assert problem in capsys.readouterr().err


def test_a_url_is_never_read_as_a_host_and_port():
    assert parse_address("https://example.org", None) == Address("example.org", 443, "wss")
    with pytest.raises(ValueError) as raised:
        parse_address("gopher://example.org", None)
    message = str(raised.value)  # not "the port must be a number, not '//example.org'"
    assert "port must be" not in message and "IPv6" not in message and "ws://" in message


def test_a_web_address_is_shown_as_the_websocket_it_opens():
    assert str(parse_address("https://zany-space-8080.app.github.dev", None)) == "wss://zany-space-8080.app.github.dev/ws"
    assert str(parse_address("ws://[::1]:9000", None)) == "ws://[::1]:9000/ws"
    assert str(parse_address("localhost:9000", None)) == "localhost:9000"


def test_an_ipv6_address_is_written_in_brackets():
    assert format_address("::1", 8080) == "[::1]:8080"
    assert format_address("127.0.0.1", 8080) == "127.0.0.1:8080"
    assert format_address("localhost", 9000) == "localhost:9000"


@pytest.mark.parametrize("host", ["localhost", "LOCALHOST", "chat.localhost", "127.0.0.1", "127.1.2.3", "::1"])
def test_loopback_hosts_are_local(host):
    assert is_local(host)


@pytest.mark.parametrize("host", ["example.org", "192.168.1.20", "10.0.0.1", "::2", "localhost.example.org"])
def test_other_hosts_are_not_local(host):
    assert not is_local(host)


def test_a_refused_local_connection_suggests_starting_the_server():
    message = describe_connect_error(ConnectionRefusedError(111, "refused"), Address("localhost", 8080))
    assert "localhost:8080" in message and "Start it with: python server.py" in message
    message = describe_connect_error(ConnectionRefusedError(111, "refused"), Address("::1", 9000))
    assert "[::1]:9000" in message and "Start it with: python server.py --port 9000" in message


def test_a_refused_remote_connection_does_not_suggest_starting_a_server_here():
    message = describe_connect_error(ConnectionRefusedError(111, "refused"), Address("192.168.1.20", 8080))
    assert "192.168.1.20:8080" in message and "python server.py" not in message


def test_an_unknown_host_is_named():
    message = describe_connect_error(socket.gaierror(-2, "Name or service not known"), Address("nowhere.invalid", 8080))
    assert "nowhere.invalid" in message


def test_a_codespaces_host_with_a_tcp_port_gets_a_hint_to_use_wss():
    message = describe_connect_error(TimeoutError(), Address("zany-space-8080.app.github.dev", 8080))
    assert "Codespaces forwards HTTPS only" in message and "wss://zany-space-8080.app.github.dev" in message


@pytest.mark.parametrize(
    "url, status, hint",
    [
        ("wss://zany-space-8080.app.github.dev/ws", 401, "Is port 8080 Public"),
        ("wss://zany-space-8080.app.github.dev/ws", 302, "--token"),
        ("wss://zany-space-8080.app.github.dev/ws", 502, "Is the server running in the Codespace?"),
        ("ws://localhost:8080/chat", 404, "Its WebSocket is at /ws."),
        ("ws://localhost:8080/ws", 503, "The server is full"),
    ],
)
def test_a_web_address_that_refuses_says_what_to_check(url, status, hint):
    message = describe_refusal(url, status)
    assert message.startswith(f"{url} refused the connection (HTTP {status}).") and hint in message


@pytest.mark.parametrize("text", ["quit", " QUIT ", "Quit", "/quit", "/QUIT", "/quit some words", "/quit\tbye"])
def test_quit_and_slash_quit_with_anything_after_it_leave(text):
    assert is_quit(text)


@pytest.mark.parametrize("text", ["quit now", "//quit", "/quitter", "hello", "", "/msg Ann /quit"])
def test_other_lines_do_not_leave(text):
    assert not is_quit(text)


def test_help_is_recognised_as_the_server_recognises_it():
    assert is_help("/help") and is_help("/HELP me") and not is_help("//help") and not is_help("help")


def test_without_color_a_line_is_printed_as_received():
    assert render("Ann: hi", color=False) == [("", "📨 Ann: hi")]
    assert render("[SYSTEM] x", color=False) == [("", "📨 [SYSTEM] x")]


def test_a_name_gets_the_same_color_every_time_and_the_text_keeps_its_own():
    assert render("Ann: hi", color=True) == [("", "📨 "), (name_style("Ann"), "Ann"), ("", ": hi")]
    assert name_style("Ann") == name_style("ann")
    assert name_style("Ann").endswith(" bold")


CLASS = "Ann Bob Cid Dee Eve Fay Gus Hal Ivy Jon Kim Lee Max Ned Oli Pam Quinn Ray Sam Tom Uma Vic Wes Xan Yas Zoe Alex Maria Sofia Noah"


@pytest.mark.parametrize("names", [CLASS.split(), [f"User_{port}" for port in range(5000, 5030)]], ids=["names", "ports"])
def test_thirty_typical_names_get_many_different_colors(names):
    # 24 colors for 30 names: about 17 different ones to expect (7 colors gave at most 7).
    assert len({name_style(name) for name in names}) >= 15


def test_a_name_keeps_its_color_in_every_session_and_on_the_page():
    assert name_style("Ann") == name_style("ANN") == "#5faf5f bold"
    # The page's rule: CRC-32 of the name in lower case, modulo the number of colors.
    assert name_style("Bob") == NAME_COLORS[zlib.crc32(b"bob") % len(NAME_COLORS)] + " bold"


def linear_rgb(color: str) -> "list[float]":
    """The linear red, green and blue of "#rrggbb" (sRGB), from 0 to 1."""
    channels = [int(color[i : i + 2], 16) / 255 for i in (1, 3, 5)]
    return [c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]


def luminance(color: str) -> float:
    """The relative luminance of "#rrggbb", as WCAG 2 computes contrast from it."""
    r, g, b = linear_rgb(color)
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def lab(color: str) -> "tuple[float, float, float]":
    """CIELAB (D65) of "#rrggbb": distances in it are differences as people see them."""
    r, g, b = linear_rgb(color)
    x = (0.4124 * r + 0.3576 * g + 0.1805 * b) / 0.95047
    y = 0.2126 * r + 0.7152 * g + 0.0722 * b
    z = (0.0193 * r + 0.1192 * g + 0.9505 * b) / 1.08883
    f = lambda t: t ** (1 / 3) if t > 0.008856 else 7.787 * t + 16 / 116  # noqa: E731
    return 116 * f(y) - 16, 500 * (f(x) - f(y)), 200 * (f(y) - f(z))


def test_every_name_color_is_readable_on_a_dark_and_on_a_light_background():
    for color in NAME_COLORS:
        assert (luminance(color) + 0.05) / 0.05 >= 2.5, f"{color} is too dark for a black background"
        assert 1.05 / (luminance(color) + 0.05) >= 2.5, f"{color} is too light for a white background"


def test_the_name_colors_differ_from_one_another():
    assert len(NAME_COLORS) >= 24
    for one, other in itertools.combinations(NAME_COLORS, 2):
        assert math.dist(lab(one), lab(other)) >= 12, f"{one} and {other} look alike"


def printed(style: str, depth: ColorDepth) -> str:
    """What prompt_toolkit writes to a terminal for a word in ``style``, at a color depth."""
    stream = io.StringIO()
    output = Vt100_Output(stream, lambda: Size(24, 80), term="xterm")
    print_formatted_text(output, [(style, "Ann")], Style([]), color_depth=depth)
    output.flush()
    return stream.getvalue()


def test_no_name_color_looks_like_a_notice_an_error_or_a_private_message():
    for color in NAME_COLORS:
        hue = colorsys.rgb_to_hls(*(int(color[i : i + 2], 16) / 255 for i in (1, 3, 5)))[0] * 360
        assert 75 <= hue <= 250, f"{color} is near yellow, red or magenta"
        # A 16-color terminal gets the nearest of its own colors: never yellow (33, 93), red (31, 91)
        # or magenta (35, 95).
        assert not re.search(r"\x1b\[(?:[0-9;]*;)?(?:3[135]|9[135])[;m]", printed(color, ColorDepth.DEPTH_4_BIT)), color


def test_a_256_color_terminal_shows_every_name_color_as_it_is():
    # prompt_toolkit's default depth: each color of xterm's cube is its own entry, no two alike.
    codes = [re.search(r"38;5;(\d+)", printed(color, ColorDepth.DEPTH_8_BIT)).group(1) for color in NAME_COLORS]
    levels = (0, 95, 135, 175, 215, 255)  # of each channel in the cube, whose entries are 16 to 231
    shown = ["#%02x%02x%02x" % tuple(levels[(int(code) - 16) // 6**i % 6] for i in (2, 1, 0)) for code in codes]
    assert shown == list(NAME_COLORS)


def test_system_error_and_private_lines_have_colors_of_their_own():
    assert render("[SYSTEM] x", True) == [("", "📨 "), ("ansiyellow", "[SYSTEM] x")]
    assert render("[ERROR] x", True) == [("", "📨 "), ("ansired", "[ERROR] x")]
    assert render("[PM from Ann] x", True) == [("", "📨 "), ("ansimagenta", "[PM from Ann] x")]


def test_an_action_colors_the_name():
    assert render("* Ann waves", True) == [("", "📨 * "), (name_style("Ann"), "Ann"), ("", " waves")]


def test_text_from_the_network_never_becomes_a_style():
    line = "Ann: <b>[ZeroWidthEscape]</b> class:bold"
    assert [style for style, _ in render(line, True)] == ["", name_style("Ann"), ""]
    assert "".join(text for _, text in render(line, True)) == "📨 " + line


def rows(line, columns: int) -> "list[str]":
    """The rows terminal.wrap cuts ``line`` (text or formatted text) into."""
    return fragment_list_to_text(wrap(line, columns)).split("\n")


def test_a_line_that_fits_is_left_as_it_is():
    line = render("Ann: hi   there", True)
    assert wrap(line, 80) == line
    assert rows("📨 Ann: hi there", 16) == ["📨 Ann: hi there"]  # exactly as wide as the row


def test_several_lines_given_at_once_are_each_wrapped_on_their_own():
    # The server's console shows its log in batches of lines.
    batch = "[22:14:14] 🚀 Chat Server Started\n[22:14:14] 📍 Listening on 127.0.0.1:43167\n[22:14:14] ⏳ Waiting"
    assert rows(batch, 40) == [
        "[22:14:14] 🚀 Chat Server Started",
        "[22:14:14] 📍 Listening on",
        "           127.0.0.1:43167",
        "[22:14:14] ⏳ Waiting",
    ]
    assert rows(batch, 100) == batch.split("\n")


def test_a_long_line_is_cut_at_spaces_and_its_other_rows_start_under_its_second_word():
    assert rows("📨 Ann: the quick brown fox jumps over", 16) == [
        "📨 Ann: the",
        "   quick brown",
        "   fox jumps",
        "   over",
    ]
    assert rows("[12:34:56] 💡 Keys: Tab completes commands", 30) == [
        "[12:34:56] 💡 Keys: Tab",
        "           completes commands",
    ]


def test_the_spaces_where_a_row_ends_are_dropped_and_those_inside_a_row_kept():
    assert rows("📨 [SYSTEM] /help     show this list", 20) == ["📨 [SYSTEM] /help", "   show this list"]
    assert rows("📨 a  b" + " " * 30 + "c", 12) == ["📨 a  b", "   c"]


def test_a_word_longer_than_a_row_goes_on_where_it_is_and_is_cut_where_rows_end():
    assert rows("📨 Ann: " + "x" * 20, 12) == ["📨 Ann: xxxx", "   xxxxxxxxx", "   xxxxxxx"]


def test_wide_characters_take_two_cells():
    assert rows("📨 Ann: 中文字 🎉🎉🎉🎉", 14) == ["📨 Ann: 中文字", "   🎉🎉🎉🎉"]
    assert rows("📨 " + "🎉" * 7, 10) == ["📨 🎉🎉🎉", "   🎉🎉🎉", "   🎉"]  # never half of one on a row


def test_a_lead_half_as_wide_as_the_row_is_not_indented_under():
    assert rows("[12:34:56] a few words here", 20) == ["[12:34:56] a few", "words here"]


def test_at_any_width_no_row_is_too_wide_and_no_word_is_cut():
    lines = [
        "📨 [SYSTEM] /users          list who is online (@ marks operators)",
        "📨 [SYSTEM] /ban NAME [minutes] [reason]  remove someone and refuse their address (default 60 minutes; 0: until /unban)",
        "[12:34:56] 💡 Keys: Tab completes commands and names, Up and Down recall what you sent, Ctrl+L clears the screen, Ctrl+D leaves.",
    ]
    for columns in range(14, 81):  # from where the longest word fits in a row
        for line in lines:
            cut = rows(line, columns)
            assert all(get_cwidth(row) <= columns for row in cut), (columns, cut)
            assert not any(row.endswith(" ") for row in cut), (columns, cut)
            assert [word for row in cut for word in row.split()] == line.split(), (columns, cut)


def test_every_character_keeps_its_style():
    line = render("* Ann waves at everyone in the room", True)
    cut = wrap(line, 14)
    assert cut == [
        ("", "📨 * "),
        (name_style("Ann"), "Ann"),
        ("", " waves\n   at everyone\n   in the room"),
    ]
    system = wrap(render("[SYSTEM] the room is closing", True), 20)
    assert system == [("", "📨 "), ("ansiyellow", "[SYSTEM] the room"), ("", "\n   "), ("ansiyellow", "is closing")]


class FakeStream(io.StringIO):
    def __init__(self, tty):
        super().__init__()
        self.tty = tty

    def isatty(self):
        return self.tty


def test_color_is_used_only_on_a_terminal_without_no_color(monkeypatch):
    monkeypatch.delenv("NO_COLOR", raising=False)
    assert wants_color(False, FakeStream(tty=True))
    assert not wants_color(False, FakeStream(tty=False))
    assert not wants_color(True, FakeStream(tty=True))
    monkeypatch.setenv("NO_COLOR", "1")
    assert not wants_color(False, FakeStream(tty=True))


def roster_after(*lines: str) -> Roster:
    roster = Roster()
    for line in lines:
        roster.update(line)
    return roster


def test_the_welcome_tells_the_client_its_own_name_and_joins_add_others():
    roster = roster_after(messages.welcome("Bob", 0), messages.joined("ann"), messages.joined("Cid"))
    assert roster.me == "Bob"
    assert roster.others() == ["ann", "Cid"]  # sorted regardless of case, without us


def test_leaves_and_renames_keep_the_names_current():
    roster = roster_after(
        messages.welcome("Bob", 0),
        messages.joined("Ann"),
        messages.joined("Cid"),
        messages.left("Ann"),
        messages.renamed("Cid", "Cyd"),
        messages.renamed("Bob", "Robert"),
    )
    assert roster.me == "Robert"
    assert roster.others() == ["Cyd"]


def test_a_rename_back_to_an_earlier_name_leaves_no_trace_of_the_name_in_between():
    roster = roster_after(messages.welcome("Ann", 1), messages.joined("Cid"), messages.renamed("Ann", "Bob"))
    assert roster.me == "Bob" and roster.others() == ["Cid"]
    roster.update(messages.renamed("Bob", "Ann"))
    assert roster.me == "Ann" and roster.others() == ["Cid"]
    roster.update(messages.renamed("Cid", "Bob"))  # someone else may take it now
    assert roster.me == "Ann" and roster.others() == ["Bob"]


def test_a_rename_that_changes_only_the_case_keeps_the_person_spelled_the_new_way():
    roster = roster_after(messages.welcome("Bob", 1), messages.joined("Cid"), messages.renamed("Cid", "CID"))
    assert roster.others() == ["CID"]
    roster.update(messages.renamed("CID", "Cid"))
    assert roster.others() == ["Cid"]


def test_a_users_reply_replaces_what_was_known():
    roster = roster_after(
        messages.welcome("Bob", 2), messages.joined("Gone"), messages.system("Online (3): Ann, Bob, Cid")
    )
    assert roster.others() == ["Ann", "Cid"]


def test_people_who_speak_are_known_to_be_online():
    roster = roster_after(messages.welcome("Bob", 3), "Ann: hi", "* Cid waves", "[PM from Dee] psst")
    assert roster.others() == ["Ann", "Cid", "Dee"]


def test_other_notices_and_errors_change_nothing():
    roster = roster_after(
        messages.welcome("Bob", 0),
        messages.system("You are sending too fast. Lines are being dropped."),
        messages.error("No user named Zed is online."),
        messages.system("Zed: not a chat line"),
    )
    assert roster.others() == []


def test_before_the_welcome_the_client_has_no_name():
    assert Roster().me is None


COMMANDS = {"nick": "NAME", "users": "", "msg": "NAME TEXT", "me": "TEXT", "help": "", "quit": ""}


@pytest.mark.parametrize(
    "before_cursor, words",
    [
        ("/us", ["/users"]),
        ("/m", ["/me ", "/msg "]),
        ("/MS", ["/msg "]),
        ("/", ["/help", "/me ", "/msg ", "/nick ", "/quit", "/users"]),
        ("/x", []),
        ("an", ["Ann: ", "anna: "]),
        ("/msg an", ["Ann ", "anna "]),
        ("hello B", ["Bob "]),
        ("", []),
        ("hello ", []),
        ("hi /us", []),
    ],
)
def test_tab_offers_commands_at_the_start_and_names_anywhere(before_cursor, words):
    assert complete(before_cursor, ["Ann", "anna", "Bob"], COMMANDS) == words


def test_a_dropped_keyboard_interrupt_is_not_reported_but_other_errors_are():
    reported = []
    hook = _quiet_about_interrupts(reported.append)
    for error in (KeyboardInterrupt(), ValueError("a bug")):
        hook(SimpleNamespace(exc_value=error))
    assert [type(report.exc_value) for report in reported] == [ValueError]


@pytest.mark.parametrize(
    "address, codespace, sent",
    [
        ("wss://me-8080.app.github.dev", None, True),  # a laptop: the token given for one's own Codespace
        ("https://me-8080.app.github.dev", "me", True),
        ("wss://classmate-8080.app.github.dev", "me", False),  # inside a Codespace: only its own
        ("ws://me-8080.app.github.dev:80", None, False),  # never in the clear
        ("wss://example.org", None, False),
    ],
)
def test_github_token_goes_only_over_tls_to_ones_own_codespace(monkeypatch, address, codespace, sent):
    import client

    monkeypatch.setenv("GITHUB_TOKEN", "ghu_secret")
    if codespace:
        monkeypatch.setenv("CODESPACE_NAME", codespace)
    else:
        monkeypatch.delenv("CODESPACE_NAME", raising=False)
    assert (client.parse_args([address]).token == "ghu_secret") is sent


def test_the_first_wait_before_reconnecting_is_a_second_unless_chosen():
    import client

    assert client.parse_args([]).retry_first == 1.0
    assert client.parse_args(["--retry-first", "0.05"]).retry_first == 0.05


@pytest.mark.parametrize("value", ["0", "-1", "nan", "inf", "soon"])
def test_a_first_wait_that_is_not_a_positive_number_of_seconds_is_refused(value, capsys):
    import client

    with pytest.raises(SystemExit) as exited:
        client.parse_args(["--retry-first", value])
    assert exited.value.code == 2
    assert "--retry-first: must be a number of seconds greater than 0" in capsys.readouterr().err
