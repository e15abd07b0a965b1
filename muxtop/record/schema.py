"""What each frame of a recording may hold, checked as the reader turns its bytes into objects.

A recording is a file from anywhere: its CRCs say the bytes are the ones written, not that a
muxtop wrote them. So every payload is inflated with a bound, parsed with a depth guard, and its
plain form checked against the types muxtop's own classes declare (Snapshot and its
NamedTuples; the TypedDicts below for the JSON frames): the right JSON type in each field,
every number finite and of a size muxtop makes. What fails is a corrupt frame (SchemaError),
and nothing past the reader needs guards of its own.

How a plain form maps a type (muxtop.plain): a NamedTuple is the list of its fields (a row
shorter by fields that have defaults still reads: an older plain form), a tuple or frozenset a
list, the Snapshot and the TypedDicts dicts by key (unknown keys are let through, bounded), and
`object` any JSON value at all, nested at most MAX_DEPTH deep.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
import zlib
from collections.abc import Callable
from typing import Any, NamedTuple, TypedDict

from muxtop.proxy.registry import MAX_ADDRESS, MAX_PROXIES, MAX_TOXICS
from muxtop.proxy.toxics import MAX_ATTRIBUTE, MAX_NAME
from muxtop.snapshot import (
    EVIDENCE_FDS,
    LEGS_KEPT,
    TOXIC_STREAMS,
    Diagnosis,
    ProxyView,
    Snapshot,
    ToxicView,
)

# The most a payload may inflate to (a SNAPSHOT's connections at 100,000 fds are ~30 MB of
# JSON; a WAITS frame's 4,096 records at most ~5 MB). A zlib bomb stops here, not at 1 GB.
MAX_INFLATED = 64 << 20
INFLATE_STEP = 1 << 20
# JSON values in one payload: a Snapshot's row has ~35, so this is ~57,000 connections, far
# past the fd limits muxtop runs at; it bounds what parsing a crafted payload can make.
MAX_VALUES = 2_000_000
MAX_DEPTH = 32  # nesting of a free-form value (a finding's evidence, a command's arguments)
MAX_INT = 1 << 63  # what an i64 holds: fds, seqs, counts, byte totals
# No time, rate or size muxtop makes comes near 2**53, and sums and products of a few such
# stay finite: past it a number is crafted, and would overflow what shows it.
MAX_FLOAT = float(1 << 53)


class SchemaError(ValueError):
    """A frame's payload is not what its kind holds; the message says what is wrong."""


# ---- bytes to JSON ------------------------------------------------------------------------

def inflate(data: bytes) -> bytearray:
    """One whole zlib stream, inflated to at most MAX_INFLATED bytes, a step at a time: a
    bomb costs about the cap in memory, never twice it, and stops there."""
    stream = zlib.decompressobj()
    raw = bytearray()
    tail = data
    try:
        while not stream.eof:
            out = stream.decompress(tail, INFLATE_STEP)
            if not out and len(stream.unconsumed_tail) == len(tail):
                break  # no input left, nothing more to come: cut short
            tail = stream.unconsumed_tail
            raw += out
            if len(raw) > MAX_INFLATED:
                raise SchemaError(f"inflates past {MAX_INFLATED >> 20} MiB")
    except zlib.error as exc:
        raise SchemaError(f"does not inflate ({exc})") from None
    if not stream.eof:
        raise SchemaError("its zlib stream is cut short")
    return raw


def load_json(data: bytes | bytearray) -> object:
    """The JSON value of `data`. The C parser guards its own nesting: past Python's recursion
    limit it raises RecursionError, which here is a bad frame like any other."""
    if len(data) > MAX_INFLATED:
        raise SchemaError(f"is larger than {MAX_INFLATED >> 20} MiB")
    # Parsed, three bytes of JSON (`[],`) are a 64-byte list: count the values (an upper
    # bound: a comma in a string counts too) before making them. C-level passes, ~20 ms for
    # 64 MiB, and only for payloads big enough to matter.
    if len(data) > MAX_VALUES and sum(map(data.count, (b",", b"[", b"{"))) > MAX_VALUES:
        raise SchemaError(f"holds over {MAX_VALUES:,} values")
    try:
        return json.loads(data)
    except RecursionError:
        raise SchemaError("is nested too deep") from None
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError
        raise SchemaError(f"is not JSON ({exc})") from None


