"""`muxtop flood HOST:PORT ...`: parse and check the command line, guard the target (loopback
only unless --allow-remote) and the fd limit, run the flood, report, and pick the exit status:
0 clean, 1 mismatches or failed connections, 2 bad usage."""

from __future__ import annotations

import argparse
import ipaddress
import os
import resource
import signal
import socket
import sys
import threading
from dataclasses import dataclass

from muxtop.arguments import (
    Parser,
    file_name,
    non_negative_float,
    non_negative_int,
    positive_float,
    positive_int,
)
from muxtop.flood.client import FloodPlan
from muxtop.flood.hdrlog import IntervalLog
from muxtop.flood.patterns import PARAMETERS, PATTERNS, misfit, takers
from muxtop.flood.report import Reporter
from muxtop.flood.workers import InlineRun, SplitRun
from muxtop.limits import raise_fd_limit
from muxtop.userfiles import UserFileError

MAX_SIZE = 16 * 1024 * 1024
FD_RESERVE = 32   # fds a flood process needs besides its connections (epoll, pipes, stdio...)
# Past a few processes per core, workers only take turns on the same cores (and 60 of them
# once forked 60 processes): more is a typo, not a faster flood.
WORKERS_PER_CPU = 4
# How the command line names a flood's settings in patterns.misfit's words.
FLAG_NAMES = {"messages": "--messages", "size": "--size", "rate": "--rate R or --total-rate R",
              "open_loop": "--open-loop", "limit_bytes": "--limit-bytes"}


class TargetError(ValueError):
    """HOST:PORT that cannot be used; the message is shown as is."""


@dataclass(frozen=True)
class Target:
    host: str
    port: int
    family: int
    sockaddr: tuple
    is_loopback: bool

    def __str__(self) -> str:
        ip = self.sockaddr[0]
        return f"[{ip}]:{self.port}" if self.family == socket.AF_INET6 else f"{ip}:{self.port}"


def parse_target(text: str) -> Target:
    """``HOST:PORT`` or ``[IPV6]:PORT``, resolved (IPv4 first, as most test servers bind it)."""
    if text.startswith("["):
        host, bracket, rest = text[1:].partition("]")
        if not bracket or not rest.startswith(":"):
            raise TargetError(f"{text!r} is not [IPV6]:PORT")
        port_text = rest[1:]
    else:
        host, colon, port_text = text.rpartition(":")
        if not colon:
            raise TargetError(f"{text!r} is not HOST:PORT")
        if ":" in host:
            raise TargetError(f"{text!r}: write an IPv6 address in brackets, e.g. [::1]:PORT")
    if not host:
        raise TargetError(f"{text!r} has no host (try 127.0.0.1:PORT)")
    try:
        port = int(port_text)
    except ValueError:
        raise TargetError(f"{text!r}: {port_text!r} is not a port number") from None
    if not 1 <= port <= 65535:
        raise TargetError(f"{text!r}: port {port} is out of range 1-65535")
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise TargetError(f"cannot resolve {host!r}: {exc.strerror}") from None
    except UnicodeError:  # idna: a label over 63 characters, or not encodable at all
        raise TargetError(f"cannot resolve {host!r}: not a valid host name") from None
    infos.sort(key=lambda info: info[0] != socket.AF_INET)
    family, _, _, _, sockaddr = infos[0]
    ip = ipaddress.ip_address(sockaddr[0].split("%")[0])
    return Target(host, port, family, sockaddr, ip.is_loopback)


def _size(text: str) -> int:
    value = positive_int(text)
    if value > MAX_SIZE:
        raise argparse.ArgumentTypeError(f"{text!r} is over the {MAX_SIZE}-byte maximum")
    return value


def max_workers() -> int:
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = os.cpu_count() or 1
    return WORKERS_PER_CPU * max(1, cpus)


