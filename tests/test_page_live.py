"""The chat page in a real browser (headless Chromium), against the real chat server.

test_page.py checks the page against a scripted server, line by line. Here
the page meets the server it is made for: ``ChatServer`` in this process
(the ``start_server`` fixture), or ``server.py`` as a process where a test
restarts it. Raw clients (``Peer``, as ``nc`` would be) and WebSocket
clients (the ``websockets`` library's own) share the room with the page.

Every wait is for a condition, with a deadline: WebDriverWait on the page,
``Peer.expect`` and ``recv(timeout=...)`` on the other clients.
"""

import functools
import re
from dataclasses import replace

import pytest
from selenium.common.exceptions import TimeoutException
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait
from websockets.sync.client import connect

from chat.core import messages
from chat.core.history import HISTORY_END, is_history_start, unstamped
from chat.core.messages import PASSWORD_NEEDED
from tests.browser import PHONE_SIZE, announced, console_errors, history_blocks, set_viewport, type_text
from tests.helpers import FAST, TIMEOUT_S, Peer, Relay, ServerProgram, free_port, join_all


# How often a wait looks at the page again. WebDriverWait's own default is
# half a second, which would make each wait that is not met at once cost that.
POLL_S = 0.05
# After a wrong password the server waits before it checks the next one from
# that address: a second by default, less here, so that the test waits on the
# page, not on the default.
PASSWORD_DELAY_S = 0.05
# Touch targets on a phone: the size that platform guidelines ask for (CSS pixels).
MIN_TAP_PX = 44
# Chromium opens spare connections ahead of need, and may send a request on
# one only later, or never. The chat server takes a connection that has said
# nothing for its first-line wait for a raw client, which joins and is greeted
# (a request sent after that gets a chat line for an answer). Every client
# here names itself at once, the page too, so a long wait costs nothing.
FIRST_LINE_WAIT_S = 2 * TIMEOUT_S


@pytest.fixture
def start_server(start_server):
    """The chat servers of these tests: spare connections never become clients while a test runs."""
    return functools.partial(start_server, timings=replace(FAST, first_line_wait_s=FIRST_LINE_WAIT_S))


@pytest.fixture
def page(driver, start_server):
    """The browser (at desktop size, as the driver fixture leaves it); afterwards it leaves the chat, with no script error.

    It depends on ``start_server`` so that the page leaves (about:blank closes
    its WebSocket) before the test's servers are stopped.
    """
    try:
        yield driver
    finally:
        driver.get("about:blank")
    assert not console_errors(driver)


# -- looking at the page ----------------------------------------------------------------------


def wait(driver, condition, describe, timeout: float = TIMEOUT_S):
    """Wait until ``condition(driver)`` is true and return its value; else fail with ``describe()``."""
    try:
        return WebDriverWait(driver, timeout, poll_frequency=POLL_S).until(condition)
    except TimeoutException:
        raise AssertionError(describe()) from None


def element(driver, element_id: str):
    return driver.find_element(By.ID, element_id)


def lines_shown(driver, kind: str = "") -> "list[str]":
    """The text of each line on the page (of one kind: "chat", "error"...), without its time."""
    return driver.execute_script(
        "return [...document.querySelectorAll(`#messages .line${arguments[0]} .body`)].map(e => e.textContent)",
        f".{kind}" if kind else "",
    )


def online_list(driver) -> "list[str]":
    return driver.execute_script("return [...document.querySelectorAll('#user-list li')].map(e => e.textContent)")


def page_text(driver) -> str:
    """Everything the page shows in words (its status, lines, forms, hints)."""
    return driver.find_element(By.TAG_NAME, "body").text


def status(driver) -> str:
    return element(driver, "status").text


def wait_for_line(driver, text: str, timeout: float = TIMEOUT_S) -> None:
    wait(
        driver,
        lambda d: text in lines_shown(d),
        lambda: f"{text!r} never appeared; the page shows {lines_shown(driver)!r}",
        timeout,
    )


