"""The chat page in a real browser (headless Chromium), against a scripted server.

The server is not the chat server but a throwaway one (tests/pageserver.py)
that serves the page and lets each test play the chat server's part line by
line, with lines made by chat.core.messages, so the page is checked against
the texts the server really sends.
"""

import itertools
import math
import random
import re
import zlib

import pytest
from selenium.common.exceptions import TimeoutException
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import WebDriverWait

from chat.client import replay
from chat.core import messages
from chat.core.history import HISTORY_END, history_start
from chat.core.messages import PASSWORD_NEEDED, PASSWORD_TOO_MANY_TRIES, PASSWORD_WRONG
from tests.browser import (
    DESKTOP_SIZE,
    PHONE_SIZE,
    announced,
    console_errors,
    history_blocks,
    set_color_scheme,
    set_viewport,
    type_text,
)
from tests.helpers import QUIET_PERIOD_S, TIMEOUT_S
from tests.pageserver import CLOSED, AdapterPageServer, LibraryPageServer



@pytest.fixture
def server(driver):
    """A fresh page server for each test (the driver fixture starts the browser clean)."""
    server = LibraryPageServer().start()
    try:
        yield server
    finally:
        driver.get("about:blank")  # the page stops reconnecting before its server goes
        server.stop()
    errors = console_errors(driver)
    if server.forbidden is not None:  # the browser logs each try refused on purpose, as it should
        errors = [error for error in errors if "403" not in error]
    assert not errors


# How often a wait looks at the page again (WebDriverWait's default, half a second, makes each
# wait that is not met at once cost that much).
POLL_S = 0.05


def wait(driver, condition, message: str = "", timeout: float = TIMEOUT_S):
    """Wait until ``condition(driver)`` is true, and return its value."""
    try:
        return WebDriverWait(driver, timeout, poll_frequency=POLL_S).until(condition)
    except TimeoutException:
        raise AssertionError(message or "the page never got there") from None


def element(driver, element_id: str):
    return driver.find_element(By.ID, element_id)


def lines_shown(driver) -> "list[str]":
    """The text of each line on the page, without its time."""
    return driver.execute_script(
        "return [...document.querySelectorAll('#messages .line .body')].map(e => e.textContent)"
    )


def wait_for_line(driver, text: str) -> None:
    wait(driver, lambda d: text in lines_shown(d), f"{text!r} never appeared; the page shows {lines_shown(driver)!r}")


def online_reply(*names: str) -> str:
    """The server's answer to /users (chat/core/commands.py)."""
    return messages.system(f"Online ({len(names)}): {', '.join(names)}")


def online_list(driver) -> "list[str]":
    return driver.execute_script("return [...document.querySelectorAll('#user-list li')].map(e => e.textContent)")


def history_block(*stamped_lines: "tuple[str, str]") -> "list[str]":
    """The lines a server sends before its welcome for a history of (time, line) pairs."""
    if not stamped_lines:
        return []
    return [history_start(len(stamped_lines)), *(f"[{time}] {line}" for time, line in stamped_lines), HISTORY_END]


def join(driver, server, name: str = "Alice", others=("Bob",), history=()) -> None:
    """Open the page, join as ``name``, and play the server's history, welcome and /users reply."""
    driver.get(server.url)
    type_text(driver, "name", name, enter=True)
    server.expect(f"/nick {name}")
    server.send(*history_block(*history), messages.welcome(name, len(others)))
    server.expect("/users")
    server.send(online_reply(*sorted([name, *others], key=str.casefold)))
    wait(driver, lambda d: element(d, "composer").is_displayed(), "the message box never appeared")


def send_message(driver, text: str) -> None:
    type_text(driver, "message", text, enter=True)


# -- loading and joining ------------------------------------------------------------------


def test_the_page_loads_with_every_input_labelled(driver, server):
    driver.get(server.url)
    assert driver.title == "Chat"
    unlabelled = driver.execute_script(
        "return [...document.querySelectorAll('input')].filter(i => i.labels.length === 0).map(i => i.id)"
    )
    assert unlabelled == []
    assert element(driver, "name").is_displayed()
    assert element(driver, "messages").get_attribute("aria-live") == "polite"
    assert element(driver, "status").get_attribute("role") == "status"


def test_joining_sends_the_name_and_shows_the_welcome_and_who_is_online(driver, server):
    join(driver, server, "Alice", others=["bob", "Carol"])
    wait_for_line(driver, "Welcome, Alice! 2 other user(s) online. Type /help for commands.")
    assert online_list(driver) == ["Alice (you)", "bob", "Carol"]
    assert element(driver, "users-heading-count").text == "3"
    assert element(driver, "status").text == "Connected as Alice"
    assert driver.switch_to.active_element == element(driver, "message")
    # The page asked for the list itself, so the reply is not shown as a line.
    assert not [line for line in lines_shown(driver) if line.startswith("Online (")]


def test_a_name_that_cannot_be_used_is_refused_before_connecting(driver, server):
    driver.get(server.url)
    type_text(driver, "name", "Alice Smith", enter=True)
    wait(driver, lambda d: element(d, "name").get_attribute("aria-invalid") == "true")
    assert "cannot be used" in element(driver, "name-hint").text
    assert server.connections_opened == 0


def test_the_chosen_name_is_remembered_and_used_at_once_next_time(driver, server):
    join(driver, server, "Alice")
    driver.refresh()
    server.expect(CLOSED)
    server.expect("/nick Alice")  # nothing typed this time


def test_leaving_the_page_leaves_the_chat_and_coming_back_joins_again(driver, server):
    join(driver, server, "Alice")
    driver.get("data:text/html,elsewhere")
    server.expect(CLOSED)  # even if the browser keeps the page in its back/forward cache
    driver.back()
    server.expect("/nick Alice")
    server.send(messages.welcome("Alice", 0))
    server.expect("/users")
    wait(driver, lambda d: element(d, "status").text == "Connected as Alice")


def test_without_a_name_the_page_joins_under_the_servers_default(driver, server):
    driver.get(server.url)
    element(driver, "join-button").click()
    server.wait_until_connected()
    server.send(messages.welcome("User_50123", 0))
    server.expect("/users")  # no /nick came first
    wait(driver, lambda d: element(d, "status").text == "Connected as User_50123")


# -- showing lines ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "line",
    [
        "Mallory: <script>window.hacked = 1</script>",
        'Mallory: <img src="x" onerror="window.hacked = 2">',
        "[SYSTEM] <b>not bold</b>",
        "[PM from Mallory] <a href='javascript:window.hacked=3'>click</a>",
    ],
)
def test_markup_from_the_network_is_shown_as_the_characters_it_is(driver, server, line):
    join(driver, server)
    server.send(line)
    shown = line.removeprefix("[SYSTEM] ")
    wait_for_line(driver, shown)
    assert driver.execute_script(
        "return document.querySelectorAll('#messages script, #messages img, #messages b, #messages a').length"
    ) == 0
    assert driver.execute_script("return window.hacked") is None


