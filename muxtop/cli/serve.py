"""`muxtop [options]`: start the engine, then the dashboard or (--headless) status lines."""

from __future__ import annotations

import argparse
import errno
import json
import select
import signal
import sys
import threading
import time
from collections.abc import Callable

from muxtop import __version__
from muxtop.arguments import (
    Parser,
    file_name,
    host_port,
    non_negative_float,
    non_negative_int,
    port_number,
    positive_float,
    positive_int,
    refresh_interval,
    remote_refused,
)
from muxtop.backends import NAMES, TRIGGERS
from muxtop.cli.pipe import reader_left
from muxtop.commands import Stop
from muxtop.engine import LABS, Engine, EngineConfig, EngineStartError
from muxtop.engine.address import AddressError, is_loopback, resolve
from muxtop.engine.guards import HEADER, IDLE, OUT_BUFFER, settings
from muxtop.engine.protocols import PROTOCOLS
from muxtop.engine.proxying import PROXY_NAME
from muxtop.engine.source import EngineSource
from muxtop.metrics.server import MetricsError, MetricsServer, check_reach, metrics_address
from muxtop.printable import printable
from muxtop.proxy.api import ApiServer, ApiStartError, api_address
from muxtop.proxy.errors import ApiError
from muxtop.proxy.registry import Registry
from muxtop.proxy.toxics import toxic_argument
from muxtop.record.control import RecorderControl
from muxtop.record.writer import RecordWriteError
from muxtop.snapshot import PROXY, Snapshot

DEFAULT_PORT = 8080  # --port when not given


def parser() -> argparse.ArgumentParser:
    p = Parser(
        prog="muxtop",
        description="A TCP server over select, poll, epoll or io_uring, and a live dashboard of "
        "how the multiplexer sees it. Subcommands: muxtop flood HOST:PORT, muxtop bench, "
        "muxtop attach PID, muxtop replay FILE, muxtop lesson [NAME], muxtop web "
        "(each has --help).")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=port_number, default=None,
                   help="TCP port (default 8080; 0 picks one); with --api and no --upstream "
                        "muxtop has no port of its own, as toxiproxy's server")
    p.add_argument("--backend", choices=NAMES, default="epoll", help="multiplexer (default epoll)")
    p.add_argument("--trigger", choices=TRIGGERS, default="level",
                   help="trigger mode; edge and oneshot need epoll or uring (default level)")
    p.add_argument("--protocol", choices=tuple(PROTOCOLS), default="echo",
                   help="what the server answers (default echo)")
    p.add_argument("--upstream", type=host_port, default=None, metavar="HOST:PORT",
                   help="be a TCP proxy: each client gets its own connection to HOST:PORT, "
                        "and both show as a pair of rows (any address: your own server)")
    p.add_argument("--connect-timeout", type=positive_float, default=5.0, metavar="S",
                   help="with --upstream: seconds a connect to the upstream may take "
                        "(default 5)")
    p.add_argument("--toxic", type=toxic_argument, action="append", default=[],
                   metavar="STREAM:TYPE[:K=V,...]",
                   help="with --upstream: a toxiproxy toxic on it, e.g. "
                        "downstream:latency:latency=100,jitter=10 (repeatable; docs/proxy.md)")
    p.add_argument("--api", type=api_address, default=None, metavar="HOST:PORT",
                   help="serve toxiproxy's HTTP API (its clients drive muxtop; toxiproxy's "
                        "address is 127.0.0.1:8474); loopback unless --allow-remote")
    p.add_argument("--allow-remote", action="store_true",
                   help="allow a --host (or --metrics address) other machines can reach (0.0.0.0, "
                        "::, a LAN address); "
                        "muxtop has no authentication")
    p.add_argument("--max-conns", type=non_negative_int, default=None, metavar="N",
                   help="stop accepting at N open connections (0: accept none; clients wait "
                        "in the backlog); a proxy counts legs: each client is two, its own "
                        "and its upstream's")
    p.add_argument("--idle-timeout", type=positive_float, default=None, metavar="S",
                   help="close a connection that moved no byte for S seconds (default: never)")
    p.add_argument("--header-timeout", type=positive_float, default=None, metavar="S",
                   help="http: close a connection whose request head is not complete S seconds "
                        "after it began, as nginx's client_header_timeout (default: never)")
    p.add_argument("--max-out-buffer", type=positive_int, default=None, metavar="BYTES",
                   help="close a connection whose out-buffer passes BYTES: a client that sends "
                        "and does not read (default: no limit)")
    p.add_argument("--lab", action="append", choices=LABS, default=[], metavar="NAME",
                   help=f"turn on a bug-lab switch ({', '.join(LABS)}); repeatable")
    p.add_argument("--stuck-after", type=non_negative_float, default=2.0, metavar="S",
                   help="seconds before a connection counts as stuck (default 2)")
    p.add_argument("--headless", action="store_true", help="no dashboard: one status line a second")
    p.add_argument("--json", action="store_true", help="with --headless: JSON lines")
    p.add_argument("--duration", type=non_negative_float, default=None, metavar="S",
                   help="stop after S seconds")
    p.add_argument("--refresh", type=refresh_interval, default=0.25, metavar="S",
                   help="seconds between dashboard redraws (default 0.25, at least 0.05)")
    p.add_argument("--theme", metavar="NAME", default=None,
                   help="dashboard colours: textual-dark (default), textual-light (for a "
                        "projector), nord, gruvbox, ... (ctrl+p, theme, lists them all)")
    p.add_argument("--record", metavar="FILE", type=file_name, default=None,
                   help="record every wait call, Snapshot, notice and finding to FILE (a new "
                   "file; muxtop replay FILE plays it back)")
    p.add_argument("--metrics", type=metrics_address, default=None, metavar="HOST:PORT",
                   help="serve /metrics for Prometheus on HOST:PORT (port 0 picks one; "
                        "needs the metrics extra; loopback unless --allow-remote)")
    p.add_argument("--version", action="version", version=f"muxtop {__version__}")
    return p


