"""Small servers over each multiplexer, for the trace tests: `python mux_servers.py MODE`.

Each listens on 127.0.0.1 port 0, prints {"port", "listener", "epoll"} as its first JSON line,
then, in the modes a trace is compared with, one {"ready": [[fd, events], ...]} line per wait
call that returned something: what the server itself received, which a trace of it must show.

  epoll-level    epoll, level-triggered, reads up to 4 KiB per report
  epoll-edge     epoll, edge-triggered, the naive reader: 16 bytes per report, never to EAGAIN
  epoll-pointer  epoll through ctypes with a pointer as each registration's data (like nginx)
  poll, select   level-triggered, reads up to 4 KiB per report
  ignore         poll; registers each connection and never reads it (prints nothing more)
  spin           epoll, level, timeout 0, never reads (a busy loop; prints nothing more)
  unix-edge      epoll-edge on a unix stream socket at the path given after the mode
  pipelined      epoll, edge: answers each 16-byte request with 16 MiB and reads the next
                 only once that answer is out (an HTTP/1.1 server with pipelining)

A connection that reads EOF is unregistered and closed. Events are poll's bits (select's
read, write and except sets as POLLIN, POLLOUT, POLLPRI).
"""

import ctypes
import json
import platform
import select
import socket
import sys

READ_SIZE = {"epoll-edge": 16, "unix-edge": 16}
ANSWER = b"r" * (16 << 20)  # pipelined: more than the kernel's buffers take at once
TIMEOUT = 0.1  # seconds: every wait returns soon, so a tracer attached late misses nothing


def say(**fields):
    print(json.dumps(fields), flush=True)


class EpollEvent(ctypes.Structure):
    # struct epoll_event is packed on x86-64 only
    _pack_ = 1 if platform.machine() in ("x86_64", "amd64") else 0
    _fields_ = [("events", ctypes.c_uint32), ("data", ctypes.c_uint64)]


class PointerEpoll:
    """epoll with the address of a Python object as each fd's data: what the kernel hands
    back is that pointer, never the fd."""

    def __init__(self):
        self.libc = ctypes.CDLL(None, use_errno=True)
        self.fd = self.libc.epoll_create1(0)
        self.keys = {}  # data -> (fd, the object whose address it is)
        self.out = (EpollEvent * 64)()

    def register(self, fd, events):
        key = object()
        self.keys[id(key)] = (fd, key)
        event = EpollEvent(events, id(key))
        assert self.libc.epoll_ctl(self.fd, 1, fd, ctypes.byref(event)) == 0  # EPOLL_CTL_ADD

    def unregister(self, fd):
        self.libc.epoll_ctl(self.fd, 2, fd, None)  # EPOLL_CTL_DEL
        self.keys = {data: key for data, key in self.keys.items() if key[0] != fd}

    def poll(self, timeout):
        n = self.libc.epoll_wait(self.fd, self.out, 64, int(timeout * 1000))
        return [(self.keys[self.out[i].data][0], self.out[i].events) for i in range(max(n, 0))]

    def fileno(self):
        return self.fd


def multiplexer(mode, listener):
    """The mode's multiplexer with the listener registered; None for select (no object)."""
    if mode in ("poll", "ignore"):
        mux = select.poll()
        mux.register(listener.fileno(), select.POLLIN)
    elif mode == "epoll-pointer":
        mux = PointerEpoll()
        mux.register(listener.fileno(), select.EPOLLIN)
    elif mode == "select":
        return None
    else:
        mux = select.epoll()
        mux.register(listener.fileno(), select.EPOLLIN)
    return mux


def wait(mode, mux, listener, conns):
    """One wait call: [(fd, events)] of what came back."""
    if mux is None:
        r, _w, _x = select.select([listener, *conns.values()], [], [], TIMEOUT)
        return sorted((s.fileno(), 1) for s in r)
    if mode in ("poll", "ignore"):
        return mux.poll(TIMEOUT * 1000)
    return mux.poll(0 if mode == "spin" else TIMEOUT)


def pipelined(listener, mux):
    """Read a request, send its answer; while an answer is still going out, read nothing."""
    conns, pending = {}, {}
    while True:
        for fd, events in mux.poll(TIMEOUT):
            if fd == listener.fileno():
                conn, _ = listener.accept()
                conn.setblocking(False)
                conns[conn.fileno()] = conn
                mux.register(conn.fileno(), select.EPOLLIN | select.EPOLLOUT | select.EPOLLET)
                continue
            conn = conns[fd]
            if fd not in pending and events & select.EPOLLIN:
                try:
                    if len(conn.recv(16)) == 16:
                        pending[fd] = memoryview(ANSWER)
                except BlockingIOError:
                    pass
            while fd in pending:
                try:
                    sent = conn.send(pending[fd])
                except BlockingIOError:
                    break  # the peer reads nothing: wait for EPOLLOUT, read no more
                pending[fd] = pending[fd][sent:]
                if not pending[fd]:
                    del pending[fd]


def listening(mode) -> socket.socket:
    """The mode's listener, non-blocking: a unix socket at argv[2] (unix-edge), else TCP on a
    loopback port of the kernel's choosing."""
    if mode == "unix-edge":
        listener = socket.socket(socket.AF_UNIX)
        listener.bind(sys.argv[2])
    else:
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    listener.setblocking(False)
    return listener


def accept(listener, conns, mux, edge) -> None:
    try:
        conn, _ = listener.accept()
    except BlockingIOError:
        return
    conn.setblocking(False)
    conns[conn.fileno()] = conn
    if mux is not None:
        mux.register(conn.fileno(), select.EPOLLIN | edge)


def read_once(fd, conns, mux, size) -> None:
    """One recv of at most `size` bytes, as the mode's bug has it; EOF closes."""
    try:
        data = conns[fd].recv(size)
    except BlockingIOError:
        return
    if not data:
        if mux is not None:
            mux.unregister(fd)
        conns.pop(fd).close()


def main(mode):
    listener = listening(mode)
    conns = {}
    size = READ_SIZE.get(mode, 4096)
    mux = multiplexer(mode, listener)
    say(port=listener.getsockname()[1] if mode != "unix-edge" else 0,
        listener=listener.fileno(), epoll=mux.fileno() if mux is not None and mode not in (
            "poll", "ignore") else -1)
    if mode == "pipelined":
        pipelined(listener, mux)
    quiet = mode in ("ignore", "spin")
    edge = select.EPOLLET if mode in ("epoll-edge", "unix-edge") else 0
    while True:
        ready = wait(mode, mux, listener, conns)
        if ready and not quiet:
            say(ready=[[fd, events] for fd, events in ready])
        for fd, _events in ready:
            if fd == listener.fileno():
                accept(listener, conns, mux, edge)
            elif not quiet:
                read_once(fd, conns, mux, size)


if __name__ == "__main__":
    main(sys.argv[1])
