"""Showing chat lines in a terminal: colors, and printing above what the user types.

:func:`render` is pure: it turns a received line into formatted text, a list
of ``(style, text)`` pairs. Text from the network only ever goes in the text
half of a pair, never in a style or in markup that would be parsed.
:func:`wrap`, pure too, cuts such a line into rows at spaces.

Two consoles do the terminal I/O, with the same four methods (``read_line``,
``show``, ``stop_reading``, ``close``):

* :class:`PromptConsole`, for a person at a terminal: a prompt_toolkit prompt
  whose lines are printed above it, whatever their length, while the prompt
  and the half-typed text stay intact below.
* :class:`LineConsole`, for everything else (input or output is a pipe or a
  file, or the terminal is a dumb one): plain lines in, plain lines out, and
  not one escape sequence.
"""

import asyncio
import os
import re
import select
import socket
import sys
import threading
import time
import zlib
from collections import deque

try:
    import termios
    import tty
except ImportError:  # Windows
    termios = tty = None

from prompt_toolkit import PromptSession
from prompt_toolkit.formatted_text import FormattedText, fragment_list_to_text, to_formatted_text
from prompt_toolkit.history import InMemoryHistory
from prompt_toolkit.key_binding import KeyBindings
from prompt_toolkit.output import ColorDepth, create_output
from prompt_toolkit.output.vt100 import Vt100_Output
from prompt_toolkit.renderer import print_formatted_text
from prompt_toolkit.shortcuts import CompleteStyle
from prompt_toolkit.styles import Style
from prompt_toolkit.utils import get_cwidth

from chat.client.completion import ChatCompleter, Roster
from chat.core.framing import LineFramer, decode_line
from chat.core.messages import Kind, classify

PROMPT = "You: "
INCOMING = "📨 "
# A line typed or piped in longer than this is not sent (the server's own limit is lower).
MAX_TYPED_LINE_BYTES = 64 * 1024
STDIN_READ_BYTES = 64 * 1024

# The names' colors: 24 greens, teals, cyans and blues of medium lightness
# (relative luminance 0.12 to 0.36, so at least 2.5:1 against a black and
# against a white background), each at least 12 apart (CIELAB ΔE) from the
# others. Yellow, red and magenta are kept for system notices, errors and
# private messages: no hue near them, even as a 16-color terminal rounds it.
# Each is a color of xterm's 256-color cube, which prompt_toolkit uses by
# default, so that the terminal shows it as it is given here.
NAME_COLORS = (
    "#5faf00", "#00af00", "#5f875f", "#5faf5f", "#008700", "#5faf87",
    "#00af5f", "#00875f", "#00af87", "#008787", "#5f8787", "#00afaf",
    "#00afd7", "#0087af", "#0087d7", "#0087ff", "#5f87af", "#5f5fff",
    "#5f5faf", "#8787af", "#5f5fd7", "#5f5f87", "#8787d7", "#8787ff",
)
KIND_STYLES = {
    Kind.SYSTEM: "ansiyellow",
    Kind.ERROR: "ansired",
    Kind.PRIVATE: "ansimagenta",
}


def name_style(name: str) -> str:
    """A style for ``name`` that is the same in every session and on every machine, whatever its case.

    The color is chosen as the chat page chooses it from its own palette:
    CRC-32 of the name in lower case, modulo the number of colors.
    """
    return NAME_COLORS[zlib.crc32(name.casefold().encode()) % len(NAME_COLORS)] + " bold"


def render(line: str, color: bool, stamp: "str | None" = None) -> FormattedText:
    """The formatted text to show for a received line (already sanitized).

    ``stamp`` is the time a line from the room's history was said: it is
    shown after the 📨, and the line itself as a live one.
    """
    lead = INCOMING if stamp is None else f"{INCOMING}[{stamp}] "
    if not color:
        return FormattedText([("", lead + line)])
    kind, name = classify(line)
    if kind in KIND_STYLES:
        return FormattedText([("", lead), (KIND_STYLES[kind], line)])
    # Chat "NAME: text" and action "* NAME text": color just the name.
    start = line.index(name)
    end = start + len(name)
    return FormattedText([("", lead + line[:start]), (name_style(name), name), ("", line[end:])])