def main(argv: list[str]) -> int:
    args = parser().parse_args(argv)
    if (problem := usage_problem(args)) is not None:
        parser().error(problem)
    allowed, warning = guard_remote(args)
    if not allowed:
        return 1
    try:
        metrics_warning = check_reach(args.metrics, args.allow_remote) if args.metrics else None
    except MetricsError as exc:
        print(f"muxtop: {exc}", file=sys.stderr)
        return 1
    own_port = args.api is None or args.upstream is not None
    config = EngineConfig(
        # --api alone: the engine's listener is released at start (engine/proxying.py)
        host=args.host if own_port else "127.0.0.1",
        port=_port(args) if own_port else 0, backend=args.backend, trigger=args.trigger,
        protocol=args.protocol, max_conns=args.max_conns, lab=frozenset(args.lab),
        stuck_after=args.stuck_after, idle_timeout=args.idle_timeout,
        header_timeout=args.header_timeout, max_out_buffer=args.max_out_buffer,
        upstream=args.upstream, connect_timeout=args.connect_timeout,
        registry=Registry(allow_remote=args.allow_remote) if args.api or args.toxic else None)
    try:
        # Headless, the engine serves on this thread (run_headless): one thread in all.
        engine = Engine(config).start(thread=not args.headless)
    except EngineStartError as exc:
        print(f"muxtop: {exc}", file=sys.stderr)
        return 1
    if warning:
        print(warning, file=sys.stderr)
    # Headless, what the recorder has to say goes to stderr; the dashboard shows it.
    recorder = RecorderControl(EngineSource(engine), ["muxtop", *argv],
                               on_notice=_tell if args.headless else None)
    metrics = api = None
    try:
        api = start_faults(args, engine)
        if args.metrics is not None:
            metrics = start_metrics(args.metrics, engine, recorder, metrics_warning)
        if args.record is not None:
            recorder.start(args.record)
        if args.headless:
            return run_headless(engine, args.duration, args.json)
        from muxtop.ui.app import run_dashboard

        return run_dashboard(engine, duration=args.duration, refresh=args.refresh,
                             theme=args.theme, recorder=recorder, metrics=metrics)
    except (RecordWriteError, MetricsError, ApiStartError, ApiError) as exc:
        print(f"muxtop: {printable(str(exc))}", file=sys.stderr)
        return 1
    finally:
        if api is not None:
            api.stop()
        if metrics is not None:
            metrics.stop()
        engine.stop()
        recorder.on_notice = _tell  # the dashboard has gone: say where the recording is
        recorder.stop()  # after the engine: its last Snapshot is recorded too


