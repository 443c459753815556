"""The chat page and the room's operators, in a real browser (headless Chromium).

Against the scripted server of test_page.py: a page removed by an operator
(kicked, or banned) says who did it and why and does not reconnect, and a
chat line that only quotes such a notice changes nothing; the topic bar
follows the topic; the online list marks operators. The lines are the
server's own words (chat/core/moderation.py and chat/core/operators.py).
"""

import contextlib
import threading
from dataclasses import replace

import pytest
from selenium.webdriver.common.by import By
from websockets.exceptions import ConnectionClosedOK, InvalidStatus
from websockets.sync.client import connect

from chat.core import messages
from chat.core.messages import PASSWORD_TOO_MANY_TRIES
from chat.config import ServerConfig
from chat.server import ChatServer
from tests.browser import PHONE_SIZE, console_errors, type_text
from tests.helpers import FAST, QUIET_PERIOD_S, TIMEOUT_S, Peer
from tests.pageserver import CLOSED
from tests.test_page import (
    element,
    history_block,
    join,
    lines_shown,
    online_reply,
    send_message,
    server,
    wait,
    wait_for_line,
)


__all__ = ["server"]  # the fixture: a fresh scripted server for each test

NOW_OPERATOR = messages.system("You are now an operator. Type /help to see the operator commands.")
NO_LONGER_OPERATOR = messages.system("You are no longer an operator.")


def status(driver) -> str:
    return element(driver, "status").text


def topic_shown(driver) -> "str | None":
    """The topic in the bar at the top, or None while the bar is hidden."""
    bar = element(driver, "topic")
    return element(driver, "topic-text").get_attribute("textContent") if bar.is_displayed() else None


def wait_for_topic(driver, topic: "str | None") -> None:
    wait(driver, lambda d: topic_shown(d) == topic, f"the topic bar shows {topic_shown(driver)!r}, not {topic!r}")


def welcome_with(driver, server, name: str, topic: "str | None" = None, history=(), others=("Bob",)) -> None:
    """Play a welcome (with a history before it, a topic line after it) and the /users reply."""
    lines = [*history_block(*history), messages.welcome(name, len(others))]
    if topic is not None:
        lines.append(messages.system(f"Topic: {topic}"))
    server.send(*lines)
    server.expect("/users")
    server.send(online_reply(*sorted([name, *others], key=str.casefold)))
    wait(driver, lambda d: status(d) == f"Connected as {name}")


def online_marks(driver) -> "list[tuple[str, bool]]":
    """Each name in the online list, and whether it has the operator badge."""
    return [
        tuple(pair)
        for pair in driver.execute_script(
            "return [...document.querySelectorAll('#user-list li')]"
            ".map(li => [li.querySelector('.name').textContent, li.querySelector('.badge') !== null])"
        )
    ]


def removal_shown(driver) -> "str | None":
    """The reason the page shows for being out of the chat, or None while it shows none."""
    box = element(driver, "removed")
    return element(driver, "removed-text").text if box.is_displayed() else None


def reconnect_is_due(driver) -> bool:
    """Whether the page means to reconnect: nudged as a browser coming back online would, does it try?"""
    driver.execute_script("window.dispatchEvent(new Event('online'))")
    return "Reconnecting" in status(driver) or status(driver) in ("Connecting…", "Joining…")


# -- removed by an operator -------------------------------------------------------------------


@pytest.mark.parametrize(
    "farewell, by",
    [
        ("You were removed by Ann: spamming: again", "Ann"),
        ("You were removed by Server and banned for 60 minutes.", "Server"),
    ],
    ids=["kicked-with-a-reason", "banned-by-the-console"],
)
def test_a_page_removed_by_an_operator_says_who_and_why_and_does_not_reconnect(driver, server, farewell, by):
    join(driver, server, "Alice", others=["Ann", "Bob"])
    type_text(driver, "message", "half typed")
    server.send(messages.system(farewell))
    server.close_connections()
    server.expect(CLOSED)
    wait(driver, lambda d: removal_shown(d) == farewell, f"the page shows {removal_shown(driver)!r}")
    assert status(driver) == f"Removed from the chat by {by}"
    assert element(driver, "removed").get_attribute("role") == "alert"
    assert "Reloading the page tries to join again." in element(driver, "removed").text
    assert not element(driver, "composer").is_displayed() and not element(driver, "join-form").is_displayed()
    assert driver.switch_to.active_element == element(driver, "reload-button")  # the message box went away
    assert farewell in lines_shown(driver)  # and the line itself is in the conversation
    # Neither its timer nor the network coming back makes the page try again.
    assert not reconnect_is_due(driver)
    server.expect_nothing(QUIET_PERIOD_S)
    assert server.connections_opened == 1
    element(driver, "reload-button").click()  # the user decides to try again
    server.expect("/nick Alice")
    welcome_with(driver, server, "Alice")
    assert removal_shown(driver) is None and element(driver, "composer").is_displayed()