def wait_for_online(driver, names: "list[str]") -> None:
    wait(
        driver, lambda d: online_list(d) == names, lambda: f"the online list is {online_list(driver)!r}, not {names!r}"
    )


def wait_for_status(driver, text: str, timeout: float = TIMEOUT_S) -> None:
    wait(driver, lambda d: status(d) == text, lambda: f"the status is {status(driver)!r}, not {text!r}", timeout)


def page_url(address) -> str:
    host, port = address
    return f"http://{host}:{port}/"


def ws_url(address) -> str:
    host, port = address
    return f"ws://{host}:{port}/ws"


def join(driver, address, name: str) -> None:
    """Open the page from the chat server's port and join as ``name``, the online list filled in."""
    driver.get(page_url(address))
    type_text(driver, "name", name, enter=True)
    wait_for_status(driver, f"Connected as {name}")
    # The page asks for /users once welcomed; its answer fills the list.
    wait(driver, lambda d: f"{name} (you)" in online_list(d), lambda: f"no {name} in {online_list(driver)!r}")


def send_message(driver, text: str) -> None:
    type_text(driver, "message", text, enter=True)


# -- the page on the chat port, and joining ------------------------------------------------------


def test_the_page_comes_from_the_chat_port_and_joins_the_room_under_the_chosen_name(page, start_server):
    server = start_server()
    bob = Peer.joined(server.address, "Bob")
    page.get(page_url(server.address))
    assert page.title == "Chat"
    loaded = page.execute_script("return [location.href, ...performance.getEntriesByType('resource').map(e => e.name)]")
    assert sorted(loaded) == [page_url(server.address) + path for path in ("", "app.js", "style.css")]
    assert page.execute_script("return getComputedStyle(document.body).display") == "grid"  # style.css applied
    type_text(page, "name", "Alice", enter=True)
    bob.expect(messages.joined("Alice"))
    wait_for_status(page, "Connected as Alice")
    wait_for_online(page, ["Alice (you)", "Bob"])
    assert "Welcome, Alice! 1 other user(s) online. Type /help for commands." in lines_shown(page)
    assert not [line for line in lines_shown(page) if line.startswith("Online (")]  # the page's own /users
    assert sorted(server.room.names()) == ["Alice", "Bob"]
    assert page.switch_to.active_element == element(page, "message")
    # The name is remembered: the next visit joins under it without asking.
    page.refresh()
    assert bob.read_line() == messages.left("Alice")
    assert bob.read_line() == messages.joined("Alice")
    wait_for_status(page, "Connected as Alice")


# -- lines between the page, raw clients and WebSocket clients -----------------------------------


def test_lines_reach_the_page_a_raw_client_and_a_websocket_client_in_one_order(page, start_server):
    server = start_server()
    ann = Peer.joined(server.address, "Ann")
    with connect(ws_url(server.address), open_timeout=TIMEOUT_S) as web:
        web.send("/nick Web")
        assert web.recv(timeout=TIMEOUT_S).startswith("[SYSTEM] Welcome, Web! ")
        ann.expect(messages.joined("Web"))
        join(page, server.address, "Alice")
        ann.expect(messages.joined("Alice"))
        assert web.recv(timeout=TIMEOUT_S) == messages.joined("Alice")

        # Each line is sent once the one before it has arrived, so that
        # there is exactly one order for everyone to agree on.
        send_message(page, "one from the browser: héllo 🚀 <b>")
        ann.expect("Alice: one from the browser: héllo 🚀 <b>")
        ann.send("two from nc")
        wait_for_line(page, "Ann: two from nc")
        web.send("three from websockets")
        wait_for_line(page, "Web: three from websockets")
        ann.expect("Web: three from websockets")
        send_message(page, "four from the browser")
        ann.expect("Alice: four from the browser")
        assert [web.recv(timeout=TIMEOUT_S) for _ in range(3)] == [
            "Alice: one from the browser: héllo 🚀 <b>",
            "Ann: two from nc",
            "Alice: four from the browser",
        ]
        assert lines_shown(page, "chat") == [
            "Alice: one from the browser: héllo 🚀 <b>",
            "Ann: two from nc",
            "Web: three from websockets",
            "Alice: four from the browser",
        ]

        # Lines sent at the same time from the page and from a raw client:
        # whatever order the server puts them in, a raw and a WebSocket
        # onlooker see the same one, and each sender's lines stay in order.
        bob = Peer.joined(server.address, "Bob")
        assert web.recv(timeout=TIMEOUT_S) == messages.joined("Bob")
        for n in range(5):
            ann.send(f"ann {n}")
            send_message(page, f"alice {n}")
        web_heard = [web.recv(timeout=TIMEOUT_S) for _ in range(10)]
        bob_heard = [bob.read_line() for _ in range(10)]
        assert web_heard == bob_heard
        assert [line for line in web_heard if line.startswith("Ann: ")] == [f"Ann: ann {n}" for n in range(5)]
        assert [line for line in web_heard if line.startswith("Alice: ")] == [f"Alice: alice {n}" for n in range(5)]
        wait_for_line(page, "Ann: ann 4")
        shown_from_ann = [line for line in lines_shown(page) if line.startswith("Ann: ann ")]
        assert shown_from_ann == [f"Ann: ann {n}" for n in range(5)]


