"""The metric families of `/metrics`, built at scrape time from the latest published Snapshot.

A prometheus_client custom collector: nothing here runs on the engine thread, and nothing
is counted per event. Counters come from the Snapshot's Totals (monotonic already); what a
Snapshot only shows as it stands (its wait records, its findings) is folded into running
counts here, one scrape at a time: the histograms count the wait records a scrape finds
that the last one had not seen, and the raised findings count (kind, fd, since) stamps not
seen before. Labels are of low cardinality only: never an fd or a peer.
"""

from __future__ import annotations

import threading
from bisect import bisect_left
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    InfoMetricFamily,
)
from prometheus_client.registry import Collector

from muxtop.findings import KINDS
from muxtop.snapshot import (
    CLOSED,
    CLOSING,
    HALF_CLOSED,
    KIND_CONN,
    OPEN,
    READ_PAUSED,
    Snapshot,
)

# Wait-call duration buckets, seconds: a call that returned at once (a few µs) to one that
# blocked for its whole timeout.
DURATION_BUCKETS = (1e-5, 5e-5, 1e-4, 5e-4, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0)
READY_BUCKETS = (0, 1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)  # ready fds per wait call
CONN_STATES = (OPEN, READ_PAUSED, HALF_CLOSED, CLOSING)  # always listed, 0 when none
# What each of muxtop's own backends calls (an attached process's traced calls say theirs).
SYSCALL = {"select": "select", "poll": "poll", "epoll": "epoll_wait"}
SOURCE_ENGINE = "engine"

UNKNOWN = ("?", "-", "")  # a label value that says the source cannot tell