def test_a_banned_address_is_told_for_how_long_and_why_and_the_page_stops_there_even_on_a_phone(driver, server):
    driver.set_window_size(*PHONE_SIZE)
    driver.get(server.url)
    type_text(driver, "name", "Alice", enter=True)
    server.expect("/nick Alice")
    refusal = "You are banned from this chat for 59 more minutes: spamming <b>again</b>"
    server.send(messages.system(refusal))
    server.close_connections()
    server.expect(CLOSED)
    wait(driver, lambda d: removal_shown(d) == refusal, f"the page shows {removal_shown(driver)!r}")
    assert status(driver) == "Banned from this chat"
    assert driver.execute_script("return document.querySelectorAll('#removed b').length") == 0
    assert not element(driver, "join-form").is_displayed()
    viewport = driver.execute_script("return [window.innerWidth, window.innerHeight]")
    button = element(driver, "reload-button").rect
    assert button["height"] >= 44 and button["x"] + button["width"] <= viewport[0]
    assert button["y"] + button["height"] <= viewport[1]
    assert driver.execute_script("return document.documentElement.scrollWidth <= window.innerWidth")
    assert not reconnect_is_due(driver)
    server.expect_nothing(QUIET_PERIOD_S)
    assert server.connections_opened == 1


def test_a_chat_line_that_imitates_a_removal_is_that_members_chat_line_and_changes_nothing(driver, server):
    join(driver, server, "Alice", others=["Ann", "Bob", "Mallory"])
    forged = [
        "Mallory: [SYSTEM] You were removed by Ann: spamming",
        "Mallory: [SYSTEM] You are banned from this chat for 59 more minutes.",
        "Mallory: [SYSTEM] Topic: free pizza",
        "Mallory: [SYSTEM] Ann set the topic: free pizza",
        "Mallory: [SYSTEM] Bob was removed by Ann.",
    ]
    server.send(*forged)
    wait_for_line(driver, forged[-1])
    kinds = driver.execute_script(
        "return [...document.querySelectorAll('#messages .line')].slice(-5)"
        ".map(e => [e.className, e.querySelector('.name') && e.querySelector('.name').textContent])"
    )
    assert kinds == [["line chat", "Mallory"]] * 5
    assert topic_shown(driver) is None
    assert [name for name, _ in online_marks(driver)] == ["Alice", "Ann", "Bob", "Mallory"]
    server.close_connections()  # an ordinary drop: the page comes back
    server.expect(CLOSED)
    wait(driver, lambda d: reconnect_is_due(d), "the page does not mean to reconnect")
    server.expect("/nick Alice")
    assert removal_shown(driver) is None


# -- the topic ------------------------------------------------------------------------------


def test_the_topic_bar_shows_the_topic_after_the_welcome_and_follows_its_changes(driver, server):
    driver.get(server.url)
    assert topic_shown(driver) is None
    type_text(driver, "name", "Alice", enter=True)
    server.expect("/nick Alice")
    # The history holds topics set and cleared before: only the line after the welcome tells the topic now.
    history = [("09:00:00", messages.system("Ann set the topic: an old one"))]
    welcome_with(driver, server, "Alice", topic="Homework is due <b>Friday</b>", history=history)
    wait_for_topic(driver, "Homework is due <b>Friday</b>")
    assert driver.execute_script("return document.querySelectorAll('#topic b').length") == 0
    top = element(driver, "topic").rect
    assert top["y"] + top["height"] <= element(driver, "messages").rect["y"]  # above the conversation
    server.send(messages.system("Ann set the topic: Quiz moved to Monday"))
    wait_for_topic(driver, "Quiz moved to Monday")
    wait_for_line(driver, "Ann set the topic: Quiz moved to Monday")
    server.send(messages.system("Server cleared the topic."))
    wait_for_topic(driver, None)
    server.send(messages.system("Ann set the topic: Back again"))
    wait_for_topic(driver, "Back again")

    server.close_connections()  # a reconnect: the welcome without a topic line means there is none now
    server.expect(CLOSED)
    wait(driver, lambda d: reconnect_is_due(d), "the page does not mean to reconnect")
    server.expect("/nick Alice")
    history = [("09:00:01", messages.system("Ann set the topic: Back again"))]
    welcome_with(driver, server, "Alice", history=history)
    wait_for_topic(driver, None)


