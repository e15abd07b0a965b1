"""The plain form of Snapshots and WaitRecords: dicts and lists of str, int, float, bool and
None, which JSON, a recording or a test can hold, and which convert back losslessly.

Version 1 (PLAIN_VERSION). A Snapshot becomes a dict keyed by its field names plus
``"v": 1``; every NamedTuple inside it (ConnView, WaitRecord, TcpInfo, Totals, Rates,
ProcessStats, Notice, Diagnosis, ProcessInfo, EpollSet, Watch, SocketInfo, WaitCall,
TraceInfo, FdIo, StepInfo, FdStep, RingView) becomes the list of its fields in declaration
order
(compact: a busy Snapshot holds thousands of ConnViews),
tuples become lists, `lab` a sorted list, and a Diagnosis's evidence a list of
``[key, value]`` pairs. Readers reject a newer version with PlainFormError rather than guess.
Fields added later get defaults, so an older plain form still reads. A proxy's
`proxies` are lists too: ProxyView's fields, its toxics a list of ToxicView rows whose
attributes are ``[name, value]`` pairs.
"""

from __future__ import annotations

from muxtop import snapshot as snap
from muxtop.snapshot import ConnView, Diagnosis, Snapshot, StepInfo, WaitCall, WaitRecord

PLAIN_VERSION = 1


class PlainFormError(ValueError):
    """The data is not a plain Snapshot this muxtop can read; the message says why."""


# ---- to plain ---------------------------------------------------------------------------

def wait_to_plain(w: WaitRecord) -> list:
    return [w.seq, w.start, w.timeout, w.duration, w.registered, list(w.ready), w.count, w.cpu]


def view_to_plain(v: ConnView) -> list:
    row = list(v)
    row[18] = None if v.tcp is None else list(v.tcp)
    row[20] = [list(pair) for pair in v.history]
    row[22] = list(v.watched_by)
    return row


def diagnosis_to_plain(d: Diagnosis) -> list:
    return [d.kind, d.fd, d.explanation, [[k, _plain_value(v)] for k, v in d.evidence], d.since]


def _plain_value(value: object) -> object:
    return list(value) if isinstance(value, tuple) else value


def to_plain(s: Snapshot) -> dict:
    return {
        "v": PLAIN_VERSION, "source": s.source, "taken_at": s.taken_at,
        "wall_time": s.wall_time, "started_at": s.started_at, "backend": s.backend,
        "trigger": s.trigger, "protocol": s.protocol, "listen": s.listen,
        "connections": [view_to_plain(v) for v in s.connections],
        "waits": [wait_to_plain(w) for w in s.waits],
        "totals": list(s.totals), "rates": list(s.rates),
        "process": None if s.process is None else list(s.process),
        "registered": s.registered, "open_connections": s.open_connections,
        "notices": [list(n) for n in s.notices],
        "diagnoses": [diagnosis_to_plain(d) for d in s.diagnoses],
        "proxies": [proxy_to_plain(p) for p in s.proxies],
        "lab": sorted(s.lab), "refused": s.refused, "running": s.running, "error": s.error,
        "target": None if s.target is None else list(s.target),
        "epoll": [[e.fd, [list(w) for w in e.watches]] for e in s.epoll],
        "sockets": [list(k) for k in s.sockets],
        "wait_calls": [wait_call_to_plain(c) for c in s.wait_calls],
        "trace": None if s.trace is None else list(s.trace),
        "fd_io": [list(io) for io in s.fd_io],
        "step": None if s.step is None else step_to_plain(s.step),
        "fd_order": s.fd_order,
        "rings": [list(r) for r in s.rings],
    }


def proxy_to_plain(p: snap.ProxyView) -> list:
    return [p.name, p.listen, p.upstream, p.enabled,
            [[t.name, t.type, t.stream, t.toxicity, [list(a) for a in t.attributes],
              list(t.legs), t.applied] for t in p.toxics]]


def step_to_plain(step: StepInfo) -> list:
    return [step.steps, step.seq, step.count,
            [[*f[:11], list(f.accepted), *f[12:]] for f in step.fds]]


def wait_call_to_plain(c: WaitCall) -> list:
    return [c.seq, c.tid, c.syscall, c.epfd, list(c.unmapped), c.error]


# ---- from plain -------------------------------------------------------------------------

def wait_from_plain(row: list) -> WaitRecord:
    seq, start, timeout, duration, registered, ready, count, *cpu = row  # cpu: added later
    return snap.wait_record((seq, start, timeout, duration, registered, tuple(ready), count,
                             cpu[0] if cpu else None))


