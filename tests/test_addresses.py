"""Limits per address, tried from other addresses than this machine's own.

Loopback is exempt from every limit per address, so these tests make a
network namespace whose loopback interface also carries 10.77.0.0/16
addresses: the server listens on 10.77.0.1, and each client binds the
address it stands for. Clients run as small Python programs inside the
namespace (``ip netns exec``) and print what they saw as JSON.

Needs root and iproute2 (``ip netns``); elsewhere the tests are skipped.
"""

import json
import os
import subprocess
import sys
import textwrap

import pytest

from tests.helpers import PROJECT, TIMEOUT_S, Program

SERVER_IP, PORT = "10.77.0.1", 8080

# What every client program starts with: joining as NAME from ADDRESS, and reading lines.
CLIENT_TOOLS = f"""
import json, select, socket, time
SERVER = ({SERVER_IP!r}, {PORT})

def connect(address):
    sock = socket.socket()
    sock.bind((address, 0))
    sock.settimeout(5)
    sock.connect(SERVER)
    return sock

def read_all(sock):
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data

def lines_until(sock, wanted):
    seen, data = [], b""
    while not any(wanted in line for line in seen):
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
        *complete, data = data.split(b"\\n")
        seen += [line.decode() for line in complete]
    return seen

def join(address, name):
    sock = connect(address)
    sock.sendall(f"/nick {{name}}\\n".encode())
    return sock, lines_until(sock, "Welcome, ")
"""


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=10)


@pytest.fixture
def namespace():
    if os.geteuid() != 0:
        pytest.skip("needs root for network namespaces (ip netns)")
    ns = f"chat-addr-{os.getpid()}"
    try:
        ip("netns", "add", ns)
    except (OSError, subprocess.SubprocessError) as error:
        pytest.skip(f"cannot make network namespaces here ({error}); install iproute2 and run as root")
    try:
        ip("-n", ns, "link", "set", "lo", "up")
        ip("-n", ns, "addr", "add", "10.77.0.1/16", "dev", "lo")
        yield ns
    finally:
        subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=10)


def start_server(ns: str, *options: str) -> Program:
    server = Program(["server.py", "--host", SERVER_IP, "--port", str(PORT), *options], netns=ns)
    server.expect("Waiting for clients")
    return server


