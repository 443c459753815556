"""The chat page and the room's operators, in a real browser (headless Chromium).

Against the scripted server of test_page.py: a page removed by an operator
(kicked, or banned) says who did it and why and does not reconnect, and a
chat line that only quotes such a notice changes nothing; the topic bar
follows the topic; the online list marks operators. The lines are the
server's own words (chat/core/moderation.py and chat/core/operators.py).
"""

import pytest
from selenium.webdriver.common.by import By

from chat.core import messages
from tests.browser import PHONE_SIZE, type_text
from tests.helpers import QUIET_PERIOD_S
from tests.pageserver import CLOSED
from tests.test_page import element, history_block, join, lines_shown, online_reply, server, wait, wait_for_line

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
    assert ann.accessible_name == "Send a private message to Ann (operator)"
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
