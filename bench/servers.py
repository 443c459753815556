"""Starting the servers under test, and reading their CPU time and memory from /proc.

A run of a scenario measures a :class:`Deployment`: one server process, or
for a shared room, a throwaway redis-server and several of our servers that
share one room through it. A deployment is started, measured and stopped as
one: its CPU time and peak memory are read per process, and every process it
started is stopped, also when starting fails or is interrupted (Ctrl+C).
"""

import importlib.util
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

PROJECT = Path(__file__).resolve().parent.parent
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
READY_TIMEOUT_S = 10.0
READY_POLL_S = 0.01  # a start takes a tenth of a second or more: look often, as it adds to every run
STOP_TIMEOUT_S = 5.0  # after SIGTERM, before SIGKILL


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def is_listening(port: int) -> bool:
    """Whether some socket on this machine listens on ``port`` (from /proc/net/tcp)."""
    LISTEN = "0A"
    with open("/proc/net/tcp") as table:
        next(table)
        for row in table:
            local, state = row.split()[1], row.split()[3]
            if state == LISTEN and int(local.rpartition(":")[2], 16) == port:
                return True
    return False


def accepts_connections(address) -> bool:
    """Whether a connection to ``address`` succeeds (it is closed at once)."""
    try:
        socket.create_connection(address, timeout=1).close()
    except OSError:
        return False
    return True


class ServerFailed(RuntimeError):
    """A server process did not start: it exited, or never listened."""

    def __init__(self, label: str, reason: str, log_path: Path) -> None:
        super().__init__(f"{label} {reason} (its output: {log_path})")
        self.label = label
        self.reason = reason
        self.log_path = log_path


