import io
import logging
import re
import threading
import time

from chat.logs import BackgroundHandler
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
