"""The tracers' output turned into calls, and calls mapped onto fds, without any process: lines
copied from strace 6.1 and from the bpftrace script on this kernel."""

from __future__ import annotations

import pytest
from fake_tracer import FakeTracer

from muxtop.kernel.epoll import Registration
from muxtop.trace import bpftrace, strace
from muxtop.trace.calls import NO_FD, TracedCtl, TracedIo, TracedIoSummary, TracedWait
from muxtop.trace.session import Trace

pytestmark = pytest.mark.timeout(10)


def parse(lines: list[str], belongs=None) -> list:
    parser = strace.StraceParser(100, belongs, clock_offset=-1_000.0)
    calls = [parser.feed(line) for line in lines]
    return [call for call in calls if call is not None]


def test_strace_epoll_wait_keeps_the_apps_data_the_timeout_and_the_time_blocked():
    [call] = parse(["100 1796117483.133727 epoll_wait(4, [{events=0x1, data={u32=5, "
                    "u64=140015933849605}}, {events=0x2011, data={u32=3, u64=3}}], 1023, 500)"
                    " = 2 <0.000003>"])
    assert call == TracedWait(100, "epoll_wait", 1796117483.133727 - 1000, 0.000003, 0.5, 4,
                              -1, (140015933849605, 0x1, 3, 0x2011), 2, "")


def test_strace_poll_select_and_their_p_variants():
    poll, ppoll, pselect, select_, timeout = parse([f"100 1.0 {body}" for body in [
        "poll([{fd=3, events=0x1}, {fd=4, events=0x1}], 2, 500) = 1 ([{fd=4, revents=0x1}]) "
        "<0.000040>",
        "ppoll([{fd=7, events=0x5}], 1, {tv_sec=1, tv_nsec=500000000}, NULL, 8) = 1 "
        "([{fd=7, revents=0x4}], left {tv_sec=1, tv_nsec=499}) <0.000010>",
        "pselect6(5, [3 4], [4], NULL, {tv_sec=0, tv_nsec=500000000}, NULL) = 2 (in [4], out "
        "[4], left {tv_sec=0, tv_nsec=1}) <0.000004>",
        "select(9, [3], NULL, [8], NULL) = 1 (except [8]) <0.2>",
        "poll([{fd=3, events=0x1}], 1, 0) = 0 (Timeout) <0.000001>",
    ]])
    assert (poll.registered, poll.ready, poll.timeout, poll.epfd) == (2, (4, 1), 0.5, -1)
    assert (ppoll.ready, ppoll.timeout) == ((7, 4), 1.5)
    assert (pselect.registered, pselect.ready, pselect.count) == (2, (4, 1 | 4), 2)
    assert (select_.ready, select_.timeout, select_.registered) == ((8, 2), None, 2)
    assert (timeout.count, timeout.ready, timeout.timeout) == (0, (), 0.0)


def test_strace_calls_split_by_another_thread_errors_and_chatter():
    calls = parse([
        "strace: Process 100 attached with 2 threads",
        "[pid   101] 1796117626.850740 epoll_wait(5,  <unfinished ...>",
        "[pid   100] 1796117626.901300 sendto(4, \"\"..., 1, 0, NULL, 0 <unfinished ...>",
        "[pid   101] 1796117626.901697 <... epoll_wait resumed>[{events=0x1, data={u32=3, "
        "u64=3}}], 1023, 200) = 1 <0.050895>",
        "[pid   100] 1796117626.901734 <... sendto resumed>) = 1 <0.000345>",
        "1796117632.606650 recvfrom(3, 0x7fd3367f20f0, 10, 0, NULL, NULL) = -1 EAGAIN "
        "(Resource temporarily unavailable) <0.000264>",
        "1796117632.608537 epoll_wait(5, 0x56151db05ed0, 1023, 200) = -1 EINTR (Interrupted "
        "system call) <0.050112>",
        "100 1.0 recvmsg(3, {msg_name=0x7ffd8ccda670, msg_namelen=110 => 0, msg_iov=[{iov_base="
        "\"\"..., iov_len=100}, {iov_base=\"\"..., iov_len=28}], msg_iovlen=2, msg_controllen=0,"
        " msg_flags=0}, 0) = 4 <0.000003>",
        "100 1.0 epoll_ctl(4, 0x1, 5, {events=0x80000001, data={u32=5, u64=77}}) = 0 <0.00002>",
        "100 1.0 epoll_ctl(4, 0x1, 5, {events=0x1, data={u32=5, u64=78}}) = -1 EEXIST (File "
        "exists) <0.00001>",
        "--- SIGALRM {si_signo=SIGALRM, si_code=SI_KERNEL} ---",
        "1.0 epoll_wait(5, <detached ...>",
        "+++ exited with 0 +++",
    ])
    wait, send, eagain, eintr, msg, ctl = calls
    assert (wait.tid, wait.start, wait.duration, wait.ready) == (101, 1796117626.850740 - 1000,
                                                                  0.050895, (3, 1))
    assert isinstance(send, TracedIo) and (send.tid, send.result, send.asked) == (100, 1, 1)
    assert (eagain.result, eagain.error, eagain.asked, eagain.is_read) == (-1, "EAGAIN", 10, True)
    assert (eintr.count, eintr.error, eintr.ready) == (-1, "EINTR", ())
    assert (msg.asked, msg.result) == (128, 4)
    assert ctl == TracedCtl(100, 1.0 - 1000 + 0.00002, 4, 1, 5, 77)  # the EEXIST one: nothing


