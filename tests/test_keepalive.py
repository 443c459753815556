"""A client whose device vanishes from the network is removed by TCP keepalive.

Two network namespaces joined by a virtual cable (veth) stand for the server's
machine and a laptop. Once the laptop has joined, its end of the cable goes
down: from then on every packet to it is lost, without a FIN or a reset, as
when a phone leaves the Wi-Fi. The README promises removal after the idle
time plus six probes (about two minutes at the default 60 s); with
``--keepalive-idle 1`` that is 1 + 6 × 1 = 7 seconds.

Needs root and iproute2 (``ip netns``); elsewhere the test is skipped.
"""

import os
import subprocess
import sys
import time

import pytest

from tests.helpers import PROJECT, Program

SERVER_IP, LAPTOP_IP, PORT = "10.213.0.1", "10.213.0.2", 8080
IDLE_S, EXPECTED_S = 1, 1 + 6 * 1


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=10)


@pytest.fixture
def two_hosts():
    if os.geteuid() != 0:
        pytest.skip("needs root for network namespaces (ip netns)")
    tag = str(os.getpid())
    server_ns, laptop_ns = f"chat-srv-{tag}", f"chat-lap-{tag}"
    server_if, laptop_if = f"cs{tag}"[:15], f"cl{tag}"[:15]
    try:
        ip("netns", "add", server_ns)
        ip("netns", "add", laptop_ns)
    except (OSError, subprocess.SubprocessError) as error:
        pytest.skip(f"cannot make network namespaces here ({error}); install iproute2 and run as root")
    try:
        ip("link", "add", server_if, "netns", server_ns, "type", "veth", "peer", "name", laptop_if, "netns", laptop_ns)
        for ns, interface, address in ((server_ns, server_if, SERVER_IP), (laptop_ns, laptop_if, LAPTOP_IP)):
            ip("-n", ns, "addr", "add", f"{address}/24", "dev", interface)
            ip("-n", ns, "link", "set", interface, "up")
            ip("-n", ns, "link", "set", "lo", "up")
        yield server_ns, laptop_ns, laptop_if
    finally:
        for ns in (server_ns, laptop_ns):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=10)


def test_a_vanished_device_is_removed_after_the_idle_time_and_six_probes(two_hosts):
    server_ns, laptop_ns, laptop_if = two_hosts
    server = Program(
        ["server.py", "--host", SERVER_IP, "--port", str(PORT), "--keepalive-idle", str(IDLE_S)], netns=server_ns
    )
    laptop = None
    try:
        server.expect("Waiting for clients")
        laptop = subprocess.Popen(
            ["ip", "netns", "exec", laptop_ns, sys.executable, "-c",
             "import socket, sys, time\n"
             f"s = socket.create_connection(('{SERVER_IP}', {PORT}), timeout=5)\n"
             "s.sendall(b'/nick Ghost\\n')\n"
             "time.sleep(60)\n"],
            cwd=PROJECT, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        server.expect(r"\[SYSTEM\] Ghost joined the chat!")
        ip("-n", laptop_ns, "link", "set", laptop_if, "down")  # the laptop leaves the network
        vanished = time.monotonic()
        server.expect(r"\[SYSTEM\] Ghost left the chat\.", timeout=EXPECTED_S + 10)
        took = time.monotonic() - vanished
        assert EXPECTED_S - 1.5 <= took <= EXPECTED_S + 2.5, f"removed after {took:.1f} s, not about {EXPECTED_S} s"
    finally:
        if laptop is not None:
            laptop.kill()
            laptop.wait()
        server.kill()
