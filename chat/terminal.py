"""Showing chat lines in a terminal: colors, and printing around what the user types.

:func:`render` is pure: it turns a received line into the text to print.
:class:`Console` does the terminal I/O. The client reads the keyboard in one
thread and receives in another, so a message can arrive while the user is
halfway through typing. Console prints it on a line of its own and redraws
the prompt, with the half-typed text, below it.
"""

import _thread
import os
import signal
import sys
import threading
import time
import zlib

from colorama import Fore, Style

from chat.messages import Kind, classify

try:
    import readline  # line editing, history, and access to the half-typed line
except ImportError:  # Windows: typing still works, without the redraw
    readline = None

PROMPT = "You: "
INCOMING = "📨 "

# Yellow, red and magenta are kept for system notices, errors and private messages.
NAME_COLORS = (
    Fore.GREEN,
    Fore.CYAN,
    Fore.BLUE,
    Fore.LIGHTGREEN_EX,
    Fore.LIGHTCYAN_EX,
    Fore.LIGHTBLUE_EX,
    Fore.LIGHTWHITE_EX,
)
KIND_COLORS = {
    Kind.SYSTEM: Fore.YELLOW,
    Kind.ERROR: Fore.RED,
    Kind.PRIVATE: Fore.MAGENTA,
}


def name_color(name: str) -> str:
    """A color for ``name`` that is the same in every session and on every machine."""
    return NAME_COLORS[zlib.crc32(name.casefold().encode()) % len(NAME_COLORS)]


def render(line: str, color: bool) -> str:
    """The text to print for a received line (already sanitized)."""
    if not color:
        return INCOMING + line
    kind, name = classify(line)
    if kind in KIND_COLORS:
        return INCOMING + KIND_COLORS[kind] + line + Style.RESET_ALL
    # Chat "NAME: text" and action "* NAME text": color just the name.
    start = line.index(name)
    end = start + len(name)
    return INCOMING + line[:start] + name_color(name) + Style.BRIGHT + name + Style.RESET_ALL + line[end:]


def wants_color(no_color_flag: bool, stream=sys.stdout) -> bool:
    """Color only on a terminal, and never with --no-color or NO_COLOR (no-color.org)."""
    return not no_color_flag and not os.environ.get("NO_COLOR") and stream.isatty()


def timestamped(text: str) -> str:
    return time.strftime("[%H:%M:%S] ") + text


class Console:
    """The terminal: reads the user's lines and prints incoming ones around them."""

    def __init__(self, interactive: bool) -> None:
        # Interactive: a person at a terminal, so show a prompt and redraw it.
        self.interactive = interactive
        # Guards stdout writes, _reading and _stopped.
        self._lock = threading.Lock()
        self._reading = False  # the main thread is waiting in input()
        self._stopped = False  # no more input is wanted

    def read_line(self) -> str:
        """Wait for the user's next line.

        Raises EOFError on Ctrl+D or at the end of input, and KeyboardInterrupt
        on Ctrl+C or once stop_reading() was called.
        """
        with self._lock:
            if self._stopped:
                raise KeyboardInterrupt
            self._reading = True
        try:
            return input(PROMPT if self.interactive else "")
        finally:
            with self._lock:
                self._reading = False

    def stop_reading(self) -> None:
        """End read_line(), now if it is waiting, or as soon as it is called."""
        with self._lock:
            self._stopped = True
            if self._reading:
                interrupt_main_thread()

    def show(self, text: str, keep_prompt: bool = True) -> None:
        """Print ``text`` on its own line, keeping the prompt and typed text below it."""
        with self._lock:
            if self._reading and self.interactive:
                typed = readline.get_line_buffer() if readline else ""
                redraw = f"{PROMPT}{typed}" if keep_prompt else ""
                # \r and ESC[K: back to the start of the line and clear it.
                sys.stdout.write(f"\r\x1b[K{text}\n{redraw}")
            else:
                sys.stdout.write(text + "\n")
            sys.stdout.flush()


def interrupt_main_thread() -> None:
    """Make the main thread's blocking input() raise KeyboardInterrupt.

    Nothing else interrupts input(): a signal makes the read fail with EINTR,
    and Python then runs the SIGINT handler, which raises KeyboardInterrupt.
    """
    if hasattr(signal, "pthread_kill"):
        signal.pthread_kill(threading.main_thread().ident, signal.SIGINT)
    else:  # Windows: takes effect when input() returns, after the next Enter
        _thread.interrupt_main()
