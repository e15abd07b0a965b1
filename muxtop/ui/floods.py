"""The floods the dashboard launches (`f`, `F`): child processes, and the F flag on the
connections they hold."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import replace

from muxtop.flood.process import FloodProcess, FloodSettings
from muxtop.snapshot import FLAG_FLOOD, KIND_CONN, Snapshot

PORTS_EVERY = 1.0  # seconds between reads of the floods' local ports (psutil reads /proc)
FINISHED_KEPT = 4  # finished floods still listed in the panel
FINISHED_FOR = 120.0  # seconds a finished flood stays listed


class Floods:
    """The `muxtop flood` children the dashboard started, and the F flag on their connections.

    Each FloodProcess reads its child's output on its own threads; the set of local ports
    the floods hold is refreshed on one more thread, at most once a second, because reading
    it walks /proc. The UI thread only reads attributes that are replaced whole, never
    waits for a child: starting one is a fork and exec, stopping one happens on a thread."""

    def __init__(self, launch: Callable[[FloodSettings], FloodProcess] = FloodProcess) -> None:
        self._launch = launch
        self.floods: list[FloodProcess] = []  # oldest first
        self.numbers: dict[int, int] = {}  # pid -> #n shown in the panel
        self.ended_at: dict[int, float] = {}  # pid -> monotonic time it was seen ended
        self.ports: frozenset[int] = frozenset()
        self._count = 0
        self._wake = threading.Event()
        self._closed = False
        self._ports_thread: threading.Thread | None = None
        self._raw: Snapshot | None = None  # the last Snapshot marked, and its marked copy
        self._marked: Snapshot | None = None
        self._marked_ports: frozenset[int] = frozenset()
        self._port_of: dict[str, int | None] = {}  # peer text -> its port

    # ---- launching and stopping ----------------------------------------------------------

    def launch(self, settings: FloodSettings) -> FloodProcess:
        flood = self._launch(settings)
        self._count += 1
        self.numbers[flood.pid] = self._count
        self.floods.append(flood)
        if self._ports_thread is None:
            self._ports_thread = threading.Thread(target=self._read_ports, daemon=True,
                                                  name="flood-ports")
            self._ports_thread.start()
        self._wake.set()  # read the new flood's ports soon
        return flood

    @property
    def running(self) -> list[FloodProcess]:
        return [f for f in self.floods if f.running]

    def stop_all(self, wait: bool = False) -> int:
        """SIGTERM every running flood (each on a thread: a flood takes a moment to print
        its summary). `wait`: return only once they have exited (quitting)."""
        running = self.running
        threads = [threading.Thread(target=f.stop, daemon=True, name=f"flood-{f.pid}-stop")
                   for f in running]
        for thread in threads:
            thread.start()
        if wait:
            for thread in threads:
                thread.join(10)
        return len(running)

    def stop(self, flood: FloodProcess) -> None:
        """SIGTERM one flood, on a thread (it takes a moment to print its summary)."""
        threading.Thread(target=flood.stop, daemon=True, name=f"flood-{flood.pid}-stop").start()

    def close(self) -> None:
        """Stop every flood and wait for them (no orphan processes), and the port reader."""
        self._closed = True
        self._wake.set()
        self.stop_all(wait=True)

    # ---- what the panel lists ------------------------------------------------------------

    def listed(self, now: float | None = None) -> list[FloodProcess]:
        """Running floods and the few that finished lately, newest first."""
        now = time.monotonic() if now is None else now
        shown: list[FloodProcess] = []
        finished = 0
        for flood in reversed(self.floods):
            if flood.running:
                shown.append(flood)
                continue
            ended = self.ended_at.setdefault(flood.pid, now)
            if now - ended < FINISHED_FOR and finished < FINISHED_KEPT:
                finished += 1
                shown.append(flood)
        keep = {f.pid for f in shown}
        self.floods = [f for f in self.floods if f.pid in keep]  # forget the rest
        return shown

    # ---- the F flag ----------------------------------------------------------------------

    def _read_ports(self) -> None:
        while not self._closed:
            ports: set[int] = set()
            for flood in list(self.floods):
                if flood.running:
                    ports |= flood.local_ports()
            self.ports = frozenset(ports)
            self._wake.wait(PORTS_EVERY)
            self._wake.clear()
            time.sleep(0.05)  # a burst of wakes still reads /proc at most ~20 times a second

    def mark(self, snapshot: Snapshot) -> Snapshot:
        """The Snapshot with "F" added to the flags of connections whose peer port a flood
        holds. The same Snapshot in gives the same object out (the app compares identity)."""
        ports = self.ports
        if not ports:
            return snapshot
        if snapshot is self._raw and ports is self._marked_ports:
            return self._marked  # type: ignore[return-value]
        port_of = self._port_of
        if len(port_of) > 4 * len(snapshot.connections) + 1024:
            port_of.clear()
        views = []
        changed = False
        for view in snapshot.connections:
            if view.kind == KIND_CONN and FLAG_FLOOD not in view.flags:
                port = port_of.get(view.peer, -1)
                if port == -1:
                    port = port_of[view.peer] = _port(view.peer)
                if port in ports:
                    view = view._replace(flags=view.flags + FLAG_FLOOD)
                    changed = True
            views.append(view)
        marked = replace(snapshot, connections=tuple(views)) if changed else snapshot
        self._raw, self._marked, self._marked_ports = snapshot, marked, ports
        return marked


def _port(peer: str) -> int | None:
    """The port of "host:port" or "[v6]:port"; None for anything else."""
    head, sep, tail = peer.rpartition(":")
    if not sep or not head or not tail.isdigit():
        return None
    return int(tail)
