import io
import logging
import os
import re
import threading
import time

from colorama import Fore, Style

from chat.logs import BackgroundHandler, ColorFormatter, color_of, wants_color
from tests.helpers import wait_until


def test_records_from_many_threads_are_all_written_in_order_with_timestamps():
    stream = io.StringIO()
    handler = BackgroundHandler(stream)
    logger = logging.getLogger("test.background")
    logger.propagate = False
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)

    def talk(n):
        for i in range(500):
            logger.info("thread %d line %d", n, i)

    threads = [threading.Thread(target=talk, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    handler.close()
    logger.removeHandler(handler)

    lines = stream.getvalue().splitlines()
    assert len(lines) == 2000
    assert all(re.fullmatch(r"\[\d\d:\d\d:\d\d\] thread \d line \d+", line) for line in lines)
    for n in range(4):
        mine = [int(line.rsplit(" ", 1)[1]) for line in lines if f"thread {n} " in line]
        assert mine == list(range(500))


def test_closing_twice_is_harmless_and_stops_the_writer():
    handler = BackgroundHandler(io.StringIO())
    handler.close()
    handler.close()
    assert not handler._writer.is_alive()


class BlockedStream(io.StringIO):
    """A stream whose writes wait until released, as stdout does when a terminal is paused."""

    def __init__(self):
        super().__init__()
        self.released = threading.Event()
        self.writing = threading.Event()

    def write(self, text):
        self.writing.set()
        self.released.wait()
        return super().write(text)


def test_a_blocked_output_bounds_the_queue_and_counts_what_it_dropped(monkeypatch):
    monkeypatch.setattr("chat.logs.MAX_PENDING_RECORDS", 100)
    stream = BlockedStream()
    handler = BackgroundHandler(stream)
    logger = logging.getLogger("test.blocked")
    logger.propagate = False
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        logger.info("first")
        assert stream.writing.wait(5)  # the writer is now stuck in write()
        for i in range(1000):
            logger.info("line %d", i)
        assert len(handler._records) == 100
        stream.released.set()
        assert wait_until(lambda: not handler._records)
        logger.info("after")
        assert wait_until(lambda: "after" in stream.getvalue())
    finally:
        stream.released.set()
        handler.close()
        logger.removeHandler(handler)
    written = stream.getvalue()
    assert "900 log line(s) were dropped" in written
    assert "line 99\n" in written and "line 100\n" not in written


def test_closing_does_not_wait_for_an_output_that_takes_nothing():
    stream = BlockedStream()
    handler = BackgroundHandler(stream)
    handler.handle(logging.makeLogRecord({"msg": "stuck"}))
    assert stream.writing.wait(5)
    started = time.monotonic()
    assert handler.close(timeout=0.2) is False
    assert time.monotonic() - started < 1.0
    stream.released.set()


def test_a_record_of_several_lines_gives_each_its_timestamp():
    stream = io.StringIO()
    handler = BackgroundHandler(stream)
    handler.handle(logging.makeLogRecord({"msg": "📨 Ann: one\n📨 Ann: two"}))
    handler.close()
    assert re.fullmatch(r"\[(\d\d:\d\d:\d\d)\] 📨 Ann: one\n\[\1\] 📨 Ann: two\n", stream.getvalue())


def record(logger: str, level: int, message: str) -> logging.LogRecord:
    return logging.LogRecord(logger, level, __file__, 0, message, (), None)


def test_joins_leaves_orders_warnings_and_errors_each_have_their_colour_and_the_rest_none():
    assert color_of(record("chat.joins", logging.INFO, "[SYSTEM] Ann joined the chat!")) == "GREEN"
    assert color_of(record("chat.leaves", logging.INFO, "[SYSTEM] Ann left the chat.")) == "CYAN"
    assert color_of(record("chat.orders", logging.WARNING, "🛡️  Ann was kicked")) == "MAGENTA"
    assert color_of(record("chat.transports.connection", logging.WARNING, "⛔ flood")) == "YELLOW"
    assert color_of(record("chat.server", logging.ERROR, "⚠️  no thread")) == "RED"
    assert color_of(record("chat.core.room", logging.INFO, "📨 Ann: hi")) is None


def test_each_line_of_a_coloured_record_is_coloured_on_its_own_and_pictures_never():
    formatter = ColorFormatter()
    text = formatter.format(record("chat.leaves", logging.INFO, "[SYSTEM] Ann left the chat.\n[SYSTEM] Bob left the chat."))
    lines = text.split("\n")
    assert len(lines) == 2
    assert all(line.startswith(Fore.CYAN) and line.endswith(Style.RESET_ALL) for line in lines)
    picture = record("chat.joins", logging.INFO, "▀▄ QR")
    picture.verbatim = True
    assert formatter.format(picture) == "▀▄ QR"


def test_the_log_is_coloured_only_on_a_terminal_and_only_without_no_color():
    import pty

    master, slave = pty.openpty()
    with os.fdopen(slave, "w") as terminal:
        try:
            assert wants_color(terminal, environ={})
            assert not wants_color(terminal, environ={"NO_COLOR": "1"})
            assert wants_color(terminal, environ={"NO_COLOR": ""})  # set but empty: no-color.org says colour
        finally:
            os.close(master)
    assert not wants_color(io.StringIO(), environ={})
    assert not wants_color(None, environ={})


def test_a_coloured_handler_redirected_back_to_a_terminal_is_coloured_again(monkeypatch):
    import pty

    monkeypatch.delenv("NO_COLOR", raising=False)
    master, slave = pty.openpty()
    with os.fdopen(slave, "w") as terminal:
        try:
            handler = BackgroundHandler(terminal, color=True)
            handler.redirect(io.StringIO())  # the console's prompt, say
            assert not isinstance(handler.formatter, ColorFormatter)
            handler.redirect(terminal)  # the console closed
            assert isinstance(handler.formatter, ColorFormatter)
            handler.close()
        finally:
            os.close(master)


def test_a_handler_redirected_to_what_is_not_a_terminal_writes_plain_text():
    handler = BackgroundHandler(io.StringIO(), color=True)
    try:
        target = io.StringIO()
        handler.redirect(target)
        handler.handle(record("chat.joins", logging.INFO, "[SYSTEM] Ann joined the chat!"))
    finally:
        handler.close()
    assert target.getvalue().endswith("] [SYSTEM] Ann joined the chat!\n")
