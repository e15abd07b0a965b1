"""muxtop's own io_uring (kernel/uring.py) on the real kernel: set-up, polls, recv and send,
a full SQ, a wrapping CQ, figures that agree with /proc/self/fdinfo, and the plain-words
reason when the kernel refuses io_uring (a seccomp filter in a child)."""

from __future__ import annotations

import ctypes
import errno
import os
import select
import socket
import subprocess
import sys
import textwrap

import pytest

from muxtop.kernel import uring

pytestmark = [pytest.mark.timeout(20),
              pytest.mark.skipif(uring.unavailable() is not None,
                                 reason=f"io_uring: {uring.unavailable()}")]


@pytest.fixture
def pair():
    a, b = socket.socketpair()
    yield a, b
    a.close()
    b.close()


def test_multishot_poll_stays_armed_and_reports_each_arrival(pair):
    a, b = pair
    with uring.Ring(8) as ring:
        ring.prep(uring.OP_POLL_ADD, a.fileno(), 42, op_flags=select.POLLIN,
                  length=uring.POLL_ADD_MULTI)
        assert ring.enter(1, 0.01) == 1
        assert ring.reap() == []  # nothing to read yet: the poll waits
        b.send(b"x")
        ring.enter(1, 5.0)
        (first,) = ring.reap()
        assert first.user_data == 42 and first.res & select.POLLIN
        assert first.flags & uring.CQE_F_MORE  # still armed
        a.recv(10)
        b.send(b"y")
        ring.enter(1, 5.0)
        assert [c.user_data for c in ring.reap()] == [42]


def test_recv_and_send_complete_with_byte_counts(pair):
    a, b = pair
    buf = ctypes.create_string_buffer(64)
    out = ctypes.create_string_buffer(b"hello")
    with uring.Ring(8) as ring:
        ring.prep(uring.OP_RECV, a.fileno(), 1, addr=ctypes.addressof(buf), length=64)
        ring.prep(uring.OP_SEND, b.fileno(), 2, addr=ctypes.addressof(out), length=5)
        done: dict[int, int] = {}
        ring.enter()
        while len(done) < 2:
            ring.enter(1, 5.0)
            done.update((c.user_data, c.res) for c in ring.reap())
        assert done == {1: 5, 2: 5}
        assert buf.raw[:5] == b"hello"


def test_a_cancelled_recv_completes_with_ecanceled(pair):
    a, _ = pair
    buf = ctypes.create_string_buffer(16)
    with uring.Ring(8) as ring:
        ring.prep(uring.OP_RECV, a.fileno(), 5, addr=ctypes.addressof(buf), length=16)
        ring.enter()
        ring.prep(uring.OP_ASYNC_CANCEL, -1, 6, addr=5)
        got: dict[int, int] = {}
        while len(got) < 2:
            ring.enter(1, 5.0)
            got.update((c.user_data, c.res) for c in ring.reap())
        assert got == {5: -errno.ECANCELED, 6: 0}


def test_more_sqes_than_the_sq_holds_and_a_cq_that_wraps(pair):
    """prep submits by itself when the SQ is full; head and tail wrap around the rings."""
    with uring.Ring(4) as ring:
        seen = []
        for round_ in range(10):
            for i in range(7):  # more than the SQ's 4 entries
                ring.prep(uring.OP_NOP, -1, round_ * 100 + i)
            ring.enter()
            while len(seen) < (round_ + 1) * 7:
                ring.enter(1, 5.0)
                seen += [c.user_data for c in ring.reap()]
        assert seen == [r * 100 + i for r in range(10) for i in range(7)]
        figures = ring.figures()
        assert figures.submitted == figures.completed == 70
        assert figures.sq_head == figures.sq_tail == 70
        assert figures.cq_head == figures.cq_tail == 70
        assert figures.cq_overflow == 0 and not figures.overflow_flag


