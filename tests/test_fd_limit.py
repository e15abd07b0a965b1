"""Out of fds: the server backs off accept() instead of spinning, survives, and recovers."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import textwrap
import time

import psutil
import pytest
from echo_client import stop_child, wait_for

pytestmark = pytest.mark.timeout(60)

SERVER = textwrap.dedent("""
    import json, resource, sys
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (64, hard))
    from muxtop.engine import Engine, EngineConfig
    engine = Engine(EngineConfig(port=0, publish_interval=0.05)).start()
    print(engine.address[1], flush=True)
    sys.stdin.readline()  # the test says when to report
    import time
    asked = time.monotonic()  # a Snapshot taken after the ask holds every accept before it
    while engine.snapshot().taken_at <= asked and time.monotonic() < asked + 10:
        time.sleep(0.01)
    totals = engine.snapshot().totals
    print(json.dumps(totals._asdict()), flush=True)
    sys.stdin.readline()
    engine.stop()
""")


def test_out_of_fds_backs_off_and_recovers():
    server = subprocess.Popen([sys.executable, "-c", SERVER], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    clients: list[socket.socket] = []
    try:
        port = int(server.stdout.readline())
        for _ in range(100):  # more than 64 fds: the rest wait in the backlog
            clients.append(socket.create_connection(("127.0.0.1", port), timeout=5))
        proc = psutil.Process(server.pid)
        wait_for(lambda: proc.num_fds() >= 64, timeout=20)  # out of fds from here on
        before = proc.cpu_times()
        time.sleep(2.0)
        after = proc.cpu_times()
        busy = (after.user - before.user) + (after.system - before.system)
        # A spinning loop burns ~2 s of CPU here; backing off costs milliseconds.
        assert busy < 0.5, f"server used {busy:.2f} s of CPU in 2 s while out of fds"
        assert server.poll() is None, "server died"
        # The accepted ones still echo.
        clients[0].sendall(b"alive")
        assert clients[0].recv(5) == b"alive"
        # Clients leave; the ones in the backlog and new ones get served.
        for client in clients[:60]:
            client.close()
        del clients[:60]
        clients[-1].sendall(b"from the backlog")
        assert clients[-1].recv(100) == b"from the backlog"
        fresh = socket.create_connection(("127.0.0.1", port), timeout=5)
        clients.append(fresh)
        fresh.sendall(b"new")
        assert fresh.recv(3) == b"new"
        server.stdin.write("report\n")
        server.stdin.flush()
        totals = json.loads(server.stdout.readline())
        assert totals["accept_errors"] > 0
        assert totals["accepted"] >= 100
    finally:
        for client in clients:
            client.close()
        stop_child(server)


HOLDS = textwrap.dedent("""
    import json, resource, sys, time
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (64, hard))
    from muxtop.engine import Engine, EngineConfig
    engine = Engine(EngineConfig(port=0, publish_interval=0.05)).start()
    print(engine.address[1], flush=True)
    sys.stdin.readline()  # the clients are in: the table fills, then look for 2.5 s
    full = time.monotonic() + 20
    while not engine.snapshot().totals.accept_errors and time.monotonic() < full:
        time.sleep(0.01)  # out of fds: the accept back-off starts at its shortest pause
    time.sleep(2.0)  # and grows to its longest (1 s), which the looks are about
    looks = []
    for _ in range(25):
        looks.append(sorted({d.kind for d in engine.snapshot().diagnoses}))
        time.sleep(0.1)
    print(json.dumps(looks), flush=True)
    sys.stdin.readline()
    engine.stop()
""")


def test_fd_pressure_shows_for_as_long_as_the_table_is_full():
    server = subprocess.Popen([sys.executable, "-c", HOLDS], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    clients: list[socket.socket] = []
    try:
        port = int(server.stdout.readline())
        for _ in range(100):  # the table fills at ~60; the rest wait in the backlog
            clients.append(socket.create_connection(("127.0.0.1", port), timeout=5))
        server.stdin.write("go\n")
        server.stdin.flush()
        looks = json.loads(server.stdout.readline())
        # Accept retries once a second by now: a finding made only right after an accept
        # error would be missing from about half of these looks.
        missing = [i for i, kinds in enumerate(looks) if "fd-pressure" not in kinds]
        assert not missing, f"fd-pressure missing from looks {missing} of {len(looks)}"
    finally:
        for client in clients:
            client.close()
        stop_child(server)