_WORD_OR_SPACES = re.compile(r"[^ ]+| +")
_LEAD = re.compile(r"[^ ]+ +")  # the first word and the spaces after it: "📨 ", "[12:34:56] "


def wrap(text, columns: int) -> FormattedText:
    """Formatted text cut into rows of at most ``columns`` cells, at spaces; each of its lines on its own.

    A terminal wraps a line wherever its row ends, often in the middle of a
    word. Here a row ends before a word that would not fit, and the spaces
    there are dropped; only a word longer than a row is cut where the row
    ends. The rows after the first are indented as far as the line's second
    word (the text after "📨 " or after a time), unless that would take half
    the width or more. Rows are separated by "\n"; every character keeps
    its style, and wide ones (emoji, CJK) take two cells.
    """
    if columns <= 0:  # a terminal that does not say its width
        return to_formatted_text(text)
    cells = [(style, char) for style, chars, *_ in to_formatted_text(text) for char in chars]
    plain = "".join(char for _, char in cells)
    if "\n" in plain:  # several lines (the server's log comes in batches): each is wrapped on its own
        fragments, start = [], 0
        for number, line in enumerate(plain.split("\n")):
            fragments += ([("", "\n")] if number else []) + list(wrap(FormattedText(cells[start : start + len(line)]), columns))
            start += len(line) + 1
        return FormattedText(fragments)
    lead = _LEAD.match(plain)
    indent = get_cwidth(lead.group()) if lead else 0
    if 2 * indent >= columns:
        indent = 0
    rows: "list[list[tuple[str, str]]]" = [[]]  # (style, character), without the indent
    x = 0  # the cells taken in the last row, its indent included

    def new_row() -> None:
        nonlocal x
        while rows[-1] and rows[-1][-1][1] == " ":  # a row does not end in spaces
            rows[-1].pop()
        rows.append([])
        x = indent

    for token in _WORD_OR_SPACES.finditer(plain):
        width = get_cwidth(token.group())
        if token.group()[0] == " ":
            if x + width <= columns:
                rows[-1] += cells[token.start() : token.end()]
                x += width
            elif x > indent:
                new_row()  # spaces that do not fit where a row ends are dropped
            continue
        if x + width > columns and x > indent and width <= columns - indent:
            new_row()
        # A word longer than a row starts where it is and is cut where rows end.
        for style, char in cells[token.start() : token.end()]:
            char_width = get_cwidth(char)
            if x + char_width > columns and x > indent:
                new_row()
            rows[-1].append((style, char))
            x += char_width
    fragments: "list[tuple[str, str]]" = []
    for number, row in enumerate(rows):
        for style, chars in ([("", "\n" + " " * indent)] if number else []) + row:
            if fragments and fragments[-1][0] == style:
                fragments[-1] = (style, fragments[-1][1] + chars)
            else:
                fragments.append((style, chars))
    return FormattedText(fragments)


def wants_color(no_color_flag: bool, stream=sys.stdout) -> bool:
    """Color only on a terminal, and never with --no-color or NO_COLOR (no-color.org)."""
    return not no_color_flag and not os.environ.get("NO_COLOR") and stream.isatty()


def timestamped(text: str) -> str:
    return time.strftime("[%H:%M:%S] ") + text


def is_interactive() -> bool:
    """True when a person types at a terminal that can show a prompt and redraw it."""
    return (
        sys.stdin is not None
        and sys.stdin.isatty()
        and sys.stdout is not None
        and sys.stdout.isatty()
        and os.environ.get("TERM") != "dumb"
    )


def open_console(color: bool, roster: Roster) -> "PromptConsole | LineConsole":
    """The console that fits how the client was started."""
    return PromptConsole(color, roster) if is_interactive() else LineConsole()


class ReadingStopped(Exception):
    """``read_line`` was ended by ``stop_reading``. Carries what the user had typed, unsent."""

    def __init__(self, draft: str = "") -> None:
        super().__init__(draft)
        self.draft = draft


