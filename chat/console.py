"""The server's terminal as an operator console: the log above a ``Server> `` prompt.

When a person sits at the server's terminal (its standard input and output
are both one), :func:`operator_console` runs a console thread for as long as
the server serves::

    main thread: serve_forever()            console thread ("console")
                                              read_line() at the Server> prompt
    log-writer thread ──► _AbovePrompt ──►    printed above the prompt
                                              obey(): run_command(room, ConsoleOperator, line)

The lines typed there are commands of an operator named ``Server``
(:data:`chat.core.moderation.CONSOLE_NAME`), :class:`ConsoleOperator`, which
the commands table lets do what operators do, plus ``/say``; its replies are
printed above the prompt too. It is not a member of the room: nobody can
``/msg`` it, and it hears the room through the log.

The prompt is the client's (:class:`chat.client.terminal.PromptConsole`):
the same printing above the prompt, with the half-typed line kept, and the
same care of the terminal, which is given back as it was.

Ctrl+C, Ctrl+D and ``/quit`` at the prompt ask the server to stop; the
server stopping, for whatever reason, ends the prompt. When standard input
or output is not a terminal (nohup, CI, a pipe, ``&``, ``< /dev/null``),
none of this runs, prompt_toolkit is not even imported, and standard input
is never read.
"""

import contextlib
import logging
import os
import sys
import threading

from chat.core import messages
from chat.core.commands import COMMANDS, clean, parse_command, run_command
from chat.core.framing import ENCODING
from chat.core.moderation import CONSOLE_NAME
from chat.core.room import Room
from chat.core.text import sanitize

log = logging.getLogger(__name__)

PROMPT = "Server> "
NOT_A_COMMAND = messages.error("Type /say TEXT to speak to everyone, or /help.")
# How long stopping waits for the console thread: it ends at once, unless
# the terminal has stopped taking what is printed.
CONSOLE_JOIN_S = 2.0


def wants_console(stdin=None, stdout=None) -> bool:
    """Whether a person sits at the terminal: standard input and output are one, and we are its foreground job.

    A job started with ``&`` from an interactive shell has the terminal as
    its input and output too, but the kernel stops a background job that
    reads it or changes its settings (SIGTTIN, SIGTTOU): it runs without a
    console, as before.
    """
    stdin = sys.stdin if stdin is None else stdin
    stdout = sys.stdout if stdout is None else stdout
    try:
        if not (stdin.isatty() and stdout.isatty()) or os.environ.get("TERM") == "dumb":
            return False
        return not hasattr(os, "tcgetpgrp") or os.tcgetpgrp(stdin.fileno()) == os.getpgrp()
    except (AttributeError, ValueError, OSError):  # None (pythonw), closed, or no terminal after all
        return False


@contextlib.contextmanager
def operator_console(room: Room, request_stop, log_handler):
    """Run the operator console for as long as the block, if a person sits at the terminal; else nothing.

    ``request_stop`` is called when the operator asks the server to stop.
    ``log_handler`` (a :class:`chat.logs.BackgroundHandler`) has its lines
    printed above the prompt while the console is open. On leaving the
    block the prompt ends, the console thread is joined and the terminal is
    as it was.
    """
    if not wants_console():
        yield None
        return
    try:
        console = OperatorConsole(room, request_stop, log_handler)
    except ImportError as error:  # prompt_toolkit is missing: serve without a console
        log.warning("⚠️  No operator console (%s): pip install -r requirements.txt", error)
        yield None
        return
    console.start()
    try:
        yield console
    finally:
        console.stop()


class ConsoleOperator:
    """The operator at the server's terminal, as the room and the commands see it (a Member).

    ``show`` prints a line above the prompt; it must not block.
    """

    member_id = 0  # no member has it: the room numbers them from 1
    address = None  # no address: it can be neither banned nor counted
    operator = True
    console = True

    def __init__(self, show) -> None:
        self.name = CONSOLE_NAME
        self.confirming: "str | None" = None  # a ban waiting to be repeated (see chat.core.operators.ban)
        self._show = show
        self._stopping = threading.Event()

    def queue(self, data: bytes) -> bool:
        for line in data.decode(ENCODING, "replace").split("\n")[:-1]:  # newline-ended lines
            self._show(line)
        return False  # shown already: nothing to flush

    def queue_private(self, data: bytes) -> bool:
        return self.queue(data)

    def flush(self) -> None:
        pass

    def quit(self) -> None:
        pass  # /quit at the console stops the server: obey() sees to it

    def pause(self, seconds: float) -> bool:
        """Wait ``seconds``; False if the console is stopping first."""
        return not self._stopping.wait(seconds)

    def stop(self) -> None:
        self._stopping.set()


def obey(room: Room, operator: ConsoleOperator, text: str) -> bool:
    """Act on a line typed at the console; True if it asks the server to stop (``/quit``).

    The console does not chat: a line that is not a command is answered
    with how to speak to everyone.
    """
    line = clean(text)
    if line is None:
        return False
    if not line.startswith("/") or line.startswith("//"):
        room.send_to(operator, NOT_A_COMMAND)
        return False
    if parse_command(line)[0] == "quit":
        return True
    run_command(room, operator, line)
    return False


