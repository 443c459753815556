"""Start a chat client: python client.py [HOST] [PORT] [--port PORT] [--name NAME] [--password] [--no-color]
[--no-reconnect] [--retry-first S]

HOST may also be a web address, for a server behind HTTPS: wss://NAME-8080.app.github.dev
"""

import sys

try:
    import argparse
    import getpass
    import math
    import os

    from chat.client.address import DEFAULT_HOST, DEFAULT_PORT, parse_address
    from chat.client.client import RETRY_FIRST_S, RETRY_MAX_S, run
    from chat.client.terminal import is_interactive, wants_color
    from chat.core.text import name_problem
except KeyboardInterrupt:  # Ctrl+C while the program is still loading: leave quietly
    sys.exit(0)


# --password without a value: ask for it.
ASK = object()


def is_own_codespace(address) -> bool:
    """Whether GITHUB_TOKEN may go to ``address`` by default: a Codespace's port, over TLS only,
    and, inside a Codespace, only that Codespace's own (not a classmate's)."""
    own_name = os.environ.get("CODESPACE_NAME")
    return (
        address.scheme == "wss"
        and address.host.endswith(".app.github.dev")
        and (not own_name or address.host.startswith(own_name + "-"))
    )


def seconds(text: str) -> float:
    """A number of seconds greater than 0, for argparse."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0 < value < math.inf:
        raise argparse.ArgumentTypeError(f"must be a number of seconds greater than 0, not {text!r}")
    return value


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="A terminal client for the chat server.")
    parser.add_argument(
        "host",
        nargs="?",
        help=f"server name or address, or HOST:PORT (default: {DEFAULT_HOST}); or a web address such as "
        "ws://HOST:PORT or wss://NAME-8080.app.github.dev, for a server behind HTTPS",
    )
    parser.add_argument("port", nargs="?", help=f"server port (default: {DEFAULT_PORT})")
    parser.add_argument("--host", dest="host_option", metavar="HOST", help="the same as HOST above")
    parser.add_argument("--port", dest="port_option", metavar="PORT", help="the same as PORT above")
    parser.add_argument("--name", help="join under this name instead of User_<port>")
    parser.add_argument(
        "--password",
        nargs="?",
        const=ASK,
        default=os.environ.get("CHAT_PASSWORD") or None,
        help="the chat's password; without a value it is asked for, unseen (also: set CHAT_PASSWORD)",
    )
    parser.add_argument(
        "--token",
        help="a GitHub token, to pass through a Codespace's private port "
        "(default: GITHUB_TOKEN, for an app.github.dev address)",
    )
    parser.add_argument("--no-color", action="store_true", help="print without colors (also: set NO_COLOR)")
    parser.add_argument(
        "--no-reconnect",
        action="store_true",
        help="when the connection is lost, exit instead of connecting again",
    )
    parser.add_argument(
        "--retry-first",
        type=seconds,
        default=RETRY_FIRST_S,
        metavar="S",
        help="when the connection is lost, wait about S seconds before connecting again, "
        f"then twice as long after each failed try, up to {RETRY_MAX_S:g} (default: {RETRY_FIRST_S:g})",
    )
    return parser


def parse_args(argv=None) -> argparse.Namespace:
    parser = make_parser()
    args = parser.parse_args(argv)
    if args.host and args.host_option:
        parser.error("give the host once: either HOST or --host HOST")
    if args.port and args.port_option:
        parser.error("give the port once: either PORT or --port PORT")
    try:
        args.address = parse_address(args.host or args.host_option, args.port or args.port_option)
    except ValueError as error:
        parser.error(str(error))
    if args.name and name_problem(args.name):
        parser.error(f"argument --name: {name_problem(args.name)}")
    if args.token is None and is_own_codespace(args.address):
        args.token = os.environ.get("GITHUB_TOKEN")
    return args


def main(argv=None) -> int:
    try:
        args = parse_args(argv)
        # Never fail on an emoji when the console cannot show it.
        for stream in (sys.stdout, sys.stderr):
            if stream is not None and hasattr(stream, "reconfigure"):
                stream.reconfigure(errors="replace")
        if args.password is ASK:
            args.password = getpass.getpass("Password: ")
        color = wants_color(args.no_color) and is_interactive()
        return run(
            args.address,
            args.name,
            color,
            args.password,
            args.token,
            reconnect=not args.no_reconnect,
            retry_first_s=args.retry_first,
        )
    except KeyboardInterrupt:  # Ctrl+C before the chat began, while starting or connecting
        return 0


if __name__ == "__main__":
    sys.exit(main())