def test_strace_skips_threads_of_other_processes():
    calls = parse(["[pid 200] 1.0 epoll_wait(5, [], 10, 0) = 0 <0.000001>",
                   "[pid 100] 1.0 epoll_wait(5, [], 10, 0) = 0 <0.000001>"],
                  belongs=lambda tid: tid == 100)
    assert [c.tid for c in calls] == [100]


def test_strace_command_asks_for_whole_arrays_and_no_data():
    argv = strace.command(4242, io=False)
    assert argv[:2] == ["strace", "-f"] and "-v" in argv and argv[argv.index("-s") + 1] == "0"
    trace = argv[argv.index("-e", argv.index("signal=none")) + 1]
    assert "?epoll_pwait2" in trace and "?epoll_ctl" in trace and "recvfrom" not in trace
    assert "?recvfrom" in strace.command(4242, io=True)[-3]


def test_bpftrace_lines_become_calls():
    parser = bpftrace.BpftraceParser(100)
    lines = ["Attaching 33 probes...",
             # eight (data, events) pairs a line; past the call's result, what was in memory
             "E 101 5000000000 140015933849605 1 3 8209 99 99 0 0 0 0 0 0 0 0 0 0",
             "W 101 5000000000 5000200000 epoll_wait 4 500000 -1 2",
             "P 101 6000000000 7 4", "W 101 6000000000 6000000100 poll -1 -1 3 1",
             "N 102 7000000000 0 24", "S 102 7000000000 0 16 16 0",
             "W 102 7000000000 7000000500 pselect6 -1 0 -1 1",
             "@io[5]: (2, 16, -11, 16, 8000000000, 8000000000, 1, 20, 7900000000, 0)",
             "C 101 9000000000 4 1 5 77", "Lost 12 events", "W 101 1 2 epoll_wait 4 -1 -1 -4"]
    calls = [call for line in lines if (call := parser.feed(line)) is not None]
    epoll, poll, select_, io, ctl, eintr = calls
    assert epoll == TracedWait(101, "epoll_wait", 5.0, 0.0002, 0.5, 4, -1,
                               (140015933849605, 1, 3, 8209), 2, "")
    assert (poll.ready, poll.registered, poll.timeout) == ((7, 4), 3, None)
    assert (select_.ready, select_.registered, select_.timeout) == ((4, 1 | 4), 2, 0.0)
    assert io == TracedIoSummary(5, 2, 16, -1, 16, 8.0, 8.0, 1, 20, 7.9, None)
    assert io.at == 8.0
    assert ctl == TracedCtl(101, 9.0, 4, 1, 5, 77)
    assert (eintr.count, eintr.error) == (-1, "EINTR")
    assert parser.lost == 12 and parser.messages == ["Attaching 33 probes..."]


