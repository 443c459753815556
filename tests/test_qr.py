"""QR codes of the page's address (chat.qr): in the server's terminal, and at /qr.svg for the Share button.

Each code is decoded as a phone would: the terminal's half blocks painted
into an image as a dark terminal shows them, the SVG rendered by
rsvg-convert, and both read by zbarimg (Debian's zbar-tools and
librsvg2-bin; the tests that need them skip without them).
"""

import logging
import re
import shutil
import socket
import subprocess
import threading

import pytest

import chat.server
from chat import qr
from chat.codespaces import forwarded_address
from tests.helpers import PROGRAM_START_S, TIMEOUT_S, Program, wait_until
from tests.test_console import ServerTerminal

# A Codespace with a long name: its page's address is about as long as a shared address gets.
CODESPACE = {
    "CODESPACE_NAME": "super-duper-space-waddle-x5j9q7r6wp2vr4g",
    "GITHUB_CODESPACES_PORT_FORWARDING_DOMAIN": "app.github.dev",
}
has_zbarimg = shutil.which("zbarimg") is not None
needs_zbarimg = pytest.mark.skipif(not has_zbarimg, reason="decoding QR codes needs zbarimg: apt-get install zbar-tools")
needs_rsvg = pytest.mark.skipif(
    shutil.which("rsvg-convert") is None, reason="rendering SVG needs rsvg-convert: apt-get install librsvg2-bin"
)
# What /qr.svg may hold: segno's drawing, paths only, with no text, link or script.
SVG_SHAPE = re.compile(rb'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 \d+ \d+" class="segno">(<path( [a-z]+="[^"<>]*")+/>)+</svg>')
# Pixels per module in the images handed to zbarimg.
PIXELS_PER_MODULE = 4


def decode(image: bytes) -> "list[str]":
    """What zbarimg reads in an image (PNG or PGM), one entry per code found."""
    result = subprocess.run(
        ["zbarimg", "--quiet", "--raw", "--nodbus", "-"], input=image, capture_output=True, timeout=TIMEOUT_S
    )
    assert result.returncode in (0, 4), result.stderr  # 4: no code found
    return result.stdout.decode().splitlines()


def rendered(svg: bytes) -> bytes:
    """The SVG as a PNG, 400 pixels wide."""
    result = subprocess.run(["rsvg-convert", "--width", "400"], input=svg, capture_output=True, timeout=TIMEOUT_S)
    assert result.returncode == 0, result.stderr
    return result.stdout


def painted(rows: "list[str]", margin_modules: int = 2) -> bytes:
    """Half-block rows as a dark terminal shows them, as a PGM image: characters white, background black.

    A margin of the terminal's background goes around them.
    """
    upper = {" ": (0, 0), "▀": (1, 0), "▄": (0, 1), "█": (1, 1)}
    width = max(len(row) for row in rows)
    modules = []
    for row in rows:
        pairs = [upper[char] for char in row.ljust(width)]
        modules += [[top for top, _ in pairs], [bottom for _, bottom in pairs]]
    blank = [0] * (width + 2 * margin_modules)
    modules = [blank] * margin_modules + [[0] * margin_modules + m + [0] * margin_modules for m in modules] + [blank] * margin_modules
    pixels = bytearray()
    for row in modules:
        line = b"".join(bytes([255 if module else 0]) * PIXELS_PER_MODULE for module in row)
        pixels += line * PIXELS_PER_MODULE
    header = f"P5 {len(modules[0]) * PIXELS_PER_MODULE} {len(modules) * PIXELS_PER_MODULE} 255\n".encode()
    return header + bytes(pixels)