def test_the_render_function_puts_text_only(driver, server):
    driver.get(server.url)
    html = driver.execute_script(
        "const item = chatPage.renderLine('Eve: <script>alert(1)</script>');"
        "return [item.querySelector('.body').textContent, item.querySelectorAll('script').length, item.className]"
    )
    assert html == ["Eve: <script>alert(1)</script>", 0, "line chat"]


def test_each_kind_of_line_is_styled_apart(driver, server):
    join(driver, server)
    server.send(
        messages.chat("Bob", "hi"),
        messages.action("Bob", "waves"),
        messages.private_from("Bob", "psst"),
        messages.system("Server is busy."),
        messages.error("Unknown command /foo. Type /help for the list."),
        messages.joined("Carol"),
    )
    wait_for_line(driver, "Carol joined the chat!")
    kinds = driver.execute_script(
        "return [...document.querySelectorAll('#messages .line')].slice(-6).map(e => "
        "[e.className, getComputedStyle(e).color])"
    )
    classes = [c for c, _ in kinds]
    assert classes == [
        "line chat",
        "line action",
        "line private",
        "line system",
        "line error",
        "line system quiet",
    ]
    colors = {c: color for c, color in kinds}
    assert len({colors["line private"], colors["line system"], colors["line error"], colors["line system quiet"]}) == 4
    assert "Error: Unknown command /foo. Type /help for the list." in lines_shown(driver)


def test_a_names_color_is_the_terminal_clients_hash_modulo_the_pages_palette(driver, server):
    driver.get(server.url)
    count = driver.execute_script("return chatPage.NAME_COLOR_COUNT")
    names = ["Alice", "bob", "Bob", "User_53514", "x", "ZZ_top-9", "carol", "Dave", "eve", "Mallory"]
    colors = driver.execute_script("return arguments[0].map(chatPage.nameColor)", names)
    # CRC-32 of the name in lower case (names are ASCII, where casefold and toLowerCase agree).
    assert colors == [zlib.crc32(name.casefold().encode()) % count for name in names]
    assert driver.execute_script("return chatPage.crc32(new TextEncoder().encode('123456789'))") == 0xCBF43926
    shown = driver.execute_script("return chatPage.renderLine('bob: hi').querySelector('.name').className")
    assert shown == f"name name-{zlib.crc32(b'bob') % count}"


def relative_luminance(rgb: str) -> float:
    """WCAG 2's relative luminance of a CSS color as the browser computes it ("rgb(12, 34, 56)")."""
    channels = [int(c) / 255 for c in re.findall(r"\d+", rgb)[:3]]
    linear = [c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
    return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]


def contrast(one: str, other: str) -> float:
    lighter, darker = sorted([relative_luminance(one), relative_luminance(other)], reverse=True)
    return (lighter + 0.05) / (darker + 0.05)


def oklab(rgb: str) -> "tuple[float, float, float]":
    """A computed CSS color in OKLab, where distances are differences as seen (Björn Ottosson, 2020)."""
    r, g, b = [c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4 for c in (int(x) / 255 for x in re.findall(r"\d+", rgb)[:3])]
    l, m, s = (
        (0.4122214708 * r + 0.5363325363 * g + 0.0514459929 * b) ** (1 / 3),
        (0.2119034982 * r + 0.6806995451 * g + 0.1073969566 * b) ** (1 / 3),
        (0.0883024619 * r + 0.2817188376 * g + 0.6299787005 * b) ** (1 / 3),
    )
    return (
        0.2104542553 * l + 0.7936177850 * m - 0.0040720468 * s,
        1.9779984951 * l - 2.4285922050 * m + 0.4505937099 * s,
        0.0259040371 * l + 0.7827717662 * m - 0.8086757660 * s,
    )


# Each name color in every place a name is shown, as the browser draws it: the color of the
# name and the background behind it (the nearest one that is not transparent).
NAME_COLORS_SHOWN = r"""
const me = 'Alice';
const places = {
  'a line': () => chatPage.renderLine('bob: hi'),
  'an own line': () => chatPage.renderLine('Alice: hi', {own: true}),
  'a line that names the user': () => chatPage.renderLine('bob: hi Alice', {me}),
  'a history line': () => chatPage.renderHistory('Earlier', [{time: '10:00:00', line: 'bob: hi'}]),
  'the online list': () => {
    const item = document.createElement('li');
    item.appendChild(document.createElement('span')).className = 'name';
    return item;
  },
};
const backgroundOf = (element) => {
  for (let e = element; e; e = e.parentElement) {
    const color = getComputedStyle(e).backgroundColor;
    if (!/^rgba\(.*, 0\)$/.test(color)) return color;
  }
  return 'rgb(255, 255, 255)';
};
const shown = [];
for (const [place, make] of Object.entries(places)) {
  const host = document.getElementById(place === 'the online list' ? 'user-list' : 'messages');
  for (let i = 0; i < chatPage.NAME_COLOR_COUNT; i++) {
    const element = host.appendChild(make());
    const name = element.querySelector('.name');
    name.className = `name name-${i}`;
    shown.push({place, index: i, color: getComputedStyle(name).color, background: backgroundOf(name)});
    element.remove();
  }
}
return shown;
"""
# Two colors this far apart in OKLab are told apart side by side at once; 0.02 is about the least
# difference anyone notices.
MIN_NAME_COLOR_DISTANCE = 0.06


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_every_name_color_is_readable_wherever_names_are_shown_and_the_colors_are_far_apart(driver, server, scheme):
    set_color_scheme(driver, scheme)
    join(driver, server)
    shown = driver.execute_script(NAME_COLORS_SHOWN)
    count = driver.execute_script("return chatPage.NAME_COLOR_COUNT")
    assert 24 <= count <= 32 and len(shown) == 5 * count
    unreadable = [
        f"name-{s['index']} {s['color']} on {s['background']} in {s['place']}: {contrast(s['color'], s['background']):.2f}"
        for s in shown
        if contrast(s["color"], s["background"]) < 4.5
    ]
    assert not unreadable, "\n".join(unreadable)
    colors = [s["color"] for s in shown if s["place"] == "a line"]
    close = [
        (i, j, round(math.dist(oklab(colors[i]), oklab(colors[j])), 3))
        for i, j in itertools.combinations(range(count), 2)
        if math.dist(oklab(colors[i]), oklab(colors[j])) < MIN_NAME_COLOR_DISTANCE
    ]
    assert not close, f"name colors too close in {scheme}: {close}"
    # The scheme is the one asked for: names on a dark background are the light ones.
    dark_background = relative_luminance(shown[0]["background"]) < 0.2
    assert dark_background == (scheme == "dark")
    # A class at a computer-room: with 30 colors, 30 names get 19 on average (7 colors gave 7).
    names = [
        "Alice", "bob", "Carol", "dave", "Eve", "Frank", "grace", "Heidi", "ivan", "Judy",
        "Mallory", "niaj", "Olivia", "peggy", "Rupert", "sybil", "Trent", "victor", "Walter", "xena",
        "Yusuf", "zoe", "Amara", "ben_k", "Chen", "Diego", "emma2", "Farah", "Gus", "Hana",
    ]  # fmt: skip
    drawn = driver.execute_script(
        "return arguments[0].map(name => {"
        "  const line = document.getElementById('messages').appendChild(chatPage.renderLine(`${name}: hi`));"
        "  const color = getComputedStyle(line.querySelector('.name')).color; line.remove(); return color; })",
        names,
    )
    assert len(set(drawn)) >= 18, f"{len(set(drawn))} colors for {len(names)} names"


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_every_text_color_is_readable_on_every_background_of_the_lines(driver, server, scheme):
    set_color_scheme(driver, scheme)
    driver.get(server.url)
    colors = driver.execute_script(
        "const style = getComputedStyle(document.documentElement);"
        "const probe = document.body.appendChild(document.createElement('span'));"
        "const color = (name) => { probe.style.color = style.getPropertyValue(name); return getComputedStyle(probe).color; };"
        "const names = ['--bg', '--panel', '--own-bg', '--mention-bg', '--fg', '--muted', '--system', '--error', '--private'];"
        "const result = Object.fromEntries(names.map(n => [n, color(n)])); probe.remove(); return result;"
    )
    backgrounds = {name: colors.pop(name) for name in ["--bg", "--panel", "--own-bg", "--mention-bg"]}
    unreadable = [
        f"{name} {color} on {where} {background}: {contrast(color, background):.2f}"
        for name, color in colors.items()
        for where, background in backgrounds.items()
        if contrast(color, background) < 4.5
    ]
    assert not unreadable, "\n".join(unreadable)
    # Own lines and mentions stand out by their background, not only by a color of text.
    assert len(set(backgrounds.values())) == 4


