"""Take the pictures of the page in docs/: ``python -m tests.screenshots``.

* docs/page-desktop-light.png and docs/page-desktop-dark.png: the page at
  desktop size in each color scheme;
* docs/page-phone.png: the page on a phone, dark;
* docs/page-and-terminal.png: the page and the terminal client side by side,
  in one conversation on a real server.

The first three show a conversation scripted line by line
(:func:`show_conversation`, which the accessibility test checks too), played
by the throwaway server of the page tests. The last runs server.py's
ChatServer, the page in Chromium and the real client.py in a pseudo-terminal
whose screen (pyte's, colors included) is drawn as HTML beside the page.
"""

import base64
import html
import sys
import threading
from dataclasses import replace

from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from chat.config import ServerConfig, Timings
from chat.core import messages
from chat.core.history import HISTORY_END, history_start
from chat.server import ChatServer
from tests.browser import DESKTOP_SIZE, PHONE_SIZE, chromium, set_color_scheme, set_viewport, start_clean, type_text
from tests.helpers import PROJECT, TIMEOUT_S, Peer, Terminal
from tests.pageserver import CLOSED, LibraryPageServer

# Names whose colors lie far apart on the page's palette (red, orange, ochre, green, teal,
# blue, indigo, purple, pink): the user is Sam.
ME = "Sam"
OTHERS = ["Ada", "felix", "Hugo", "kim", "leo", "Mina", "tomas", "Zara"]
OPERATOR = "Ada"
TOPIC = "Lab 3: a chat server with sockets · due Friday 17:00"
HISTORY = [
    ("09:12:04", messages.chat("Ada", "Morning! The lab sheet is on the course page.")),
    ("09:13:40", messages.chat("leo", "is it room 204 again?")),
    ("09:13:52", messages.chat("Ada", "Yes, 204. Bring a laptop if you have one.")),
]
# What is said after Sam joins: the server's lines, and (ME, text) for what Sam types.
CONVERSATION = [
    messages.joined("Mina"),
    messages.chat("Mina", "Hi all, I came in through the QR code on the projector"),
    (ME, "Same here, it works on my phone too"),
    messages.chat("tomas", "sam, did your echo server work? mine hangs after the first line"),
    (ME, "Yes: the server reads whole lines, so the client has to send a newline after each message"),
    messages.action("leo", "is reading the socketserver docs"),
    messages.chat("Zara", "Is there a way to see who is online from the terminal?"),
    messages.chat("kim", "/users, and /help lists the rest"),
    messages.private_from("Ada", "Sam, could you help tomas after class?"),
    messages.chat("felix", "<b>tags</b> show up as text here, good to know"),
    messages.chat("Hugo", "and the page reconnects by itself when the server restarts"),
]
DRAFT = "/msg Ada sure, after class"


def show_conversation(driver, server: LibraryPageServer) -> None:
    """Join the scripted server's page as Sam and play HISTORY, the welcome, the topic and CONVERSATION."""
    driver.get(server.url)
    type_text(driver, "name", ME, enter=True)
    server.expect(f"/nick {ME}")
    stamped = [f"[{time}] {line}" for time, line in HISTORY]
    server.send(history_start(len(HISTORY)), *stamped, HISTORY_END, messages.welcome(ME, len(OTHERS)))
    server.send(messages.system(f"Topic: {TOPIC}"))
    server.expect("/users")
    everyone = sorted([ME, *OTHERS], key=str.casefold)
    listed = ", ".join(f"@{name}" if name == OPERATOR else name for name in everyone)
    server.send(messages.system(f"Online ({len(everyone)}): {listed}"))
    for line in CONVERSATION:
        if isinstance(line, tuple):
            type_text(driver, "message", line[1], enter=True)
            server.expect(line[1])
        else:
            server.send(line)
    last = CONVERSATION[-1]
    WebDriverWait(driver, TIMEOUT_S).until(
        lambda d: d.execute_script("const b = [...document.querySelectorAll('#messages .line .body')]; return b.at(-1).textContent")
        == last
    )


def page_pictures(driver, docs) -> None:
    server = LibraryPageServer().start()
    try:
        for name, size, scheme in [
            ("page-desktop-light", DESKTOP_SIZE, "light"),
            ("page-desktop-dark", DESKTOP_SIZE, "dark"),
            ("page-phone", PHONE_SIZE, "dark"),
        ]:
            start_clean(driver)
            set_viewport(driver, *size)
            set_color_scheme(driver, scheme)
            show_conversation(driver, server)
            if size == DESKTOP_SIZE:
                type_text(driver, "message", DRAFT)
            save(driver, docs / f"{name}.png")
            driver.get("about:blank")
            server.expect(CLOSED, timeout=15)
    finally:
        server.stop()


# -- the page and the terminal client, side by side ---------------------------------------------

TERMINAL_SIZE = (80, 30)  # columns, rows
# pyte names the 16 basic colors; these are xterm's. 256-color and true colors come as hex.
ANSI = {
    "black": "000000", "red": "cd0000", "green": "00cd00", "brown": "cdcd00", "blue": "0000ee",
    "magenta": "cd00cd", "cyan": "00cdcd", "white": "e5e5e5",
    "brightblack": "7f7f7f", "brightred": "ff0000", "brightgreen": "00ff00", "brightbrown": "ffff00",
    "brightblue": "5c5cff", "brightmagenta": "ff00ff", "brightcyan": "00ffff", "brightwhite": "ffffff",
}  # fmt: skip
TERMINAL_BG = "1e1e1e"
TERMINAL_FG = "d4d4d4"


