"""Start a chat client: python client.py [HOST] [PORT] [--name NAME] [--no-color]"""

import argparse
import sys

import colorama

from chat.client.client import parse_address, run
from chat.client.terminal import wants_color
from chat.core.text import name_problem


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="A terminal client for the TCP chat server.")
    parser.add_argument("host", nargs="?", help="server name or address, or HOST:PORT (default: localhost)")
    parser.add_argument("port", nargs="?", help="server port (default: 8080)")
    parser.add_argument("--name", help="join under this name instead of User_<port>")
    parser.add_argument("--no-color", action="store_true", help="print without colors (also: set NO_COLOR)")
    args = parser.parse_args(argv)
    try:
        args.host, args.port = parse_address(args.host, args.port)
    except ValueError as error:
        parser.error(str(error))
    if args.name and name_problem(args.name):
        parser.error(f"argument --name: {name_problem(args.name)}")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    # Never fail on an emoji when the console cannot show it.
    sys.stdout.reconfigure(errors="replace")
    colorama.just_fix_windows_console()
    try:
        return run(args.host, args.port, args.name, wants_color(args.no_color))
    except KeyboardInterrupt:  # Ctrl+C before the chat began, while connecting
        print()
        return 0


if __name__ == "__main__":
    sys.exit(main())