# ---- the JSON frames ----------------------------------------------------------------------

class RecordingHeader(TypedDict, total=False):
    format: int
    plain: int
    muxtop: str
    source: str
    host: str
    kernel: str
    python: str
    command: list[str]
    started: float  # time.time()
    monotonic: float
    pid: int


class EndRecord(TypedDict, total=False):
    reason: str
    snapshots: int
    waits: int
    gaps: int
    lost: int
    published: int


class Gap(TypedDict, total=False):
    lost: int


class NewConnection(NamedTuple):  # a row of a "connections" event
    cid: int
    fd: int
    peer: str
    opened_at: float


# An EVENT frame, by its "type" (encoder.RecordingEncoder._changes, command_event); "from" is
# a keyword, hence the functional form.
EVENTS: dict[str, type] = {
    "notice": TypedDict("Notice", {"seq": int, "level": str, "text": str}, total=False),
    "finding": TypedDict("Finding", {"finding": Diagnosis}, total=False),
    "finding-end": TypedDict("FindingEnd", {"kind": str, "fd": int | None}, total=False),
    "switch": TypedDict("Switch", {"from": str, "to": str}, total=False),
    "lab": TypedDict("Lab", {"on": list[str]}, total=False),
    "connections": TypedDict("Connections", {"new": list[NewConnection]}, total=False),
    "stopped": TypedDict("Stopped", {"error": str | None}, total=False),
    "command": TypedDict("Command", {"command": str, "args": dict[str, object], "ok": bool,
                                     "message": str, "sent": float}, total=False),
}


# ---- checkers, made once per type from its annotations ------------------------------------

Check = Callable[[object], None]
_SCALARS: dict[object, frozenset] = {
    int: frozenset((int,)), float: frozenset((int, float)), str: frozenset((str,)),
    bool: frozenset((bool,)), type(None): frozenset((type(None),)),
}
_checks: dict[object, Check] = {}


def checker(tp: object) -> Check:
    """The check of a plain value of type `tp`: returns, or raises SchemaError."""
    found = _checks.get(tp)
    if found is None:
        found = _checks[tp] = _make(tp)
    return found


def _name(tp: object) -> str:
    return getattr(tp, "__name__", None) or str(tp)


def _bad(value: object, what: str) -> SchemaError:
    shown = type(value).__name__ if not isinstance(value, int | float) else repr(value)
    return SchemaError(f"{what}, not {shown}")


def _scalars(tp: object) -> frozenset | None:
    """The Python types a JSON scalar of `tp` may have (None: `tp` is not scalar)."""
    if tp in _SCALARS:
        return _SCALARS[tp]
    if typing.get_origin(tp) in (types.UnionType, typing.Union):
        parts = [_scalars(arg) for arg in typing.get_args(tp)]
        if all(p is not None for p in parts):
            return frozenset().union(*parts)
    return None


def _number_ok(value: object) -> bool:
    if type(value) is int:
        return -MAX_INT <= value < MAX_INT
    if type(value) is float:
        return -MAX_FLOAT <= value <= MAX_FLOAT  # NaN compares false
    return True


def _make(tp: object) -> Check:
    kinds = _scalars(tp)
    if kinds is not None:
        def check_scalar(value: object) -> None:
            if type(value) not in kinds or not _number_ok(value):
                raise _bad(value, f"expected {_name(tp)}")
        return check_scalar
    if tp is object or tp is Any:
        return check_any
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (types.UnionType, typing.Union):  # X | None, X compound
        return _union(tp, args)
    if origin in (tuple, list, frozenset) and (len(args) == 1 or args[1:] == (Ellipsis,)):
        return _sequence(args[0])
    if origin is tuple:
        return _row(_name(tp), list(args), len(args))
    if origin is dict:
        return _mapping({}, default=args[1], name=_name(tp))
    if isinstance(tp, type) and issubclass(tp, tuple) and hasattr(tp, "_fields"):
        hints = typing.get_type_hints(tp)
        return _row(tp.__name__, [hints[f] for f in tp._fields],
                    len(tp._fields) - len(tp._field_defaults), tp._fields)
    if typing.is_typeddict(tp):
        return _mapping(typing.get_type_hints(tp), required=tp.__required_keys__,
                        name=tp.__name__)
    if dataclasses.is_dataclass(tp):
        hints = typing.get_type_hints(tp)
        fields = dataclasses.fields(tp)
        required = {f.name for f in fields if f.default is dataclasses.MISSING
                    and f.default_factory is dataclasses.MISSING}
        return _mapping({f.name: hints[f.name] for f in fields}, required=required,
                        name=tp.__name__)
    raise TypeError(f"no plain form for {tp!r}")  # a programming error, at import


