"""attach reads another process's io_uring instances from /proc/PID/fdinfo: a small C program
(raw syscalls, the uapi header's layouts) sets up a ring, arms a poll on a pipe that never
becomes readable and completes a NOP it never reaps; attach shows the figures /proc gives."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from muxtop.attach.reader import Attacher
from muxtop.bench.compiler import BuildError, compile_into, find_compiler
from muxtop.kernel import uring

pytestmark = [pytest.mark.timeout(60),
              pytest.mark.skipif(uring.unavailable() is not None,
                                 reason=f"io_uring: {uring.unavailable()}")]

RING_PROGRAM = r"""
#define _GNU_SOURCE
#include <linux/io_uring.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

int main(int argc, char **argv) {
    (void)argv;
    struct io_uring_params p;
    memset(&p, 0, sizeof p);
    int ring = syscall(425, 8, &p);
    if (ring < 0) { perror("io_uring_setup"); return 1; }
    char *sq = mmap(0, p.sq_off.array + p.sq_entries * 4, PROT_READ | PROT_WRITE,
                    MAP_SHARED | MAP_POPULATE, ring, IORING_OFF_SQ_RING);
    struct io_uring_sqe *sqes = mmap(0, p.sq_entries * sizeof *sqes, PROT_READ | PROT_WRITE,
                                     MAP_SHARED | MAP_POPULATE, ring, IORING_OFF_SQES);
    if (sq == MAP_FAILED || sqes == MAP_FAILED) { perror("mmap"); return 1; }
    int pipefd[2];
    if (pipe(pipefd)) return 1;
    unsigned *array = (unsigned *)(sq + p.sq_off.array);
    memset(sqes, 0, 2 * sizeof *sqes);
    sqes[0].opcode = IORING_OP_POLL_ADD;  /* never ready: stays on the poll list */
    sqes[0].fd = pipefd[0];
    sqes[0].poll32_events = 1;  /* POLLIN */
    sqes[1].opcode = IORING_OP_NOP;  /* completes at once, never reaped */
    sqes[1].user_data = 7;
    array[0] = 0;
    array[1] = 1;
    __atomic_store_n((unsigned *)(sq + p.sq_off.tail), 2, __ATOMIC_RELEASE);
    if (syscall(426, ring, 2, 0, 0, 0, 0) != 2) { perror("io_uring_enter"); return 1; }
    unsigned tail = 2;
    if (argc > 1) {  /* "jammed": 24 NOPs more than the CQ holds, then one never submitted */
        for (int round = 0; round < 3; round++) {
            for (int i = 0; i < 8; i++, tail++) {
                memset(&sqes[tail & 7], 0, sizeof *sqes);
                sqes[tail & 7].opcode = IORING_OP_NOP;
                array[tail & 7] = tail & 7;
            }
            __atomic_store_n((unsigned *)(sq + p.sq_off.tail), tail, __ATOMIC_RELEASE);
            if (syscall(426, ring, 8, 0, 0, 0, 0) != 8) { perror("enter"); return 1; }
        }
        memset(&sqes[tail & 7], 0, sizeof *sqes);
        sqes[tail & 7].opcode = IORING_OP_NOP;
        array[tail & 7] = tail & 7;
        __atomic_store_n((unsigned *)(sq + p.sq_off.tail), tail + 1, __ATOMIC_RELEASE);
    }
    printf("%d\n", ring);
    fflush(stdout);
    pause();
    return 0;
}
"""


@pytest.fixture(scope="module")
def ring_binary(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ring")
    source = folder / "ring.c"
    source.write_text(RING_PROGRAM)
    try:
        compiler = find_compiler()
    except BuildError as exc:
        pytest.skip(str(exc))
    compile_into(source, compiler, folder / "ring")  # a program that does not build fails
    return folder / "ring"


def run_ring(binary, *args: str):
    proc = subprocess.Popen([str(binary), *args], stdout=subprocess.PIPE, text=True)
    try:
        ring_fd = int(proc.stdout.readline())
        yield proc.pid, ring_fd
    finally:
        proc.kill()
        proc.wait(5)


@pytest.fixture(scope="module")
def ring_program(ring_binary):
    yield from run_ring(ring_binary)


def test_attach_shows_the_rings_of_another_process(ring_program):
    pid, ring_fd = ring_program
    snapshot = Attacher(pid).read()
    (ring,) = snapshot.rings
    proc = uring.read_fdinfo(ring_fd, pid)
    assert ring.fd == ring_fd and ring.mode == ""
    assert (ring.sq_head, ring.sq_tail, ring.cq_head, ring.cq_tail) == (2, 2, 0, 1) == \
        (proc["SqHead"], proc["SqTail"], proc["CqHead"], proc["CqTail"])
    assert (ring.sq_entries, ring.cq_entries) == (8, 16)
    assert ring.in_flight == 1 and ring.cq_overflow == 0 and ring.sq_thread == -1
    assert ring.enters == -1  # a ring's own counters are not in /proc
    (row,) = [v for v in snapshot.connections if v.fd == ring_fd]
    assert row.peer == "io_uring instance" and "1 completions unreaped" in row.note


def test_attach_once_json_carries_the_rings(ring_program):
    pid, ring_fd = ring_program
    done = subprocess.run([sys.executable, "-m", "muxtop", "attach", str(pid), "--once",
                           "--json"], capture_output=True, text=True, timeout=30,
                          env={**os.environ, "PYTHONSAFEPATH": "1"})
    assert done.returncode == 0, done.stderr
    (ring,) = json.loads(done.stdout)["io_uring"]
    assert ring["fd"] == ring_fd and ring["in_flight"] == 1
    assert [ring[k] for k in ("sq_head", "sq_tail", "cq_head", "cq_tail")] == [2, 2, 0, 1]


def test_findings_for_a_cq_that_overflowed_and_an_sq_left_unconsumed(ring_binary):
    for pid, ring_fd in run_ring(ring_binary, "jammed"):
        attacher = Attacher(pid, stuck_after=0.2)
        first = attacher.read()
        (ring,) = first.rings
        assert (ring.sq_head, ring.sq_tail) == (26, 27)
        assert ring.cq_tail - ring.cq_head == 16 and ring.cq_overflow == 9  # 25 completions
        assert [d.kind for d in first.diagnoses] == ["cq-overflow"]
        deadline = time.monotonic() + 10
        while not any(d.kind == "sq-stalled" for d in attacher.read().diagnoses):
            assert time.monotonic() < deadline, "no sq-stalled finding"
            time.sleep(0.05)
        (stalled,) = [d for d in attacher.read().diagnoses if d.kind == "sq-stalled"]
        assert stalled.fd == ring_fd and "io_uring_enter" in stalled.explanation
