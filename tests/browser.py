"""A real browser for the tests: Debian's Chromium, headless, driven by selenium.

Nothing is downloaded: the chromedriver that Debian's ``chromium-driver``
package installs is given to selenium explicitly, so Selenium Manager (which
would otherwise look for drivers on the internet) is never asked. Without
Chromium the tests that need it are skipped with a message saying how to
install it.

Tests use it through the ``driver`` fixture (tests/conftest.py): one
browser serves every page test of a test process (starting one costs
seconds of CPU), and :func:`start_clean` puts it back as a new one would be
before each test. pytest-xdist gives each process whole test files
(pytest.ini), so each process that runs page tests starts one Chromium.
"""

import contextlib
import os
import shutil
import tempfile
from urllib.parse import urlsplit

import pytest

from tests.helpers import TIMEOUT_S

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
INSTALL_HINT = "apt-get install chromium chromium-driver"
DESKTOP_SIZE = (1280, 800)
PHONE_SIZE = (390, 844)  # CSS pixels of a common phone
# A page of ours loads in a fraction of a second; one that does not is a
# failure to report, not a wait of selenium's default five minutes.
PAGE_LOAD_TIMEOUT_S = 2 * TIMEOUT_S

# Belt and braces: even if some code path did ask Selenium Manager, it must
# not go to the network.
os.environ.setdefault("SE_OFFLINE", "true")

CHROMIUM_FLAGS = (
    "--headless=new",
    "--no-sandbox",  # Chromium refuses to run as root with its sandbox, and CI runs as root
    "--disable-gpu",
    "--disable-dev-shm-usage",  # /dev/shm is small in containers
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--lang=en-US",
    # The tests' pages are one origin each, without frames, which is what
    # site isolation separates; without it, going from one test's page to
    # the next and to about:blank takes about half as long.
    "--disable-site-isolation-trials",
)


def missing() -> "str | None":
    """Why the browser tests cannot run here, or None if they can."""
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed: pip install -r requirements-dev.txt"
    for path in (CHROMIUM, CHROMEDRIVER):
        if not os.access(path, os.X_OK):
            return f"{path} is missing: {INSTALL_HINT}"
    return None


@contextlib.contextmanager
def chromium(size=DESKTOP_SIZE):
    """A headless Chromium (a selenium WebDriver) with a fresh profile, quit afterwards."""
    reason = missing()
    if reason:
        pytest.skip(f"no browser for the page tests: {reason}")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="chat-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={profile}")
    options.add_argument(f"--window-size={size[0]},{size[1]}")
    # Keep the page's console, so a test can fail on a script error.
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = None
    try:
        driver = webdriver.Chrome(options=options, service=Service(executable_path=CHROMEDRIVER))
        driver.set_page_load_timeout(PAGE_LOAD_TIMEOUT_S)
        yield driver
    finally:
        if driver is not None:
            driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def start_clean(driver) -> None:
    """Put a browser that earlier tests used back as a new one would be, on about:blank.

    One tab, at desktop size, not minimized, in the default (light) scheme, no
    headers added, nothing in the console log, and nothing stored by the
    pages it showed: a test's server may get the port, and so the origin, of
    an earlier one whose page remembered a name.
    """
    first, *others = driver.window_handles
    if others:
        for handle in others:
            driver.switch_to.window(handle)
            driver.close()
        driver.switch_to.window(first)
    if driver.current_url != "about:blank":  # most tests went there already, to leave their chat
        driver.get("about:blank")  # a page still open closes its connection
    entries = driver.execute_cdp_cmd("Page.getNavigationHistory", {})["entries"]
    for origin in {origin_of(entry["url"]) for entry in entries} - {None}:
        driver.execute_cdp_cmd("Storage.clearDataForOrigin", {"origin": origin, "storageTypes": "all"})
    driver.execute_cdp_cmd("Page.resetNavigationHistory", {})
    driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})
    set_color_scheme(driver, None)
    driver.execute_cdp_cmd("Network.setExtraHTTPHeaders", {"headers": {}})
    driver.execute_cdp_cmd("Network.disable", {})
    driver.set_window_size(*DESKTOP_SIZE)  # also brings back a minimized window
    driver.get_log("browser")  # what earlier pages logged is not this test's


