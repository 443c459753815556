"""Starting the servers under test, and reading their CPU time and memory from /proc."""

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


class ServerUnderTest:
    """A server process on a free loopback port."""

    label = "?"
    join_line: "bytes | None" = None  # the line each client sends first, %d = its number, no newline
    speaks_websocket = False  # whether WebSocket clients can join (GET /ws with an Upgrade)

    def __init__(self, log_path: Path) -> None:
        self.port = free_port()
        self.address = ("127.0.0.1", self.port)
        self._log = open(log_path, "w")
        self.process = subprocess.Popen(
            self.command(), cwd=PROJECT, stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT
        )
        self._wait_until_listening()

    def command(self) -> "list[str]":
        raise NotImplementedError

    def _wait_until_listening(self) -> None:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.label} exited at start with status {self.process.returncode}")
            if self.is_listening():
                return
            time.sleep(READY_POLL_S)
        raise RuntimeError(f"{self.label} did not start listening")

    def is_listening(self) -> bool:
        # Not by connecting: ncat quits when a client closes before it has looked at it.
        return is_listening(self.port)

    def cpu_seconds(self) -> float:
        with open(f"/proc/{self.process.pid}/stat") as stat:
            fields = stat.read().rpartition(")")[2].split()
        return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime + stime

    def peak_rss_mb(self) -> float:
        with open(f"/proc/{self.process.pid}/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
        return float("nan")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()


class OurServer(ServerUnderTest):
    label = "ours"
    join_line = b"/nick c%d"
    speaks_websocket = True

    def is_listening(self) -> bool:
        # By connecting, which costs a fraction of a millisecond: reading
        # /proc/net/tcp takes the kernel ~15 ms on a machine with a thousand
        # sockets open. Our server takes a client that leaves at once in its stride.
        try:
            socket.create_connection(self.address, timeout=1).close()
        except OSError:
            return False
        return True

    def command(self) -> "list[str]":
        # All limits stay at their defaults except flood control, which a load test would trip.
        return [sys.executable, "server.py", "--host", "127.0.0.1", "--port", str(self.port), "--max-rate", "0"]


class Ncat(ServerUnderTest):
    label = "ncat"

    def command(self) -> "list[str]":
        return ["ncat", "--listen", "--chat", "--max-conns", "2000", "127.0.0.1", str(self.port)]


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