def test_a_line_that_names_the_user_as_a_word_in_any_case_is_highlighted(driver, server):
    join(driver, server, "Alice", others=["Bob"])
    server.send(
        messages.chat("Bob", "hi alice!"),
        messages.chat("Bob", "@ALICE look"),
        messages.action("Bob", "waves at Alice"),
        messages.private_from("Bob", "Alice?"),
        messages.chat("Bob", "Alicia and malice are other words"),
        messages.chat("Bob", "alice_2 and alice-b are other names"),
        messages.chat("Alice", "Alice is me, said elsewhere"),  # own (another tab, another client)
        messages.private_to("Bob", "sent by Alice"),
        messages.chat("Bob", "the end"),
    )
    wait_for_line(driver, "Bob: the end")
    marked = driver.execute_script(
        "return [...document.querySelectorAll('#messages .line.mention .body')].map(e => e.textContent)"
    )
    assert marked == ["Bob: hi alice!", "Bob: @ALICE look", "* Bob waves at Alice", "[PM from Bob] Alice?"]
    # Told apart by a background, not only by a color of text.
    backgrounds = driver.execute_script(
        "const [line, mention] = ['.line.chat:not(.mention)', '.line.mention'].map(s => document.querySelector(`#messages ${s}`));"
        "return [getComputedStyle(line).backgroundColor, getComputedStyle(mention).backgroundColor]"
    )
    assert backgrounds[0] == "rgba(0, 0, 0, 0)" != backgrounds[1]


def test_the_users_own_lines_stand_out_by_their_background(driver, server):
    join(driver, server, "Alice", others=["Bob"])
    server.send(messages.chat("Bob", "theirs"))
    wait_for_line(driver, "Bob: theirs")
    send_message(driver, "mine")
    server.expect("mine")
    wait_for_line(driver, "Alice: mine")
    lines = driver.execute_script(
        "return [...document.querySelectorAll('#messages .line.chat')].map(e =>"
        "  [e.querySelector('.body').textContent, e.classList.contains('own'), getComputedStyle(e).backgroundColor])"
    )
    assert lines[0] == ["Bob: theirs", False, "rgba(0, 0, 0, 0)"]
    assert lines[1][:2] == ["Alice: mine", True] and lines[1][2] != "rgba(0, 0, 0, 0)"


def test_while_the_page_is_hidden_its_title_counts_the_lines_others_say(driver, server):
    join(driver, server, "Alice", others=["Bob"])
    assert driver.title == "Chat"
    driver.minimize_window()  # hidden, as a tab in the background or a locked phone is
    wait(driver, lambda d: d.execute_script("return document.visibilityState") == "hidden")
    server.send(
        messages.chat("Bob", "one"),
        messages.joined("Carol"),  # notices are not counted
        messages.action("Carol", "waves"),
        messages.private_from("Bob", "psst"),
    )
    wait(driver, lambda d: d.title == "(3) Chat", f"the title is {driver.title!r}")
    driver.set_window_size(*DESKTOP_SIZE)  # shown again: read
    wait(driver, lambda d: d.title == "Chat", f"the title is {driver.title!r}")
    server.send(messages.chat("Bob", "while you look"))
    wait_for_line(driver, "Bob: while you look")
    assert driver.title == "Chat"


# -- sending ----------------------------------------------------------------------------------


def test_enter_sends_the_line_and_the_page_shows_it_as_the_others_see_it(driver, server):
    join(driver, server)
    send_message(driver, "hello <everyone>")
    server.expect("hello <everyone>")
    wait_for_line(driver, "Alice: hello <everyone>")
    assert element(driver, "message").get_attribute("value") == ""
    send_message(driver, "/me waves")
    server.expect("/me waves")
    wait_for_line(driver, "* Alice waves")
    send_message(driver, "//slash")
    server.expect("//slash")
    wait_for_line(driver, "Alice: /slash")