def test_the_pages_commands_are_the_servers_and_quit_leaves_for_good(page, start_server):
    server = start_server()
    bob = Peer.joined(server.address, "Bob")
    join(page, server.address, "Alice")
    bob.expect(messages.joined("Alice"))
    send_message(page, "/nick Alicia")
    bob.expect(messages.renamed("Alice", "Alicia"))
    wait_for_status(page, "Connected as Alicia")
    wait_for_online(page, ["Alicia (you)", "Bob"])
    assert page.execute_script("return localStorage.getItem('chat.name')") == "Alicia"
    send_message(page, "/me waves")
    assert bob.read_line() == "* Alicia waves"
    send_message(page, "/msg Bob psst")
    assert bob.read_line() == "[PM from Alicia] psst"
    wait_for_line(page, "[PM to Bob] psst")
    send_message(page, "/frobnicate")
    wait_for_line(page, "Error: Unknown command /frobnicate. Type /help for the list.")
    assert lines_shown(page, "chat") == []  # no command was shown as a chat line
    assert lines_shown(page, "action") == ["* Alicia waves"]
    assert lines_shown(page, "error") == ["Error: Unknown command /frobnicate. Type /help for the list."]
    send_message(page, "/quit")
    assert bob.read_line() == messages.left("Alicia")
    wait(page, lambda d: element(d, "join-form").is_displayed(), lambda: f"no join form; status {status(page)!r}")
    assert status(page) == "You left the chat."
    bob.assert_receives_nothing()  # the page does not come back by itself
    # Joining again under a name someone took meanwhile: the server's default name, and why.
    bob.send("/nick Alicia")
    bob.expect(lambda line: line.startswith("[SYSTEM] Bob is now known as"))
    element(page, "join-button").click()
    joined = bob.expect(lambda line: line.endswith(" joined the chat!"))
    default_name = joined.removeprefix("[SYSTEM] ").removesuffix(" joined the chat!")
    assert default_name.startswith("User_")
    wait_for_status(page, f"Connected as {default_name}")
    assert "Error: The name Alicia is taken." in lines_shown(page)
    assert page.execute_script("return localStorage.getItem('chat.name')") == "Alicia"  # still the one chosen


# -- who is online --------------------------------------------------------------------------------


