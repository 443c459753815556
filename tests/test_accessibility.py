"""The chat page checked by axe-core, Deque's accessibility engine, in a real browser.

axe-core runs inside the page (headless Chromium) on the rules tagged WCAG 2
A and AA (2.0, 2.1 and 2.2) and best practice, on the page as it is in use:
the join form; the conversation of the README's pictures (tests/screenshots.py)
in the light and the dark scheme; and on a phone, disconnected, with a line
waiting to be sent. A violation whose impact is serious or critical fails the
test; the failure lists every violation found, the minor ones too.

axe-core is not part of the repository: .ci/run packs the version it pins
from the npm registry into tests/.axe/ (git-ignored). Without it the test
skips and says how to get it.
"""

import json
from pathlib import Path

import pytest

from tests.browser import DESKTOP_SIZE, PHONE_SIZE, set_color_scheme, set_viewport, type_text
from tests.pageserver import CLOSED
from tests.screenshots import show_conversation
from tests.test_page import server, wait  # noqa: F401 (server is a fixture)


AXE = Path(__file__).resolve().parent / ".axe" / "axe.min.js"
# How to get it, as .ci/run does.
GET_AXE = (
    "run .ci/run, or its lines that fetch it: in tests/.axe/, npm pack axe-core@AXE_VERSION "
    "(the version .ci/run names) and tar -xzf the .tgz --strip-components=1 package/axe.min.js"
)
TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "wcag22aa", "best-practice"]
FAILING_IMPACTS = {"serious", "critical"}

# Every violation: its rule, impact and help, and each element it found with what to fix.
RUN_AXE = """
return axe.run(document, {runOnly: {type: 'tag', values: arguments[0]}, resultTypes: ['violations']})
  .then(results => results.violations.map(v => ({
    id: v.id, impact: v.impact, help: v.help,
    nodes: v.nodes.map(n => ({target: n.target.join(' '), summary: n.failureSummary})),
  })));
"""


@pytest.fixture(scope="module")
def axe_source() -> str:
    if not AXE.exists():
        pytest.skip(f"axe-core is missing ({AXE}): {GET_AXE}")
    return AXE.read_text(encoding="utf-8")


def violations(driver, axe_source: str) -> "list[dict]":
    driver.execute_script(axe_source)
    return driver.execute_script(RUN_AXE, TAGS)


def assert_nothing_serious(found: "list[dict]") -> None:
    serious = [v for v in found if v["impact"] in FAILING_IMPACTS]
    assert not serious, f"{len(serious)} serious or critical; every violation found:\n" + json.dumps(found, indent=1)


def show_join_form(driver, server) -> None:
    driver.get(server.url)
    wait(driver, lambda d: d.find_element("id", "name").is_displayed(), "no join form")


def show_disconnected_phone(driver, server) -> None:
    """The conversation on a phone, the server gone (every request refused): the banner, the
    online list out of date, a line waiting to be sent."""
    set_viewport(driver, *PHONE_SIZE)
    show_conversation(driver, server)
    server.forbidden = "Closed for a moment"  # a refusal, not a ban: the page keeps trying
    server.close_connections()
    server.expect(CLOSED)
    wait(driver, lambda d: d.find_element("id", "offline").is_displayed(), "no banner")
    type_text(driver, "message", "are you still there?", enter=True)
    wait(driver, lambda d: d.find_elements("css selector", "#messages .pending"), "no line waiting")


SCENES = {
    "the join form": (None, show_join_form),
    "the chat, light": ("light", show_conversation),
    "the chat, dark": ("dark", show_conversation),
    "a phone, disconnected, dark": ("dark", show_disconnected_phone),
}


@pytest.mark.parametrize("scene", SCENES)
def test_axe_finds_nothing_serious(driver, server, axe_source, scene):
    scheme, show = SCENES[scene]
    set_color_scheme(driver, scheme)
    set_viewport(driver, *DESKTOP_SIZE)
    show(driver, server)
    assert_nothing_serious(violations(driver, axe_source))
