import io
import logging
import re
import threading

from chat.logs import BackgroundHandler


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