def _workers(text: str) -> int:
    value = positive_int(text)
    top = max_workers()
    if value > top:
        raise argparse.ArgumentTypeError(
            f"{value} is over {top} ({WORKERS_PER_CPU} per CPU this process may use): more "
            "workers than that only take turns on the same cores")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="muxtop flood", usage="muxtop flood HOST:PORT [options] (--help lists them)",
        description="Load and fault generator for any TCP (echo) server. Loopback only unless "
                    "--allow-remote. Exit status: 0 clean, 1 mismatches or failed connections, "
                    "2 bad usage.")
    parser.add_argument("target", metavar="HOST:PORT", help="server to flood, e.g. 127.0.0.1:8080")
    parser.add_argument("--pattern", choices=PATTERNS, default="echo",
                        help="; ".join(f"{p.name}: {p.does}" for p in PATTERNS.values())
                        + ". Default: echo")
    endless = [p.name for p in PATTERNS.values()
               if p.sends and p.endless and (p.cuts or not p.needs_messages)]
    ending = [p.name for p in PATTERNS.values() if not p.endless]
    parser.add_argument("--clients", "-c", type=positive_int, default=500, metavar="N",
                        help="concurrent connections (default 500)")
    parser.add_argument("--messages", "-m", type=non_negative_int, default=3, metavar="M",
                        help="messages per connection (default 3); 0 = no limit for "
                             f"{', '.join(endless)} (until --duration, a signal or "
                             "--limit-bytes), nothing sent before the shutdown/RST for "
                             f"{' and '.join(ending)}")
    parser.add_argument("--size", "-s", type=_size, default=64, metavar="B",
                        help="bytes per message (default 64)")
    rates = parser.add_mutually_exclusive_group()
    rates.add_argument("--rate", "-r", type=non_negative_float, default=0.0, metavar="R",
                       help="messages/s per connection; 0 = as fast as the echo comes back "
                            "(default 0)")
    rates.add_argument("--total-rate", type=positive_float, default=None, metavar="R",
                       help="messages/s across all connections (R / clients each)")
    parser.add_argument("--open-loop", action="store_true",
                        help="messages are due on the rate's fixed schedule whatever the server "
                             "does, and each latency counts from when its message was due "
                             "(needs --rate or --total-rate). Default: closed loop, each client "
                             "waits for its echo and latency counts from the send")
    parser.add_argument("--hdr-log", metavar="FILE", type=file_name, default=None,
                        help="write each second's latency histogram to FILE, as a standard "
                             "HdrHistogram interval log (values in ns); a new file unless "
                             "--force")
    parser.add_argument("--force", action="store_true",
                        help="let --hdr-log replace an existing file")
    parser.add_argument("--connect-rate", type=non_negative_float, default=0.0, metavar="C",
                        help="new connections per second; 0 = unlimited (default 0)")
    parser.add_argument("--duration", "-d", type=positive_float, default=None, metavar="S",
                        help="stop after S seconds (default: when the pattern is done; idle "
                             "waits for SIGINT/SIGTERM)")
    parser.add_argument("--timeout", type=non_negative_float, default=10.0, metavar="S",
                        help="fail a connection that waits over S seconds for its connect, echo "
                             "or EOF (checked once a second); 0 = never (default 10)")
    parser.add_argument("--workers", "-w", type=_workers, default=1, metavar="W",
                        help="split the clients over W processes, for when one cannot outrun "
                             f"the server (default 1, at most {WORKERS_PER_CPU} per CPU)")
    parser.add_argument("--json", action="store_true",
                        help="JSON lines on stdout: start, a progress object a second, summary")
    parser.add_argument("--allow-remote", action="store_true",
                        help="allow a target that is not a loopback address")
    faults = parser.add_argument_group("fault patterns")
    for knob in PARAMETERS.values():
        default = "" if knob.default is None else f" (default {knob.default:g})"
        faults.add_argument(knob.flag, type=positive_int if knob.whole else non_negative_float,
                            metavar=knob.metavar,
                            help=f"{', '.join(takers(knob.name))}: {knob.means}{default}")
    return parser


def fd_ceiling() -> int:
    """The most fds one process can ever have: RLIMIT_NOFILE cannot be raised past
    fs.nr_open (1,048,576 unless the administrator changed it)."""
    try:
        with open("/proc/sys/fs/nr_open", encoding="ascii") as f:
            return int(f.read())
    except (OSError, ValueError):
        return 1 << 20


