"""Showing chat lines in a terminal: colors, and printing around what the user types.

:func:`render` is pure: it turns a received line into the text to print.
:class:`Console` does the terminal I/O. The client reads the keyboard in one
thread and receives in another, so a message can arrive while the user is
halfway through typing. Console prints it on a line of its own above the
prompt, and the prompt with the half-typed text moves down a row, untouched.
"""

import _thread
import os
import signal
import sys
import threading
import time
import zlib

from colorama import Fore, Style

from chat.core.messages import Kind, classify

try:
    import readline  # noqa: F401  (importing it gives input() line editing and history)
except ImportError:  # Windows: the console's own line editing does instead
    pass

PROMPT = "You: "
INCOMING = "📨 "
STOP_READING_RETRY_S = 0.05
STOP_READING_TRIES = 100

# Inserts a line above the prompt without disturbing it: the prompt line, the
# half-typed text and the cursor's place in it stay as they are, just one row
# lower. (The same VT100 sequence as the websockets command-line client.)
INSERT_ABOVE_PROMPT = (
    "\x1b7"  # save the cursor position
    "\n"  # go down a line, scrolling the screen up if at the bottom
    "\x1b[A"  # back up to the prompt line
    "\x1b[L"  # insert a blank line there, pushing the prompt line down
    "{text}\n"  # write the text into the blank line
    "\x1b8"  # restore the cursor: on the prompt line if the screen scrolled...
    "\x1b[B"  # ...else one row above it: move down (no effect at the bottom)
)

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
        """End read_line(), now if it is waiting, or as soon as it is called.

        A signal that arrives just before input() starts to wait is noted but
        wakes nothing, so it is repeated until read_line() has returned.
        """
        with self._lock:
            self._stopped = True
        for _ in range(STOP_READING_TRIES):
            with self._lock:
                if not self._reading:
                    return
                interrupt_main_thread()
            time.sleep(STOP_READING_RETRY_S)

    def clear_line(self) -> None:
        """Erase the prompt line, if the prompt was on screen."""
        if self.interactive:
            with self._lock:
                sys.stdout.write("\r\x1b[K")
                sys.stdout.flush()

    def show(self, text: str, keep_prompt: bool = True) -> None:
        """Print ``text`` on its own line above the prompt, leaving what the user types alone.

        With ``keep_prompt=False`` the text replaces the prompt line instead.
        """
        with self._lock:
            if not (self._reading and self.interactive):
                sys.stdout.write(text + "\n")
            elif keep_prompt:
                sys.stdout.write(INSERT_ABOVE_PROMPT.format(text=text))
            else:
                sys.stdout.write(f"\r\x1b[K{text}\n")  # back to column 0, clear the line
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
