"""Take the README's pictures of the page: ``python -m tests.screenshots``.

The page is served by the throwaway server of the page tests and shows a
short scripted conversation, at desktop size in the light scheme and at
phone size in the dark one. The pictures go to docs/.
"""

import sys

from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from chat.core import messages
from tests.browser import DESKTOP_SIZE, PHONE_SIZE, chromium, set_color_scheme, set_viewport, type_text
from tests.helpers import PROJECT, TIMEOUT_S
from tests.pageserver import LibraryPageServer

OTHERS = ["bob", "dev_dan", "Eve"]  # Carol joins during the conversation
CONVERSATION = [
    messages.joined("Carol"),
    messages.chat("bob", "Morning! Did everyone get the page open on their phone?"),
    messages.chat("Carol", "Yes, through the Codespace link. Works on my phone."),
    messages.action("dev_dan", "waves from a terminal"),
    messages.renamed("Eve", "eve_w"),
    messages.private_from("bob", "Can you share the slides after class?"),
    messages.chat("eve_w", "<b>tags</b> show up as text, nice"),
]


def main(argv=None) -> int:
    docs = PROJECT / "docs"
    docs.mkdir(exist_ok=True)
    server = LibraryPageServer().start()
    try:
        with chromium() as driver:
            for name, size, scheme in [("desktop", DESKTOP_SIZE, "light"), ("phone", PHONE_SIZE, "dark")]:
                set_viewport(driver, *size)
                set_color_scheme(driver, scheme)
                driver.get(server.url)
                driver.execute_script("localStorage.clear()")
                type_text(driver, "name", "Alice", enter=True)
                server.expect("/nick Alice")
                server.send(messages.welcome("Alice", len(OTHERS)))
                server.expect("/users")
                server.send(messages.system(f"Online ({len(OTHERS) + 1}): {', '.join(['Alice', *OTHERS])}"))
                server.send(*CONVERSATION)
                type_text(driver, "message", "Sure! /msg me if you need anything", enter=True)
                server.expect("Sure! /msg me if you need anything")
                WebDriverWait(driver, TIMEOUT_S).until(
                    lambda d: d.find_elements(By.CSS_SELECTOR, "#messages .line.own")
                )
                type_text(driver, "message", "/he")
                path = docs / f"page-{name}.png"
                driver.save_screenshot(str(path))
                print(f"wrote {path.relative_to(PROJECT)}")
                driver.get("about:blank")
                server.expect("<closed>", timeout=15)
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