# -- the addresses ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "host, url",
    [
        ("chat.example.org", "http://chat.example.org/"),
        ("Chat.Example.ORG:8080", "http://chat.example.org:8080/"),
        ("localhost:8080", "http://localhost:8080/"),
        ("192.168.1.20:8080", "http://192.168.1.20:8080/"),
        ("[::1]:8080", "http://[::1]:8080/"),
        ("[2001:DB8:0:0::1]", "http://[2001:db8::1]/"),
        ("a-1.b-2.example", "http://a-1.b-2.example/"),
    ],
)
def test_a_host_name_or_an_ip_address_with_an_optional_port_is_the_pages_address(host, url):
    assert qr.page_url(host) == url


@pytest.mark.parametrize(
    "host",
    [
        "",
        "chat.example.org/evil",
        "user@chat.example.org",
        "chat.example.org:",
        "chat.example.org:0",
        "chat.example.org:65536",
        "chat.example.org:80:80",
        "chat example.org",
        "chat.example.org\r\nX: y",
        '"><script>alert(1)</script>',
        "chat..example.org",
        "-chat.example.org",
        "chat-.example.org",
        "chat.example.org.",
        "chat_room.example.org",
        "999.1.1.1",
        "1.2.3",
        "::1",
        "[::1",
        "[fe80::1%25eth0]",
        "[chat.example.org]",
        "a" * 64 + ".example.org",
        ".".join(["abcdefgh"] * 29),  # 260 characters
        "ḿy.example.org",
    ],
)
def test_anything_else_in_the_host_header_is_refused(host):
    with pytest.raises(qr.BadAddress) as refused:
        qr.page_url(host)
    assert str(refused.value) == "The Host header is not a host name or an IP address with an optional port."
    assert refused.value.value == host


class Headers:
    """Request headers, with websockets' get_all()."""

    def __init__(self, *pairs) -> None:
        self.pairs = pairs

    def get_all(self, name: str) -> "list[str]":
        return [value for key, value in self.pairs if key.lower() == name.lower()]


def test_the_forwarded_host_and_scheme_are_believed_from_a_trusted_proxy_only():
    headers = Headers(
        ("Host", "127.0.0.1:8080"),
        ("X-Forwarded-Host", "forged.example, fluffy-robot-8080.app.github.dev"),
        ("X-Forwarded-Proto", "https"),
    )
    assert qr.address_used(headers, from_trusted_proxy=True) == "https://fluffy-robot-8080.app.github.dev/"
    assert qr.address_used(headers, from_trusted_proxy=False) == "http://127.0.0.1:8080/"
    assert qr.address_used(Headers(("Host", "chat.lan:8080"), ("X-Forwarded-Proto", "HTTPS")), True) == "https://chat.lan:8080/"


@pytest.mark.parametrize(
    "headers, message",
    [
        (Headers(), "The Host header is missing."),
        (Headers(("Host", "a.example"), ("Host", "b.example")), "The Host header is not a host name or an IP address with an optional port."),
        (Headers(("Host", "a.example"), ("X-Forwarded-Host", "evil/")), "The X-Forwarded-Host header is not a host name or an IP address with an optional port."),
        (Headers(("Host", "a.example"), ("X-Forwarded-Proto", "javascript")), "The X-Forwarded-Proto header is not http or https."),
    ],
)
def test_a_proxys_headers_are_checked_as_strictly_as_the_host(headers, message):
    with pytest.raises(qr.BadAddress, match=re.escape(message)):
        qr.address_used(headers, from_trusted_proxy=True)


def test_the_address_to_share_is_the_codespaces_else_the_lan_one_when_listening_everywhere():
    lan = {socket.AF_INET: "192.168.1.20", socket.AF_INET6: "2001:db8::20"}.get
    assert qr.address_to_share("0.0.0.0", 8080, CODESPACE, lan) == forwarded_address(8080, CODESPACE).page_url
    assert qr.address_to_share("127.0.0.1", 8080, CODESPACE, lan) == forwarded_address(8080, CODESPACE).page_url
    assert qr.address_to_share("0.0.0.0", 8080, {}, lan) == "http://192.168.1.20:8080/"
    assert qr.address_to_share("::", 8080, {}, lan) == "http://192.168.1.20:8080/"
    assert qr.address_to_share("::", 8080, {}, {socket.AF_INET6: "2001:db8::20"}.get) == "http://[2001:db8::20]:8080/"
    assert qr.address_to_share("0.0.0.0", 8080, {}, lambda family: None) is None
    assert qr.address_to_share("127.0.0.1", 8080, {}, lan) is None  # nobody else can connect
    assert qr.address_to_share("192.168.1.20", 8080, {}, lan) is None