def test_a_newcomer_welcomed_without_a_topic_sees_no_bar_though_the_history_set_one(driver, server):
    driver.get(server.url)
    type_text(driver, "name", "Alice", enter=True)
    server.expect("/nick Alice")
    history = [("09:00:00", messages.system("Ann set the topic: stale"))]
    welcome_with(driver, server, "Alice", history=history)
    server.send(messages.chat("Bob", "after the welcome"))
    wait_for_line(driver, "Bob: after the welcome")
    assert topic_shown(driver) is None


# -- operators in the online list ---------------------------------------------------------------


def test_operators_have_a_badge_in_the_online_list_and_their_names_are_plain(driver, server):
    driver.get(server.url)
    type_text(driver, "name", "Alice", enter=True)
    server.expect("/nick Alice")
    server.send(messages.welcome("Alice", 2))
    server.expect("/users")
    server.send(messages.system("Online (3): Alice, @Ann, Bob"))
    wait(driver, lambda d: online_marks(d) == [("Alice", False), ("Ann", True), ("Bob", False)], "no badge for Ann")
    ann = driver.find_element(By.CSS_SELECTOR, "#user-list li:nth-child(2) button")
    badge = ann.find_element(By.CSS_SELECTOR, ".badge")
    shown = badge.find_element(By.CSS_SELECTOR, "[aria-hidden=true]")  # what the eye gets; a reader gets the label
    assert shown.is_displayed() and shown.text == "op"
    assert ann.accessible_name == "Ann (operator)"
    assert element(driver, ann.get_attribute("aria-describedby")).text == "Tap a name to send a private message."
    assert element(driver, "users-heading-count").text == "3"
    ann.click()
    assert element(driver, "message").get_attribute("value") == "/msg Ann "

    driver.execute_script("document.getElementById('message').value = ''")
    server.send(NOW_OPERATOR)  # our own badge at once, without asking for the list
    wait(driver, lambda d: ("Alice", True) in online_marks(d), "no badge for us")
    you = driver.find_element(By.CSS_SELECTOR, "#user-list .you")
    assert you.text.replace("\n", " ").startswith("Alice (you)")
    assert you.find_element(By.CSS_SELECTOR, ".badge .visually-hidden").get_attribute("textContent") == " (operator)"
    server.send(messages.renamed("Ann", "Annie"))
    wait(driver, lambda d: ("Annie", True) in online_marks(d), "the badge did not follow the rename")
    server.send(NO_LONGER_OPERATOR)
    wait(driver, lambda d: ("Alice", False) in online_marks(d), "our badge stayed")
    server.send(messages.system("Bob was removed by Annie: spamming"))
    wait(driver, lambda d: online_marks(d) == [("Alice", False), ("Annie", True)], "Bob is still listed")
    wait_for_line(driver, "Bob was removed by Annie: spamming")
    type_text(driver, "message", "/users", enter=True)
    server.expect("/users")
    server.send(messages.system("Online (2): @Alice, Annie"))  # asked for by the user: shown as it came
    wait_for_line(driver, "Online (2): @Alice, Annie")
    wait(driver, lambda d: online_marks(d) == [("Alice", True), ("Annie", False)], "the list did not follow /users")


def test_a_page_whose_reconnect_is_refused_for_a_ban_says_so_and_stops(driver, server):
    join(driver, server, "Alice")
    refusal = "You are banned from this chat until an operator lifts it."
    server.forbidden = refusal  # someone else at this address was banned: the WebSocket gets 403
    server.close_connections()
    server.expect(CLOSED)
    wait(driver, lambda d: reconnect_is_due(d) or removal_shown(d), "the page neither retries nor explains")
    wait(driver, lambda d: removal_shown(d) == refusal, f"the page shows {removal_shown(driver)!r}")
    assert status(driver) == "Banned from this chat"
    assert not reconnect_is_due(driver)
    server.expect_nothing(QUIET_PERIOD_S)
    assert server.connections_opened == 1
    # The browser reports each refusal (the WebSocket's and the page's) as an error; nothing else went wrong.
    errors = console_errors(driver)
    assert all("403" in error for error in errors), errors


