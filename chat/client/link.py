"""The client's connection to the server: raw TCP, or WebSocket for a server behind HTTPS.

:class:`ChatClient <chat.client.client.ChatClient>` talks to a TCP socket:
``sendall`` lines, ``recv`` bytes, ``shutdown`` to wake the receiver. A
Codespace forwards its port only as HTTPS, so from outside the client must
speak WebSocket (``wss://``) instead. :class:`WebSocketLink` gives the same
four calls over the ``websockets`` library's threaded client, so the chat
code does not care which it has: each line becomes one text message, each
message from the server becomes one line.

(The library reads the socket in a background thread of its own and hands
messages to ours; it also answers the server's pings.)
"""

import contextlib
import socket
import ssl

from websockets.exceptions import ConnectionClosed, ConnectionClosedOK, InvalidHandshake, InvalidStatus, InvalidURI
from websockets.sync.client import connect

from chat.client.address import Address
from chat.core.text import sanitize
from chat.sockets import enable_keepalive

# What a message from a misbehaving server may hold, at most.
MAX_MESSAGE_BYTES = 64 * 1024
# TCP keepalive on a raw connection, so that a network that has gone (a
# laptop that changed networks) is noticed even while nobody speaks, and the
# client can reconnect: after KEEPALIVE_IDLE_S of silence the kernel probes
# every 5 s and gives up after six unanswered probes, about a minute in all
# (see chat.sockets). Over WebSocket the library's pings do this.
KEEPALIVE_IDLE_S = 30


class LinkError(OSError):
    """The server could not be reached as a chat server; ``str()`` says why, in one sentence."""


class Banned(LinkError):
    """The server refused us for good: an operator banned our address. ``str()`` is the server's sentence."""


# The start of the sentence a banned address is refused with: HTTP 403 with it
# as the text ("403 Forbidden. You are banned from this chat for 59 more
# minutes: spamming"), as a browser loading the page gets it.
BANNED = "You are banned from this chat"


class WebSocketLink:
    """The chat over one WebSocket, with the calls of a TCP socket that ChatClient uses."""

    def __init__(self, url: str, headers: "dict[str, str]", timeout: float) -> None:
        self._closing = contextlib.ExitStack()
        try:
            self._websocket = self._closing.enter_context(
                connect(url, additional_headers=headers, open_timeout=timeout, max_size=MAX_MESSAGE_BYTES)
            )
        except InvalidStatus as error:
            response = error.response
            if response.status_code == 403 and (ban := banned_sentence(response.body)):
                raise Banned(ban) from None
            raise LinkError(describe_refusal(url, response.status_code)) from None
        except (InvalidHandshake, InvalidURI) as error:
            raise LinkError(f"{url} did not answer as a chat server ({error}).") from None

    def sendall(self, data: bytes) -> None:
        """Send each newline-ended line of ``data`` as one text message."""
        try:
            for line in data.decode("utf-8", "replace").split("\n")[:-1]:
                self._websocket.send(line)
        except ConnectionClosed as error:
            raise ConnectionResetError(f"the connection closed ({error})") from None

    def recv(self, _size: int) -> bytes:
        """The next message as one newline-ended line; ``b""`` once the server has closed."""
        try:
            message = self._websocket.recv()
        except ConnectionClosedOK:
            return b""
        except ConnectionClosed as error:
            raise ConnectionResetError(f"the connection broke ({error})") from None
        if isinstance(message, bytes):
            message = message.decode("utf-8", "replace")
        return (message.replace("\n", " ") + "\n").encode("utf-8")

    def settimeout(self, timeout) -> None:
        """Bound how long a send may block, as for a socket (a server that stopped reading)."""
        self._websocket.socket.settimeout(timeout)

    def shutdown(self, _how) -> None:
        """Close, which wakes a thread waiting in recv()."""
        self._closing.close()

    def close(self) -> None:
        self._closing.close()


def banned_sentence(body: "bytes | None") -> "str | None":
    """The server's sentence in the body of a 403 refusal, if it says we are banned; else None."""
    text = sanitize((body or b"")[:MAX_MESSAGE_BYTES].decode("utf-8", "replace")).strip()
    start = text.find(BANNED)
    return text[start:] if start >= 0 else None


def describe_refusal(url: str, status: int) -> str:
    hint = ""
    if ".app.github.dev" in url:
        if status in (401, 403) or 300 <= status < 400:
            hint = " Is port 8080 Public in the Codespace's Ports panel? For a private port, give --token (or set GITHUB_TOKEN)."
        elif status in (502, 503, 504):
            hint = " Is the server running in the Codespace?"
    elif status == 404:
        hint = " Is it a chat server? Its WebSocket is at /ws."
    elif status == 503:
        hint = " The server is full, or has too many connections from your address: try again later."
    return f"{url} refused the connection (HTTP {status}).{hint}"


def describe_tls_error(url: str, error: ssl.SSLError) -> str:
    if error.reason == "WRONG_VERSION_NUMBER":  # the answer was not TLS at all
        return f"Could not make a secure (TLS) connection to {url}: the server there does not speak TLS. Try ws:// instead of wss://."
    return f"Could not make a secure (TLS) connection to {url}: {error.reason or error}. Check the address."


def open_link(address: Address, token: "str | None", timeout: float) -> "socket.socket | WebSocketLink":
    """Connect to ``address``: a TCP socket, or a WebSocketLink for a web address.

    ``token`` is sent as the ``X-GitHub-Token`` header, which lets a client
    that is not a browser through a Codespace's private port.
    """
    if address.scheme == "tcp":
        sock = socket.create_connection((address.host, address.port), timeout=timeout)
        sock.settimeout(None)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        enable_keepalive(sock, KEEPALIVE_IDLE_S)
        return sock
    headers = {"X-GitHub-Token": token} if token else {}
    try:
        return WebSocketLink(address.url, headers, timeout)
    except ssl.SSLError as error:
        raise LinkError(describe_tls_error(address.url, error)) from None

