"""What a recording holds, in a few lines or one JSON document (`muxtop replay FILE
--summary`): how long, how many wait calls and connections, the switches, findings by kind,
and whether the file is whole."""

from __future__ import annotations

import shlex
import time
from collections import Counter

from muxtop.printable import printable
from muxtop.record.reader import FrameError, Recording
from muxtop.snapshot import Snapshot


def _nearest(rec: Recording, indexes) -> Snapshot | None:
    for i in indexes:
        try:
            return rec.snapshot(i, connections=False)
        except FrameError:
            continue
    return None


def summarize(rec: Recording) -> dict:
    """The summary document; checks every payload first, so `problems` is complete."""
    rec.verify()
    events = rec.events()
    count = len(rec.snapshots)
    first = _nearest(rec, range(count))
    last = _nearest(rec, range(count - 1, -1, -1))
    cids = {row[0] for _, e in events if e.get("type") == "connections"
            for row in e.get("new", ()) if isinstance(row, list) and row}
    findings = Counter(str(e["finding"][0]) for _, e in events
                       if e.get("type") == "finding" and isinstance(e.get("finding"), list)
                       and e["finding"])
    notices = Counter(str(e.get("level")) for _, e in events if e.get("type") == "notice")
    commands = [e for _, e in events if e.get("type") == "command"]
    gaps = [e for _, e in events if e.get("type") == "gap"]
    header = rec.header
    started = header.get("started")
    command = header.get("command")
    end = rec.end or {}
    return {
        "file": rec.path, "format": header.get("format"), "muxtop": header.get("muxtop"),
        "host": header.get("host"), "kernel": header.get("kernel"),
        "command": command if isinstance(command, list) else None, "source": rec.kind,
        "started": _when(started) if isinstance(started, int | float) else None,
        "duration_s": round(rec.duration, 3), "snapshots": count,
        "published": end.get("published"),  # by the source while it was recorded, if known
        "wait_calls": sum(f.b - f.a + 1 for f in rec.runs),
        "waits_before_start": _before_start(rec),
        "first_seq": rec.runs[0].a if rec.runs else None,
        "last_seq": rec.runs[-1].b if rec.runs else None,
        "gaps": len(gaps), "lost_waits": sum(_count(g.get("lost")) for g in gaps),
        "connections": len(cids),
        "switches": [{"t": round(t - rec.t0, 3), "from": e.get("from"), "to": e.get("to")}
                     for t, e in events if e.get("type") == "switch"],
        "findings": dict(findings.most_common()),
        "notices": dict(notices.most_common()),
        "commands": len(commands),
        "refused": sum(1 for c in commands if not c.get("ok")),
        "totals": last.totals._asdict() if last is not None else None,
        "totals_at_start": first.totals._asdict() if first is not None else None,
        "server": None if last is None else {
            "protocol": last.protocol, "listen": last.listen, "backend": last.backend,
            "trigger": last.trigger, "open_connections": last.open_connections,
            "running": last.running, "error": last.error},
        "complete": rec.end is not None, "ended": end.get("reason"),
        "problems": list(rec.problems),
    }


def _before_start(rec: Recording) -> int:
    """Wait calls recorded before the one the first Snapshot was taken after: a replay starts
    at that Snapshot and cannot reach them. muxtop before 2026-12-07 saved the ring's backlog
    (up to 4,096 wait calls) with the first Snapshot; it records from that Snapshot on now."""
    if not rec.snapshots or rec.snapshots[0].b < 0:
        return 0
    start = rec.snapshots[0].b
    return sum(max(0, min(f.b, start - 1) - f.a + 1) for f in rec.runs)


def _count(value: object) -> int:
    """A count from the file, or 0 if it is not one."""
    return value if isinstance(value, int) and value >= 0 else 0


def _when(wall: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(wall))


def text(doc: dict) -> str:
    """The summary for people. What came from the file (its host, its command line, its
    problems) may hold anything: each line is escaped to be printable."""
    lines = [f"muxtop recording {printable(doc['file'])}"]

    def row(name: str, value: str) -> None:
        lines.append(f"  {name:<12} {printable(value)}")

    row("made by", f"muxtop {doc['muxtop']} (format {doc['format']}) on {doc['host']}, "
        f"{doc['kernel']}" + (f", started {doc['started']}" if doc["started"] else ""))
    if doc["command"]:
        row("command", shlex.join(map(str, doc["command"])))
    server = doc["server"]
    if server is not None and doc["source"] == "engine":
        row("server", f"{server['protocol']} on {server['listen']}, "
            f"{server['backend']}/{server['trigger']} at the end")
    elif server is not None:
        row("source", str(doc["source"]))
    published = doc["published"]
    row("duration", f"{doc['duration_s']:,.3f} s, {doc['snapshots']:,} Snapshots"
        + (f" (of {published:,} published)" if published is not None else ""))
    if doc["first_seq"] is not None:
        lost = (f"; {doc['gaps']:,} gaps, {doc['lost_waits']:,} wait calls not recorded"
                if doc["gaps"] else ", none missing")
        before = doc["waits_before_start"]
        start = (f"; {before:,} of them from before its start (an older muxtop's backlog "
                 "of the ring), which the replay cannot reach" if before
                 else "; from the recording's start on")
        row("wait calls", f"{doc['wait_calls']:,} (seq {doc['first_seq']:,}–"
            f"{doc['last_seq']:,}){lost}{start}")
    else:
        row("wait calls", "none recorded" + (" (muxtop attach sees no wait calls)"
                                             if doc["source"] == "attach" else ""))
    totals = doc["totals"] or {}
    row("connections", f"{doc['connections']:,} seen"
        + (f"; {server['open_connections']:,} open at the end" if server else ""))
    if totals and doc["source"] == "engine":
        row("bytes", f"{totals['bytes_in']:,} in, {totals['bytes_out']:,} out (totals at "
            "the end)")
    switches = doc["switches"]
    row("switches", ", ".join(f"{s['from']} → {s['to']} at +{s['t']:.2f} s" for s in switches)
        if switches else "none")
    findings = doc["findings"]
    row("findings", ", ".join(f"{kind} {n}" for kind, n in findings.items()) or "none")
    notices = doc["notices"]
    row("notices", ", ".join(f"{n} {level}" for level, n in notices.items()) or "none")
    row("commands", f"{doc['commands']:,}" + (f" ({doc['refused']:,} refused)"
                                                  if doc["refused"] else ""))
    row("ended", doc["ended"] or "without an end record")
    lines += [f"  problem      {printable(p)}" for p in doc["problems"]]
    return "\n".join(lines) + "\n"