def test_figures_agree_with_proc_fdinfo(pair):
    a, b = pair
    with uring.Ring(8) as ring:
        for fd, tag in ((a.fileno(), 1), (b.fileno(), 2)):
            ring.prep(uring.OP_POLL_ADD, fd, tag, op_flags=select.POLLIN,
                      length=uring.POLL_ADD_MULTI)
        ring.prep(uring.OP_NOP, -1, 3)
        ring.enter(1, 5.0)
        b.send(b"x")  # a turns readable: one more CQE, left unreaped
        ring.enter(2, 5.0)
        ring.reap()
        a.send(b"y")
        ring.enter(1, 5.0)  # b's CQE waits in the CQ
        proc = uring.read_fdinfo(ring.fd)
        ours = ring.figures()
        assert proc is not None
        assert (proc["SqHead"], proc["SqTail"]) == (ours.sq_head, ours.sq_tail) == (3, 3)
        assert (proc["CqHead"], proc["CqTail"]) == (ours.cq_head, ours.cq_tail)
        assert ours.cq_tail - ours.cq_head == ring.ready() == 1
        assert proc["PollList"] == 2  # both multishot polls still armed
        assert proc["SqMask"] == ours.sq_entries - 1
        assert proc["SqThread"] == -1  # no SQPOLL thread


def test_fdinfo_of_something_else_is_not_a_ring():
    assert uring.parse_fdinfo("pos:\t0\nflags:\t02\nmnt_id:\t15\n") is None
    assert uring.parse_fdinfo("SqHead:\tlots\nCqTail:\t\n") is None


def test_a_ring_read_while_its_lock_is_held_is_read_again(monkeypatch, tmp_path):
    """The kernel leaves a ring's fields out of its fdinfo while another holds the ring's
    lock (a trylock): read_fdinfo reads again rather than call the ring none (CI once saw a
    None from a ring the engine was posting completions to)."""
    import io

    texts = iter(["pos:\t0\nflags:\t02000002\n"] * 2
                 + ["SqHead:\t3\nSqTail:\t3\nCqHead:\t1\nCqTail:\t2\n"])
    monkeypatch.setattr(uring, "open", lambda path: io.StringIO(next(texts)), raising=False)
    assert uring.read_fdinfo(7)["CqTail"] == 2
    texts = iter(["pos:\t0\n"] * uring.FDINFO_TRIES)
    assert uring.read_fdinfo(7) is None  # not a ring, or one held for longer: none


def test_feature_names_name_each_bit_and_keep_unknown_ones():
    assert uring.feature_names(0b11) == ["single_mmap", "nodrop"]
    assert uring.feature_names(1 << 40)[-1] == f"0x{1 << 40:x}"


@pytest.mark.parametrize(("err", "words"), [
    (errno.ENOSYS, "this kernel has no io_uring"),
    (errno.EPERM, "io_uring"),
    (errno.ENOMEM, "cannot set up a ring"),
])
def test_explain_says_why_in_plain_words(err, words):
    assert words in uring.explain(err)


SECCOMP_CHILD = textwrap.dedent("""
    import ctypes, struct, sys
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl.argtypes = [ctypes.c_int] + [ctypes.c_ulong] * 4  # a pointer, not an int
    # BPF: load the syscall number; io_uring_setup (425) -> ERRNO(EPERM), else allow.
    prog = b"".join(struct.pack("=HBBI", *ins) for ins in (
        (0x20, 0, 0, 0), (0x15, 0, 1, 425), (0x06, 0, 0, 0x00050000 | 1),
        (0x06, 0, 0, 0x7fff0000)))
    filt = ctypes.create_string_buffer(prog)
    fprog = struct.pack("=H6xQ", 4, ctypes.addressof(filt))
    fbuf = ctypes.create_string_buffer(fprog)
    assert libc.prctl(38, 1, 0, 0, 0) == 0  # PR_SET_NO_NEW_PRIVS
    assert libc.prctl(22, 2, ctypes.addressof(fbuf), 0, 0) == 0, ctypes.get_errno()
    from muxtop.kernel import uring
    print(uring.unavailable())
""")


def test_a_seccomp_filter_that_refuses_io_uring_is_explained():
    done = subprocess.run([sys.executable, "-c", SECCOMP_CHILD], capture_output=True,
                          text=True, timeout=15, env={**os.environ, "PYTHONSAFEPATH": "1"})
    assert done.returncode == 0, done.stderr
    assert "seccomp" in done.stdout and "EPERM" in done.stdout