def run_clients(ns: str, program: str) -> dict:
    """Run ``program`` (after CLIENT_TOOLS) inside the namespace; what it printed, as JSON."""
    code = CLIENT_TOOLS + textwrap.dedent(program)
    done = subprocess.run(
        ["ip", "netns", "exec", ns, sys.executable, "-c", code],
        cwd=PROJECT, capture_output=True, text=True, timeout=4 * TIMEOUT_S,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_half_open_http_heads_from_one_address_take_no_seat_and_keep_nobody_out(namespace):
    # Before: each half-open head held a seat; 12 addresses with 100 each filled all 1,000.
    server = start_server(namespace, "--max-clients", "2", "--max-opening-per-address", "3")
    try:
        seen = run_clients(namespace, """
            stalled = []
            for _ in range(6):
                sock = connect("10.77.0.2")
                sock.sendall(b"GET / HTTP/1.1\\r\\nHost: x\\r\\nX-a: ")
                stalled.append(sock)
            def refusals(timeout):  # refusals arrived on the stalled sockets within timeout
                readable = select.select(stalled, [], [], timeout)[0]
                for sock in readable:
                    stalled.remove(sock)
                return sum(b"Too many connections from your address are opening" in read_all(s) for s in readable)
            refused = 0
            deadline = time.monotonic() + 5
            while refused < 3 and time.monotonic() < deadline:
                refused += refusals(deadline - time.monotonic())
            ann, ann_lines = join("10.77.0.3", "Ann")
            bob, bob_lines = join("10.77.0.4", "Bob")
            refused += refusals(0)  # a refusal is sent at once: any other would be here by now
            print(json.dumps({"refused": refused, "ann": ann_lines[-1], "bob": bob_lines[-1]}))
        """)
    finally:
        server.kill()
    assert seen["refused"] == 3
    assert seen["ann"].startswith("[SYSTEM] Welcome, Ann!")
    assert seen["bob"].startswith("[SYSTEM] Welcome, Bob!")


def test_one_address_reconnecting_fast_is_slowed_down_and_its_comings_and_goings_mostly_unannounced(namespace):
    # Before: one address reconnecting 1,000 times a second sent everyone 1,000 joins and leaves a second.
    server = start_server(namespace)
    try:
        seen = run_clients(namespace, """
            watcher, _ = join("10.77.0.3", "Watcher")
            refused = 0
            for n in range(70):
                sock = connect("10.77.0.2")
                sock.sendall(f"/nick Churn{n}\\n".encode())
                refused += "Too many joins" in lines_until(sock, "[SYSTEM] ")[-1]
                sock.close()
            talker, _ = join("10.77.0.4", "Talker")
            talker.sendall(b"the end\\n")
            heard = lines_until(watcher, "Talker: the end")
            print(json.dumps({"refused": refused, "heard": heard}))
        """)
    finally:
        server.kill()
    assert seen["refused"] >= 5  # a burst of 50 joins, then 5 a second: the loop is faster than that
    churn = [line for line in seen["heard"] if "Churn" in line]
    joins = [line for line in churn if line.endswith("joined the chat!")]
    # Ten join notices a minute for one address, and a leave only after an announced join.
    assert 1 <= len(joins) <= 10, churn
    assert len(churn) <= 2 * len(joins)
    assert "[SYSTEM] Talker joined the chat!" in seen["heard"]  # another address: announced


def test_half_open_heads_from_many_addresses_only_push_each_other_out(namespace):
    # Before: twenty addresses with ten half-sent heads each filled every place, and newcomers got 503.
    server = start_server(namespace, "--max-opening", "4", "--max-opening-per-address", "3")
    try:
        seen = run_clients(namespace, """
            stalled = []
            for address in ("10.77.0.2", "10.77.0.3", "10.77.0.4"):
                for _ in range(3):
                    sock = connect(address)
                    sock.sendall(b"GET / HTTP/1.1\\r\\nHost: x\\r\\nX-a: ")
                    stalled.append(sock)
            def join_when_not_busy(address, name):
                # Each newcomer pushes out an opening head, whose thread needs a moment to see it:
                # on a machine short of CPU the server may say "busy" until it has. A client tries again.
                deadline = time.monotonic() + 5
                while True:
                    sock, lines = join(address, name)
                    if "server is busy" not in lines[-1] or time.monotonic() > deadline:
                        return lines[-1]
                    sock.close()
                    time.sleep(0.1)
            welcomes = [join_when_not_busy(f"10.77.1.{n}", f"New{n}") for n in range(3)]
            print(json.dumps({"welcomes": welcomes}))
        """)
    finally:
        server.kill()
    assert all(line.startswith("[SYSTEM] Welcome, New") for line in seen["welcomes"]), seen


def test_a_ban_refuses_the_banned_address_only_after_the_operator_confirms_it_hits_others_too(namespace):
    # Bob and Cat share 10.77.0.2 (a class behind one router); Dan is on 10.77.0.3.
    server = start_server(namespace, "--op-password", "moderate")
    try:
        seen = run_clients(namespace, """
            ann, _ = join("10.77.0.5", "Ann")
            ann.sendall(b"/op moderate\\n")
            lines_until(ann, "You are now an operator")
            bob, _ = join("10.77.0.2", "Bob")
            cat, _ = join("10.77.0.2", "Cat")
            dan, _ = join("10.77.0.3", "Dan")
            ann.sendall(b"/ban Bob 5 spam\\n")
            warning = lines_until(ann, "Repeat the command")[-1]
            ann.sendall(b"/ban Bob 5 spam\\n")
            bob_last = read_all(bob).decode().splitlines()[-1]
            dan_heard = lines_until(dan, "Bob was removed")[-1]
            again = connect("10.77.0.2")
            refusal = read_all(again).decode()
            browser = connect("10.77.0.2")
            browser.sendall(b"GET / HTTP/1.1\\r\\nHost: chat\\r\\n\\r\\n")
            page = read_all(browser).decode()
            eve, eve_lines = join("10.77.0.3", "Eve")  # another address: let in
            cat.sendall(b"still here\\n")
            cat_heard = lines_until(dan, "Cat: still here")[-1]
            ann.sendall(b"/unban 10.77.0.2\\n")
            lifted = lines_until(ann, "was lifted")[-1]
            bob, bob_back = join("10.77.0.2", "Bob")
            print(json.dumps({
                "warning": warning, "bob_last": bob_last, "dan_heard": dan_heard, "refusal": refusal,
                "page": page.split("\\r\\n")[0], "page_body": page.split("\\r\\n\\r\\n", 1)[-1],
                "eve": eve_lines[-1], "cat_heard": cat_heard, "lifted": lifted, "bob_back": bob_back[-1],
            }))
        """)
    finally:
        server.kill()
    assert seen["warning"] == (
        "[SYSTEM] Bob shares an address with 1 other member online (Cat): "
        "the ban would refuse them too when they next connect. Repeat the command to ban it."
    )
    assert seen["bob_last"] == "[SYSTEM] You were removed by Ann and banned for 5 minutes: spam"
    assert seen["dan_heard"] == "[SYSTEM] Bob was removed by Ann and banned for 5 minutes: spam"
    assert seen["refusal"] == "[SYSTEM] You are banned from this chat for 5 more minutes: spam\n"
    assert seen["page"] == "HTTP/1.1 403 Forbidden"
    assert seen["page_body"] == "403 Forbidden. You are banned from this chat for 5 more minutes: spam\n"
    assert seen["eve"].startswith("[SYSTEM] Welcome, Eve!")
    assert seen["cat_heard"] == "Cat: still here"  # those sharing the address stay until they reconnect
    assert seen["lifted"] == "[SYSTEM] The ban on Bob was lifted by Ann."
    assert seen["bob_back"].startswith("[SYSTEM] Welcome, Bob!")