def _union(tp: object, args: tuple) -> Check:
    """`X | None` with X compound (a TcpInfo, a StepInfo): None is let through first."""
    scalar = frozenset().union(*(_scalars(arg) or () for arg in args))
    checks = [checker(arg) for arg in args if _scalars(arg) is None]

    def check_union(value: object) -> None:
        if type(value) in scalar and _number_ok(value):
            return
        for check in checks:
            try:
                check(value)
                return
            except SchemaError:
                continue
        raise _bad(value, f"expected {tp}")
    return check_union


def _sequence(item: object) -> Check:
    kinds = _scalars(item)
    check_item = checker(item)

    def check_sequence(value: object) -> None:
        if type(value) is not list:
            raise _bad(value, f"expected a list of {_name(item)}")
        if kinds is not None:  # the common case (a ready list, the lab): no call per item
            if all(type(v) in kinds and _number_ok(v) for v in value):
                return
        for v in value:
            check_item(v)  # raises on the first bad one
    return check_sequence


def _row(name: str, hints: list, least: int, fields: tuple[str, ...] = ()) -> Check:
    """A NamedTuple (or a fixed tuple) as a list: each field checked by its own type. The
    scalar fields are checked inline: a Snapshot may hold 100,000 rows."""
    plan = [(_scalars(h) or frozenset(), checker(h), f"{name}.{fields[i] if fields else i}")
            for i, h in enumerate(hints)]
    most = len(hints)

    def check_row(value: object) -> None:
        if type(value) is not list or not least <= len(value) <= most:
            raise _bad(value, f"expected a {name} of {least}–{most} fields")
        for v, (kinds, check, label) in zip(value, plan):
            k = type(v)
            if k is float:
                if k in kinds and -MAX_FLOAT <= v <= MAX_FLOAT:
                    continue
            elif k is int:
                if k in kinds and -MAX_INT <= v < MAX_INT:
                    continue
            elif k in kinds:
                continue
            try:
                check(v)
            except SchemaError as exc:
                raise SchemaError(f"{label}: {exc}") from None
    return check_row


def _mapping(hints: dict, required: frozenset | set = frozenset(), default: object = object,
             name: str = "") -> Check:
    """A dict by key: known keys by their type, any other by `default`."""
    checks = {key: checker(h) for key, h in hints.items()}
    other = checker(default)

    def check_mapping(value: object) -> None:
        if type(value) is not dict:
            raise _bad(value, f"expected a {name} (a JSON object)")
        missing = required - value.keys()
        if missing:
            raise SchemaError(f"{name} has no {', '.join(sorted(missing))}")
        for key, v in value.items():
            try:
                checks.get(key, other)(v)
            except SchemaError as exc:
                raise SchemaError(f"{name}.{key}: {exc}") from None
    return check_mapping


def check_any(value: object) -> None:
    """Any JSON value, nested at most MAX_DEPTH deep, its numbers as a typed field's (walked
    with a stack, not recursion: the depth is what is being checked)."""
    stack = [(value, 0)]
    while stack:
        v, depth = stack.pop()
        if type(v) is list or type(v) is dict:
            if depth >= MAX_DEPTH:
                raise SchemaError(f"a value nested over {MAX_DEPTH} deep")
            stack.extend((item, depth + 1) for item in (v.values() if type(v) is dict else v))
        elif not _number_ok(v):
            raise _bad(v, "a number out of range")


# ---- what the reader calls ------------------------------------------------------------------

_diagnosis_row = _make(Diagnosis)
_fds = checker(tuple[int, ...])