def test_the_online_list_follows_raw_clients_joining_renaming_and_leaving(page, start_server):
    server = start_server()
    bob = Peer.joined(server.address, "Bob")
    join(page, server.address, "Alice")
    wait_for_online(page, ["Alice (you)", "Bob"])
    carol = Peer.joined(server.address, "carol")
    wait_for_online(page, ["Alice (you)", "Bob", "carol"])
    bob.send("/nick Bobby")
    wait_for_online(page, ["Alice (you)", "Bobby", "carol"])
    carol.send("/quit")
    carol.read_until_closed()
    wait_for_online(page, ["Alice (you)", "Bobby"])
    bob.close()  # gone without a word, as when a terminal is closed
    wait_for_online(page, ["Alice (you)"])
    assert element(page, "users-heading-count").text == "1"
    assert server.room.names() == ["Alice"]
    shown = lines_shown(page)
    for notice in (
        "carol joined the chat!",
        "Bob is now known as Bobby",
        "carol left the chat.",
        "Bobby left the chat.",
    ):
        assert notice in shown


# -- text, not markup -----------------------------------------------------------------------------


def test_markup_from_a_raw_client_is_shown_as_the_characters_it_is(page, start_server):
    server = start_server()
    mallory = Peer.joined(server.address, "Mallory")
    join(page, server.address, "Alice")
    mallory.expect(messages.joined("Alice"))
    mallory.send("<script>window.hacked = 1</script>")
    mallory.send('<img src="x" onerror="window.hacked = 2">')
    mallory.send("/me <b onmouseover=window.hacked=3>waves</b>")
    mallory.send("/msg Alice <a href='javascript:window.hacked=4'>click</a> &lt;i&gt;")
    mallory.expect(lambda line: line.startswith("[PM to Alice]"))
    wait_for_line(page, "[PM from Mallory] <a href='javascript:window.hacked=4'>click</a> &lt;i&gt;")
    shown = lines_shown(page)
    for line in (
        "Mallory: <script>window.hacked = 1</script>",
        'Mallory: <img src="x" onerror="window.hacked = 2">',
        "* Mallory <b onmouseover=window.hacked=3>waves</b>",
    ):
        assert line in shown
    markup = page.execute_script(
        "return document.querySelectorAll('#messages script, #messages img, #messages b, #messages a, #messages i').length"
    )
    assert markup == 0
    assert page.execute_script("return window.hacked") is None


# -- the room password ----------------------------------------------------------------------------


def test_with_a_room_password_the_page_asks_for_it_and_joins_once_it_is_right(page, start_server):
    timings = replace(FAST, first_line_wait_s=FIRST_LINE_WAIT_S, password_delay_s=PASSWORD_DELAY_S)
    server = start_server(password="open sesame", timings=timings)
    ann = Peer(server.address)
    ann.send("/pass open sesame")
    ann.send("/nick Ann")
    assert ann.read_line().startswith("[SYSTEM] Welcome, Ann! ")
    page.get(page_url(server.address))
    type_text(page, "name", "Alice", enter=True)
    wait(page, lambda d: element(d, "password").is_displayed(), lambda: f"no password field; status {status(page)!r}")
    assert element(page, "password-hint").text == "This chat needs a password."
    assert page.switch_to.active_element == element(page, "password")
    # The server's line tells a terminal user to send /pass: the page asks in its own words instead.
    assert "/pass" in PASSWORD_NEEDED and "/pass" not in page_text(page)
    assert lines_shown(page) == []
    type_text(page, "password", "a wrong guess", enter=True)
    wait(
        page,
        lambda d: element(d, "password").get_attribute("aria-invalid") == "true",
        lambda: f"the wrong password was not pointed out; status {status(page)!r}",
    )
    assert element(page, "password-hint").text == "Wrong password. Try again."
    assert "/pass" not in page_text(page) and lines_shown(page) == []
    type_text(page, "password", "open sesame", enter=True)
    wait_for_status(page, "Connected as Alice")
    assert ann.read_line() == messages.joined("Alice")  # and nothing before it: no one else came in
    assert element(page, "password").get_attribute("value") == ""
    assert not [line for line in lines_shown(page) if "open sesame" in line]
    send_message(page, "let in")
    ann.expect("Alice: let in")


# -- history and coming back ------------------------------------------------------------------