class Interrupted(KeyboardInterrupt):
    """A prompt was ended by Ctrl+C or SIGTERM. Carries what the user had typed, unsent."""

    def __init__(self, draft: str = "") -> None:
        super().__init__(draft)
        self.draft = draft


class PromptConsole:
    """A person at a terminal: a prompt at the bottom, received lines printed above it.

    Only the thread that reads the keyboard, the one that created the
    console, writes to the terminal. Other threads hand their lines over with
    :meth:`show`. While a prompt is on screen, the lines are printed from the
    prompt's own event loop: the prompt is erased, the lines are printed (cut
    at spaces to the terminal's width of the moment, see :func:`wrap`), and
    prompt_toolkit draws the prompt again below them, with the half-typed
    text and the cursor where they were. Between two prompts, the keyboard
    thread prints the lines itself.

    From :meth:`start` to :meth:`close` the terminal does not echo what is
    typed while no prompt is on screen (the terminal would print it in the
    middle of the output); the keys wait, and the next prompt reads them.
    Ctrl+C still interrupts at once.
    """

    interactive = True

    def __init__(self, color: bool, roster: Roster, input=None, output=None) -> None:
        """``input`` and ``output`` are prompt_toolkit's, for tests; by default the terminal's."""
        self._owner = threading.current_thread()
        # Without color, not even the prompt's own styles (--no-color, NO_COLOR).
        self._color_depth = None if color else ColorDepth.DEPTH_1_BIT
        self._style = Style([])
        output = output or create_output()
        if isinstance(output, Vt100_Output):
            # prompt_toolkit asks the terminal where the cursor is, to keep
            # the rows below the prompt free for menus. The answer arrives
            # late, after lines printed above the prompt have moved the
            # cursor, and a late answer makes it draw rows that scroll the
            # screen. Without it the prompt is simply drawn where the cursor is.
            output.enable_cpr = False
        self.session = PromptSession(
            PROMPT,
            input=input,
            output=output,
            completer=ChatCompleter(roster),
            complete_while_typing=False,
            # Tab completes as far as it can and lists the choices above the
            # prompt, as readline does, so no rows are kept free for a menu.
            complete_style=CompleteStyle.READLINE_LIKE,
            reserve_space_for_menu=0,
            history=InMemoryHistory(),
            color_depth=self._color_depth,
            key_bindings=self._key_bindings(),
        )
        # Guards the four fields below. Held only to read or change them:
        # never while writing to the terminal or waiting for anything.
        self._lock = threading.Lock()
        self._pending: "list[FormattedText]" = []  # lines handed over, not printed yet
        self._loop: "asyncio.AbstractEventLoop | None" = None  # the prompt's loop while one is on screen
        self._print_requested = False  # a print of _pending is scheduled in _loop
        self._stopped = False  # stop_reading() was called: no more prompts
        # Set by note_interrupt(), from a signal handler, in the main thread:
        # without the lock, which the interrupted code may be holding.
        self.interrupted = False
        self._terminal_settings = None  # as they were before start(), to restore

    def start(self) -> None:
        """Take the keyboard for the chat: keys typed between prompts are kept, not echoed."""
        if termios is None:
            return  # Windows consoles echo only while a program reads
        fd = sys.stdin.fileno()
        try:
            self._terminal_settings = termios.tcgetattr(fd)
        except termios.error:
            return
        quiet = termios.tcgetattr(fd)
        # Like prompt_toolkit's raw mode, which each prompt switches on, but
        # with ISIG kept, so that Ctrl+C still sends SIGINT.
        quiet[tty.LFLAG] &= ~(termios.ECHO | termios.ICANON | termios.IEXTEN)
        quiet[tty.IFLAG] &= ~(termios.IXON | termios.IXOFF | termios.ICRNL | termios.INLCR | termios.IGNCR)
        quiet[tty.CC][termios.VMIN] = 1
        quiet[tty.CC][termios.VTIME] = 0
        termios.tcsetattr(fd, termios.TCSANOW, quiet)

    def read_line(self) -> str:
        """Show the prompt and wait for the user's line.

        Raises EOFError on Ctrl+D; Interrupted (a KeyboardInterrupt) on
        Ctrl+C or SIGTERM, and ReadingStopped once stop_reading() was called,
        both with the unsent text.
        """
        if self.interrupted:
            raise Interrupted()
        with self._lock:
            if self._stopped:
                raise ReadingStopped()
        try:
            return self.session.prompt(pre_run=self._on_prompt_start)
        finally:
            with self._lock:
                self._loop = None
                self._print_requested = False
            self.session.app.erase_when_done = False
            self._print_pending()  # whatever arrived while the prompt was ending

    def show(self, text) -> None:
        """Print ``text`` (a string or formatted text) on lines of its own above the prompt.

        May be called from any thread; returns without waiting for the terminal.
        """
        with self._lock:
            self._pending.append(to_formatted_text(text))
            loop = self._loop
            wake_loop = loop is not None and not self._print_requested
            if wake_loop:
                self._print_requested = True
            print_now = loop is None and threading.current_thread() is self._owner
        if wake_loop:
            _call_soon(loop, self._print_above_prompt)
        elif print_now:
            self._print_pending()

    def stop_reading(self) -> None:
        """End read_line(), now if a prompt is on screen, else as soon as it is called."""
        with self._lock:
            self._stopped = True
            loop = self._loop
        if loop is not None:
            _call_soon(loop, self._end_prompt)

    def note_interrupt(self) -> None:
        """Ctrl+C or SIGTERM: end the prompt on screen with Interrupted, or the next one.

        Called from a signal handler, which runs in the main thread between
        two steps of whatever it was doing, so the lock is not taken here (the
        interrupted code may hold it). The loop is read without it: if that
        prompt has just ended, the next one sees the flag as it starts.
        """
        self.interrupted = True
        loop = self._loop
        if loop is not None:
            _call_soon(loop, self._interrupt_prompt)

    def close(self) -> None:
        """Give the terminal back as it was, and print what is still waiting."""
        if self._terminal_settings is not None:
            try:
                termios.tcsetattr(sys.stdin.fileno(), termios.TCSANOW, self._terminal_settings)
            except (termios.error, OSError, ValueError):  # the terminal is gone
                pass
            self._terminal_settings = None
        self._print_pending()

    # The methods below run in the keyboard thread, most of them inside the
    # prompt's event loop.

    def _key_bindings(self) -> KeyBindings:
        bindings = KeyBindings()
        # At the prompt Ctrl+C is a key, not SIGINT. Bound here (ours come
        # after prompt_toolkit's), it ends the prompt as SIGTERM does, giving
        # back what was typed.
        bindings.add("c-c")(lambda event: self._interrupt_prompt())
        return bindings

    def _on_prompt_start(self) -> None:
        """Called by prompt_toolkit once the prompt's loop runs, before it is drawn."""
        with self._lock:
            self._loop = asyncio.get_running_loop()
            stopped = self._stopped
        if self.interrupted:  # Ctrl+C came just before the loop was known
            self._interrupt_prompt()
        elif stopped:  # stop_reading() came just before the loop was known
            self._end_prompt()
        self._print_pending()

    def _print_above_prompt(self) -> None:
        if not self._prompt_running():
            return  # this prompt is ending, and read_line() prints the lines
        # As prompt_toolkit's run_in_terminal() does, but without switching
        # the terminal to cooked mode, which would echo the keys typed meanwhile.
        renderer = self.session.app.renderer
        renderer.erase(leave_alternate_screen=False)  # the cursor goes where the prompt began
        self._print_pending()
        self.session.app.invalidate()  # draw the prompt again, below the lines

    def _interrupt_prompt(self) -> None:
        if self._prompt_running():
            app = self.session.app
            app.erase_when_done = True  # as for _end_prompt
            app.exit(exception=Interrupted(app.current_buffer.text))

    def _end_prompt(self) -> None:
        if self._prompt_running():
            app = self.session.app
            app.erase_when_done = True  # the prompt goes; its text is given back, not left looking sent
            app.exit(exception=ReadingStopped(app.current_buffer.text))

    def _prompt_running(self) -> bool:
        app = self.session.app
        return app.is_running and not app.is_done

    def _print_pending(self) -> None:
        with self._lock:
            lines, self._pending = self._pending, []
            self._print_requested = False
        if lines:  # all of them in one write
            # The width now: the terminal may have been resized since the last lines.
            columns = self.session.app.output.get_size().columns
            text = [fragment for line in lines for fragment in (*wrap(line, columns), ("", "\n"))]
            print_formatted_text(self.session.app.output, text, self._style, color_depth=self._color_depth)