class ServerUnderTest:
    """A server process on a free loopback port: ``launch`` it, ``wait_until_listening``, ``stop`` it."""

    label = "?"
    role = "chat"  # what the process does in a deployment: "chat" (serves clients) or "redis"
    join_line: "bytes | None" = None  # the line each client sends first, %d = its number, no newline
    speaks_websocket = False  # whether WebSocket clients can join (GET /ws with an Upgrade)
    shares_rooms = False  # whether several can share one room through Redis

    def __init__(self, log_path: Path) -> None:
        self.port = free_port()
        self.address = ("127.0.0.1", self.port)
        self.log_path = log_path
        self.process: "subprocess.Popen | None" = None

    def command(self) -> "list[str]":
        raise NotImplementedError

    def launch(self) -> None:
        """Start the process, its output going to ``log_path``; it listens a little later."""
        with open(self.log_path, "w") as log:  # the child has its own copy of the descriptor
            self.process = subprocess.Popen(
                self.command(), cwd=PROJECT, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT
            )

    def wait_until_listening(self) -> None:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise ServerFailed(self.label, f"exited at start with status {self.process.returncode}", self.log_path)
            if self.is_listening():
                return
            time.sleep(READY_POLL_S)
        raise ServerFailed(self.label, f"did not listen within {READY_TIMEOUT_S:.0f} s", self.log_path)

    def is_listening(self) -> bool:
        return accepts_connections(self.address)

    def cpu_seconds(self) -> float:
        with open(f"/proc/{self.process.pid}/stat") as stat:
            fields = stat.read().rpartition(")")[2].split()
        return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime + stime, all threads

    def peak_rss_mb(self) -> float:
        with open(f"/proc/{self.process.pid}/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
        return float("nan")

    def terminate(self) -> None:
        """Ask the process to stop (SIGTERM), without waiting."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()

    def wait_stopped(self) -> None:
        """Wait for the process to end after ``terminate``; kill it if it takes longer than STOP_TIMEOUT_S."""
        if self.process is None:
            return
        try:
            self.process.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.kill()

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def stop(self) -> None:
        self.terminate()
        self.wait_stopped()


class OurServer(ServerUnderTest):
    label = "ours"
    join_line = b"/nick c%d"
    speaks_websocket = True
    shares_rooms = True

    def __init__(self, log_path: Path, redis_url: "str | None" = None) -> None:
        super().__init__(log_path)
        self.redis_url = redis_url  # the room's Redis, if it shares the room with other servers

    # is_listening connects, which costs a fraction of a millisecond: reading
    # /proc/net/tcp takes the kernel ~15 ms on a machine with a thousand
    # sockets open. Our server takes a client that leaves at once in its stride.

    def command(self) -> "list[str]":
        # All limits stay at their defaults except flood control, of lines and
        # of WebSocket frames, which a load test would trip: with the frames'
        # budget left on, a WebSocket sender got 50 lines a second, and the
        # table measured that limit rather than the server.
        flood_control_off = ["--max-rate", "0", "--max-frame-rate", "0"]
        command = [sys.executable, "server.py", "--host", "127.0.0.1", "--port", str(self.port), *flood_control_off]
        if self.redis_url is not None:
            command += ["--redis", self.redis_url]
        else:
            command += ["--store", self.store()]
        return command

    def store(self) -> str:
        return "none"  # nothing written into the project's folder


class OurServerOnOneCpu(OurServer):
    """Ours with all its threads on one CPU (--one-cpu): what handing the GIL between CPUs costs."""

    label = "ours-one-cpu"
    shares_rooms = False  # two servers on one machine would both keep to its last CPU

    def command(self) -> "list[str]":
        return [*super().command(), "--one-cpu"]


class OurServerWithStore(OurServer):
    """Ours keeping its room in a SQLite file (chat.store) beside its log: what the store costs."""

    label = "ours-store"
    shares_rooms = False  # with --redis, Redis keeps the room

    def store(self) -> str:
        path = self.log_path.with_suffix(".db")
        for old in path.parent.glob(path.name + "*"):  # each run starts from an empty store
            old.unlink()
        return str(path)


class Ncat(ServerUnderTest):
    label = "ncat"

    def command(self) -> "list[str]":
        return ["ncat", "--listen", "--chat", "--max-conns", "2000", "127.0.0.1", str(self.port)]

    def is_listening(self) -> bool:
        # Not by connecting: ncat quits when a client closes before it has looked at it.
        return is_listening(self.port)


class RedisServer(ServerUnderTest):
    """A throwaway redis-server: loopback only, nothing written to disk."""

    label = "redis-server"
    role = "redis"

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def command(self) -> "list[str]":
        return ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]


def shared_room_missing() -> "str | None":
    """Why servers cannot share a room through Redis here, with how to fix it; None if they can."""
    if shutil.which("redis-server") is None:
        return "redis-server is not installed (apt-get install redis-server)"
    if importlib.util.find_spec("redis") is None:
        return "the redis package is not installed (pip install -r requirements.txt)"
    return None


class Deployment:
    """The processes one run measures, started in stages and stopped in the opposite order.

    The processes of a stage start together, and the next stage starts once
    they all listen; stopping asks a whole stage to stop, then waits for it.
    ``chat_servers`` are those the clients connect to.
    """

    def __init__(self, stages: "list[list[ServerUnderTest]]") -> None:
        self.stages = stages
        self.processes = [server for stage in stages for server in stage]
        self.chat_servers = [server for server in self.processes if server.role == "chat"]
        self.addresses = [server.address for server in self.chat_servers]
        self.join_line = self.chat_servers[0].join_line
        self._start()

    @classmethod
    def single(cls, server_class, log_path: Path) -> "Deployment":
        return cls([[server_class(log_path)]])

    @classmethod
    def shared_room(cls, servers: int, log_folder: Path, label: str = "ours") -> "Deployment":
        """``servers`` of ours sharing one room through a fresh redis-server; logs ``LABEL-shared-N.log``."""
        redis = RedisServer(log_folder / "redis-server.log")
        chat = [OurServer(log_folder / f"{label}-shared-{n}.log", redis.url) for n in range(1, servers + 1)]
        # Redis first: a server that finds no Redis at its start tries again only after half a second.
        return cls([[redis], chat])

    @property
    def roles(self) -> "list[str]":
        """Each process's role, in the order of ``cpu_seconds_each`` and ``peak_rss_mb_each``."""
        return [server.role for server in self.processes]

    def cpu_seconds_each(self) -> "list[float]":
        return [server.cpu_seconds() for server in self.processes]

    def peak_rss_mb_each(self) -> "list[float]":
        return [server.peak_rss_mb() for server in self.processes]

    def _start(self) -> None:
        try:
            for stage in self.stages:
                for server in stage:
                    server.launch()
                for server in stage:
                    server.wait_until_listening()
        except BaseException:  # a failed start or Ctrl+C: leave nothing running
            self.stop()
            raise

    def stop(self) -> None:
        """Stop every process that was started, chat servers before the Redis they use; idempotent."""
        try:
            for stage in reversed(self.stages):
                for server in stage:
                    server.terminate()
                for server in stage:
                    server.wait_stopped()
        finally:  # interrupted while waiting: nothing may outlive the benchmark
            for server in self.processes:
                server.kill()


def ensure_ncat() -> bool:
    """Make sure ncat is installed, from Debian's packages if need be; True if it is."""
    if shutil.which("ncat"):
        return True
    if shutil.which("apt-get") and os.geteuid() == 0:
        print("ncat is missing: installing it from Debian's packages...", file=sys.stderr)
        quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL, "stdin": subprocess.DEVNULL}
        subprocess.run(["apt-get", "update", "-qq"], **quiet)
        subprocess.run(["apt-get", "install", "-y", "-qq", "ncat"], **quiet)
    return shutil.which("ncat") is not None