def test_any_text_typed_is_sent_as_typed_with_the_input_events_of_typing(driver, server):
    join(driver, server)
    driver.execute_script(
        "window.typed = []; const box = document.getElementById('message');"
        "for (const type of ['keydown', 'beforeinput', 'input'])"
        "  box.addEventListener(type, (e) => typed.push(`${type} ${e.inputType || e.key} ${e.data || ''}`));"
    )
    # Outside the Basic Multilingual Plane: an emoji, a musical symbol, a
    # sequence of emoji joined into one; and a combining accent and CJK.
    text = "héllo 🚀 \U0001d11e 👩🏽\u200d💻 e\u0301 中文"
    send_message(driver, text)
    server.expect(text)
    wait_for_line(driver, f"Alice: {text}")
    typed = driver.execute_script("return typed")
    assert typed[:3] == [f"beforeinput insertText {text}", f"input insertText {text}", "keydown Enter "]
    assert element(driver, "message").get_attribute("value") == ""


def test_every_command_goes_to_the_server_as_typed(driver, server):
    join(driver, server)
    for command in ["/help", "/users", "/msg Bob psst", "/nick Alicia", "/frobnicate"]:
        send_message(driver, command)
        server.expect(command)
    server.send(messages.private_to("Bob", "psst"), messages.renamed("Alice", "Alicia"))
    wait(driver, lambda d: element(d, "status").text == "Connected as Alicia")
    assert online_list(driver) == ["Alicia (you)", "Bob"]
    shown = lines_shown(driver)
    assert "[PM to Bob] psst" in shown
    assert not [line for line in shown if line.startswith("Alice: /")]  # commands are not chat lines
    driver.refresh()  # the new name is the one remembered
    server.expect(CLOSED)
    server.expect("/nick Alicia")


def test_blank_lines_are_not_sent(driver, server):
    join(driver, server)
    send_message(driver, "   ")
    send_message(driver, "after")
    server.expect("after")


def test_up_and_down_walk_through_the_lines_sent_and_keep_the_draft(driver, server):
    join(driver, server)
    for text in ["first", "second"]:
        send_message(driver, text)
        server.expect(text)
    box = element(driver, "message")
    box.send_keys("draft")  # key by key, as on a keyboard

    def value() -> str:
        return box.get_attribute("value")

    box.send_keys(Keys.ARROW_UP)
    assert value() == "second"
    box.send_keys(Keys.ARROW_UP)
    assert value() == "first"
    box.send_keys(Keys.ARROW_UP)
    assert value() == "first"
    box.send_keys(Keys.ARROW_DOWN)
    assert value() == "second"
    box.send_keys(Keys.ARROW_DOWN)
    assert value() == "draft"
    box.send_keys(Keys.ARROW_UP, Keys.ENTER)
    server.expect("second")


def test_a_pasted_line_break_becomes_a_space(driver, server):
    join(driver, server)
    driver.execute_script(
        "const data = new DataTransfer(); data.setData('text/plain', 'one\\ntwo');"
        "document.getElementById('message').dispatchEvent("
        "  new ClipboardEvent('paste', {clipboardData: data, bubbles: true, cancelable: true}));"
    )
    send_message(driver, "")
    server.expect("one two")


# -- the online list ------------------------------------------------------------------------


def test_the_online_list_follows_joins_leaves_and_renames(driver, server):
    join(driver, server, "Alice", others=["Bob"])
    server.send(messages.joined("Carol"))
    wait(driver, lambda d: online_list(d) == ["Alice (you)", "Bob", "Carol"])
    server.send(messages.renamed("Bob", "Bobby"))
    wait(driver, lambda d: online_list(d) == ["Alice (you)", "Bobby", "Carol"])
    server.send(messages.left("Carol"))
    wait(driver, lambda d: online_list(d) == ["Alice (you)", "Bobby"])
    assert element(driver, "users-heading-count").text == "2"
    send_message(driver, "/users")  # asked for by the user: shown
    server.expect("/users")
    server.send(online_reply("Alice", "Bobby", "Dan"))
    wait_for_line(driver, "Online (3): Alice, Bobby, Dan")
    assert online_list(driver) == ["Alice (you)", "Bobby", "Dan"]


def test_choosing_a_name_in_the_list_starts_a_private_message(driver, server):
    join(driver, server, "Alice", others=["Bob"])
    driver.find_element(By.CSS_SELECTOR, "#user-list button").click()
    assert element(driver, "message").get_attribute("value") == "/msg Bob "
    send_message(driver, "psst")
    server.expect("/msg Bob psst")


# -- reading --------------------------------------------------------------------------------


def scroll_state(driver) -> dict:
    return driver.execute_script(
        "const m = document.getElementById('messages');"
        "return {top: m.scrollTop, bottom: m.scrollHeight - m.scrollTop - m.clientHeight,"
        " jump: !document.getElementById('jump').hidden}"
    )


def test_new_lines_scroll_into_view_unless_the_reader_scrolled_up(driver, server):
    join(driver, server)
    server.send(*[messages.chat("Bob", f"line {i}") for i in range(80)])
    wait_for_line(driver, "Bob: line 79")
    wait(driver, lambda d: scroll_state(d)["bottom"] < 2, "the newest line is not in view")
    driver.execute_script("document.getElementById('messages').scrollTop = 0")
    wait(driver, lambda d: scroll_state(d)["top"] == 0)
    server.send(messages.chat("Bob", "while you read"))
    wait_for_line(driver, "Bob: while you read")
    state = scroll_state(driver)
    assert state["top"] == 0 and state["jump"]
    element(driver, "jump").click()
    wait(driver, lambda d: scroll_state(d)["bottom"] < 2 and not scroll_state(d)["jump"])


def test_what_the_user_sends_is_always_scrolled_into_view(driver, server):
    join(driver, server)
    server.send(*[messages.chat("Bob", f"line {i}") for i in range(80)])
    wait_for_line(driver, "Bob: line 79")
    driver.execute_script("document.getElementById('messages').scrollTop = 0")
    send_message(driver, "mine")
    server.expect("mine")
    wait(driver, lambda d: scroll_state(d)["bottom"] < 2)


# -- the connection ---------------------------------------------------------------------------


def banner(driver) -> "str | None":
    """What the banner across the top says, or None while it is hidden."""
    shown = element(driver, "offline")
    return shown.text if shown.is_displayed() else None


def online_out_of_date(driver) -> bool:
    return driver.find_element(By.CSS_SELECTOR, "#users-heading .out-of-date").is_displayed()