def test_a_wrong_operator_password_is_not_taken_for_the_rooms(driver, server):
    join(driver, server, "Alice")
    type_text(driver, "message", "/op guess", enter=True)
    server.expect("/op guess")
    # /op's guesses are limited as the room's are, and answered in the same words once too many.
    server.send(messages.error("Wrong operator password."), PASSWORD_TOO_MANY_TRIES)
    wait_for_line(driver, "Error: " + PASSWORD_TOO_MANY_TRIES.removeprefix("[ERROR] "))
    server.close_connections()
    server.expect(CLOSED)
    wait(driver, lambda d: reconnect_is_due(d), "the page does not mean to reconnect")
    server.expect("/nick Alice")  # no password asked for: the room never wanted one
    assert not element(driver, "password-field").is_displayed()


# -- against the real chat server ------------------------------------------------------------
# ChatServer in this process, with an operator password, believing 127.0.0.1 as a proxy:
# clients that name another address in X-Forwarded-For count as coming from there, which is
# how a test gets a member that can be banned (loopback cannot be). The page names one
# through the DevTools protocol, which adds the header to its every request, its WebSocket's too.

OP_PASSWORD = "P"
# Chromium opens spare connections ahead of need, which a server would take for silent raw
# clients after its first-line wait (see test_page_live.py): every client here names itself at once.
FIRST_LINE_WAIT_S = 2 * TIMEOUT_S


@pytest.fixture
def operated_server():
    """A chat server on a free port whose operator password is OP_PASSWORD; stopped and checked afterwards."""
    config = ServerConfig(
        "127.0.0.1",
        0,
        timings=replace(FAST, first_line_wait_s=FIRST_LINE_WAIT_S),
        history_lines=10,
        trusted_proxies=("127.0.0.1",),
        op_password=OP_PASSWORD,
    )
    server = ChatServer(config)
    server.bind()
    thread = threading.Thread(target=server.serve_forever, name="accept-loop")
    thread.start()
    try:
        yield server
    finally:
        Peer.close_all()
        assert server.shutdown(timeout=TIMEOUT_S), "the server did not stop"
        thread.join(TIMEOUT_S)
        assert not thread.is_alive()


@pytest.fixture
def page(driver, operated_server):
    """The browser (the driver fixture takes the headers come_from adds away before the next test);
    afterwards it leaves the chat (before the server stops)."""
    try:
        yield driver
    finally:
        driver.get("about:blank")
    assert not console_errors(driver)


def page_url(server) -> str:
    return "http://{}:{}/".format(*server.address)


def come_from(driver, address: str) -> None:
    """Make the page's requests, its WebSocket's included, name ``address`` to the server's trusted proxy."""
    driver.execute_cdp_cmd("Network.enable", {})
    driver.execute_cdp_cmd("Network.setExtraHTTPHeaders", {"headers": {"X-Forwarded-For": address}})


def join_live(driver, server, name: str) -> None:
    driver.get(page_url(server))
    type_text(driver, "name", name, enter=True)
    wait(driver, lambda d: status(d) == f"Connected as {name}", f"the status is {status(driver)!r}")


@contextlib.contextmanager
def web_client(server, name: str, address: str):
    """A WebSocket client (the websockets library's) joined as ``name``, coming from ``address``.

    The lines before its welcome (the room's history) are read and dropped.
    """
    url = "ws://{}:{}/ws".format(*server.address)
    with connect(url, additional_headers={"X-Forwarded-For": address}, open_timeout=TIMEOUT_S) as client:
        client.send(f"/nick {name}")
        while not client.recv(timeout=TIMEOUT_S).startswith(f"[SYSTEM] Welcome, {name}! "):
            pass
        yield client


def last_lines(client) -> "list[str]":
    """What a WebSocket client receives until the server closes its connection."""
    lines = []
    try:
        while True:
            lines.append(client.recv(timeout=TIMEOUT_S))
    except ConnectionClosedOK:
        return lines