def replay_of(peer: Peer) -> "list[str]":
    """The history block a peer that just connected gets, between its markers, up to the welcome."""
    assert is_history_start(peer.read_line())
    block = []
    while (line := peer.read_line()) != HISTORY_END:
        block.append(line)
    assert peer.read_line().startswith("[SYSTEM] Welcome, ")
    return block


def test_a_newcomer_sees_the_rooms_history_apart_from_the_live_chat_and_no_private_message(page, start_server):
    server = start_server(history_lines=50)
    bob, carol = join_all(server.address, "Bob", "Carol")
    # Each line once the one before has arrived, so there is one order.
    bob.send("hello <i>there</i>")
    carol.expect("Bob: hello <i>there</i>")
    carol.send("/me waves")
    bob.expect("* Carol waves")
    bob.send("/msg Carol a secret")
    carol.expect("[PM from Bob] a secret")
    carol.send("/nick Caz")
    bob.expect(messages.renamed("Carol", "Caz"))
    join(page, server.address, "Alice")
    bob.expect(messages.joined("Alice"))
    bob.send("live, after Alice came")
    wait_for_line(page, "Bob: live, after Alice came")
    shown = lines_shown(page)
    # A raw client that comes next gets the same block, then Bob's live line (joins are not history).
    probe = Peer(server.address, "Probe")
    replayed = [unstamped(line) for line in replay_of(probe)]
    assert replayed[-1][1] == "Bob: live, after Alice came"
    replayed = replayed[:-1]
    said = [line.removeprefix("[SYSTEM] ") for _, line in replayed]
    assert said == ["Bob: hello <i>there</i>", "* Carol waves", "Carol is now known as Caz"]
    assert history_blocks(page) == [
        {"heading": "Earlier messages", "lines": said, "times": [time[:5] for time, _ in replayed], "end": "Live", "live": "off"}
    ]
    assert all(re.fullmatch(r"\d\d:\d\d:\d\d", time) for time, _ in replayed)
    welcome = "Welcome, Alice! 2 other user(s) online. Type /help for commands."
    assert shown == [*said, welcome, "Bob: live, after Alice came"]
    assert not [line for line in lines_shown(page) if "secret" in line]
    assert page.execute_script("return document.querySelectorAll('#messages i').length") == 0
    assert announced(page) == "3 earlier messages"
    wait_for_online(page, ["Alice (you)", "Bob", "Caz", "Probe"])


def test_after_a_dropped_connection_the_page_shows_only_what_it_missed(page, start_server):
    server = start_server(history_lines=50)
    relay = Relay(server.address, connect_on_first_bytes=True)
    try:
        bob = Peer.joined(server.address, "Bob")
        join(page, relay.address, "Alice")
        bob.expect(messages.joined("Alice"))
        bob.send("seen before the drop")
        wait_for_line(page, "Bob: seen before the drop")
        send_message(page, "mine, before the drop")
        bob.expect("Alice: mine, before the drop")
        relay.hold()  # the page's next connection waits at the relay until Bob has spoken
        relay.cut()  # as when a phone changes network
        bob.expect(messages.left("Alice"))  # the server noticed: the name is free again
        wait_for_line(page, "Disconnected from the chat.")
        # On the new network the browser says it is online again, and the
        # page comes back at once instead of waiting for its timer.
        page.execute_script("window.dispatchEvent(new Event('online'))")
        bob.send("said while Alice was away")
        bob.send("/users")  # answered after Bob's line is in the room: Carol comes after it
        bob.expect(lambda line: line.startswith("[SYSTEM] Online ("))
        carol = Peer.joined(server.address, "Carol")
        bob.expect(messages.joined("Carol"))
        relay.release()
        bob.expect(messages.joined("Alice"))
        wait_for_status(page, "Connected as Alice")
        blocks = history_blocks(page)
        # Joins are no history: Alice had none to see when she came, and misses only Bob's line.
        assert [block["heading"] for block in blocks] == ["1 message while you were away"]
        assert blocks[0]["lines"] == ["Bob: said while Alice was away"]
        shown = lines_shown(page)
        for line in ["Bob: seen before the drop", "Alice: mine, before the drop", "Bob: said while Alice was away"]:
            assert shown.count(line) == 1, line
        assert "Alice left the chat." not in shown
        # Coming back is no second welcome: a note says it, after what was missed.
        assert [line for line in shown if line.startswith("Welcome, ")] == [messages.welcome("Alice", 1).removeprefix("[SYSTEM] ")]
        assert shown[-1] == "Back in the chat as Alice."
        wait_for_online(page, ["Alice (you)", "Bob", "Carol"])
        carol.send("and now, live")
        wait_for_line(page, "Carol: and now, live")
        assert lines_shown(page)[-1] == "Carol: and now, live"
    finally:
        page.get("about:blank")  # the page stops reconnecting before the relay goes
        relay.close()


