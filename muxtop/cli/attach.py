"""`muxtop attach PID`: look at another process's epoll sets, sockets and stuck connections.

`--once` prints one report (text, or JSON with `--json`) and exits; without it the dashboard
opens on a terminal over an AttachSource, or a plain-text table refreshes every `--interval`
seconds (`--text`, or stdout not a terminal) until Ctrl-C. A live view plugs in through
`main(argv, live=...)`: it gets the Attacher this module built and the parsed arguments; the
dashboard is imported only when it opens, so `--once` never loads Textual.

`--name NAME`, several PIDs or `--headless` watch processes as they come and go (an agent:
muxtop/attach/targets.py), each said on stderr as it comes and goes; the dashboard then lists
them and shows one at a time, and `--headless` draws nothing (a service serving --metrics).
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
import time
from collections.abc import Callable

from muxtop.arguments import Parser, file_name, interval, non_negative_float, positive_int
from muxtop.attach import report
from muxtop.attach.reader import Attacher, AttachError
from muxtop.attach.source import READ_SHARE
from muxtop.attach.targets import CAME, REFUSED, Targets
from muxtop.cli.pipe import reader_left
from muxtop.metrics.server import MetricsError, MetricsServer, check_reach, metrics_address
from muxtop.printable import printable
from muxtop.record.control import Box, Recordable, RecorderControl
from muxtop.record.writer import RecordWriteError
from muxtop.trace.choose import CHOICES as TRACERS
from muxtop.trace.tracer import TraceUnavailable

# While sampling over --window, look this often: a stuck queue must stay stuck in every look.
SAMPLE_EVERY = 0.5
TRACE_WINDOW = 1.0  # seconds of wait calls --once --trace gathers when --window is not given

EPILOG = """\
--once --json prints one document: {pid, name, cmdline, exited, wall_time, uptime_seconds,
process: {pid, name, cpu_percent, rss, num_fds, fd_limit, threads}, backend, trigger, listen,
registered, open_connections, stuck_after, epoll: [{fd, watches: [{fd, mask, decoded,
disarmed, data, stale}]}], fds: [{fd, kind, state, interest, flags, watched_by, rx_queue,
tx_queue, note, and for a socket: inode, proto, local, peer, tcp_state, accept_queue, backlog,
unix_type, unix_state}], diagnoses: [{kind, fd, explanation, evidence}],
notices: [{level, text}]}; with --trace also trace: {tracer, state, note, waits, io_calls,
lost}, waits: [{seq, at, tid, syscall, epfd, timeout, blocked, registered, count, ready:
[{fd, events}], error}] (oldest first; at is seconds since the first) and io: [{fd, reads,
read_bytes, last_read, last_read_asked, eagain_seconds_ago, writes, written_bytes,
write_eagain_seconds_ago}]. flags: one letter each (T edge-triggered, O oneshot, D disarmed
oneshot, X exclusive, ! a finding names it).
Without --once: on a terminal, the dashboard (read-only; ? explains the columns, q quits);
otherwise, or with --text, a plain-text table every --interval seconds until Ctrl-C.
Findings that need time (stuck-read, stuck-write, close-wait) need --window >= --stuck-after.
--trace follows the process's wait calls (epoll_wait, epoll_pwait, epoll_pwait2, poll, ppoll,
select, pselect6), and its reads and writes unless --no-io: the ready-list log, the wait
figures and the "last ev" column then show them, and findings can be proven. bpftrace needs
root and tracefs and costs the target little; strace needs the target's user (or root) and
slows a busy target several-fold; auto takes bpftrace when it can run, else strace.
Several processes: `--name NAME` watches every process of that name (its comm, as
`ps -o comm=` shows it and `pgrep -x` matches it; muxtop itself aside), those that start later
too; several PIDs watch those. stderr gets a line as each is watched, exits or cannot be read.
The dashboard lists them (> and < switch); --text prints a table for each, --json a line for
each per refresh, --once a report for each (--json: one line each). `--headless` draws nothing:
it reads every --interval, serves --metrics (each series labelled with pid and process; an
exited process's series go), with --json prints the lines; it ends on SIGTERM or Ctrl-C, exit
0 -- the agent to run as a service. Not with --record or --trace (one process each).
Exit status: 0 ok (and a --headless or several-process run stopped by SIGTERM or Ctrl-C), 1
the process cannot be read or exited (several PIDs: the last one exited; --once --name: none of
that name), or no tracer can run, 2 usage error."""


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="muxtop attach", epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Show another process's epoll interest lists, sockets and kernel queues,\n"
                    "and diagnose stuck connections. Read-only.")
    parser.add_argument("pid", type=positive_int, nargs="*", metavar="PID",
                        help="the process to look at (several: each of them)")
    parser.add_argument("--name", metavar="NAME", default=None,
                        help="every process of this name, as they come and go (the name "
                             "ps -o comm= shows)")
    parser.add_argument("--headless", action="store_true",
                        help="no dashboard: read every --interval, serve --metrics, say on "
                             "stderr which processes come and go; until SIGTERM or Ctrl-C")
    parser.add_argument("--once", action="store_true", help="print one report and exit")
    parser.add_argument("--json", action="store_true",
                        help="JSON: one document with --once, else one line per refresh")
    parser.add_argument("--window", type=non_negative_float, default=0.0, metavar="S",
                        help="with --once: sample over S seconds before reporting (default 0; "
                             "with --trace 1)")
    parser.add_argument("--stuck-after", type=non_negative_float, default=2.0, metavar="T",
                        help="seconds a queue must stay stuck to count (default 2)")
    parser.add_argument("--interval", type=interval, default=0.5, metavar="S",
                        help="seconds between refreshes without --once, 0.01 to 3600 "
                             "(default 0.5)")
    parser.add_argument("--text", action="store_true",
                        help="a plain-text table instead of the dashboard (the default when "
                             "stdout is not a terminal)")
    parser.add_argument("--record", metavar="FILE", type=file_name, default=None,
                        help="record every look to FILE (a new file; muxtop replay FILE plays "
                             "it back)")
    parser.add_argument("--trace", nargs="?", const="auto", choices=TRACERS, metavar="TRACER",
                        help="also trace the process's wait calls: auto (the default), "
                             "bpftrace or strace")
    parser.add_argument("--no-io", dest="io", action="store_false",
                        help="with --trace: trace only the wait calls, not reads and writes "
                             "(cheaper; findings can then no longer be proven)")
    parser.add_argument("--metrics", type=metrics_address, default=None, metavar="HOST:PORT",
                        help="serve /metrics for Prometheus on HOST:PORT, each series labelled "
                             "with the pid and process name (port 0 picks one; not with "
                             "--once; loopback unless --allow-remote)")
    parser.add_argument("--allow-remote", action="store_true",
                        help="allow a --metrics address other machines can reach")
    return parser


def open_attacher(args: argparse.Namespace) -> Attacher:
    """The Attacher for parsed arguments, tracing when --trace asks; raises AttachError with
    a one-line reason (no such process, no tracer can run)."""
    attacher = Attacher(args.pid, stuck_after=args.stuck_after)
    if args.trace:
        from muxtop.trace.choose import open_tracer
        from muxtop.trace.session import Trace
        from muxtop.traced import with_trace

        try:
            tracer = open_tracer(args.pid, args.trace, io=args.io, warn=_warn,
                                 progress=_progress)
        except TraceUnavailable as exc:
            raise AttachError(f"cannot trace process {args.pid}: {exc}") from None
        with_trace(attacher, Trace(tracer))
    return attacher


def _progress(text: str) -> None:
    if sys.stderr.isatty():  # a person waiting at a terminal; scripts get the result only
        print(f"muxtop attach: {printable(text)}", file=sys.stderr, flush=True)


def _warn(text: str) -> None:
    print(f"muxtop attach: warning: {printable(text)}", file=sys.stderr, flush=True)


LiveView = Callable[[Attacher, argparse.Namespace], int]


def main(argv: list[str], live: LiveView | None = None) -> int:
    args = build_parser().parse_args(argv)  # a usage error exits 2
    args.command_line = ["muxtop", "attach", *argv]
    if args.metrics is not None and args.once:
        build_parser().error("--metrics needs a live view, not --once")
    _check_targets(args)
    if args.name is not None or len(args.pid) > 1 or args.headless:
        return watch_many(args)
    args.pid = args.pid[0]
    opened = _Opened()
    try:
        return _watch_one(args, live, opened)
    except (AttachError, RecordWriteError, MetricsError) as exc:
        return _fail(str(exc))
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return reader_left()
    finally:
        opened.close()


class _Opened:
    """What watching one process has opened so far, for main to close however it ends."""

    def __init__(self) -> None:
        self.attacher: Attacher | None = None  # the reads as the view sees them (wrapped)
        self.recorder: RecorderControl | None = None
        self.metrics: MetricsServer | None = None

    def close(self) -> None:
        if self.metrics is not None:
            self.metrics.stop()
        if self.recorder is not None:
            self.recorder.stop()
        if self.attacher is not None:
            self.attacher.close()  # a tracer must not outlive the command


def _watch_one(args: argparse.Namespace, live: LiveView | None, opened: _Opened) -> int:
    """One process: attach (its reads served on /metrics, recorded, as asked), then its
    view: --once, --json, the dashboard or the text loop."""
    metrics_warning = check_reach(args.metrics, args.allow_remote) if args.metrics else None
    attacher = opened.attacher = open_attacher(args)
    if args.metrics is not None:
        attacher, opened.metrics = served_reads(attacher, args.metrics, metrics_warning)
        opened.attacher = attacher
    if live is None:
        live = text_loop if args.text or not sys.stdout.isatty() else dashboard
    if args.record is not None and (args.once or args.json or live is not dashboard):
        attacher, opened.recorder = recorded_reads(attacher, args)  # the dashboard records itself
        opened.attacher = attacher
    if args.once:
        return once(attacher, args)
    if args.json:
        return json_lines(attacher, args)
    return live(attacher, args)


def _check_targets(args: argparse.Namespace) -> None:
    """Usage errors of the several-process options (exit 2)."""
    error = build_parser().error
    if not args.pid and args.name is None:
        error("give a PID (or several), or --name NAME")
    if args.name is not None and not args.name:
        error("--name needs a name")
    if args.headless and (args.once or args.text):
        error(f"--headless runs until stopped and draws nothing: not with "
              f"{'--once' if args.once else '--text'}")
    if args.name is not None or len(args.pid) > 1 or args.headless:
        for option, given in (("--record", args.record), ("--trace", args.trace)):
            if given is not None:
                error(f"{option} takes one process: give one PID, without --name or "
                      "--headless")


def watch_many(args: argparse.Namespace) -> int:
    """--name, several PIDs, --headless: the processes as they come and go."""
    dashboard = not (args.once or args.headless or args.json or args.text) and \
        sys.stdout.isatty()
    targets = metrics = None
    # The loop ends on SIGTERM (a service manager) or Ctrl-C, once its read is done, exit 0:
    # from the start, so a signal while attaching or binding ends it as cleanly.
    stop = Stop(args.once or dashboard)
    try:
        warning = check_reach(args.metrics, args.allow_remote) if args.metrics else None
        targets = Targets(tuple(args.pid), args.name,
                          make=lambda pid: Attacher(pid, stuck_after=args.stuck_after))
        if args.metrics is not None:
            metrics = MetricsServer(args.metrics, lambda: None, targets=targets.pairs,
                                    refused=lambda: targets.refused).start()
            if warning:
                _warn(warning.removeprefix("warning: "))
            print(f"muxtop attach: metrics on {metrics.url}", file=sys.stderr, flush=True)
        if args.once:
            return many_once(targets, args)
        if dashboard:
            return many_dashboard(targets, args)
        return agent_loop(targets, args, stop)
    except (AttachError, MetricsError) as exc:
        return _fail(str(exc))
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return reader_left()
    finally:
        stop.restore()
        if metrics is not None:
            metrics.stop()
        if targets is not None:
            targets.close()


class Stop:
    """SIGTERM and SIGINT set `event` (and `by`, the signal's name) instead of ending the
    process at once; `restore()` puts the handlers back. `leave`: the handlers stay as they
    are (the dashboard has its own; --once ends soon)."""

    def __init__(self, leave: bool = False) -> None:
        self.event = threading.Event()
        self.by = ""
        self._previous: dict = {}
        if leave or threading.current_thread() is not threading.main_thread():
            return  # only the main thread may set handlers
        for sig in (signal.SIGTERM, signal.SIGINT):
            if signal.getsignal(sig) is not signal.SIG_IGN:  # nohup's, a background job's
                self._previous[sig] = signal.signal(sig, self._on_signal)

    def _on_signal(self, signum: int, _frame) -> None:
        self.by = signal.Signals(signum).name
        self.event.set()

    def restore(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous = {}


def tell_changes(targets: Targets, came: bool = True) -> None:
    """A line on stderr for each process watched (unless not `came`), exited or refused
    since the last."""
    for change in targets.take_changes():
        name = printable(change.name)
        if change.kind == CAME:
            if not came:
                continue
            _tell("info", f"watching {name} (pid {change.pid})")
        elif change.kind == REFUSED:
            _tell("warning", f"cannot watch {name} (pid {change.pid}): {change.reason}")
        else:
            _tell("info", f"{name} (pid {change.pid}) exited")


def agent_loop(targets: Targets, args: argparse.Namespace, stop: Stop) -> int:
    """Read every process every --interval until SIGTERM or Ctrl-C (exit 0), or until the
    last of the PIDs given has exited (exit 1): --json prints a line for each process, else a
    table for each (--text, or stdout not a terminal); --headless alone prints nothing."""
    tables = not (args.headless or args.json)
    clear = "\x1b[H\x1b[J" if sys.stdout.isatty() else ""
    waiting_told = stretched = False
    notices = NoticeLog()
    while not stop.event.is_set():
        read = targets.read()
        tell_changes(targets)
        notices.tell(read)
        if not len(targets) and not waiting_told and targets.name is not None:
            waiting_told = True
            _tell("info", f"no process named {printable(targets.name)} yet: waiting")
        elif len(targets):
            waiting_told = False
        if args.json:
            for target in read:
                print(json.dumps(report.to_json(target.snapshot)), flush=True)
        elif tables and read:
            print(clear + "\n\n".join("\n".join(_text(t.snapshot)) for t in read)
                  + ("" if clear else "\n"), flush=True)
        if targets.fixed and not len(targets):
            return _fail("every process watched has exited")
        # Reading every process may take at most READ_SHARE of a core, as one does.
        period = max(args.interval, targets.read_seconds / READ_SHARE)
        if stretched if period <= args.interval else period > args.interval * 1.5:
            stretched = not stretched
            _tell("info", f"a read of every process takes {targets.read_seconds * 1e3:.0f} ms "
                  f"of CPU: refreshing every {period:.1f} s, so that muxtop takes at most "
                  f"{READ_SHARE:.0%} of a core" if stretched else
                  f"refreshing every {args.interval:g} s again")
        stop.event.wait(period)
    n = len(targets)
    _tell("info", f"{stop.by or 'stopped'}: no longer watching {n} "
          f"process{'' if n == 1 else 'es'}")
    return 0


class NoticeLog:
    """Each process's warnings and errors (sock_diag cannot see into its network namespace,
    a read failed), a line each on stderr, once: what the dashboard would have shown. Its
    exit is said by the line that says it exited."""

    def __init__(self) -> None:
        self._seen: dict[int, int] = {}  # target key -> the newest notice's seq

    def tell(self, read) -> None:
        seen = {}
        for target in read:
            newest = self._seen.get(target.key, 0)
            for notice in target.snapshot.notices:
                if notice.seq > newest:
                    newest = notice.seq
                    if notice.level != "info" and target.snapshot.running:
                        _tell(notice.level, f"{printable(target.name)} (pid {target.pid}): "
                              f"{notice.level}: {notice.text}")
            seen[target.key] = newest
        self._seen = seen  # those gone are forgotten


def _text(snapshot) -> list[str]:
    return (report.header_lines(snapshot) + [""] + report.fd_table(snapshot) + [""]
            + report.diagnosis_lines(snapshot))


def many_once(targets: Targets, args: argparse.Namespace) -> int:
    """One report for each process (--json: one line each), after --window's sampling."""
    targets.read()  # attaches to those of the name: the first look starts their CPU clocks
    deadline = time.monotonic() + max(args.window, 0.1)  # CPU% over microseconds means nothing
    while True:
        time.sleep(min(SAMPLE_EVERY, max(0.0, deadline - time.monotonic())))
        read = targets.read()
        if time.monotonic() >= deadline or not len(targets):
            break
    tell_changes(targets, came=False)  # the reports say who they are about
    read = tuple(t for t in read if t.snapshot.running)
    if not read:
        return _fail(f"no process named {targets.name}" if targets.name is not None
                     else "every process exited")
    for target in read:
        if args.json:
            print(json.dumps(report.to_json(target.snapshot)))
        else:
            sys.stdout.write(report.to_text(target.snapshot) + "\n")
    return 0


def many_dashboard(targets: Targets, args: argparse.Namespace) -> int:
    """The dashboard over every process: it lists them, shows one, > and < switch."""
    from muxtop.attach.source import TargetsSource
    from muxtop.ui.app import POLL_INTERVAL, run_source

    source = TargetsSource(targets, interval=args.interval).start()
    try:
        return run_source(source, interval=min(POLL_INTERVAL, args.interval))
    finally:
        source.stop()
        tell_changes(targets)


class RecordedReads:
    """The Attacher, each of whose reads is also put where a recorder looks."""

    def __init__(self, attacher: Attacher, box: Box) -> None:
        self._attacher = attacher
        self._box = box

    def read(self):
        snapshot = self._attacher.read()
        self._box.put(snapshot)
        return snapshot

    def __getattr__(self, name: str):
        return getattr(self._attacher, name)


def recorded_reads(attacher: Attacher, args: argparse.Namespace):
    """(the Attacher with its reads recorded, the RecorderControl recording them) for the
    modes that read themselves; RecordWriteError if the file cannot be made."""
    box = Box("attach")
    recorder = RecorderControl(box, args.command_line, on_notice=_tell)
    recorder.start(args.record)
    return RecordedReads(attacher, box), recorder


def served_reads(attacher: Attacher, address: tuple[str, int], warning: str | None):
    """(the Attacher with its reads also served, the MetricsServer serving them): whichever
    view reads (dashboard, --text, --json), /metrics shows its last look."""
    box = Box("attach")
    metrics = MetricsServer(address, box.latest).start()
    if warning:
        _warn(warning.removeprefix("warning: "))
    print(f"muxtop attach: metrics on {metrics.url}", file=sys.stderr, flush=True)
    return RecordedReads(attacher, box), metrics


def once(attacher: Attacher, args: argparse.Namespace) -> int:
    """Sample over --window (every SAMPLE_EVERY s), then print the last snapshot."""
    window = args.window or (TRACE_WINDOW if attacher.trace is not None else 0)
    deadline = time.monotonic() + window
    if window == 0:
        time.sleep(0.1)  # CPU% over a few microseconds would mean nothing
    snapshot = attacher.read()
    while not attacher.exited and (remaining := deadline - time.monotonic()) > 0:
        time.sleep(min(SAMPLE_EVERY, remaining))
        snapshot = attacher.read()
    if attacher.exited:
        return _fail(f"process {attacher.pid} ({attacher.name}) exited while attached")
    if args.json:
        json.dump(report.to_json(snapshot), sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        sys.stdout.write(report.to_text(snapshot))
    return 0


def json_lines(attacher: Attacher, args: argparse.Namespace) -> int:
    """One compact JSON document per refresh, for `| jq` and friends."""
    seen = -1  # the newest traced wait printed: each line carries the waits since
    try:
        while True:
            snapshot = attacher.read()
            print(json.dumps(report.to_json(snapshot, seen)), flush=True)
            seen = snapshot.waits[-1].seq if snapshot.waits else seen
            if attacher.exited:
                return _fail(f"process {attacher.pid} ({attacher.name}) exited")
            time.sleep(args.interval)
    except KeyboardInterrupt:
        return 0


def dashboard(attacher: Attacher, args: argparse.Namespace) -> int:
    """The Textual dashboard, read-only; imported here so `--once` never loads Textual.
    Every error that stops attaching (no such process, permission denied) was raised by
    the Attacher already, before the screen changes."""
    from muxtop.attach.source import AttachSource
    from muxtop.ui.app import POLL_INTERVAL, run_source

    source = AttachSource(attacher, interval=args.interval).start()
    recorder = RecorderControl(source, args.command_line)  # R, or --record from the start
    try:
        if args.record is not None:
            recorder.start(args.record)
        return run_source(Recordable(source, recorder),
                          interval=min(POLL_INTERVAL, args.interval))
    finally:
        source.stop()
        recorder.on_notice = _tell  # the dashboard has gone: say where the recording is
        recorder.stop()


def text_loop(attacher: Attacher, args: argparse.Namespace) -> int:
    """The stand-in for the dashboard: a short table every --interval seconds until Ctrl-C."""
    clear = "\x1b[H\x1b[J" if sys.stdout.isatty() else ""
    try:
        while True:
            snapshot = attacher.read()
            if attacher.exited:
                return _fail(f"process {attacher.pid} ({attacher.name}) exited")
            lines = report.live_lines(snapshot)
            print(clear + "\n".join(lines) + ("" if clear else "\n"), flush=True)
            time.sleep(args.interval)
    except KeyboardInterrupt:
        return 0


def _fail(message: str) -> int:
    # The message may name the target (its name is its own text): escaped, like the report.
    print(f"muxtop attach: {printable(message)}", file=sys.stderr)
    return 1


def _tell(level: str, text: str) -> None:
    print(f"muxtop attach: {printable(text)}", file=sys.stderr)