def wait_call_from_plain(row: list) -> WaitCall:
    seq, tid, syscall, epfd, unmapped, error = row
    return WaitCall(seq, tid, syscall, epfd, tuple(unmapped), error)


def view_from_plain(row: list) -> ConnView:
    row = list(row)
    row[18] = None if row[18] is None else snap.TcpInfo(*row[18])
    row[20] = tuple(tuple(pair) for pair in row[20])
    row[22] = tuple(row[22])
    return ConnView(*row)


def diagnosis_from_plain(row: list) -> Diagnosis:
    kind, fd, explanation, evidence, since = row
    return Diagnosis(kind, fd, explanation,
                     tuple((k, tuple(v) if isinstance(v, list) else v) for k, v in evidence),
                     since)


def proxy_from_plain(row: list) -> snap.ProxyView:
    name, listen, upstream, enabled, toxics = row
    return snap.ProxyView(name, listen, upstream, enabled, tuple(map(toxic_from_plain, toxics)))


def toxic_from_plain(row: list) -> snap.ToxicView:
    name, kind, stream, toxicity, attributes, *rest = row  # legs, applied: defaults
    toxic = snap.ToxicView(name, kind, stream, toxicity, tuple(map(tuple, attributes)), *rest)
    return toxic._replace(legs=tuple(toxic.legs))


def step_from_plain(row: list) -> StepInfo:
    steps, seq, count, fds = row
    return StepInfo(steps, seq, count,
                    tuple(snap.FdStep(*f[:11], tuple(f[11]), *f[12:]) for f in fds))


def check_version(doc: dict) -> None:
    version = doc.get("v") if isinstance(doc, dict) else None
    if not isinstance(version, int):
        raise PlainFormError("not a muxtop snapshot (no format version)")
    if version > PLAIN_VERSION:
        raise PlainFormError(f"snapshot format {version} is newer than this muxtop reads "
                             f"({PLAIN_VERSION}): upgrade muxtop")


def _target(row: list) -> snap.ProcessInfo:
    target = snap.ProcessInfo(*row)
    return target._replace(threads=tuple(target.threads))


def from_plain(doc: dict) -> Snapshot:
    """The Snapshot of a plain form; PlainFormError if it is not one."""
    check_version(doc)
    try:
        return Snapshot(
            source=doc["source"], taken_at=doc["taken_at"], wall_time=doc["wall_time"],
            started_at=doc["started_at"], backend=doc["backend"], trigger=doc["trigger"],
            protocol=doc["protocol"], listen=doc["listen"],
            connections=tuple(map(view_from_plain, doc["connections"])),
            waits=tuple(map(wait_from_plain, doc["waits"])),
            totals=snap.Totals(*doc["totals"]), rates=snap.Rates(*doc["rates"]),
            process=None if doc["process"] is None else snap.ProcessStats(*doc["process"]),
            registered=doc["registered"], open_connections=doc["open_connections"],
            notices=tuple(snap.Notice(*n) for n in doc.get("notices", ())),
            diagnoses=tuple(map(diagnosis_from_plain, doc.get("diagnoses", ()))),
            proxies=tuple(map(proxy_from_plain, doc.get("proxies", ()))),
            lab=frozenset(doc.get("lab", ())), refused=doc.get("refused"),
            running=doc.get("running", True), error=doc.get("error"),
            target=None if doc.get("target") is None else _target(doc["target"]),
            epoll=tuple(snap.EpollSet(fd, tuple(snap.Watch(*w) for w in watches))
                        for fd, watches in doc.get("epoll", ())),
            sockets=tuple(snap.SocketInfo(*k) for k in doc.get("sockets", ())),
            wait_calls=tuple(map(wait_call_from_plain, doc.get("wait_calls", ()))),
            trace=None if doc.get("trace") is None else snap.TraceInfo(*doc["trace"]),
            fd_io=tuple(snap.FdIo(*io) for io in doc.get("fd_io", ())),
            step=None if doc.get("step") is None else step_from_plain(doc["step"]),
            fd_order=doc.get("fd_order") is True,
            rings=tuple(snap.RingView(*r) for r in doc.get("rings", ())))
    except (KeyError, IndexError, TypeError, ValueError, AttributeError) as exc:
        raise PlainFormError(f"not a muxtop snapshot: {exc!r}") from None
