"""Start the chat server: python server.py [--host HOST] [--port PORT]"""

import argparse
import sys

from chat.server import Limits, run


def port_number(text: str) -> int:
    port = int(text)
    if not 0 <= port <= 65535:
        raise ValueError(text)
    return port


port_number.__name__ = "port"  # argparse names the type in its error message


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="A TCP chat server: one thread per client.")
    parser.add_argument("--host", default="0.0.0.0", help="address to listen on (default: 0.0.0.0, every interface)")
    parser.add_argument("--port", type=port_number, default=8080, help="TCP port to listen on (default: 8080; 0 picks a free one)")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    # Never fail on an emoji when the console cannot show it.
    sys.stdout.reconfigure(errors="replace")
    return run(args.host, args.port, Limits())


if __name__ == "__main__":
    sys.exit(main())