def test_bpftrace_script_leaves_out_what_the_kernel_lacks():
    full = bpftrace.script(4242, io=True)
    for name in ("epoll_wait", "epoll_pwait2", "ppoll", "pselect6", "epoll_ctl", "recvmsg"):
        assert f"sys_exit_{name} /pid == 4242" in full
    arm = bpftrace.script(4242, io=False, tracepoints={"epoll_pwait", "ppoll", "pselect6",
                                                        "epoll_ctl"})
    assert "sys_enter_epoll_wait " not in arm and "sys_enter_select " not in arm
    assert "sys_enter_epoll_pwait " in arm and "recvfrom" not in arm
    assert "clear(@rf)" not in arm and "clear(@ws)" in arm  # only maps the script uses
    assert "print(@io)" in full and "print(@io)" not in arm


def wait(start: float, *ready: int, epfd: int = 4) -> TracedWait:
    return TracedWait(1, "epoll_wait", start, 0.001, 0.1, epfd, -1, ready, len(ready) // 2)


def poll(start: float, *ready: int) -> TracedWait:
    return TracedWait(1, "poll", start, 0.001, 0.1, -1, 3, ready, len(ready) // 2)


def test_epoll_data_maps_to_fds_through_fdinfo_epoll_ctl_and_what_was_removed():
    pointer = 0x7F00DEAD0000
    registered = {4: [Registration(4, 3, 0x19, pointer + 3, 11)]}
    tracer = FakeTracer([wait(1.0, pointer + 3, 1)])
    trace = Trace(tracer)  # type: ignore[arg-type]
    trace.observe(1.5, registered, {3: "socket:[11]", 4: "anon_inode:[eventpoll]"})
    assert trace.ring[-1].ready == (3, 1) and trace.ring[-1].registered == 1
    # fd 9 comes and goes between two reads of the interest list: epoll_ctl says who it is.
    tracer.calls = [TracedCtl(1, 2.0, 4, 1, 9, pointer + 9), wait(2.1, pointer + 9, 1),
                    TracedCtl(1, 2.2, 4, 2, 9, 0), wait(2.3, pointer + 9, 0x10),
                    wait(2.4, 0x1234, 1)]
    trace.observe(2.5, registered, {3: "socket:[11]", 4: "anon_inode:[eventpoll]"})
    ready = [w.ready for w in trace.ring]
    assert ready[1:] == [(9, 1), (9, 0x10), (NO_FD, 1)]  # the last: nobody's data
    assert trace.calls[-1].unmapped == (0x1234,) and trace.calls[-2].unmapped == ()
    assert trace.fds[9].last_events == 0x10 and trace.fds[3].reported == 1


def test_reads_writes_and_rates_per_fd():
    tracer = FakeTracer([poll(1.0, 5, 1), TracedIo(1, "recvfrom", 1.01, 5, 16, 16),
                         poll(1.02, 5, 1), TracedIo(1, "recvfrom", 1.03, 5, 16, -1, "EAGAIN"),
                         TracedIo(1, "sendto", 1.04, 5, 100, -1, "EAGAIN")])
    trace = Trace(tracer)  # type: ignore[arg-type]
    trace.observe(2.0, {}, {5: "socket:[1]"})
    state = trace.fds[5]
    assert (state.reads, state.read_bytes, state.last_read, state.eagain_at) == (2, 16, -1, 1.03)
    assert (state.writes, state.write_eagain_at, state.unread_reports) == (1, 1.04, 0)
    waits_per_s, events_per_s, per_wait, p50, p99, bytes_per_s = trace.rates()
    assert (waits_per_s, events_per_s, per_wait, bytes_per_s) == (1.0, 1.0, 1.0, 8.0)
    assert p50 == p99 == 0.001
    [io] = trace.fd_io({5})
    assert (io.fd, io.reads, io.read_bytes, io.last_read_asked) == (5, 2, 16, 16)
    trace.observe(2.5, {}, {5: "socket:[1]"})
    tracer.calls = [poll(2.6, 5, 1), TracedIoSummary(5, 3, 30, 10, 10, 2.7, None, 0, 0, None,
                                                     None)]
    trace.observe(3.0, {}, {5: "socket:[1]"})
    assert (state.reads, state.read_bytes, state.last_read, state.last_read_at) == (5, 46, 10,
                                                                                    2.7)
    assert state.unread_reports == 0 and state.reported == 3
    # The fd now names another file: its history starts again.
    trace.observe(3.5, {}, {5: "pipe:[2]"})
    assert 5 not in trace.fds