def test_a_name_already_taken_is_said_after_the_history_at_the_bottom_where_it_is_seen(page, start_server):
    server = start_server(history_lines=50, max_rate=0, max_address_rate=0)  # forty lines at once are no flood here
    ann, bob = join_all(server.address, "Ann", "Bob")
    said = [f"Ann: line {n}, more than the page has room for" for n in range(40)]
    for line in said:
        ann.send(line.removeprefix("Ann: "))
    for line in said:
        bob.expect(line)
    page.get(page_url(server.address))
    type_text(page, "name", "bob", enter=True)  # names are unique regardless of case
    wait(page, lambda d: status(d).startswith("Connected as "), lambda: f"the status is {status(page)!r}")
    given = status(page).removeprefix("Connected as ")
    assert given.startswith("User_")
    taken = "Error: The name bob is taken."
    welcome = messages.welcome(given, 2).removeprefix("[SYSTEM] ")
    assert lines_shown(page) == [*said, taken, welcome]
    assert [block["lines"] for block in history_blocks(page)] == [said]
    error = page.find_element(By.CSS_SELECTOR, "#messages .line.error")
    wait(page, lambda d: visible_in(d, error, "messages"), lambda: "the error is not in view")
    assert page.execute_script("return localStorage.getItem('chat.name')") is None  # "bob" was not had


def test_after_a_server_restart_the_page_rejoins_under_its_name_shows_what_was_said_meanwhile_and_keeps_the_typed_text(
    page,
):
    port = free_port()
    first = ServerProgram(port, "--history", "50")
    relay = Relay(("127.0.0.1", port), connect_on_first_bytes=True)
    second = None
    try:
        bob = Peer.joined(first.address, "Bob")
        join(page, relay.address, "Alice")
        bob.send("before the restart")
        wait_for_line(page, "Bob: before the restart")
        send_message(page, "/nick Alicia")  # the name to come back under
        bob.expect(messages.renamed("Alice", "Alicia"))
        wait_for_status(page, "Connected as Alicia")
        type_text(page, "message", "typed before the restart")
        relay.hold()  # the page's next connection waits at the relay until Bob has spoken
        first.terminate()
        bob.expect(messages.SHUTTING_DOWN)
        bob.close()  # as a client does: the server waits a while for each to close its end
        wait_for_line(page, messages.SHUTTING_DOWN.removeprefix("[SYSTEM] "))
        wait_for_line(page, "Disconnected from the chat.")
        assert first.wait() == 0
        # A page that would give up after a shutdown has no retry due, and
        # "online" brings back only a page with one due (its timer is
        # test_page.py's concern): here it comes back at once.
        page.execute_script("window.dispatchEvent(new Event('online'))")
        wait_for_status(page, "Connecting…")  # the retry, waiting at the relay
        second = ServerProgram(port, "--history", "50")
        bob = Peer.joined(second.address, "Bob")
        bob.send("said while the page was away")
        bob.send("/users")  # its answer comes once the line before is in the history
        assert bob.expect(lambda line: line.startswith("[SYSTEM] Online (")) == "[SYSTEM] Online (1): Bob"
        relay.release()
        wait_for_status(page, "Connected as Alicia")
        bob.expect(messages.joined("Alicia"))
        # A new server process remembers nothing from before: what it has is new to the page.
        away = history_blocks(page)[-1]
        assert away["heading"] == "1 message while you were away (earlier ones may be missing)"
        assert away["lines"] == ["Bob: said while the page was away"]
        shown = lines_shown(page)
        assert shown.count("Bob: before the restart") == 1
        assert shown.count("Bob: said while the page was away") == 1
        assert element(page, "message").get_attribute("value") == "typed before the restart"
        wait_for_online(page, ["Alicia (you)", "Bob"])
        send_message(page, "")  # Enter sends what was kept
        bob.expect("Alicia: typed before the restart")
    finally:
        page.get("about:blank")  # the page stops reconnecting before the server goes
        relay.close()
        Peer.close_all()
        for program in (first, second):
            if program is not None:
                program.kill()