def test_while_the_server_is_down_a_banner_counts_down_and_the_online_list_is_kept_marked_out_of_date(driver, server):
    join(driver, server, "Alice", others=["Bob"])
    assert banner(driver) is None and not online_out_of_date(driver)
    type_text(driver, "message", "half typed")
    server.stop()
    server.expect(CLOSED)
    wait_for_line(driver, "Disconnected from the chat.")
    assert online_list(driver) == ["Alice (you)", "Bob"]
    assert online_out_of_date(driver)
    assert element(driver, "users-heading-count").text == "2"
    assert element(driver, "message").get_attribute("placeholder") == "Will send when back online"
    # The second try waits one to two seconds: the banner counts them down.
    counted = re.compile(r"Not connected\. Reconnecting in (\d+) s…\nReconnect now")
    seconds = wait(driver, lambda d: (m := counted.fullmatch(banner(d) or "")) and int(m[1]) >= 2 and int(m[1]))
    wait(driver, lambda d: banner(d) == f"Not connected. Reconnecting in {seconds - 1} s…\nReconnect now", banner(driver))
    assert element(driver, "status").text == "Not connected"  # no second count that would stand still
    server.start()  # the same port
    # The button tries at once, without waiting for the countdown.
    waiting = driver.execute_script(
        "document.getElementById('reconnect-button').click(); return document.getElementById('offline-wait').textContent"
    )
    assert waiting == "Reconnecting…"
    server.expect("/nick Alice")
    server.send(messages.welcome("Alice", 1))
    server.expect("/users")
    wait(driver, lambda d: banner(d) is None, "the banner stayed")
    assert online_out_of_date(driver)  # until the server says who is online now
    server.send(online_reply("Alice", "Carol"))
    wait(driver, lambda d: online_list(d) == ["Alice (you)", "Carol"] and not online_out_of_date(d))
    assert element(driver, "message").get_attribute("value") == "half typed"
    assert element(driver, "message").get_attribute("placeholder") == "Message · /help for commands"
    # A reconnect is not a second welcome.
    shown = lines_shown(driver)
    assert [line for line in shown if line.startswith("Welcome, ")] == ["Welcome, Alice! 1 other user(s) online. Type /help for commands."]
    assert shown[-2:] == ["Disconnected from the chat.", "Back in the chat as Alice."]


def test_reconnecting_waits_twice_as_long_after_each_failure_up_to_half_a_minute(driver, server):
    driver.get(server.url)
    delays = driver.execute_script(
        "return [0, 1, 2, 3, 4, 5, 9].map(n => [chatPage.retryDelay(n, () => 0), chatPage.retryDelay(n, () => 1)])"
    )
    # At most the doubling ceiling, at least half of it (the random part).
    assert delays == [[1000, 500], [2000, 1000], [4000, 2000], [8000, 4000], [16000, 8000], [30000, 15000], [30000, 15000]]


def test_lines_sent_while_disconnected_are_shown_as_waiting_and_go_once_the_page_is_back(driver, server):
    join(driver, server, "Alice")
    server.stop()
    server.expect(CLOSED)
    wait(driver, lambda d: banner(d) is not None, "no banner")
    send_message(driver, "are you there?")
    send_message(driver, "/me waits")
    waiting = "return [...document.querySelectorAll('#messages .pending')].map(e => e.textContent.slice(5))"  # no time
    wait(driver, lambda d: d.execute_script(waiting) == ["Alice: are you there?not sent yet", "* Alice waitsnot sent yet"])
    assert element(driver, "message").get_attribute("value") == ""
    server.start()
    driver.execute_script("window.dispatchEvent(new Event('online'))")  # the network is back: no waiting for the timer
    server.expect("/nick Alice")
    server.send(messages.welcome("Alice", 0))
    server.expect("/users")
    server.expect("are you there?")
    server.expect("/me waits")
    wait(driver, lambda d: not d.execute_script(waiting), "the lines still wait")
    assert lines_shown(driver)[-3:] == ["Back in the chat as Alice.", "Alice: are you there?", "* Alice waits"]
    assert lines_shown(driver).count("Alice: are you there?") == 1


def test_quit_leaves_without_reconnecting(driver, server):
    join(driver, server, "Alice")
    send_message(driver, "/quit")
    server.expect("/quit")
    server.send(messages.system("Goodbye!"))
    server.close_connections()
    server.expect(CLOSED)
    wait(driver, lambda d: element(d, "join-form").is_displayed())
    assert element(driver, "status").text == "You left the chat."
    server.expect_nothing(QUIET_PERIOD_S)
    assert server.connections_opened == 1


# -- history ----------------------------------------------------------------------------------


def test_the_history_a_newcomer_gets_is_shown_apart_from_the_live_chat_each_line_with_its_time(driver, server):
    history = [
        ("09:58:01", messages.joined("Bob")),
        ("09:59:30", messages.chat("Bob", "hello <b>all</b>")),
        ("10:00:00", messages.action("Carol", "waves")),
        ("10:01:02", messages.renamed("Carol", "Caz")),
        ("10:01:05", messages.left("Caz")),
    ]
    join(driver, server, "Alice", others=["Bob"], history=history)
    server.send(messages.chat("Bob", "live now"))
    wait_for_line(driver, "Bob: live now")
    shown = [line.removeprefix("[SYSTEM] ") for _, line in history]
    assert history_blocks(driver) == [
        {"heading": "Earlier messages", "lines": shown, "times": [time[:5] for time, _ in history], "end": "Live", "live": "off"}
    ]
    welcome = "Welcome, Alice! 1 other user(s) online. Type /help for commands."
    assert lines_shown(driver) == [*shown, welcome, "Bob: live now"]
    # One format of time, history or live: hours and minutes, the seconds in the tooltip.
    times = driver.execute_script("return [...document.querySelectorAll('#messages .line time')].map(t => [t.textContent, t.title])")
    assert times[:5] == [[time[:5], f"{time} on the server"] for time, _ in history]
    assert all(re.fullmatch(r"\d\d:\d\d", shown) and re.fullmatch(rf"{shown}:\d\d", title) for shown, title in times[5:])
    # Set apart: quieter than the live chat, names still in their colors, markup still text.
    style = driver.execute_script(
        "const [old, live] = [...document.querySelectorAll('#messages .line.chat')];"
        "const root = getComputedStyle(document.documentElement);"
        "const probe = document.body.appendChild(document.createElement('span'));"
        "probe.style.color = root.getPropertyValue('--muted'); const muted = getComputedStyle(probe).color;"
        "probe.remove();"
        "return {old: getComputedStyle(old).color, live: getComputedStyle(live).color, muted,"
        " oldClass: old.className, oldName: old.querySelector('.name').className}"
    )
    assert style["old"] == style["muted"] != style["live"]
    assert style["oldClass"] == "line chat history"
    assert style["oldName"] == f"name name-{zlib.crc32(b'bob') % driver.execute_script('return chatPage.NAME_COLOR_COUNT')}"
    assert driver.execute_script("return document.querySelectorAll('#messages b').length") == 0
    # What happened before is not who is online now: the list comes from the server's /users reply.
    assert online_list(driver) == ["Alice (you)", "Bob"]
    # A screen reader hears how many lines there are, not each of them.
    assert element(driver, "messages").get_attribute("aria-live") == "polite"
    assert announced(driver) == "5 earlier messages"


