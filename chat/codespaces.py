"""Where other devices can reach a server that runs inside a GitHub Codespace.

A Codespace forwards each port as ``https://NAME-PORT.DOMAIN/``, where NAME is
the Codespace's name and DOMAIN its forwarding domain (``app.github.dev`` on
github.com). Both are in the environment of every process in the Codespace.
The forwarded address speaks HTTPS only, so a browser opens the chat page
there, and the terminal client connects with ``wss://`` (WebSocket over TLS)
to the same host.

A forwarded port is private at first: only its owner, signed in to GitHub,
gets through. Others need it Public. A dev container cannot be relied on
to make it so: ``gh codespace ports visibility`` fails while nothing
listens on the port yet ("The specified port is not being forwarded"), and
``portsAttributes`` has no visibility. So the server, once listening, says
how to check the port and make it public.

Pure: the environment is a parameter, so tests pass a dictionary.
"""

import os
from dataclasses import dataclass
from typing import Mapping


@dataclass(frozen=True)
class ForwardedAddress:
    """How devices outside the Codespace reach a port forwarded from it."""

    host: str  # NAME-PORT.DOMAIN
    codespace: str  # NAME
    port: int

    @property
    def page_url(self) -> str:
        """The chat page, for a browser."""
        return f"https://{self.host}/"

    @property
    def client_command(self) -> str:
        """The command that connects the terminal client from another computer."""
        return f"python client.py wss://{self.host}"

    @property
    def make_public_command(self) -> str:
        """The command, run in the Codespace, that makes the port Public."""
        return f"gh codespace ports visibility {self.port}:public -c {self.codespace}"

    @property
    def check_command(self) -> str:
        """The command that lists the Codespace's forwarded ports and their visibility."""
        return f"gh codespace ports -c {self.codespace}"


def forwarded_address(port: int, environ: "Mapping[str, str] | None" = None) -> "ForwardedAddress | None":
    """The forwarded address of ``port``, or None when not running in a Codespace."""
    environ = os.environ if environ is None else environ
    name = environ.get("CODESPACE_NAME", "").strip()
    domain = environ.get("GITHUB_CODESPACES_PORT_FORWARDING_DOMAIN", "").strip().strip(".")
    if not name or not domain or not 0 < port < 65536:
        return None
    return ForwardedAddress(f"{name}-{port}.{domain}", name, port)