def _call_soon(loop: asyncio.AbstractEventLoop, callback) -> None:
    """Run ``callback`` in ``loop``'s thread, unless that loop has already finished.

    A loop that finished belonged to a prompt that has ended; read_line()
    then does what the callback would have done.
    """
    try:
        loop.call_soon_threadsafe(callback)
    except RuntimeError:  # the loop is closed
        pass


class LineConsole:
    """No prompt: lines are read whole from standard input, and printed as plain text.

    For input from a pipe or a file, output to a pipe or a file, and dumb
    terminals. Writes nothing but text and newlines.
    """

    interactive = False

    def __init__(self) -> None:
        self._framer = LineFramer(MAX_TYPED_LINE_BYTES)
        self._lines: "deque[str]" = deque()  # complete lines read and not yet returned
        self._at_end = False  # standard input has ended
        self._stopped = threading.Event()
        self.interrupted = False  # set by note_interrupt(), from a signal handler
        # stop_reading() writes a byte to one end, which wakes the select()
        # waiting on standard input and the other end (as the server's waker does).
        self._waker, self._wakeup = socket.socketpair()

    def start(self) -> None:
        pass

    def read_line(self) -> str:
        """Wait for the next line of input; EOFError at its end, ReadingStopped after stop_reading()."""
        while not self._lines:
            if self.interrupted:
                raise KeyboardInterrupt
            if self._stopped.is_set():
                raise ReadingStopped()
            if self._at_end:
                raise EOFError
            data = self._wait_for_input()
            if data is None:
                continue
            if not data:
                self._at_end = True
                data = b"\n"  # the last line may lack its newline
            for event in self._framer.feed(data):
                if isinstance(event, bytes):
                    self._lines.append(decode_line(event))
                else:
                    self.show(timestamped(f"❗ A line longer than {MAX_TYPED_LINE_BYTES} bytes was not sent."))
        return self._lines.popleft()

    def _wait_for_input(self) -> "bytes | None":
        """Bytes from standard input (b"" at its end), or None if stop_reading() woke us."""
        if sys.stdin is None:
            return b""
        try:
            fd = sys.stdin.fileno()
        except (OSError, ValueError):
            return b""
        if os.name != "posix":
            # Windows cannot select() on a pipe or a console: read a line, and
            # notice stop_reading() only when it comes.
            return sys.stdin.buffer.readline()
        ready, _, _ = select.select([fd, self._wakeup], [], [])
        if self._wakeup in ready:
            return None
        return os.read(fd, STDIN_READ_BYTES)

    def show(self, text) -> None:
        """Print ``text`` as one plain line. May be called from any thread."""
        line = fragment_list_to_text(to_formatted_text(text)) + "\n"
        stdout = sys.stdout
        if stdout is None:
            return
        try:
            # One write of the whole line: the file's own lock keeps lines
            # from the two threads whole.
            stdout.buffer.write(line.encode(stdout.encoding or "utf-8", "replace"))
            stdout.flush()
        except (OSError, ValueError):  # the output was closed, e.g. piped into `head`
            pass

    def stop_reading(self) -> None:
        self._stopped.set()
        self._wake()

    def note_interrupt(self) -> None:
        """Ctrl+C or SIGTERM: end read_line() with KeyboardInterrupt, now or when it is called."""
        self.interrupted = True
        self._wake()

    def _wake(self) -> None:
        try:
            self._waker.send(b"\0")
        except OSError:
            pass

    def close(self) -> None:
        self._waker.close()
        self._wakeup.close()