def test_joins_and_leaves_after_the_last_line_said_do_not_make_a_reconnect_show_it_again(driver, server):
    # The server's history keeps no joins or leaves: a replay ends with the last line said.
    join(driver, server, "Alice", others=["Bob"])
    server.send(messages.chat("Bob", "hello"), messages.joined("Carol"), messages.left("Carol"))
    wait_for_line(driver, "Carol left the chat.")
    server.close_connections()
    server.expect(CLOSED)
    wait_for_line(driver, "Disconnected from the chat.")
    driver.execute_script("window.dispatchEvent(new Event('online'))")
    server.expect("/nick Alice")
    server.send(*history_block(("10:00:01", messages.chat("Bob", "hello"))), messages.welcome("Alice", 1))
    server.expect("/users")
    server.send(online_reply("Alice", "Bob"))
    wait(driver, lambda d: "Back in the chat as Alice." in lines_shown(d))
    assert history_blocks(driver) == []
    assert lines_shown(driver).count("Bob: hello") == 1


def test_after_a_reconnect_only_the_lines_not_shown_yet_appear_and_the_users_own_never_again(driver, server):
    join(driver, server, "Alice", others=["Bob"])
    server.send(messages.chat("Bob", "one"), messages.joined("Carol"), messages.chat("Carol", "two"))
    send_message(driver, "mine")
    server.expect("mine")
    wait_for_line(driver, "Alice: mine")
    wait_for_line(driver, "Carol: two")
    server.close_connections()  # the connection drops; the server stays
    server.expect(CLOSED)
    wait_for_line(driver, "Disconnected from the chat.")
    # The browser says its network is back (a phone out of a tunnel): no waiting for the timer.
    driver.execute_script("window.dispatchEvent(new Event('online'))")
    server.expect("/nick Alice")
    away = [messages.chat("Bob", "three"), messages.joined("Dave")]
    server.send(
        *history_block(
            ("10:00:01", messages.chat("Bob", "one")),
            ("10:00:02", messages.joined("Carol")),
            ("10:00:03", messages.chat("Alice", "mine")),
            ("10:00:04", messages.chat("Carol", "two")),
            ("10:00:05", messages.left("Alice")),
            ("10:00:06", away[0]),
            ("10:00:07", away[1]),
        ),
        messages.welcome("Alice", 3),
    )
    server.expect("/users")
    server.send(online_reply("Alice", "Bob", "Carol", "Dave"))
    wait(driver, lambda d: element(d, "status").text == "Connected as Alice")
    assert history_blocks(driver) == [
        {
            "heading": "2 messages while you were away",
            "lines": ["Bob: three", "Dave joined the chat!"],
            "times": ["10:00", "10:00"],
            "end": None,  # the one "Live" rule is the first join's; here "Back in the chat" follows
            "live": "off",
        }
    ]
    shown = lines_shown(driver)
    for line in ["Bob: one", "Carol joined the chat!", "Alice: mine", "Carol: two", "Bob: three"]:
        assert shown.count(line) == 1, line
    assert [line for line in shown if line.startswith("Welcome, ")] == ["Welcome, Alice! 1 other user(s) online. Type /help for commands."]
    assert shown[-1] == "Back in the chat as Alice."
    assert "Alice left the chat." not in shown
    assert announced(driver) == "2 messages while you were away"


def test_after_a_server_restart_a_repeated_leave_does_not_hide_what_was_said_before_it(driver, server):
    join(driver, server, "Bob", others=["Ann"])
    server.send(messages.joined("Cid"), messages.left("Cid"))
    wait_for_line(driver, "Cid left the chat.")
    server.send(messages.SHUTTING_DOWN)
    server.close_connections()
    server.expect(CLOSED)
    wait_for_line(driver, "Disconnected from the chat.")
    driver.execute_script("window.dispatchEvent(new Event('online'))")
    server.expect("/nick Bob")
    # The restarted server's history: it ends as what Bob saw did, but is not the same moment.
    away = [
        ("10:00:01", messages.joined("Dan")),
        ("10:00:02", messages.chat("Dan", "the meeting moved to 3pm")),
        ("10:00:03", messages.joined("Cid")),
        ("10:00:04", messages.left("Cid")),
    ]
    server.send(*history_block(*away), messages.welcome("Bob", 2))
    server.expect("/users")
    server.send(online_reply("Ann", "Bob", "Dan"))
    wait(driver, lambda d: element(d, "status").text == "Connected as Bob")
    assert history_blocks(driver) == [
        {
            "heading": "4 messages while you were away (earlier ones may be missing)",
            "lines": [line.removeprefix("[SYSTEM] ") for _, line in away],
            "times": [time[:5] for time, _ in away],
            "end": None,
            "live": "off",
        }
    ]


def test_after_a_rename_and_a_server_shutdown_the_page_returns_under_the_new_name_repeating_nothing(driver, server):
    join(driver, server, "Alice", others=["Bob"], history=[("09:00:00", messages.chat("Bob", "before you came"))])
    send_message(driver, "/nick Alicia")
    server.expect("/nick Alicia")
    server.send(messages.renamed("Alice", "Alicia"), messages.chat("Bob", "after the rename"))
    wait_for_line(driver, "Bob: after the rename")
    send_message(driver, "hi as Alicia")
    server.expect("hi as Alicia")
    server.send(messages.SHUTTING_DOWN)
    server.close_connections()
    server.expect(CLOSED)
    wait_for_line(driver, "Disconnected from the chat.")
    # A server that stopped is retried too: the page comes back as soon as
    # it hears that the network is back, which it does only while a retry is due.
    driver.execute_script("window.dispatchEvent(new Event('online'))")
    server.expect("/nick Alicia")
    server.send(
        *history_block(
            ("09:00:00", messages.chat("Bob", "before you came")),
            ("09:00:01", messages.joined("Alice")),
            ("09:00:02", messages.renamed("Alice", "Alicia")),
            ("09:00:03", messages.chat("Bob", "after the rename")),
            ("09:00:04", messages.chat("Alicia", "hi as Alicia")),
            ("09:00:05", messages.left("Alicia")),
        ),
        messages.welcome("Alicia", 1),
    )
    server.expect("/users")
    server.send(online_reply("Alicia", "Bob"), messages.chat("Bob", "live again"))
    wait_for_line(driver, "Bob: live again")
    assert element(driver, "status").text == "Connected as Alicia"
    assert [block["heading"] for block in history_blocks(driver)] == ["Earlier messages"]  # nothing new to show
    rules = driver.execute_script("return [...document.querySelectorAll('#messages .divider')].map(e => e.textContent)")
    assert rules == ["Earlier messages", "Live"]
    shown = lines_shown(driver)
    for line in ["Bob: before you came", "Alice is now known as Alicia", "Bob: after the rename", "Alicia: hi as Alicia"]:
        assert shown.count(line) == 1, line
    assert shown[-1] == "Bob: live again"


