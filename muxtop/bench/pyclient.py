"""A Python stand-in for loadgen.c, used when it cannot be built: same flags, same JSON line.

``python -m muxtop.bench.pyclient -p PORT [-c CONNS] [-d SECS] [-w WARMUP] [-s SIZE] [-P PID]``
keeps one message in flight per connection (loadgen's default -k 1), verifies every echoed byte
and measures only the window after the warm-up. It is far slower than loadgen, so against a fast
server it measures itself; the bench says so when it falls back to it.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import selectors
import socket
import struct
import sys
import time

READ, WRITE = selectors.EVENT_READ, selectors.EVENT_WRITE


class _Conn:
    __slots__ = ("id", "rx", "rx_seq", "sent_at", "sock", "tx", "tx_seq", "want_write")

    def __init__(self, cid: int, sock: socket.socket) -> None:
        self.id, self.sock = cid, sock
        self.tx = bytearray()
        self.rx = bytearray()
        self.tx_seq = self.rx_seq = 0
        self.sent_at = 0.0
        self.want_write = False


def message(cid: int, seq: int, size: int) -> bytes:
    """The bytes of message ``seq`` on connection ``cid``: stale, reordered or crossed data
    shows."""
    return (struct.pack("<QQ", cid, seq) * (size // 16 + 1))[:size]


def process_cpu(pid: int) -> float:
    """utime + stime of ``pid`` in seconds, from /proc/PID/stat (-1 if unreadable)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return -1.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def self_cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


class Run:
    def __init__(self, args: argparse.Namespace) -> None:
        self.size = args.s
        self.sel = selectors.DefaultSelector()
        self.conns: list[_Conn] = []
        self.max_seq = 1  # priming: one message per connection
        self.t_start = self.t_end = float("inf")
        self.counted = self.mismatches = self.errors = self.primed = 0
        self.latencies: list[float] = []

    def connect(self, port: int, count: int) -> None:
        for cid in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setblocking(False)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.connect_ex(("127.0.0.1", port))
            conn = _Conn(cid, sock)
            self.conns.append(conn)
            self.sel.register(sock, WRITE, conn)
        pending, deadline = count, time.monotonic() + 10
        while pending and time.monotonic() < deadline:
            for key, _ in self.sel.select(0.1):
                conn = key.data
                err = conn.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                if err:
                    raise SystemExit(f"connect: {os.strerror(err)}")
                self.sel.modify(conn.sock, READ, conn)
                pending -= 1
        if pending:
            raise SystemExit(f"{pending} connections not established after 10 s")

    def fill_and_flush(self, conn: _Conn, now: float) -> None:
        if now < self.t_end and conn.tx_seq < self.max_seq and conn.tx_seq == conn.rx_seq:
            conn.tx += message(conn.id, conn.tx_seq, self.size)
            conn.sent_at = now
            conn.tx_seq += 1
        if conn.tx:
            try:
                sent = conn.sock.send(conn.tx)
            except BlockingIOError:
                sent = 0
            except OSError:
                self.kill(conn)
                return
            del conn.tx[:sent]
        want = bool(conn.tx)
        if want != conn.want_write:
            self.sel.modify(conn.sock, READ | (WRITE if want else 0), conn)
            conn.want_write = want

    def kill(self, conn: _Conn) -> None:
        self.errors += 1
        self.sel.unregister(conn.sock)

    def on_readable(self, conn: _Conn) -> None:
        try:
            data = conn.sock.recv(65536)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self.kill(conn)
            return
        now = time.monotonic()
        conn.rx += data
        size = self.size
        while len(conn.rx) >= size:
            if conn.rx_seq == conn.tx_seq:  # bytes we never sent
                self.mismatches += 1
                conn.rx.clear()
                break
            if conn.rx[:size] != message(conn.id, conn.rx_seq, size):
                self.mismatches += 1
            elif self.t_start <= now < self.t_end:
                self.counted += 1
                self.latencies.append((now - conn.sent_at) * 1e6)
            del conn.rx[:size]
            conn.rx_seq += 1
            if conn.rx_seq == 1:
                self.primed += 1
        self.fill_and_flush(conn, now)

    def batch(self, timeout: float) -> None:
        for key, mask in self.sel.select(timeout):
            conn = key.data
            if mask & READ:
                self.on_readable(conn)
            if mask & WRITE and key.fileobj in self.sel.get_map():
                self.fill_and_flush(conn, time.monotonic())


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("-p", type=int, required=True, help="port on 127.0.0.1")
    p.add_argument("-c", type=int, default=1, help="connections")
    p.add_argument("-d", type=float, default=5.0, help="measured seconds")
    p.add_argument("-w", type=float, default=1.0, help="warm-up seconds")
    p.add_argument("-s", type=int, default=64, help="message size")
    p.add_argument("-P", type=int, default=0, help="server pid, for its CPU%%")
    args = p.parse_args(argv)
    run = Run(args)
    t_connect = time.monotonic()
    run.connect(args.p, args.c)
    for conn in run.conns:
        run.fill_and_flush(conn, time.monotonic())
    deadline = time.monotonic() + 20
    while run.primed < args.c and not run.errors and time.monotonic() < deadline:
        run.batch(0.1)
    if run.primed < args.c:
        print(f"only {run.primed} of {args.c} connections echoed once", file=sys.stderr)
        return 1
    t0 = time.monotonic()
    ready_ms = (t0 - t_connect) * 1e3
    run.t_start, run.t_end, run.max_seq = t0 + args.w, t0 + args.w + args.d, 1 << 62
    for conn in run.conns:
        run.fill_and_flush(conn, t0)
    started, w0 = False, t0
    c0 = s0 = 0.0
    while (now := time.monotonic()) < run.t_end:
        if not started and now >= run.t_start:
            started, w0, c0 = True, now, self_cpu()
            s0 = process_cpu(args.P) if args.P else 0.0
        run.batch(min(0.01, (run.t_end if started else run.t_start) - now + 0.001))
    wall = now - w0
    client_cpu = self_cpu() - c0
    server_cpu = process_cpu(args.P) - s0 if args.P else -1.0
    for conn in run.conns:
        conn.sock.close()
    lat = sorted(run.latencies)

    def pct(q: float) -> float:
        return round(lat[int((len(lat) - 1) * q)], 1) if lat else 0.0

    print(json.dumps({
        "conns": args.c, "size": args.s, "inflight": 1, "secs": round(wall, 3),
        "ready_ms": round(ready_ms, 1), "rtt_per_s": round(run.counted / args.d),
        "p50_us": pct(0.5), "p99_us": pct(0.99), "max_us": pct(1.0),
        "completed": run.counted, "mismatches": run.mismatches, "errors": run.errors,
        "client_cpu_pct": round(100 * client_cpu / wall, 1) if wall > 0 else 0.0,
        "server_cpu_pct": round(100 * server_cpu / wall, 1) if args.P and wall > 0 else -1.0,
    }), flush=True)
    return 1 if run.mismatches or run.errors else 0


if __name__ == "__main__":
    raise SystemExit(main())