# -- a phone --------------------------------------------------------------------------------------


def visible_in(driver, item, container_id: str) -> bool:
    """True if ``item`` is wholly inside the element ``container_id`` and inside the viewport."""
    return driver.execute_script(
        "const [item, box] = [arguments[0], document.getElementById(arguments[1])];"
        "const r = item.getBoundingClientRect(), b = box.getBoundingClientRect();"
        "return r.height > 0 && r.top >= b.top - 1 && r.bottom <= b.bottom + 1"
        "  && r.top >= 0 && r.bottom <= window.innerHeight && r.left >= 0 && r.right <= window.innerWidth",
        item,
        container_id,
    )


def tappable(driver, element_id: str) -> bool:
    """True if the element is large enough to tap, in the viewport, and nothing covers its middle."""
    return driver.execute_script(
        "const e = document.getElementById(arguments[0]), r = e.getBoundingClientRect(), m = arguments[1];"
        "const hit = document.elementFromPoint(r.left + r.width / 2, r.top + r.height / 2);"
        "return r.height >= m && r.width >= m && r.left >= 0 && r.right <= window.innerWidth"
        "  && r.top >= 0 && r.bottom <= window.innerHeight && (hit === e || e.contains(hit))",
        element_id,
        MIN_TAP_PX,
    )


def test_on_a_phone_the_messages_the_input_and_the_send_button_are_usable(page, start_server):
    server = start_server()
    set_viewport(page, *PHONE_SIZE)
    bob = Peer.joined(server.address, "Bob")
    join(page, server.address, "Alice")
    assert page.execute_script("return [window.innerWidth, window.innerHeight]") == list(PHONE_SIZE)
    long_word = "https://example.org/" + "a" * 200  # no place to break it
    for n in range(15):
        bob.send(f"line {n} on a small screen")
    bob.send(long_word)
    wait_for_line(page, f"Bob: {long_word}")
    newest = page.find_elements(By.CSS_SELECTOR, "#messages .line")[-1]
    wait(page, lambda d: visible_in(d, newest, "messages"), lambda: "the newest line is not in view")
    # The page itself never scrolls (the input stays at the bottom, the header at the top),
    # and a long word wraps instead of making the conversation scroll sideways.
    extent = page.execute_script(
        "const root = document.documentElement, m = document.getElementById('messages');"
        "return [root.scrollWidth, root.scrollHeight, m.scrollWidth <= m.clientWidth]"
    )
    assert extent == [PHONE_SIZE[0], PHONE_SIZE[1], True]
    for element_id in ("message", "send-button"):
        assert tappable(page, element_id), element_id
    element(page, "message").click()
    type_text(page, "message", "sent from a phone")
    element(page, "send-button").click()
    bob.expect("Alice: sent from a phone")
    wait_for_line(page, "Alice: sent from a phone")
    mine = page.find_elements(By.CSS_SELECTOR, "#messages .line")[-1]
    assert visible_in(page, mine, "messages")
    assert element(page, "message").get_attribute("value") == ""