def test_a_history_block_that_is_not_ended_ends_at_the_first_line_without_a_time(driver, server):
    driver.get(server.url)
    type_text(driver, "name", "Alice", enter=True)
    server.expect("/nick Alice")
    server.send(history_start(2), f"[10:00:00] {messages.chat('Bob', 'old')}", messages.welcome("Alice", 1))
    server.expect("/users")
    server.send(online_reply("Alice", "Bob"), history_start(1), "[10:00:01] Bob: not a history now")
    wait_for_line(driver, "[10:00:01] Bob: not a history now")
    assert [block["lines"] for block in history_blocks(driver)] == [["Bob: old"]]
    assert element(driver, "status").text == "Connected as Alice"
    assert lines_shown(driver)[-2:] == ["Last 1 message:", "[10:00:01] Bob: not a history now"]


UNSEEN_CASES = {
    # what the case shows: (seen, replayed, own names, the lines to show)
    "nothing seen: all": ([], ["Bob: a", "Bob: b"], [], ["Bob: a", "Bob: b"]),
    "no overlap: all": (["Bob: a", "Bob: b"], ["Carol: c", "Carol: d"], [], ["Carol: c", "Carol: d"]),
    "an overlap: what follows it": (["Bob: a", "Bob: b", "Bob: c"], ["Bob: b", "Bob: c", "Bob: d"], [], ["Bob: d"]),
    "everything seen: nothing": (["Bob: a", "Bob: b"], ["Bob: a", "Bob: b"], [], []),
    "repeated lines said again are new": (
        ["Bob: hi", "Bob: hi", "Carol: ok"],
        ["Bob: hi", "Carol: ok", "Bob: hi", "Bob: hi"],
        [],
        ["Bob: hi", "Bob: hi"],
    ),
    "repeated lines: the latest end wins a tie": (["Bob: hi"], ["Bob: hi", "Carol: x", "Bob: hi"], [], []),
    "own lines left out on both sides": (
        ["Bob: a", "Alice: mine"],
        [
            "Bob: a",
            "Alice: mine",
            "[SYSTEM] Alice left the chat.",
            "[SYSTEM] Alice joined the chat!",
            "[SYSTEM] Alice is now known as Al",
            "* Al waves",
            "Bob: b",
        ],
        ["Alice", "Al"],
        ["Bob: b"],
    ),
    "own names regardless of case": (
        ["Bob: a"],
        ["Bob: a", "ALICE: shout", "[SYSTEM] alice left the chat."],
        ["Alice"],
        [],
    ),
    "only own lines new: nothing": (["Bob: a"], ["Bob: a", "Al: mine", "[SYSTEM] Al left the chat."], ["Al"], []),
    "own means a public line about that very name": (
        ["Bob: a"],
        ["Bob: a", "[PM from Al] psst", "Albert: hi"],
        ["Al"],
        ["[PM from Al] psst", "Albert: hi"],
    ),
    "an overlap of notices only is no overlap: all": (
        ["Bob: a", "[SYSTEM] Cid joined the chat!", "[SYSTEM] Cid left the chat."],
        ["[SYSTEM] Dan joined the chat!", "Dan: b", "[SYSTEM] Cid joined the chat!", "[SYSTEM] Cid left the chat."],
        [],
        ["[SYSTEM] Dan joined the chat!", "Dan: b", "[SYSTEM] Cid joined the chat!", "[SYSTEM] Cid left the chat."],
    ),
    "an overlap holding a chat line counts though notices follow it": (
        ["Bob: a", "[SYSTEM] Cid left the chat."],
        ["Bob: a", "[SYSTEM] Cid left the chat.", "* Dan waves"],
        [],
        ["* Dan waves"],
    ),
    "notices only once own lines are left out: all": (
        ["[SYSTEM] Cid left the chat."],
        ["Al: brb", "[SYSTEM] Cid left the chat.", "Bob: b"],
        ["Al"],
        ["[SYSTEM] Cid left the chat.", "Bob: b"],
    ),
}


def test_after_a_reconnect_the_page_shows_only_the_replayed_lines_it_has_not_shown(driver, server):
    driver.get(server.url)
    results = driver.execute_script(
        "return arguments[0].map(([seen, replayed, own]) => chatPage.unseen(seen, replayed, new Set(own)))",
        [case[:3] for case in UNSEEN_CASES.values()],
    )
    assert dict(zip(UNSEEN_CASES, results)) == {name: case[3] for name, case in UNSEEN_CASES.items()}


def test_the_pages_unseen_is_the_terminal_clients_on_random_cases(driver, server):
    driver.get(server.url)
    rng = random.Random(11)
    words = ["Bob: a", "Bob: b", "* Bob c", messages.joined("Cid"), messages.left("Cid"), messages.renamed("Cid", "Cy")]
    cases = []
    for _ in range(400):
        alphabet = rng.sample(words, rng.randint(1, len(words)))  # few words, so that overlaps are common
        cases.append(
            [[rng.choice(alphabet) for _ in range(rng.randint(0, 8))], [rng.choice(alphabet) for _ in range(rng.randint(0, 8))]]
        )
    results = driver.execute_script("return arguments[0].map(([seen, replayed]) => chatPage.unseen(seen, replayed))", cases)
    assert results == [replay.unseen(seen, replayed)[0] for seen, replayed in cases]


# -- the password -----------------------------------------------------------------------------


def page_text(driver) -> str:
    """Everything the page shows in words (its title, status, lines, forms, hints)."""
    return driver.find_element(By.TAG_NAME, "body").text


def test_a_password_field_appears_when_the_server_asks_and_the_password_goes_first(driver, server):
    driver.get(server.url)
    type_text(driver, "name", "Alice", enter=True)
    server.expect("/nick Alice")
    server.send(PASSWORD_NEEDED)
    server.close_connections()
    server.expect(CLOSED)
    wait(driver, lambda d: element(d, "password").is_displayed(), "no password field")
    assert driver.switch_to.active_element == element(driver, "password")
    assert element(driver, "password-hint").text == "This chat needs a password."
    # The server's line tells a terminal user to send /pass: the page asks in its own words.
    assert "/pass" not in page_text(driver) and lines_shown(driver) == []
    server.expect_nothing(QUIET_PERIOD_S)  # no reconnecting without the password
    type_text(driver, "password", "wrong", enter=True)
    server.expect("/pass wrong")
    server.expect("/nick Alice")
    server.send(PASSWORD_WRONG)
    server.close_connections()
    server.expect(CLOSED)
    wait(driver, lambda d: element(d, "password").get_attribute("aria-invalid") == "true")
    assert element(driver, "password-hint").text == "Wrong password. Try again."
    assert "/pass" not in page_text(driver) and lines_shown(driver) == []
    type_text(driver, "password", "s3cret", enter=True)
    server.expect("/pass s3cret")
    server.expect("/nick Alice")
    server.send(messages.welcome("Alice", 0))
    server.expect("/users")
    wait(driver, lambda d: element(d, "composer").is_displayed())
    assert element(driver, "password").get_attribute("value") == ""