def check_combinations(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Flags that parse alone but not together: argparse's usage error (exit 2)."""
    # Clients past the fd limit fail with EMFILE and are counted (a lesson in itself); past
    # what any fd limit could allow the workers, they are a typo.
    most = args.workers * (fd_ceiling() - FD_RESERVE)
    if args.clients > most:
        parser.error(f"--clients {args.clients:,} is over the {most:,} connections "
                     f"{args.workers} worker process{'es' if args.workers > 1 else ''} can "
                     f"ever hold (fs.nr_open {fd_ceiling():,} fds each, less {FD_RESERVE}): "
                     "ask for fewer, or add --workers")
    pattern = PATTERNS[args.pattern]
    for knob in PARAMETERS.values():
        if getattr(args, knob.name) is not None and knob.name not in pattern.parameters:
            parser.error(f"{knob.flag} applies to --pattern {' or '.join(takers(knob.name))}, "
                         f"not {pattern.name}")
    rate = args.rate if args.total_rate is None else args.total_rate
    wrong = misfit(pattern.name, messages=args.messages, size=args.size, rate=rate,
                   open_loop=args.open_loop, limit_bytes=args.limit_bytes, names=FLAG_NAMES)
    if wrong is not None:
        parser.error(wrong.problem)


def _error(message: str) -> int:
    sys.stderr.write(f"muxtop flood: {message}\n")
    return 2


class _StopSwitch:
    """The SIGINT/SIGTERM handler: stop the run, or remember to if it has not started yet."""

    def __init__(self) -> None:
        self.requested = False
        self.run: InlineRun | SplitRun | None = None

    def __call__(self, *_: object) -> None:
        self.requested = True
        if self.run is not None:
            self.run.stop()

    def attach(self, run: InlineRun | SplitRun) -> None:
        self.run = run
        if self.requested:
            run.stop()


def main(argv: list[str]) -> int:
    # SIGINT/SIGTERM: stop, report what was done, exit by the result (not 130/143). Caught from
    # the start, so a stop that comes while we are still setting up is not lost.
    switch = _StopSwitch()
    previous = {}
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            previous[sig] = signal.signal(sig, switch)
    try:
        return _main(argv, switch)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _main(argv: list[str], switch: _StopSwitch) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        check_combinations(parser, args)
    except SystemExit as exc:   # usage error (2) or --help (0): argparse has said why
        return int(exc.code or 0)
    try:
        target = parse_target(args.target)
    except TargetError as exc:
        return _error(str(exc))
    if not target.is_loopback and not args.allow_remote:
        return _error(f"refusing to flood {target} ({target.host}): not a loopback address; "
                      "pass --allow-remote if you mean it")
    rate = args.rate if args.total_rate is None else args.total_rate / args.clients
    pattern = PATTERNS[args.pattern]
    faults = {knob: getattr(args, knob) for knob in pattern.parameters
              if getattr(args, knob) is not None}
    plan = FloodPlan(address=target.sockaddr, family=target.family, pattern=args.pattern,
                     clients=args.clients, messages=args.messages, size=args.size,
                     rate=rate, connect_rate=args.connect_rate, duration=args.duration,
                     timeout=args.timeout, open_loop=args.open_loop, **faults)
    workers = max(1, min(args.workers, args.clients))
    per_process = -(-args.clients // workers)
    fd_limit = raise_fd_limit(per_process + FD_RESERVE)
    header = {"target": str(target), "pattern": args.pattern, "clients": args.clients,
              "messages": args.messages, "size": args.size,
              "mode": "open-loop" if args.open_loop else "closed-loop",
              "rate": rate, "total_rate": rate * args.clients,
              "connect_rate": args.connect_rate, "duration": args.duration, "workers": workers}
    if pattern.faulty:
        header["fault"] = {knob: getattr(plan, knob) for knob in pattern.parameters}
        if pattern.cuts:
            header["fault"]["limit_bytes"] = plan.byte_limit()
    hdr_log = None
    if args.hdr_log is not None:
        try:
            hdr_log = IntervalLog(args.hdr_log, force=args.force, comment=f"Logged with "
                                  f"muxtop flood {args.pattern} {target}, {header['mode']}")
        except (UserFileError, OSError) as exc:  # OSError: the first lines could not be written
            return _error(f"--hdr-log: {exc}")
    reporter = Reporter(header, as_json=args.json, hdr_log=hdr_log)
    reporter.start({"fd_limit": {"soft": fd_limit[0], "hard": fd_limit[1]}})
    if fd_limit[0] != resource.RLIM_INFINITY and fd_limit[0] < per_process + FD_RESERVE:
        reporter.notice(f"the fd limit (RLIMIT_NOFILE soft {fd_limit[0]}, hard {fd_limit[1]}) "
                        f"is below the {per_process:,} connections asked for per process; those "
                        "that do not fit will fail with EMFILE and be counted")
    run = InlineRun(plan, reporter) if workers == 1 else SplitRun(plan, workers, reporter)
    switch.attach(run)
    reporter.on_broken_pipe = run.stop
    outcome = run.run()
    summary = reporter.summary(outcome.stats, stopped_by=outcome.stopped_by,
                               unfinished=outcome.unfinished, fd_limit=fd_limit)
    return 0 if summary["ok"] else 1