def origin_of(url: str) -> "str | None":
    """The origin of an http(s) address ("http://127.0.0.1:8080"), None for any other."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}" if parts.scheme in ("http", "https") else None


# Finds the field by its id and tells whether it can be typed into, as
# WebDriver's send_keys decides it: shown, enabled and writable. It gets the
# focus with the caret at the end of its text, unless it has the focus
# already (then the caret stays where it is).
FOCUS_FOR_TYPING = """
const field = document.getElementById(arguments[0]);
if (!field || field.disabled || field.readOnly || !field.checkVisibility({visibilityProperty: true})) return false;
if (document.activeElement !== field) {
  field.focus();
  field.setSelectionRange(field.value.length, field.value.length);
}
return document.activeElement === field;
"""
# The key events of Enter, as chromedriver itself sends them for a key press.
ENTER_KEY = {"key": "Enter", "code": "Enter", "windowsVirtualKeyCode": 13, "nativeVirtualKeyCode": 13}


def type_text(driver, field_id: str, text: str, enter: bool = False) -> None:
    """Type ``text`` into the input element ``field_id``, then press Enter if ``enter``.

    The text arrives as one insertion, the way an emoji keyboard or an input
    method puts text in (the DevTools protocol's ``Input.insertText``): the
    field gets ``beforeinput`` and ``input`` events with inputType
    "insertText", and any character at all. ``send_keys`` cannot do that:
    older chromedrivers (Debian bookworm's 150) refuse characters outside the
    Basic Multilingual Plane, emoji among them. Enter is a key press
    (keydown, keypress, keyup), so a form is submitted as a user's Enter
    submits it.
    """
    if not driver.execute_script(FOCUS_FOR_TYPING, field_id):
        raise AssertionError(f"cannot type into #{field_id}: missing, hidden, disabled or read-only")
    if text:
        driver.execute_cdp_cmd("Input.insertText", {"text": text})
    if enter:
        driver.execute_cdp_cmd("Input.dispatchKeyEvent", {"type": "keyDown", "text": "\r", **ENTER_KEY})
        driver.execute_cdp_cmd("Input.dispatchKeyEvent", {"type": "keyUp", **ENTER_KEY})


def set_viewport(driver, width: int, height: int) -> None:
    """Make the page's viewport (not the window around it) exactly this size in CSS pixels."""
    driver.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride",
        {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": width < 600},
    )


def set_color_scheme(driver, scheme: "str | None") -> None:
    """Emulate the system's light or dark preference (None: back to the default, light)."""
    features = [{"name": "prefers-color-scheme", "value": scheme}] if scheme else []
    driver.execute_cdp_cmd("Emulation.setEmulatedMedia", {"features": features})


def console_errors(driver) -> "list[str]":
    """The page's console errors since the last call: script errors, loads the policy blocked.

    A refused WebSocket connection is logged as an error too; it is what a
    page sees while its server is down, and the tests stop servers on purpose.
    """
    return [
        entry["message"]
        for entry in driver.get_log("browser")
        if entry["level"] == "SEVERE" and "ERR_CONNECTION_REFUSED" not in entry["message"]
    ]


def history_blocks(driver) -> "list[dict]":
    """Each history block on the chat page: its heading, lines (text and time), the rule that
    ends it (None if none does), its aria-live."""
    return driver.execute_script(
        "return [...document.querySelectorAll('#messages .history-block')].map(block => ({"
        "  heading: block.firstElementChild.textContent,"
        "  lines: [...block.querySelectorAll('.line .body')].map(e => e.textContent),"
        "  times: [...block.querySelectorAll('.line time')].map(e => e.textContent),"
        "  end: block.lastElementChild.matches('.divider') ? block.lastElementChild.textContent : null,"
        "  live: block.getAttribute('aria-live'),"
        "}))"
    )


def announced(driver) -> str:
    """What the chat page last gave screen readers to say apart from its log (the history's size)."""
    return driver.execute_script("return document.getElementById('announcer').textContent")