def _check_diagnosis(value: object) -> None:
    """A Diagnosis, whose evidence is free-form but for the fds a process-wide finding names
    (Diagnosis.named_fds iterates them): the one value its annotation cannot type."""
    _diagnosis_row(value)
    for key, evidence in value[3]:  # type: ignore[index]  # the row check saw the shape
        if key == EVIDENCE_FDS:
            try:
                _fds(evidence)
            except SchemaError as exc:
                raise SchemaError(f"Diagnosis.evidence.{EVIDENCE_FDS}: {exc}") from None


_checks[Diagnosis] = _check_diagnosis  # before any checker that holds one is made


# ---- a proxy's toxics: names and addresses are shown, so bounded and printable; the
# numbers in the ranges toxiproxy's API lets in (muxtop/proxy/toxics.py, registry.py)

MAX_ATTRIBUTES = 16  # a type has at most 3 (toxics.ATTRIBUTES); a newer muxtop a few more


def _text(value: str, most: int, what: str) -> None:
    if not 0 < len(value) <= most or not value.isprintable():
        raise SchemaError(f"{what} must be 1 to {most} printable characters")


def _check_toxic(value: object) -> None:
    _toxic_row(value)
    name, kind, stream, toxicity, attributes, *rest = value  # type: ignore[misc]
    _text(name, MAX_NAME, "ToxicView.name")
    _text(kind, MAX_NAME, "ToxicView.type")
    if stream not in TOXIC_STREAMS:
        raise SchemaError(f"ToxicView.stream must be one of {', '.join(TOXIC_STREAMS)}")
    if not 0 <= toxicity <= 1:
        raise SchemaError("ToxicView.toxicity must be from 0 to 1")
    if len(attributes) > MAX_ATTRIBUTES:
        raise SchemaError(f"ToxicView.attributes holds over {MAX_ATTRIBUTES}")
    for key, number in attributes:
        _text(key, MAX_NAME, "ToxicView.attributes name")
        if not 0 <= number <= MAX_ATTRIBUTE:
            raise SchemaError(f"ToxicView.attributes {key} must be from 0 to {MAX_ATTRIBUTE}")
    legs = rest[0] if rest else []
    applied = rest[1] if len(rest) > 1 else 0
    if len(legs) > LEGS_KEPT or any(fd < 0 for fd in legs) or not len(legs) <= applied < MAX_INT:
        raise SchemaError(f"ToxicView.legs must be at most {LEGS_KEPT} fds, of `applied`")


def _check_proxy(value: object) -> None:
    _proxy_row(value)
    name, listen, upstream, _, toxics = value  # type: ignore[misc]
    _text(name, MAX_NAME, "ProxyView.name")
    _text(listen, MAX_ADDRESS, "ProxyView.listen")
    _text(upstream, MAX_ADDRESS, "ProxyView.upstream")
    if len(toxics) > MAX_TOXICS:
        raise SchemaError(f"ProxyView.toxics holds over {MAX_TOXICS}")


def _check_proxies(value: object) -> None:
    _proxy_list(value)
    if len(value) > MAX_PROXIES:  # type: ignore[arg-type]
        raise SchemaError(f"Snapshot.proxies holds over {MAX_PROXIES}")


# Each made after the checks of what it holds are in place, as Diagnosis's above.
_toxic_row = _make(ToxicView)
_checks[ToxicView] = _check_toxic
_proxy_row = _make(ProxyView)
_checks[ProxyView] = _check_proxy
_proxy_list = _sequence(ProxyView)
_checks[tuple[ProxyView, ...]] = _check_proxies
_snapshot = checker(Snapshot)


def check_snapshot(doc: object) -> None:
    """A SNAPSHOT's plain form (muxtop.plain), whole or without its connections."""
    _snapshot(doc)


def check_event(event: object) -> None:
    if type(event) is not dict:
        raise _bad(event, "expected an event (a JSON object)")
    kind = event.get("type")
    if type(kind) is not str:
        raise _bad(kind, "expected an event type")
    checker(EVENTS.get(kind, dict[str, object]))(event)


check_header = checker(RecordingHeader)
check_end = checker(EndRecord)
check_gap = checker(Gap)