def test_from_the_page_an_operator_mutes_kicks_bans_lifts_a_ban_and_sets_the_topic(page, operated_server):
    server = operated_server
    bob = Peer.joined(server.address, "Bob")
    with web_client(server, "Mallory", "203.0.113.9") as mallory:
        bob.expect(messages.joined("Mallory"))
        join_live(page, server, "Olive")
        bob.expect(messages.joined("Olive"))
        send_message(page, "/kick Bob")
        wait_for_line(page, "Error: Only operators can use /kick.")
        send_message(page, f"/op {OP_PASSWORD}")
        wait_for_line(page, NOW_OPERATOR.removeprefix("[SYSTEM] "))
        wait(page, lambda d: ("Olive", True) in online_marks(d), f"no badge for Olive: {online_marks(page)}")

        send_message(page, "/topic Homework is due Friday")
        bob.expect(messages.system("Olive set the topic: Homework is due Friday"))
        wait_for_topic(page, "Homework is due Friday")

        send_message(page, "/mute Bob")
        bob.expect(messages.system("Bob was muted by Olive for 10 minutes."))
        bob.send("let me speak")
        bob.expect(messages.error("You are muted for 10 more minutes."))
        mallory.send("after Bob's try")  # comes after Bob's line would have, if it had gone out
        wait_for_line(page, "Mallory: after Bob's try")
        assert "Bob: let me speak" not in lines_shown(page)
        send_message(page, "/unmute Bob")
        bob.expect(messages.system("Bob was unmuted by Olive."))
        bob.send("thanks")
        wait_for_line(page, "Bob: thanks")

        send_message(page, "/kick Bob spamming")
        assert bob.read_until_closed()[-1] == messages.system("You were removed by Olive: spamming")
        wait_for_line(page, "Bob was removed by Olive: spamming")
        wait(page, lambda d: [n for n, _ in online_marks(d)] == ["Mallory", "Olive"], "Bob is still listed")

        send_message(page, "/ban Mallory")  # the default: an hour, no reason
        assert last_lines(mallory)[-1] == messages.system("You were removed by Olive and banned for 60 minutes.")
        wait_for_line(page, "Mallory was removed by Olive and banned for 60 minutes.")
        send_message(page, "/bans")
        wait_for_line(page, "Bans (1):")
        wait(
            page,
            lambda d: any("203.0.113.9" in line and "Mallory" in line and "60 minutes left" in line for line in lines_shown(d)),
            f"no ban listed: {lines_shown(page)[-3:]}",
        )
    with pytest.raises(InvalidStatus) as refused, web_client(server, "Mallory", "203.0.113.9"):
        pass  # a WebSocket client is refused as a browser is
    assert refused.value.response.status_code == 403
    assert b"You are banned from this chat for 60 more minutes." in refused.value.response.body

    send_message(page, "/unban Mallory")
    wait_for_line(page, "The ban on Mallory was lifted by Olive.")
    with web_client(server, "Mallory", "203.0.113.9") as back:  # and the topic follows her welcome
        assert back.recv(timeout=TIMEOUT_S) == messages.system("Topic: Homework is due Friday")


def test_a_kicked_page_stops_and_says_why_a_banned_one_is_refused_on_reload(page, operated_server):
    server = operated_server
    olive = Peer.joined(server.address, "Olive")
    olive.send(f"/op {OP_PASSWORD}")
    olive.expect(NOW_OPERATOR)
    olive.send("/topic Homework is due Friday")
    olive.expect(messages.system("Olive set the topic: Homework is due Friday"))
    come_from(page, "203.0.113.7")
    join_live(page, server, "Bob")
    olive.expect(messages.joined("Bob"))
    wait_for_topic(page, "Homework is due Friday")  # a newcomer sees the topic at once
    wait(page, lambda d: online_marks(d) == [("Bob", False), ("Olive", True)], f"the list: {online_marks(page)}")

    olive.send("/kick Bob spamming")
    olive.expect(messages.system("Bob was removed by Olive: spamming"))
    wait(page, lambda d: removal_shown(d) == "You were removed by Olive: spamming", f"shown: {removal_shown(page)!r}")
    assert status(page) == "Removed from the chat by Olive"
    assert not reconnect_is_due(page)
    olive.assert_receives_nothing()  # no Bob joining again
    element(page, "reload-button").click()  # a kick is no ban: reloading joins again
    olive.expect(messages.joined("Bob"))
    wait_for_topic(page, "Homework is due Friday")

    olive.send("/ban Bob 5 flooding")
    olive.expect(messages.system("Bob was removed by Olive and banned for 5 minutes: flooding"))
    wait(page, lambda d: removal_shown(d) is not None, "the page does not say it was removed")
    assert removal_shown(page) == "You were removed by Olive and banned for 5 minutes: flooding"
    element(page, "reload-button").click()
    refusal = "403 Forbidden. You are banned from this chat for 5 more minutes: flooding"
    wait(page, lambda d: d.find_element(By.TAG_NAME, "body").text == refusal, "the reload was not refused")
    errors = console_errors(page)  # the refused page (and its icon): nothing else
    assert errors and all("403" in error for error in errors), errors