def terminal_html(screen) -> str:
    """A pyte screen as an HTML <pre>: each run of characters of one style in a <span>."""
    rows = []
    for y in range(screen.lines):
        row, run, style = [], "", None
        for x in range(screen.columns):
            char = screen.buffer[y][x]
            fg = ANSI.get(char.fg, char.fg) if char.fg != "default" else TERMINAL_FG
            bg = ANSI.get(char.bg, char.bg) if char.bg != "default" else None
            if char.reverse:
                fg, bg = bg or TERMINAL_BG, fg
            if y == screen.cursor.y and x == screen.cursor.x and not screen.cursor.hidden:
                fg, bg = TERMINAL_BG, TERMINAL_FG
            css = f"color:#{fg};" + (f"background:#{bg};" if bg else "") + ("font-weight:bold;" if char.bold else "")
            if css != style and run:
                row.append(f'<span style="{style}">{html.escape(run)}</span>')
                run = ""
            style = css
            run += char.data
        row.append(f'<span style="{style}">{html.escape(run)}</span>')
        rows.append("".join(row))
    return "\n".join(rows)


SIDE_BY_SIDE = """<!doctype html>
<meta charset="utf-8">
<style>
  html {{ overflow: hidden; }}
  body {{ margin: 0; padding: 16px; width: max-content; background: #d0d7de; display: flex; gap: 16px;
         align-items: flex-start; font: 14px system-ui, sans-serif; }}
  figure {{ margin: 0; }}
  figcaption {{ margin: 0 0 6px; color: #1f2328; font-weight: 600; }}
  img {{ display: block; border-radius: 8px; box-shadow: 0 2px 10px rgb(0 0 0 / 0.25); }}
  pre {{ margin: 0; padding: 12px 14px; border-radius: 8px; background: #{bg}; color: #{fg};
        font: 14px/1.3 "DejaVu Sans Mono", monospace; box-shadow: 0 2px 10px rgb(0 0 0 / 0.25); }}
</style>
<figure><figcaption>In a browser</figcaption><img src="data:image/png;base64,{page}" width="{width}"></figure>
<figure><figcaption>In a terminal: python client.py</figcaption><pre>{terminal}</pre></figure>
"""
PAGE_SIZE = (900, 640)  # the page's half of the picture


def page_and_terminal(driver, docs) -> None:
    """One conversation on a real server: Sam in the page, leo in client.py, the others raw clients."""
    # Chromium opens spare connections that may never send a request; the server would take
    # one that stays silent for its first-line wait for a raw client, and greet it in the room.
    timings = replace(Timings(), first_line_wait_s=60.0)
    server = ChatServer(ServerConfig("127.0.0.1", 0, timings=timings, history_lines=20, qr_code=False))
    server.bind()
    accepting = threading.Thread(target=server.serve_forever, name="accept-loop")
    accepting.start()
    host, port = server.address
    terminal = None
    try:
        ada, tomas, mina = (Peer.joined(server.address, name) for name in ("Ada", "tomas", "Mina"))
        ada.send("Morning! The lab sheet is on the course page.")
        start_clean(driver)
        set_viewport(driver, *PAGE_SIZE)
        driver.get(f"http://{host}:{port}/")
        type_text(driver, "name", ME, enter=True)
        terminal = Terminal([host, str(port), "--name", "leo"], columns=TERMINAL_SIZE[0], rows=TERMINAL_SIZE[1])
        terminal.wait_for("Welcome, leo!")
        said = [
            (mina, "Hi all, I came in through the QR code on the projector"),
            (ME, "Same here, it works on my phone too"),
            (tomas, "sam, did your echo server work? mine hangs after the first line"),
            (ME, "Yes: the server reads whole lines, so send a newline after each message"),
            ("leo", "/me is reading the socketserver docs"),
            ("leo", "the terminal client has the same conversation, in colour"),
            (ada, "/msg Sam could you help tomas after class?"),
        ]
        for who, text in said:
            if who == ME:
                type_text(driver, "message", text, enter=True)
            elif who == "leo":
                terminal.type(text + "\r")
            else:
                who.send(text)
            # Each line in place before the next: one order everywhere. leo sees no private message.
            shown = text.removeprefix("/me ").removeprefix("/msg Sam ")
            WebDriverWait(driver, TIMEOUT_S).until(lambda d: shown in d.find_element(By.ID, "messages").text)
            if not text.startswith("/msg "):
                terminal.wait_for(shown)
        terminal.type("/users")  # a line being typed, not sent
        terminal.wait_for_display(lambda: "/users" in terminal.display.display[terminal.display.cursor.y])
        page = base64.b64encode(driver.get_screenshot_as_png()).decode()
        with terminal._changed:  # the screen as it is now, not while the reader thread changes it
            pre = terminal_html(terminal.display)
        picture = SIDE_BY_SIDE.format(page=page, width=PAGE_SIZE[0], terminal=pre, bg=TERMINAL_BG, fg=TERMINAL_FG)
        start_clean(driver)
        driver.get("data:text/html;base64," + base64.b64encode(picture.encode()).decode())
        width, height = driver.execute_script(
            "const box = document.body.getBoundingClientRect(); return [Math.ceil(box.width), Math.ceil(box.height)]"
        )
        set_viewport(driver, width, height)
        save(driver, docs / "page-and-terminal.png")
    finally:
        driver.get("about:blank")
        if terminal is not None:
            terminal.close()
        Peer.close_all()
        server.shutdown(timeout=TIMEOUT_S)
        accepting.join(TIMEOUT_S)


def save(driver, path) -> None:
    driver.save_screenshot(str(path))
    print(f"wrote {path.relative_to(PROJECT)}")


def main(argv=None) -> int:
    docs = PROJECT / "docs"
    docs.mkdir(exist_ok=True)
    with chromium() as driver:
        page_pictures(driver, docs)
        page_and_terminal(driver, docs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