def test_this_machines_lan_address_is_never_loopback_or_link_local():
    for family in (socket.AF_INET, socket.AF_INET6):
        address = qr.lan_address(family)
        if address is not None:
            import ipaddress

            ip = ipaddress.ip_address(address)
            assert not (ip.is_loopback or ip.is_link_local or ip.is_unspecified), address


# -- the codes -----------------------------------------------------------------------------


@needs_zbarimg
def test_the_terminals_code_of_a_long_codespace_address_fits_80_columns_and_reads_back():
    url = forwarded_address(8080, CODESPACE).page_url
    code = qr.terminal_code(url)
    rows = code.splitlines()
    assert code.endswith("\n") and set(code) <= set("▀▄█ \n")
    assert len({len(row) for row in rows}) == 1 and len(rows[0]) <= qr.MAX_TERMINAL_COLUMNS
    assert rows[0] == "█" * len(rows[0]) and rows[1] == rows[0]  # the quiet zone: 4 modules, 2 rows
    assert decode(painted(rows)) == [url]


def test_an_address_too_long_for_a_terminal_gets_no_code():
    assert qr.terminal_code("http://" + "a" * 330 + "/") is None  # 81 columns: 73 modules and the margins


@needs_zbarimg
@needs_rsvg
def test_the_svg_holds_paths_only_and_reads_back():
    url = "http://[2001:db8::20]:8080/"
    svg = qr.svg_code(url)
    assert SVG_SHAPE.fullmatch(svg), svg
    assert url.encode() not in svg
    assert decode(rendered(svg)) == [url]


# -- /qr.svg from a running server ---------------------------------------------------------------


def fetch(address, head: str) -> "tuple[str, bytes]":
    """Send one request's head; return the response's head and body."""
    with socket.create_connection(address, timeout=TIMEOUT_S) as sock:
        sock.sendall(head.encode())
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    response_head, _, body = data.partition(b"\r\n\r\n")
    return response_head.decode(), body


@needs_zbarimg
@needs_rsvg
def test_qr_svg_is_the_address_the_browser_used_behind_a_trusted_proxy_only_the_forwarded_one(start_server):
    trusting = start_server(trusted_proxies=("127.0.0.1",))
    distrusting = start_server()
    forwarded = "X-Forwarded-Host: fluffy-robot-8080.app.github.dev\r\nX-Forwarded-Proto: https\r\n"
    cases = [
        (trusting, "Host: chat.example.org:8080\r\n", "http://chat.example.org:8080/"),
        (trusting, f"Host: 127.0.0.1:8080\r\n{forwarded}", "https://fluffy-robot-8080.app.github.dev/"),
        (distrusting, f"Host: 127.0.0.1:8080\r\n{forwarded}", "http://127.0.0.1:8080/"),
    ]
    for server, headers, url in cases:
        head, body = fetch(server.address, f"GET /qr.svg?again HTTP/1.1\r\n{headers}\r\n")
        assert head.startswith("HTTP/1.1 200 OK\r\n"), head
        assert "\r\nContent-Type: image/svg+xml\r\n" in head
        assert "\r\nX-Content-Type-Options: nosniff\r\n" in head
        assert "\r\nContent-Security-Policy: default-src 'none'; script-src 'self';" in head
        assert SVG_SHAPE.fullmatch(body), body
        assert decode(rendered(body)) == [url], headers