def test_a_server_that_wants_a_password_after_a_reconnect_is_answered_by_the_form_not_by_its_line(driver, server):
    join(driver, server, "Alice")
    server.close_connections()  # the server restarts, now with a password
    server.expect(CLOSED)
    server.expect("/nick Alice", timeout=TIMEOUT_S + 2)  # the first retry comes within a second
    server.send(PASSWORD_NEEDED)
    server.close_connections()
    server.expect(CLOSED)
    wait(driver, lambda d: element(d, "password").is_displayed(), "no password field")
    assert banner(driver) is None  # not reconnecting: waiting for the user
    assert element(driver, "status").text == "This chat needs a password."
    assert "/pass" not in page_text(driver)
    assert lines_shown(driver)[-1] == "Disconnected from the chat."
    type_text(driver, "password", "s3cret", enter=True)
    server.expect("/pass s3cret")
    server.expect("/nick Alice")
    server.send(messages.welcome("Alice", 0))
    server.expect("/users")
    wait_for_line(driver, "Back in the chat as Alice.")
    assert [line for line in lines_shown(driver) if line.startswith("Welcome, ")] == [
        "Welcome, Alice! 1 other user(s) online. Type /help for commands."
    ]


def test_too_many_wrong_passwords_are_explained(driver, server):
    driver.get(server.url)
    element(driver, "join-button").click()
    server.wait_until_connected()
    server.send(PASSWORD_TOO_MANY_TRIES)
    server.close_connections()
    wait(driver, lambda d: "Too many wrong passwords" in element(d, "password-hint").text)
    assert "from your address" not in page_text(driver) and lines_shown(driver) == []


# -- a phone ---------------------------------------------------------------------------------


def test_on_a_phone_everything_is_in_view_and_large_enough_to_tap(driver, server):
    driver.set_window_size(*PHONE_SIZE)
    join(driver, server, "Alice", others=["Bob"])
    viewport = driver.execute_script("return [window.innerWidth, window.innerHeight]")
    assert viewport[0] <= PHONE_SIZE[0]
    for element_id in ["message", "send-button", "users-toggle"]:
        box = element(driver, element_id).rect
        assert box["height"] >= 44, element_id
        assert 0 <= box["x"] and box["x"] + box["width"] <= viewport[0], element_id
        assert 0 <= box["y"] and box["y"] + box["height"] <= viewport[1], element_id
    assert not element(driver, "users").is_displayed()  # the list opens over the conversation
    element(driver, "users-toggle").click()
    assert element(driver, "users").is_displayed()
    assert element(driver, "users-toggle").get_attribute("aria-expanded") == "true"
    driver.find_element(By.CSS_SELECTOR, "#user-list button").click()
    assert not element(driver, "users").is_displayed()
    assert element(driver, "message").get_attribute("value") == "/msg Bob "
    no_sideways_scroll = driver.execute_script("return document.documentElement.scrollWidth <= window.innerWidth")
    assert no_sideways_scroll
    # The user's own name is in sight, not cut off at the end of the status.
    status_is_whole = driver.execute_script("const s = document.getElementById('status'); return s.scrollWidth <= s.clientWidth")
    assert status_is_whole and element(driver, "status").text.replace("\n", " ") == "Connected as Alice"


@pytest.mark.parametrize("connected", [True, False])
def test_on_a_phone_the_message_boxs_placeholder_is_never_cut(driver, server, connected):
    set_viewport(driver, *PHONE_SIZE)
    join(driver, server, "Alice")
    if not connected:
        server.stop()
        server.expect(CLOSED)
        wait(driver, lambda d: banner(d) is not None, "no banner")
    box = element(driver, "message")
    # The placeholder typed in as text: the box scrolls sideways if it is wider than the room inside.
    fits = driver.execute_script(
        "const box = arguments[0]; box.value = box.placeholder;"
        "const fits = box.scrollWidth <= box.clientWidth; box.value = ''; return [box.placeholder, fits]",
        box,
    )
    assert fits == ["Message · /help for commands" if connected else "Will send when back online", True]


# -- through the adapter ---------------------------------------------------------------------


def test_the_page_works_through_our_own_websocket_adapter(driver):
    server = AdapterPageServer().start()
    try:
        join(driver, server, "Alice", others=["Bob"])  # page, script and style served by the adapter too
        send_message(driver, "héllo 🚀")
        server.expect("héllo 🚀")
        server.send(messages.chat("Bob", "<script>x</script>"))
        wait_for_line(driver, "Bob: <script>x</script>")
    finally:
        driver.get("about:blank")
        server.stop()
    assert not console_errors(driver)


# -- sharing ---------------------------------------------------------------------------------


def test_share_shows_the_pages_address_as_a_large_qr_code_in_a_dialog_that_gives_the_focus_back(driver, server):
    from tests.test_qr import decode, has_zbarimg

    driver.get(server.url)
    share = element(driver, "share-button")
    share.click()
    wait(
        driver,
        lambda d: d.execute_script("const code = document.getElementById('share-code'); return code.complete && code.naturalWidth > 0"),
        "the code never loaded",
    )
    assert element(driver, "share").get_attribute("open") is not None
    assert element(driver, "share-address").text == server.url
    assert driver.switch_to.active_element == element(driver, "share-close")
    code = element(driver, "share-code")
    assert code.size["width"] >= 320 and code.size["width"] == code.size["height"]
    png = code.screenshot_as_png

    driver.switch_to.active_element.send_keys(Keys.ESCAPE)
    wait(driver, lambda d: element(d, "share").get_attribute("open") is None, "Escape did not close the dialog")
    assert driver.switch_to.active_element == share
    share.click()
    element(driver, "share-close").click()
    wait(driver, lambda d: element(d, "share").get_attribute("open") is None, "Close did not close the dialog")
    assert driver.switch_to.active_element == share

    if not has_zbarimg:
        pytest.skip("reading the code needs zbarimg: apt-get install zbar-tools")
    assert decode(png) == [server.url]
