import contextlib
import logging
import os
import sys
import threading
from dataclasses import replace
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
# pytest rewrites each test module's asserts when it imports it, in each of
# its processes, and keeps the result as bytecode, unless Python is told
# to write none (PYTHONDONTWRITEBYTECODE, set on some machines): then every
# run does it all again, seconds of CPU per process before the first test.
sys.dont_write_bytecode = False
# Every server.py a test starts (and server.main called here) keeps nothing
# on disk unless the test gives it --store: none writes chat.db into the
# repository. The tests of the store give it a file in a temporary folder.
os.environ["CHAT_STORE"] = "none"

from chat.config import Limits, ServerConfig  # noqa: E402
from chat.server import ChatServer  # noqa: E402
from tests.browser import chromium, start_clean  # noqa: E402
from tests.helpers import FAST, TIMEOUT_S, FakeClock, Peer, ServerProgram, Terminal  # noqa: E402

# The files that take longest, longest first (as measured in a whole run).
# The test processes take whole files in this order (pytest.ini: loadfile,
# without pytest-xdist's own reordering by number of tests), so these go
# first: otherwise one of them, given out last, keeps a process busy after
# the others are done. The keepalive test mostly waits on the kernel's
# timers, so it goes early, beside tests that need the CPU.
SLOWEST_FILES = (
    "test_page.py",
    "test_client_terminal.py",
    "test_page_operators.py",
    "test_page_live.py",
    "test_redis.py",
    "test_keepalive.py",
    "test_client_reconnect.py",
    "test_console.py",
    "test_chaos.py",
    "test_programs.py",
    "test_bench.py",
    "test_store.py",
    "test_web_server.py",
    "test_accessibility.py",
    "test_hostile.py",
)


def pytest_collection_modifyitems(items):
    def slowness(item) -> int:
        name = item.path.name
        return SLOWEST_FILES.index(name) if name in SLOWEST_FILES else len(SLOWEST_FILES)

    items.sort(key=slowness)  # stable: within a file, and among the others, the order stays


@pytest.fixture(autouse=True)
def no_thread_dies():
    """Fail the test if any thread raised, or the server logged one of its own errors."""
    failures = []
    previous = threading.excepthook
    threading.excepthook = lambda args: failures.append(args)

    class ErrorCollector(logging.Handler):
        def emit(self, record):
            if record.exc_info:
                failures.append(self.format(record))

    collector = ErrorCollector(logging.ERROR)
    logging.getLogger().addHandler(collector)
    try:
        yield
    finally:
        threading.excepthook = previous
        logging.getLogger().removeHandler(collector)
    assert not failures, f"a thread failed: {failures}"


@pytest.fixture
def clock() -> FakeClock:
    """A clock the test moves by hand."""
    return FakeClock()


@pytest.fixture
def start_server():
    """Start servers on free ports in background threads; stop and check each afterwards."""
    started = []

    # No history unless a test asks for it: most tests check exactly what a newcomer is sent.
    def start(password=None, history_lines=0, timings=FAST, trusted_proxies=(), allowed_origins=(), **limits) -> ChatServer:
        config = ServerConfig(
            "127.0.0.1", 0, Limits(**limits), timings, password, history_lines,
            trusted_proxies=trusted_proxies, allowed_origins=allowed_origins,
        )
        server = ChatServer(config)
        server.bind()
        thread = threading.Thread(target=server.serve_forever, name="accept-loop")
        thread.start()
        started.append((server, thread))
        return server

    yield start
    Peer.close_all()
    for server, thread in started:
        assert server.shutdown(timeout=5), "the server did not stop"
        thread.join(5)
        assert not thread.is_alive()


@pytest.fixture
def server(start_server) -> ChatServer:
    return start_server()


@pytest.fixture
def patient_server(start_server) -> ChatServer:
    """A server that waits TIMEOUT_S for a first line: for tests that send an opening from a bare socket.

    A busy machine may pause a test between its connect and its first send
    for longer than FAST's quarter of a second; the server would then take
    the client for a silent raw one. Clients that send at once lose nothing.
    """
    return start_server(timings=replace(FAST, first_line_wait_s=TIMEOUT_S))


@pytest.fixture
def server_programs():
    """Start server.py subprocesses: ``start(port, *options)``; all are killed afterwards, with every Peer closed."""
    started = []

    def start(port: int = 0, *options: str) -> ServerProgram:
        program = ServerProgram(port, *options)
        started.append(program)
        return program

    yield start
    Peer.close_all()
    for program in started:
        program.kill()


@pytest.fixture
def server_program(server_programs) -> ServerProgram:
    """server.py as a subprocess on a free port, without history."""
    return server_programs(0, "--history", "0")


@pytest.fixture
def terminals():
    """Start client.py in pseudo-terminals (80×24 unless ``size`` says otherwise).

    Each is closed afterwards, and must not have shown a traceback.
    """
    started = []

    def start(*args, env=None, size=(80, 24)) -> Terminal:
        terminal = Terminal(list(args), env=env, columns=size[0], rows=size[1])
        started.append(terminal)
        return terminal

    yield start
    for terminal in started:
        terminal.close()
    for terminal in started:
        assert "Traceback" not in terminal.transcript, terminal.transcript


@pytest.fixture(scope="session")
def chromium_session():
    """The headless Chromium of this test process's page tests, started once (skips without Chromium)."""
    with chromium() as driver:
        yield driver


@pytest.fixture
def driver(chromium_session):
    """The process's Chromium, on a clean about:blank for each test (tests.browser.start_clean).

    Left on about:blank too: a page left open would go on running (a page
    whose server is gone counts down and reconnects) while the browser waits
    for this process's next page test, costing CPU the other tests need.
    """
    start_clean(chromium_session)
    yield chromium_session
    with contextlib.suppress(Exception):  # a browser that broke is the test's failure, not the teardown's
        if chromium_session.current_url != "about:blank":
            chromium_session.get("about:blank")