@pytest.mark.parametrize(
    "headers",
    ["Host: evil.example/x\r\n", "Host: a\r\nHost: b\r\n", "", "Host: ok.example\r\nX-Forwarded-Host: <svg onload=alert(1)>\r\n"],
    ids=["a-path", "two-hosts", "no-host", "hostile-forwarded-host"],
)
def test_a_hostile_host_gets_400(start_server, headers):
    server = start_server(trusted_proxies=("127.0.0.1",))
    head, body = fetch(server.address, f"GET /qr.svg HTTP/1.1\r\n{headers}\r\n")
    assert head.startswith("HTTP/1.1 400 Bad Request\r\n"), head
    assert body.startswith(b"400 Bad Request. The ") and b"<" not in body


# -- server.py at start --------------------------------------------------------------------------


def code_on_screen(rows: "list[str]") -> "list[str]":
    """The rows of the screen that draw a QR code: the longest run of half-block rows."""
    runs, run = [], []
    for row in rows + [""]:
        if len(row) > 20 and set(row) <= set("▀▄█ "):
            run.append(row)
        else:
            runs.append(run)
            run = []
    return max(runs, key=len)


@needs_zbarimg
def test_in_a_codespace_the_server_prints_a_code_of_its_forwarded_page_that_a_phone_reads(monkeypatch):
    for name, value in CODESPACE.items():
        monkeypatch.setenv(name, value)
    server = ServerTerminal("--history", "0")  # at a terminal 100 columns wide, 30 rows high
    try:
        url = forwarded_address(server.address[1], CODESPACE).page_url
        server.wait_for("📱 To join from a phone, scan this code of")  # the URL on the next row: the console wraps
        server.wait_for_prompt()  # the code is above it
        rows = code_on_screen(server.rows())
        assert len(rows) >= 21 and all(len(row) <= qr.MAX_TERMINAL_COLUMNS for row in rows), rows
        assert decode(painted(rows)) == [url]
    finally:
        server.close()


def test_no_code_is_printed_into_a_pipe(monkeypatch):
    for name, value in CODESPACE.items():
        monkeypatch.setenv(name, value)
    # The password's line is the last one logged at start, after where the code would be.
    server = Program(["server.py", "--host", "127.0.0.1", "--port", "0", "--password", "secret"])
    try:
        server.expect("🔒 A password is needed to join.", timeout=PROGRAM_START_S)
        printed = server.all_output()
    finally:
        server.kill()
    url = re.search(r"in a browser: (https://super-duper-space-waddle-x5j9q7r6wp2vr4g-\d+\.app\.github\.dev/)", printed)
    assert url is not None, printed
    assert "📱" not in printed and not set("▀▄█") & set(printed)


@pytest.mark.parametrize("option", [[], ["--no-qr"]], ids=["by-default", "with-no-qr"])
def test_at_a_terminal_the_code_is_logged_without_timestamps_unless_no_qr(monkeypatch, caplog, option):
    """In this process, with a terminal for standard output as far as the server can tell."""
    import server as server_program
    from chat.logs import VERBATIM

    for name, value in CODESPACE.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(chat.server, "stdout_is_terminal", lambda: True)
    caplog.set_level(logging.INFO)
    args = server_program.parse_args(["--host", "127.0.0.1", "--port", "0", "--password", "secret", *option])
    server = chat.server.ChatServer(server_program.config_from(args))
    server.bind()
    thread = threading.Thread(target=server.serve_forever, name="accept-loop")
    thread.start()
    try:
        assert wait_until(lambda: "🔒 A password is needed to join." in caplog.messages)
    finally:
        assert server.shutdown(TIMEOUT_S)
        thread.join(TIMEOUT_S)
    url = forwarded_address(server.address[1], CODESPACE).page_url
    pictures = [record.getMessage() for record in caplog.records if getattr(record, VERBATIM, False)]
    if option:
        assert pictures == [] and not any("📱" in message for message in caplog.messages)
    else:
        assert f"📱 To join from a phone, scan this code of {url}" in caplog.messages
        assert pictures == [qr.terminal_code(url).rstrip("\n")]