def start_faults(args: argparse.Namespace, engine: Engine) -> ApiServer | None:
    """The --toxic values on the --upstream proxy, and toxiproxy's API (--api) over the
    engine's registry; says where the API listens on stderr."""
    registry = engine.config.registry
    for toxic in args.toxic:
        registry.add_toxic(PROXY_NAME, toxic)
    if args.api is None:
        return None
    api = ApiServer(registry, args.api, allow_remote=args.allow_remote).start()
    if api.warning:
        print(f"muxtop: {api.warning}", file=sys.stderr)
    print(f"muxtop: toxiproxy API on {api.url}", file=sys.stderr, flush=True)
    return api


def start_metrics(address: tuple[str, int], engine: Engine, recorder: RecorderControl,
                  warning: str | None) -> MetricsServer:
    """/metrics over the engine's published Snapshots; says where on stderr (port 0: the port
    it got). MetricsError when it cannot bind."""
    def recording() -> int | None:
        status = recorder.status()
        return None if status is None else status.bytes

    metrics = MetricsServer(address, engine.snapshot, recording=recording).start()
    if warning:
        print(f"muxtop: {warning}", file=sys.stderr)
    print(f"muxtop: metrics on {metrics.url}", file=sys.stderr, flush=True)
    return metrics


def usage_problem(args: argparse.Namespace) -> str | None:
    """What is wrong with options argparse took one by one, or None (`muxtop web` asks too)."""
    if args.json and not args.headless:
        return "--json needs --headless"
    if args.upstream is not None and args.protocol != "echo":
        return "--protocol does not apply with --upstream (the upstream answers)"
    if args.toxic and args.upstream is None:
        return "--toxic needs --upstream (or make proxies and toxics with --api)"
    if args.upstream is None and args.connect_timeout != 5.0:
        return "--connect-timeout needs --upstream"
    if args.api is not None and args.upstream is None and args.port is not None:
        return ("--port needs --upstream: with --api alone muxtop listens, as toxiproxy's "
                "server does, only on the API and on each proxy's listen address (POST /proxies)")
    if args.header_timeout is not None and args.protocol != "http":
        return "--header-timeout needs --protocol http (only HTTP has a request head)"
    if args.theme is not None:
        if args.headless:
            return "--theme needs the dashboard (not --headless)"
        from muxtop.ui.app import THEMES

        if args.theme not in THEMES:
            return f"no theme {args.theme!r} (choose from {', '.join(THEMES)})"
    return None


def _tell(level: str, text: str) -> None:
    print(f"muxtop: {printable(text)}", file=sys.stderr)  # it may hold a file's name


def _port(args: argparse.Namespace) -> int:
    return DEFAULT_PORT if args.port is None else args.port


def guard_remote(args: argparse.Namespace) -> tuple[bool, str | None]:
    """Like Redis's protected mode: a --host other machines can reach needs --allow-remote.
    (False, None) after one error line: do not start. (True, warning): start, and print the
    warning once listening (a bind that fails says only why)."""
    try:
        _, _, _, sockaddr = resolve(args.host, _port(args))
    except AddressError as exc:
        print(f"muxtop: {exc}", file=sys.stderr)
        return False, None
    if is_loopback(sockaddr):
        return True, None
    where = f"{sockaddr[0]} (--host {args.host!r})"
    if not args.allow_remote:
        print(f"muxtop: {remote_refused('listen', sockaddr[0], '--host', args.host)}",
              file=sys.stderr)
        return False, None
    return True, (f"muxtop: warning: listening on {where}, reachable from other machines, "
                  "with no authentication (--allow-remote)")


def run_headless(engine: Engine, duration: float | None, as_json: bool,
                 out=None) -> int:
    """Print one status line a second until SIGINT/SIGTERM/SIGHUP or `duration` runs out. A
    reader that leaves (`| head -c1`, a terminal hung up: EIO) ends it quietly, exit 0."""
    try:
        return _status_lines(engine, duration, as_json, out or sys.stdout)
    except BrokenPipeError:
        return reader_left()
    except OSError as exc:
        if exc.errno != errno.EIO:
            raise
        return reader_left()


