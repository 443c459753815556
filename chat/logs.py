"""The server's log: ``[HH:MM:SS] message`` lines on stdout, written by a thread of their own.

The server logs every chat line it relays. With the standard StreamHandler,
each of those costs the client thread that relays it a handler lock (which
the other client threads contend for), a formatted timestamp and a write to
the terminal; measured with the benchmark, that halved the server's
throughput in a busy room. :class:`BackgroundHandler` reduces the client
thread's part to creating the record and handing it over (chat.handover); one writer
thread formats whatever has piled up and writes it in one go.

On a terminal the log is coloured by what happened: joins green, leaves
cyan, operators' orders magenta, warnings yellow, errors red (through
colorama, which makes Windows consoles understand the colour codes too).
What happened is the logger a line comes from (``chat.joins``,
``chat.leaves``, ``chat.orders``), else its level. Plain text when the
output is not a terminal, or the NO_COLOR environment variable is set.
"""

import logging
import os
import sys
import threading
import time

from chat.handover import Handover

FORMAT = "[%(asctime)s] %(message)s"
# How long the writer lets records gather before writing them: the most a log line is late.
BATCH_WAIT_S = 0.05
TIME_FORMAT = "%H:%M:%S"
# A record logged with ``extra={VERBATIM: True}`` is written as it is, without timestamps.
VERBATIM = "verbatim"
# Records waiting for the writer, at most: some 25 MB at the longest lines.
MAX_PENDING_RECORDS = 5_000
# How long close() waits for the writer to write what is left.
CLOSE_WAIT_S = 0.3

# The colours of the log on a terminal (colorama's codes): by logger first, else by level.
COLORS_BY_LOGGER = {"chat.joins": "GREEN", "chat.leaves": "CYAN", "chat.orders": "MAGENTA"}
COLORS_BY_LEVEL = ((logging.ERROR, "RED"), (logging.WARNING, "YELLOW"))


def color_of(record: logging.LogRecord) -> "str | None":
    """The colour (a colorama ``Fore`` name) a record is shown in on a terminal, or None."""
    if record.name in COLORS_BY_LOGGER:
        return COLORS_BY_LOGGER[record.name]
    return next((color for level, color in COLORS_BY_LEVEL if record.levelno >= level), None)


def wants_color(stream, environ=os.environ) -> bool:
    """Whether to colour what is written to ``stream``: a terminal, and no NO_COLOR (see no-color.org)."""
    if environ.get("NO_COLOR"):
        return False
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # no such method, or closed
        return False


class SecondsFormatter(logging.Formatter):
    """A Formatter for ``[HH:MM:SS]`` that formats each second's timestamp only once.

    A record whose message has several lines (a bunch of chat lines relayed
    together, logged with one record) gives each line its own timestamp.
    """

    def __init__(self) -> None:
        super().__init__(FORMAT, TIME_FORMAT)
        self._second = None
        self._stamp = ""

    def formatTime(self, record, datefmt=None) -> str:
        second = int(record.created)
        if second != self._second:
            self._second, self._stamp = second, time.strftime(TIME_FORMAT, time.localtime(second))
        return self._stamp

    def format(self, record) -> str:
        if getattr(record, VERBATIM, False):  # a picture: a timestamp on each line would widen it
            return record.getMessage()
        text = super().format(record)
        if "\n" not in text:
            return text
        stamp = f"[{self.formatTime(record)}] "
        return text.replace("\n", "\n" + stamp)


class ColorFormatter(SecondsFormatter):
    """A SecondsFormatter that shows each line in the colour of what happened (see color_of)."""

    def __init__(self) -> None:
        super().__init__()
        from colorama import Fore, Style  # only for a terminal

        self._codes = {name: getattr(Fore, name) for name in ("GREEN", "CYAN", "MAGENTA", "YELLOW", "RED")}
        self._reset = Style.RESET_ALL

    def format(self, record) -> str:
        text = super().format(record)
        color = color_of(record)
        if color is None or getattr(record, VERBATIM, False):
            return text
        code = self._codes[color]
        # Each line of a record coloured on its own: a terminal may scroll between them.
        return "\n".join(f"{code}{line}{self._reset}" for line in text.split("\n"))


class BackgroundHandler(logging.Handler):
    """Collects records from any thread; a writer thread formats and writes them in batches."""

    def __init__(self, stream=None, color: bool = False) -> None:
        super().__init__()
        self.stream = stream or sys.stdout
        self._color = color  # colorama is there, and NO_COLOR is not set
        self.setFormatter(ColorFormatter() if color else SecondsFormatter())
        self._records = Handover(MAX_PENDING_RECORDS)  # log records, for the writer thread
        self._stopping = False
        # Guards _dropped, which only the rare dropping path touches.
        self._dropped_lock = threading.Lock()
        self._dropped = 0  # records dropped since the writer last caught up
        self._writer = threading.Thread(target=self._write_until_stopped, name="log-writer", daemon=True)
        self._writer.start()

    def redirect(self, stream) -> None:
        """Write to ``stream`` from now on: in colour if this handler was made to and ``stream`` is a terminal."""
        self.setFormatter(ColorFormatter() if self._color and wants_color(stream) else SecondsFormatter())
        self.stream = stream

    def handle(self, record: logging.LogRecord) -> bool:
        # No handler lock: the handover is all the synchronisation needed.
        if not self._records.put(record):  # the output is stuck: drop, and count
            with self._dropped_lock:
                self._dropped += 1
        return True

    def emit(self, record: logging.LogRecord) -> None:
        self.handle(record)

    def close(self, timeout: float = CLOSE_WAIT_S) -> bool:
        """Write what is left and stop the writer thread. Idempotent.

        Returns False if the writer is still stuck writing after ``timeout``
        (the output does not take what we write); it is a daemon thread, so
        it does not keep the process alive.
        """
        self._stopping = True
        self._records.wake()
        self._writer.join(timeout)
        super().close()
        return not self._writer.is_alive()

    def _write_until_stopped(self) -> None:
        while not self._stopping:
            self._records.wait()
            # Let records gather: meanwhile logging one costs no wake-up,
            # and they are then written in one go.
            time.sleep(BATCH_WAIT_S)
            self._write_pending()
        self._write_pending()

    def _write_pending(self) -> None:
        lines = []
        with self._dropped_lock:
            dropped, self._dropped = self._dropped, 0
        records = self._records.take_all()
        if dropped:
            records.append(logging.makeLogRecord({"msg": f"⚠️  The output was blocked: {dropped} log line(s) were dropped."}))
        for record in records:
            try:
                lines.append(self.format(record) + "\n")
            except Exception:
                self.handleError(record)
        if lines:
            try:
                self.stream.write("".join(lines))
                self.stream.flush()
            except Exception:  # the terminal went away: nowhere left to report it
                pass


def configure_logging() -> BackgroundHandler:
    """Send the root logger's INFO and above to stdout; return the handler, to close() at exit."""
    # Nothing in our format uses these, and looking them up costs every record
    # (the switches the logging HOWTO lists under "Optimization"). Finding the
    # caller's file and line walks the stack: it nearly doubled the cost of the
    # record logged for each relayed line.
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False
    logging._srcfile = None
    color = wants_color(sys.stdout)
    if color:
        try:
            from colorama import just_fix_windows_console
        except ImportError:  # colorama is missing: the log is plain, and nothing else changes
            color = False
        else:
            just_fix_windows_console()  # Windows consoles: understand the codes; elsewhere nothing
    handler = BackgroundHandler(color=color)
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    return handler