def console_commands(operator: ConsoleOperator) -> "dict[str, str]":
    """The commands the console may use, each with its arguments' help (for Tab)."""
    return {name: command.args for name, command in COMMANDS.items() if command.open_to(operator)}


class OperatorConsole:
    """The console thread, the prompt it reads and the operator it types as.

    :meth:`start` once, then :meth:`stop` (idempotent) from the thread that
    started it. The console thread owns the prompt; it ends when the
    operator asks the server to stop, or when :meth:`stop` ends the prompt,
    and gives the terminal back as it ends.
    """

    def __init__(self, room: Room, request_stop, log_handler) -> None:
        """Raises ImportError without prompt_toolkit."""
        from chat.client.completion import Roster
        from chat.client.terminal import KIND_STYLES, PromptConsole

        self.room = room
        self._request_stop = request_stop
        self.operator = ConsoleOperator(self._show_reply)
        color = not os.environ.get("NO_COLOR")
        self._screen = PromptConsole(color, Roster())
        self._screen.session.message = PROMPT
        self._screen.session.completer = _console_completer(room, self.operator)
        self._log_handler = log_handler
        self._log_stream = log_handler.stream  # where the log goes again once the console has closed
        self._above_prompt = _AbovePrompt(self._screen, self._log_stream)
        self._styles = KIND_STYLES
        self._thread = threading.Thread(target=self._run, name="console", daemon=True)

    def start(self) -> None:
        """Take the terminal, print the log above the prompt, and start the console thread."""
        self._screen.start()
        self._log_handler.redirect(self._above_prompt)  # plain: the prompt takes no colour codes
        self._thread.start()

    def say_hello(self) -> None:
        """Say that this terminal is a console: after the server's start lines."""
        log.info("💻 This terminal is an operator console: /help lists its commands; /quit or Ctrl+C stops the server.")

    def stop(self) -> None:
        """End the prompt and wait for the console thread, which gives the terminal back."""
        self.operator.stop()
        self._screen.stop_reading()
        self._thread.join(CONSOLE_JOIN_S)
        if self._thread.is_alive():  # stuck writing to a terminal that takes nothing
            log.warning("⚠️  The operator console did not stop in time.")

    def _run(self) -> None:
        """The console thread's body: read and obey lines until the server stops or is asked to."""
        from chat.client.terminal import ReadingStopped

        try:
            while True:
                try:
                    text = self._screen.read_line()
                except ReadingStopped:  # the server is stopping
                    return
                except (KeyboardInterrupt, EOFError):  # Ctrl+C, Ctrl+D
                    self._request_stop()
                    return
                if self._obey(text):
                    self._request_stop()
                    return
        except Exception:  # a bug of ours: the server serves on, without a console
            log.exception("The operator console failed")
        finally:
            self._above_prompt.close()
            self._log_handler.redirect(self._log_stream)  # in colour again, if it was

    def _obey(self, text: str) -> bool:
        try:
            return obey(self.room, self.operator, text)
        except Exception:  # a bug of ours in a command: the console goes on
            log.exception("Unexpected error in the console's command %r", text)
            return False

    def _show_reply(self, line: str) -> None:
        style = self._styles.get(messages.classify(line)[0], "")
        self._screen.show([(style, sanitize(line))])


class _AbovePrompt:
    """Where the log writer writes while the console is open: above the prompt.

    Once the console has closed, what is written goes to ``stream`` (the
    log's own output) as before.
    """

    def __init__(self, screen, stream) -> None:
        self._screen = screen
        self._stream = stream
        # Guards _open. Held while the console closes, printing what it
        # still holds, so that no later line is written before those.
        self._lock = threading.Lock()
        self._open = True

    def write(self, text: str) -> int:
        if not text:
            return 0
        with self._lock:
            if self._open:
                # Terminal safety twice: what is logged is already sanitized,
                # but the operator's own terminal is not taken on trust.
                self._screen.show("\n".join(sanitize(line) for line in text.splitlines()))
                return len(text)
        return self._stream.write(text)

    def flush(self) -> None:
        with self._lock:
            if self._open:
                return  # show() hands its lines over whole
        self._stream.flush()

    def close(self) -> None:
        """Give the terminal back, print what is left, and let later lines go straight to ``stream``."""
        with self._lock:
            self._open = False
            self._screen.close()


def _console_completer(room: Room, operator: ConsoleOperator):
    """Tab at the console: the commands it may use, then the names of everyone online.

    Made here rather than at import, as prompt_toolkit is loaded only when a console opens.
    """
    from prompt_toolkit.completion import Completer, Completion

    from chat.client.completion import complete

    commands = console_commands(operator)

    class ConsoleCompleter(Completer):
        def get_completions(self, document, complete_event):
            before_cursor = document.text_before_cursor
            word_length = len(before_cursor) - (before_cursor.rfind(" ") + 1)
            for word in complete(before_cursor, room.names(), commands):
                yield Completion(word, start_position=-word_length)

    return ConsoleCompleter()