def _status_lines(engine: Engine, duration: float | None, as_json: bool, out) -> int:
    """Serve on this thread (Engine.serve), printing a status line a second between two
    wait calls."""
    done = threading.Event()

    def stop(signum, frame):
        done.set()
        engine.submit(Stop())  # wakes the loop now (its wait call would go on after EINTR)

    # SIGHUP too (the terminal went away), unless it is ignored: `nohup muxtop --headless`.
    signals = [signal.SIGINT, signal.SIGTERM]
    if signal.getsignal(signal.SIGHUP) is not signal.SIG_IGN:
        signals.append(signal.SIGHUP)
    previous = {sig: signal.signal(sig, stop) for sig in signals}
    started = time.monotonic()
    deadline = None if duration is None else started + duration
    next_line = started + 1.0
    can_write = _never_blocks(out)

    def tick(now: float) -> bool:
        nonlocal next_line
        if done.is_set() or (deadline is not None and now >= deadline):
            return False
        if now >= next_line:
            next_line = max(next_line + 1.0, now)
            if can_write():
                print(status_line(engine.snapshot(), as_json, engine.config), file=out,
                      flush=True)
        return True

    try:
        if not as_json:
            s = engine.snapshot()
            where = f"{s.protocol} server on {s.listen}" if s.listen else \
                "proxies of the API only, each on its own listen address"
            print(f"muxtop {__version__}: {where}, {s.backend}/{s.trigger} (Ctrl-C stops)",
                  file=out, flush=True)
        if not done.is_set():
            engine.serve(tick)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if engine.error:
        print(f"muxtop: {engine.error}", file=sys.stderr)
        return 1
    return 0


def _never_blocks(out) -> Callable[[], bool]:
    """Whether a status line can be written now without blocking. The server runs on this
    thread: a reader that stopped reading (a full pipe) must not stop it too, so its line
    is skipped, as a frame is dropped. A pipe with room takes a line whole (under PIPE_BUF)."""
    try:
        fd = out.fileno()
    except (AttributeError, OSError, ValueError):  # a file object with no fd: never blocks
        return lambda: True
    poller = select.poll()
    poller.register(fd, select.POLLOUT)
    return lambda: bool(poller.poll(0))


def status_line(s: Snapshot, as_json: bool, config: EngineConfig | None = None) -> str:
    """One status line; `config` adds the protections' settings (--json)."""
    r = s.rates
    t = s.totals
    closed_by = {IDLE: t.closed_idle, HEADER: t.closed_header, OUT_BUFFER: t.closed_out_buffer}
    if as_json:
        return json.dumps({
            "time": round(s.wall_time, 3), "listen": s.listen, "backend": s.backend,
            "trigger": s.trigger,
            "proxies": [p.as_json() for p in s.proxies],  # [] when muxtop is no proxy
            "connections": s.open_connections, "registered": s.registered,
            "waits": t.waits - t.probes,  # muxtop_wait_calls_total: the CPU probes aside
            "waits_per_s": round(r.waits, 1), "events_per_s": round(r.events, 1),
            "ready_per_wait": round(r.ready_per_wait, 2),
            "wait_p50_us": round(r.wait_p50 * 1e6, 1), "wait_p99_us": round(r.wait_p99 * 1e6, 1),
            "bytes_in": s.totals.bytes_in, "bytes_out": s.totals.bytes_out,
            "bytes_in_per_s": round(r.bytes_in), "bytes_out_per_s": round(r.bytes_out),
            "accepted": s.totals.accepted, "closed": s.totals.closed,
            "accept_errors": s.totals.accept_errors, "rejected": s.totals.rejected,
            "lab": sorted(s.lab), "diagnoses": [d.as_json() for d in s.diagnoses],
            "limits": settings(config) if config is not None else None,
            "closed_by_limit": closed_by,
            "rings": [r._asdict() for r in s.rings],
        })
    conns = f"{'legs' if s.protocol.startswith(PROXY) else 'conns'} {s.open_connections}"
    return (f"{s.backend}/{s.trigger}  {conns}  "
            f"waits/s {r.waits:,.0f}  events/s {r.events:,.0f}  "
            f"in {_rate(r.bytes_in)}  out {_rate(r.bytes_out)}"
            + (f"  toxics {sum(len(p.toxics) for p in s.proxies)}" if s.proxies else "")
            + "".join(f"  closed by {name.replace('_', '-')} {n:,}"
                      for name, n in closed_by.items() if n)
            + (f"  findings {len(s.diagnoses)}" if s.diagnoses else "")
            + "".join(f"  ring SQ {r.sq_head}/{r.sq_tail} CQ {r.cq_head}/{r.cq_tail} "
                      f"in flight {r.in_flight}" for r in s.rings))


def _rate(bytes_per_s: float) -> str:
    for unit in ("B/s", "KiB/s", "MiB/s"):
        if bytes_per_s < 1024:
            return f"{bytes_per_s:.0f} {unit}"
        bytes_per_s /= 1024
    return f"{bytes_per_s:.1f} GiB/s"
