"""The client's pure parts: reading the address, describing errors, rendering lines."""

import io
import socket

import pytest
from colorama import Fore, Style

from chat.client.client import describe_connect_error, parse_address
from chat.client.terminal import name_color, render, wants_color


@pytest.mark.parametrize(
    "host, port, address",
    [
        (None, None, ("localhost", 8080)),
        ("example.org", None, ("example.org", 8080)),
        ("example.org", "9000", ("example.org", 9000)),
        ("example.org:9000", None, ("example.org", 9000)),
        ("[::1]:9000", None, ("::1", 9000)),
        ("[::1]", "9000", ("::1", 9000)),
        ("::1", None, ("::1", 8080)),
    ],
)
def test_addresses_are_read_in_every_accepted_form(host, port, address):
    assert parse_address(host, port) == address


@pytest.mark.parametrize(
    "host, port, problem",
    [
        ("localhost", "http", "must be a number"),
        ("localhost", "0", "must be a number"),
        ("localhost:70000", None, "must be a number"),
        ("localhost:9000", "9001", "give the port once"),
        ("[::1", None, "cannot read the address"),
    ],
)
def test_bad_addresses_are_explained(host, port, problem):
    with pytest.raises(ValueError, match=problem):
        parse_address(host, port)


def test_a_refused_connection_suggests_starting_the_server():
    message = describe_connect_error(ConnectionRefusedError(111, "refused"), "localhost", 8080)
    assert "localhost:8080" in message and "python server.py" in message


def test_an_unknown_host_is_named():
    message = describe_connect_error(socket.gaierror(-2, "Name or service not known"), "nowhere.invalid", 8080)
    assert "nowhere.invalid" in message


def test_a_codespaces_address_gets_a_hint_about_https_forwarding():
    message = describe_connect_error(TimeoutError(), "zany-space-8080.app.github.dev", 8080)
    assert "Codespaces" in message and "README" in message


def test_without_color_a_line_is_printed_as_received():
    assert render("Ann: hi", color=False) == "📨 Ann: hi"


def test_a_name_gets_the_same_color_every_time_and_the_text_keeps_its_own():
    assert render("Ann: hi", color=True) == f"📨 {name_color('Ann')}{Style.BRIGHT}Ann{Style.RESET_ALL}: hi"
    assert name_color("Ann") == name_color("ann")


def test_system_error_and_private_lines_have_colors_of_their_own():
    assert render("[SYSTEM] x", True) == f"📨 {Fore.YELLOW}[SYSTEM] x{Style.RESET_ALL}"
    assert render("[ERROR] x", True) == f"📨 {Fore.RED}[ERROR] x{Style.RESET_ALL}"
    assert render("[PM from Ann] x", True) == f"📨 {Fore.MAGENTA}[PM from Ann] x{Style.RESET_ALL}"


def test_an_action_colors_the_name():
    assert name_color("Ann") + Style.BRIGHT + "Ann" in render("* Ann waves", True)


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