class Histogram:
    """Cumulative bucket counts of values folded in one at a time, as Prometheus wants them."""

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)  # the last: above every bound (+Inf only)
        self.total = 0.0

    def add(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1
        self.total += value

    def buckets(self) -> list[tuple[str, int]]:
        running, out = 0, []
        for bound, count in zip((*map(_le, self.bounds), "+Inf"), self.counts):
            running += count
            out.append((bound, running))
        return out


def _le(bound: float) -> str:
    return repr(float(bound))


class SnapshotCollector(Collector):
    """Metric families from `latest()` (a Source's newest Snapshot, or None before the first).

    `recording`: a callable giving the running recording's bytes (None when none runs).
    `floods`: a callable giving the floods the dashboard launched (FloodProcess-like objects
    with `pid`, `running` and `progress`). Scrapes may come on several threads at once: the
    running counts are kept under a lock."""

    def __init__(self, latest: Callable[[], Snapshot | None], *,
                 recording: Callable[[], int | None] | None = None,
                 floods: Callable[[], Iterable[Any]] | None = None) -> None:
        self.latest = latest
        self.recording = recording
        self.floods = floods
        self._lock = threading.Lock()
        self._durations = Histogram(DURATION_BUCKETS)
        self._ready = Histogram(READY_BUCKETS)
        self._last_seq = 0  # the newest wait record folded in
        self._missed = 0  # records the ring dropped before a scrape could see them
        self._waits: dict[tuple[str, str], int] = {}  # (backend, syscall) -> wait calls
        self._waits_seen = 0  # the loop's wait calls (probes aside) counted so far
        self._findings_seen: set[tuple[str, int | None, float]] = set()
        self._raised = dict.fromkeys(KINDS, 0)
        self._flood_last: dict[int, dict[str, int]] = {}  # pid -> its counters last seen
        self._flood_totals = dict.fromkeys(FLOOD_COUNTERS, 0)

    def describe(self) -> list:
        return []  # registering must not call collect(): nothing may be published yet

    def collect(self) -> Iterator:
        snapshot = self.latest()
        if snapshot is not None:
            yield from self.families(snapshot)

    def families(self, snapshot: Snapshot) -> Iterator:
        """The families of `snapshot`, its counts folded into this collector's."""
        labels = _target_labels(snapshot)
        with self._lock:
            self._fold(snapshot)
            families = [*self._server(snapshot), *self._wait_families(snapshot),
                        *self._traffic(snapshot), *self._connections(snapshot),
                        *self._findings(snapshot), *self._process(snapshot),
                        *self._proxies(snapshot),
                        *self._recording(), *self._flood()]
        for family in families:
            if labels:
                _with_labels(family, labels)
            yield family

    # ---- running counts ------------------------------------------------------------------

    def _fold(self, s: Snapshot) -> None:
        """Fold in what this Snapshot holds that the last scrape did not see."""
        last = self._last_seq
        new = [w for w in s.waits if w.seq > last]
        if new:
            if last and new[0].seq > last + 1:
                self._missed += new[0].seq - last - 1
            self._last_seq = new[-1].seq
            durations, ready = self._durations, self._ready
            for w in new:
                if w.cpu is None:  # a probe times a scan; it is not one of the loop's waits
                    durations.add(w.duration)
                    ready.add(w.count)
        if s.wait_calls:  # a traced process: each call names its syscall
            calls = {c.seq: c.syscall for c in s.wait_calls}
            for w in new:
                key = (s.backend, calls.get(w.seq, "unknown"))
                self._waits[key] = self._waits.get(key, 0) + 1
        elif s.source == SOURCE_ENGINE:
            # The exact count from the Totals, put on the backend of this scrape: after a
            # live switch the calls between two scrapes go to the new one.
            done = s.totals.waits - s.totals.probes
            key = (s.backend, SYSCALL.get(s.backend, s.backend))
            self._waits[key] = self._waits.get(key, 0) + max(0, done - self._waits_seen)
            self._waits_seen = max(done, self._waits_seen)
        current = {(d.kind, d.fd, d.since) for d in s.diagnoses}
        for kind, _, _ in current - self._findings_seen:
            self._raised[kind] = self._raised.get(kind, 0) + 1
        self._findings_seen = current

    # ---- the families --------------------------------------------------------------------

    def _server(self, s: Snapshot) -> Iterator:
        info = InfoMetricFamily("muxtop_server", "What is watched: the source, its backend, "
                                "trigger mode and protocol (value 1)")
        # What the source cannot tell (attach: the protocol, a backend without an epoll
        # set) is left out, not labelled "?".
        info.add_metric([], {name: shown for name, shown in (
            ("source", s.source), ("backend", s.backend), ("trigger", s.trigger),
            ("protocol", s.protocol)) if shown not in UNKNOWN})
        yield info
        yield GaugeMetricFamily("muxtop_up", "1 while the engine runs (or the attached "
                                "process lives), 0 once it stopped", value=int(s.running))
        yield GaugeMetricFamily("muxtop_start_time_seconds", "When the source started, "
                                "seconds since the epoch",
                                value=s.wall_time - (s.taken_at - s.started_at))
        yield GaugeMetricFamily("muxtop_registered_fds", "fds registered in the multiplexer",
                                value=s.registered)

    def _wait_families(self, s: Snapshot) -> Iterator:
        calls = CounterMetricFamily("muxtop_wait_calls", "Wait calls the loop made (the "
                                    "CPU probes aside)", labels=["backend", "syscall"])
        for (backend, syscall), n in sorted(self._waits.items()):
            calls.add_metric([backend, syscall], n)
        yield calls
        if s.source == SOURCE_ENGINE:  # only muxtop's own loop makes probes
            yield CounterMetricFamily("muxtop_wait_probes", "Wait calls made only to time "
                                      "the kernel's scan (no timeout)", value=s.totals.probes)
        yield CounterMetricFamily("muxtop_wait_records_missed", "Wait records that left the "
                                  "ring between two scrapes: not in the histograms",
                                  value=self._missed)
        duration = HistogramMetricFamily("muxtop_wait_duration_seconds", "Time spent inside "
                                         "each wait call, of the calls the scrapes saw")
        duration.add_metric([], self._durations.buckets(), self._durations.total)
        yield duration
        ready = HistogramMetricFamily("muxtop_wait_ready_fds", "Ready fds each wait call "
                                      "returned, of the calls the scrapes saw")
        ready.add_metric([], self._ready.buckets(), self._ready.total)
        yield ready
        yield GaugeMetricFamily("muxtop_wait_cpu_seconds", "CPU time one wait call costs the "
                                "thread (median of the probes over the last second)",
                                value=s.rates.wait_cpu)
        yield GaugeMetricFamily("muxtop_wait_scanned_fds", "fds the kernel looks at per wait "
                                "call (select, poll: every registered one; epoll: the ready "
                                "ones), mean over the last second", value=s.rates.scanned_per_wait)

    def _traffic(self, s: Snapshot) -> Iterator:
        """Counted by muxtop's own loop. Attach sees another process's fds, not its reads,
        writes or accepts: those series are left out rather than a 0 that never moves (a
        trace counts the ready fds, so muxtop_events stays then)."""
        t = s.totals
        if s.source != SOURCE_ENGINE:
            if t.waits:  # traced
                yield CounterMetricFamily("muxtop_events", "Ready fds the wait calls "
                                          "returned", value=t.events)
            return
        yield CounterMetricFamily("muxtop_events", "Ready fds the wait calls returned",
                                  value=t.events)
        received = CounterMetricFamily("muxtop_received_bytes", "Bytes read from connections",
                                       value=t.bytes_in)
        sent = CounterMetricFamily("muxtop_sent_bytes", "Bytes written to connections",
                                   value=t.bytes_out)
        yield received
        yield sent
        yield CounterMetricFamily("muxtop_connections_accepted", "Connections accepted",
                                  value=t.accepted)
        refused = CounterMetricFamily(
            "muxtop_connections_refused", "Connections refused: accept() failed (EMFILE, "
            "ENFILE...) or accepted and closed at once (reset already, or the backend refused "
            "the fd)", labels=["reason"])
        yield _by_label(refused, {"accept-error": t.accept_errors, "rejected": t.rejected})
        closed = CounterMetricFamily("muxtop_connections_closed", "Connections closed, and by "
                                     "which protection (none: any other reason)",
                                     labels=["limit"])
        by_limit = t.closed_idle + t.closed_header + t.closed_out_buffer
        yield _by_label(closed, {"none": max(0, t.closed - by_limit),
                                 "idle-timeout": t.closed_idle,
                                 "header-timeout": t.closed_header,
                                 "max-out-buffer": t.closed_out_buffer})

    def _connections(self, s: Snapshot) -> Iterator:
        states = dict.fromkeys(CONN_STATES, 0)
        tcp_states: dict[str, int] = {}
        rx = tx = out = 0
        for view in s.connections:
            if view.kind != KIND_CONN or view.state == CLOSED:
                continue
            states[view.state] = states.get(view.state, 0) + 1
            if view.tcp is not None:
                tcp_states[view.tcp.state] = tcp_states.get(view.tcp.state, 0) + 1
            rx += view.rx_queue or 0
            tx += view.tx_queue or 0
            out += view.out_buffer
        conns = GaugeMetricFamily("muxtop_connections", "Open connections by muxtop's state",
                                  labels=["state"])
        yield _by_label(conns, states)
        tcp = GaugeMetricFamily("muxtop_tcp_connections", "Connections by TCP state, as last "
                                "probed (CLOSE_WAIT: the peer closed, the app has not)",
                                labels=["state"])
        yield _by_label(tcp, dict(sorted(tcp_states.items())))
        queue = GaugeMetricFamily("muxtop_kernel_queue_bytes", "Bytes in the kernel's socket "
                                  "queues, summed over connections as last probed: rx waits to "
                                  "be read, tx to be sent or acknowledged", labels=["direction"])
        yield _by_label(queue, {"rx": rx, "tx": tx})
        yield GaugeMetricFamily("muxtop_out_buffer_bytes", "Bytes waiting in the application's "
                                "out-buffers", value=out)

    def _findings(self, s: Snapshot) -> Iterator:
        current = dict.fromkeys(KINDS, 0)
        for d in s.diagnoses:
            current[d.kind] = current.get(d.kind, 0) + 1
        now = GaugeMetricFamily("muxtop_findings", "Findings standing now, by kind",
                                labels=["kind"])
        yield _by_label(now, current)
        raised = CounterMetricFamily("muxtop_findings_raised", "Findings raised, by kind (one "
                                     "that lapses and comes back counts again)", labels=["kind"])
        yield _by_label(raised, self._raised)

    def _proxies(self, s: Snapshot) -> Iterator:
        """A proxy's: each proxy up or down, and how many open legs each toxic applies to
        (its toxicity drawn per connection). Nothing when muxtop is no proxy."""
        if not s.proxies:
            return
        enabled = GaugeMetricFamily("muxtop_proxy_enabled", "1 while a proxy accepts "
                                    "clients, 0 while it is down (toxiproxy's enabled)",
                                    labels=["proxy"])
        legs = GaugeMetricFamily("muxtop_proxy_toxic_legs", "Open legs a toxic applies to "
                                 "now, by proxy, toxic, type and stream (toxiproxy's words)",
                                 labels=["proxy", "toxic", "type", "stream"])
        for proxy in s.proxies:
            enabled.add_metric([proxy.name], int(proxy.enabled))
            for toxic in proxy.toxics:
                legs.add_metric([proxy.name, toxic.name, toxic.type, toxic.stream],
                                toxic.applied)
        yield enabled
        yield legs

    def _process(self, s: Snapshot) -> Iterator:
        p = s.process
        if p is None:
            return
        yield GaugeMetricFamily("muxtop_process_open_fds", "fds the process has open",
                                value=p.num_fds)
        yield GaugeMetricFamily("muxtop_process_max_fds", "The process's fd limit "
                                "(RLIMIT_NOFILE)", value=p.fd_limit)
        yield GaugeMetricFamily("muxtop_process_resident_memory_bytes", "Resident memory",
                                value=p.rss)
        yield GaugeMetricFamily("muxtop_process_cpu_ratio", "CPU the process uses, in cores "
                                "(1: one core busy)", value=p.cpu_percent / 100)
        yield GaugeMetricFamily("muxtop_process_threads", "Threads", value=p.threads)

    def _recording(self) -> Iterator:
        if self.recording is None:
            return
        size = self.recording()
        yield GaugeMetricFamily("muxtop_recording_active", "1 while a recording runs",
                                value=int(size is not None))
        yield GaugeMetricFamily("muxtop_recording_bytes", "Size of the running recording's "
                                "file (0 when none runs)", value=size or 0)

    def _flood(self) -> Iterator:
        if self.floods is None:
            return
        running = active = 0
        for flood in list(self.floods()):
            progress = flood.summary or flood.progress or {}
            last = self._flood_last.setdefault(flood.pid, dict.fromkeys(FLOOD_COUNTERS, 0))
            for name, key in FLOOD_COUNTERS.items():
                value = _flood_count(progress, key)
                self._flood_totals[name] += max(0, value - last[name])
                last[name] = max(value, last[name])
            if flood.running:
                running += 1
                active += int(progress.get("active") or 0)
        yield GaugeMetricFamily("muxtop_flood_running", "Floods the dashboard launched that "
                                "still run", value=running)
        yield GaugeMetricFamily("muxtop_flood_connections", "Connections the running floods "
                                "hold open", value=active)
        for name, value in self._flood_totals.items():
            yield CounterMetricFamily(f"muxtop_flood_{name}", FLOOD_HELP[name], value=value)


# The floods' progress lines: what each counter of ours sums, over every flood launched.
FLOOD_COUNTERS = {"connects": "connected", "round_trips": "messages_echoed",
                  "sent_bytes": "bytes_sent", "received_bytes": "bytes_received",
                  "mismatches": "mismatches", "failures": "failed"}
FLOOD_HELP = {
    "connects": "Connections the floods made", "round_trips": "Messages echoed back whole",
    "sent_bytes": "Bytes the floods sent", "received_bytes": "Bytes the floods received",
    "mismatches": "Echoes with a wrong byte", "failures": "Flood connections that failed",
}


class TargetsCollector(Collector):
    """The families of every process `attach --name` or `attach PID PID ...` watches, each
    series labelled with its pid and process name; a process that exited has none.

    `latest()` gives the last read: (key, Snapshot) pairs, the key telling apart two processes
    that had the same pid, or None before the first read. `refused()` counts the processes of
    the name that cannot be read. Each process's counts run in a SnapshotCollector of its own,
    made when it first shows and dropped when it is gone."""

    def __init__(self, latest: Callable[[], Iterable[tuple[int, Snapshot]] | None],
                 refused: Callable[[], int] = lambda: 0) -> None:
        self.latest = latest
        self.refused = refused
        self._lock = threading.Lock()
        self._collectors: dict[int, SnapshotCollector] = {}

    def describe(self) -> list:
        return []

    def collect(self) -> Iterator:
        read = self.latest()
        if read is None:
            return
        live = [(key, s) for key, s in read if s.running]
        merged: dict[str, Any] = {}  # one family of each name, with every target's samples
        with self._lock:
            self._collectors = {key: self._collectors.get(key) or SnapshotCollector(_none)
                                for key, _ in live}
            for key, snapshot in live:
                for family in self._collectors[key].families(snapshot):
                    kept = merged.setdefault(family.name, family)
                    if kept is not family:
                        kept.samples.extend(family.samples)
        yield GaugeMetricFamily("muxtop_attach_targets", "Processes watched now",
                                value=len(live))
        yield GaugeMetricFamily("muxtop_attach_targets_refused", "Processes of the name "
                                "muxtop cannot read (another user's, without root)",
                                value=self.refused())
        yield from merged.values()


def _none() -> None:
    return None


def _by_label(family, counts: dict[str, float]):
    """`family` (of one label) with a sample for each label value in `counts`, in order."""
    for value, n in counts.items():
        family.add_metric([value], n)
    return family


def _flood_count(progress: dict, key: str) -> int:
    value = progress.get(key) or 0
    if isinstance(value, dict):  # failed: reason -> count
        value = sum(v for v in value.values() if isinstance(v, int))
    return value if isinstance(value, int) else 0


def _target_labels(s: Snapshot) -> dict[str, str]:
    """attach: every series names the process it is about (pid and name)."""
    if s.target is None:
        return {}
    name = s.process.name if s.process is not None else ""
    return {"pid": str(s.target.pid), "process": name}


def _with_labels(family, labels: dict[str, str]) -> None:
    for sample in family.samples:
        sample.labels.update(labels)
