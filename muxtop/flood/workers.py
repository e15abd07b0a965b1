"""Running a flood: in this process, or split across worker processes (--workers) when one Python
process cannot outrun the server, with their stats merged into one report."""

from __future__ import annotations

import multiprocessing
import os
import signal
import time
from dataclasses import replace
from multiprocessing.connection import Connection, wait

from muxtop.flood.client import TICK, Flood, FloodPlan
from muxtop.flood.latency import Latency
from muxtop.flood.report import Reporter
from muxtop.flood.stats import FloodStats

_STOP_SIGNALS = {signal.SIGINT, signal.SIGTERM}


class Outcome:
    """How a flood ended: merged stats, why it stopped, how many connections it cut short."""

    def __init__(self, stats: FloodStats, stopped_by: str, unfinished: int) -> None:
        self.stats = stats
        self.stopped_by = stopped_by
        self.unfinished = unfinished


def split(plan: FloodPlan, workers: int) -> list[FloodPlan]:
    """Share the clients (and the connect rate) out; each share keeps its own client ids."""
    workers = max(1, min(workers, plan.clients))
    shares, first = [], plan.first_client
    for i in range(workers):
        count = plan.clients // workers + (1 if i < plan.clients % workers else 0)
        shares.append(replace(plan, clients=count, first_client=first,
                              connect_rate=plan.connect_rate / workers))
        first += count
    return shares


class InlineRun:
    """The whole flood in this process: the usual case."""

    def __init__(self, plan: FloodPlan, reporter: Reporter) -> None:
        self.reporter = reporter
        self.flood = Flood(plan, on_notice=reporter.notice)

    def stop(self) -> None:
        self.flood.stop()

    def run(self) -> Outcome:
        stats = self.flood.run(on_tick=self.reporter.progress)
        return Outcome(stats, self.flood.stopped_by or "complete", self.flood.unfinished)


def _shipment(stats: FloodStats) -> tuple[FloodStats, bytes, float]:
    """What a worker sends its parent: its counters, and the latency interval since the last
    shipment in HdrHistogram's encoding (the parent adds the intervals up)."""
    latency = stats.latency
    latency.fold()
    interval_max = latency.interval_max
    return stats.counters(), latency.cut().encode(), interval_max


def _worker_main(plan: FloodPlan, conn: Connection, parent_pid: int) -> None:
    flood = Flood(plan, on_notice=lambda text: conn.send(("notice", text)))
    # SIGINT from the terminal reaches the whole process group; SIGTERM comes from the parent.
    signal.signal(signal.SIGINT, lambda *_: flood.stop())
    signal.signal(signal.SIGTERM, lambda *_: flood.stop())
    # Forked with them blocked (SplitRun.run): one that came meanwhile is delivered now.
    signal.pthread_sigmask(signal.SIG_UNBLOCK, _STOP_SIGNALS)

    def tick(stats: FloodStats) -> None:
        if os.getppid() != parent_pid:
            flood.stop()   # orphaned: nobody is listening any more
        conn.send(("tick", *_shipment(stats)))

    stats = flood.run(on_tick=tick)
    conn.send(("done", *_shipment(stats), flood.stopped_by or "complete", flood.unfinished))
    conn.close()


class SplitRun:
    """The flood split across worker processes (forked, so they share nothing but the plan)."""

    def __init__(self, plan: FloodPlan, workers: int, reporter: Reporter) -> None:
        self.reporter = reporter
        self.shares = split(plan, workers)
        self._procs: list[multiprocessing.process.BaseProcess] = []
        self._conns: list[Connection] = []
        self._stopping = False

    def stop(self) -> None:
        self._stopping = True  # a stop before or while the workers start: start no more
        for proc in self._procs:
            if proc.pid is not None and proc.exitcode is None:
                try:
                    os.kill(proc.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass

    def run(self) -> Outcome:
        self._start_workers()
        if self._stopping:
            self.stop()  # the ones started before the stop came
        latest, latency, finals = self._listen()
        for proc in self._procs:
            proc.join(5)
        reasons = {reason for reason, _ in finals.values()}
        stopped_by = "signal" if self._stopping else \
            next((r for r in ("signal", "duration") if r in reasons), "complete")
        unfinished = sum(count for _, count in finals.values())
        stats = FloodStats.merged(latest, latency)
        stats.active = 0
        return Outcome(stats, stopped_by, unfinished)

    def _start_workers(self) -> None:
        """Fork a worker per share, each with a pipe to tell us how it goes."""
        ctx = multiprocessing.get_context("fork")  # no re-import, and start-up in milliseconds
        for share in self.shares:
            if self._stopping:
                break
            parent_end, child_end = ctx.Pipe(duplex=False)
            proc = ctx.Process(target=_worker_main, args=(share, child_end, os.getpid()),
                               daemon=True)
            # Blocked across the fork: the child would otherwise run this process's handler
            # (not its own) for a SIGTERM that comes before it sets its own.
            blocked = signal.pthread_sigmask(signal.SIG_BLOCK, _STOP_SIGNALS)
            try:
                proc.start()
                self._procs.append(proc)
            finally:
                signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
            child_end.close()
            self._conns.append(parent_end)

    def _listen(self) -> tuple[list[FloodStats], Latency, dict[int, tuple[str, int]]]:
        """What the workers say until the last one is done (or dead), merged into a progress
        line a second: each one's latest counts, every latency interval, and how each ended
        (why it stopped, connections left unfinished)."""
        latest = [FloodStats() for _ in self.shares]
        latency = Latency()   # every worker's intervals, added up as they come
        finals: dict[int, tuple[str, int]] = {}
        open_conns = dict(enumerate(self._conns))
        next_tick = time.perf_counter() + TICK
        while open_conns:
            timeout = max(0.0, next_tick - time.perf_counter())
            for conn in wait(list(open_conns.values()), timeout):
                index = self._conns.index(conn)
                try:
                    message = conn.recv()
                except EOFError:
                    # A worker that died without a summary: its last counts stand, and the
                    # run is not clean.
                    del open_conns[index]
                    if index not in finals:
                        latest[index].fail("worker died")
                        finals[index] = ("complete", 0)
                    continue
                self._heard(index, message, latest, latency, finals)
            if time.perf_counter() >= next_tick and open_conns:
                self.reporter.progress(FloodStats.merged(latest, latency))
                next_tick += TICK
        return latest, latency, finals

    def _heard(self, index: int, message: tuple, latest: list[FloodStats], latency: Latency,
               finals: dict[int, tuple[str, int]]) -> None:
        """One message of worker `index`: a notice, its counts of the second, or its last."""
        kind = message[0]
        if kind == "notice":
            self.reporter.notice(message[1])
        elif kind in ("tick", "done"):
            latest[index] = message[1]
            latency.absorb(message[2], message[3])
            if kind == "done":
                finals[index] = (message[4], message[5])
