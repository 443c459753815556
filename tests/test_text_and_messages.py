import unicodedata

import pytest

from chat.core import messages
from chat.core.messages import Kind, classify
from chat.core.text import name_key, name_problem, sanitize


@pytest.mark.parametrize(
    "raw, clean",
    [
        ("plain text", "plain text"),
        ("tab\there", "tab here"),
        ("\x1b[31mred\x1b[0m", "red"),
        ("\x1b[2J\x1b[Hcleared", "cleared"),
        ("\x1b]0;new title\x07after", "after"),
        ("\x1b]8;;http://x\x1b\\link", "link"),
        ("bell\x07 and nul\x00", "bell and nul"),
        ("c1 \x9b31m csi", "c1 31m csi"),
        ("del\x7f", "del"),
        ("evil\u202etxt.exe", "eviltxt.exe"),
        ("iso\u2066late\u2069", "isolate"),
        ("lone escape \x1b", "lone escape "),
        ("emoji 🚀 and accents é", "emoji 🚀 and accents é"),
    ],
)
def test_sanitize_removes_what_could_take_over_a_terminal(raw, clean):
    assert sanitize(raw) == clean


BIDI_CONTROLS = {
    "\u202a": "LEFT-TO-RIGHT EMBEDDING",
    "\u202b": "RIGHT-TO-LEFT EMBEDDING",
    "\u202c": "POP DIRECTIONAL FORMATTING",
    "\u202d": "LEFT-TO-RIGHT OVERRIDE",
    "\u202e": "RIGHT-TO-LEFT OVERRIDE",
    "\u2066": "LEFT-TO-RIGHT ISOLATE",
    "\u2067": "RIGHT-TO-LEFT ISOLATE",
    "\u2068": "FIRST STRONG ISOLATE",
    "\u2069": "POP DIRECTIONAL ISOLATE",
    "\u200e": "LEFT-TO-RIGHT MARK",
    "\u200f": "RIGHT-TO-LEFT MARK",
    "\u061c": "ARABIC LETTER MARK",
}


@pytest.mark.parametrize("char", BIDI_CONTROLS, ids=BIDI_CONTROLS.values())
def test_every_bidirectional_control_is_stripped(char):
    assert sanitize(f"file{char}gpj.exe") == "filegpj.exe"
    assert sanitize(char * 3) == ""


def test_the_list_of_bidirectional_controls_is_their_unicode_names():
    assert {char: unicodedata.name(char) for char in BIDI_CONTROLS} == BIDI_CONTROLS


@pytest.mark.parametrize("char", ["\u2028", "\u2029"], ids=["LINE SEPARATOR", "PARAGRAPH SEPARATOR"])
def test_line_and_paragraph_separators_are_stripped(char):
    assert sanitize(f"one{char}two") == "onetwo"


@pytest.mark.parametrize("name", ["Alice", "bob_2", "x", "A-b_C", "a" * 20, "User_5000"])
def test_good_names_are_accepted(name):
    assert name_problem(name) is None


@pytest.mark.parametrize("name", ["", "a" * 21, "has space", "émile", "semi;colon", "[SYSTEM]"])
def test_malformed_names_are_refused_with_the_rule(name):
    assert "ASCII letter" in name_problem(name)


@pytest.mark.parametrize(
    "name", ["SYSTEM", "system", "Server", "SYSTEM_", "system2", "Error-2", "ERROR", "pm", "PM_1", "server--"]
)
def test_names_that_imitate_the_servers_labels_are_reserved(name):
    assert name_problem(name) == f"The name {name} is reserved."


@pytest.mark.parametrize("name", ["Pmarie", "Systematic", "Errors", "my_server", "PM_x"])
def test_names_that_merely_start_like_a_label_are_allowed(name):
    assert name_problem(name) is None


def test_the_name_rule_says_exactly_what_is_allowed():
    assert name_problem("Zoë") == (
        "Names are 1 to 20 characters, each an ASCII letter (A-Z, a-z), a digit, '_' or '-'."
    )


def test_names_compare_without_case():
    assert name_key("Alice") == name_key("aLICE")


@pytest.mark.parametrize(
    "line, kind, name",
    [
        (messages.chat("Ann", "hi: there"), Kind.CHAT, "Ann"),
        (messages.action("Ann", "waves"), Kind.ACTION, "Ann"),
        (messages.private_from("Ann", "psst"), Kind.PRIVATE, "Ann"),
        (messages.private_to("Bob", "psst"), Kind.PRIVATE, "Bob"),
        (messages.joined("Ann"), Kind.SYSTEM, None),
        (messages.error("nope"), Kind.ERROR, None),
        ("something else entirely", Kind.SYSTEM, None),
    ],
)
def test_each_kind_of_line_is_recognised(line, kind, name):
    assert classify(line) == (kind, name)


def test_the_formats_are_those_of_the_design_document():
    assert messages.chat("User_5001", "Hi there!") == "User_5001: Hi there!"
    assert messages.joined("User_5000") == "[SYSTEM] User_5000 joined the chat!"
    assert messages.left("User_5000") == "[SYSTEM] User_5000 left the chat."
    assert messages.renamed("Old", "New") == "[SYSTEM] Old is now known as New"
    assert messages.action("Ann", "waves") == "* Ann waves"
