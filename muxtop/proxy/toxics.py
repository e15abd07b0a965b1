"""toxiproxy's toxics as state machines on an injected clock: no thread, no sleep.

Each direction of each proxied connection gets a `Pipe` from its proxy's `ToxicSet`: the engine
feeds it the bytes read from one leg, takes from it what the other leg may be sent now, and
wakes its loop at `due()`. The toxics keep toxiproxy's names, attributes and meaning (its
toxics/*.go, reimplemented): a chain per stream in the order the toxics were added, each
applied to a connection with the probability `toxicity`, drawn once per connection.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import threading
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from muxtop.printable import printable
from muxtop.proxy.errors import ApiError, bad_body

STREAMS = ("upstream", "downstream")  # upstream: client -> server; downstream: server -> client
# Each type's attributes (all whole numbers, 0 by default, as toxiproxy's Go structs are).
ATTRIBUTES: Mapping[str, tuple[str, ...]] = MappingProxyType({
    "noop": (),
    "latency": ("latency", "jitter"),  # ms
    "bandwidth": ("rate",),  # KB/s
    "slicer": ("average_size", "size_variation", "delay"),  # bytes, bytes, µs
    "slow_close": ("delay",),  # ms
    "timeout": ("timeout",),  # ms; 0 = never close, drop data until removed
    "reset_peer": ("timeout",),  # ms
    "limit_data": ("bytes",),
})
TYPES = tuple(ATTRIBUTES)
MAX_NAME = 200  # a name is shown in the dashboard and is a path segment of the API
MAX_ATTRIBUTE = 2**63 - 1  # toxiproxy's attributes are Go int64

RESET, CLOSE, EOF = "reset", "close", "eof"  # a Pipe's verdicts


@dataclass(frozen=True)
class Toxic:
    """One toxic as toxiproxy's API shows it; immutable (an update makes a new one)."""

    name: str
    type: str
    stream: str = "downstream"
    toxicity: float = 1.0
    attributes: Mapping[str, int] = field(default_factory=lambda: MappingProxyType({}))

    def attr(self, key: str) -> int:
        return self.attributes.get(key, 0)

    def plain(self) -> dict[str, object]:
        """toxiproxy's JSON shape of a toxic (every attribute of its type, 0 when unset)."""
        return {"attributes": {key: self.attr(key) for key in ATTRIBUTES[self.type]},
                "name": self.name, "type": self.type, "stream": self.stream,
                "toxicity": self.toxicity}

    @classmethod
    def from_plain(cls, plain: object) -> Toxic:
        """A new toxic from toxiproxy's JSON (POST /proxies/{proxy}/toxics), checked in
        toxiproxy's order: stream (default downstream), name (default TYPE_STREAM), type,
        attributes. Raises ApiError (400) with toxiproxy's words."""
        if not isinstance(plain, dict):
            raise bad_body("a toxic is a JSON object")
        stream = plain.get("stream", "downstream")
        if stream == "":  # Go's zero value: the field was there, empty
            stream = "downstream"
        if not isinstance(stream, str) or stream.lower() not in STREAMS:
            raise ApiError("stream was invalid, can be either upstream or downstream", 400)
        stream = stream.lower()
        kind = _string(plain, "type")
        name = _string(plain, "name") or f"{kind}_{stream}"
        check_name(name, "toxic")
        if kind not in ATTRIBUTES:
            raise ApiError("invalid toxic type", 400)
        toxicity = _toxicity(plain.get("toxicity", 1.0))
        attributes = _attributes(kind, plain.get("attributes"), {})
        return cls(name, kind, stream, toxicity, attributes)

    def updated(self, plain: object) -> Toxic:
        """This toxic after POST /proxies/{proxy}/toxics/{toxic}: the attributes given replace
        theirs, the others stay; toxicity likewise; name, type and stream cannot change."""
        if not isinstance(plain, dict):
            raise bad_body("a toxic is a JSON object")
        toxicity = _toxicity(plain.get("toxicity", self.toxicity))
        attributes = _attributes(self.type, plain.get("attributes"), dict(self.attributes))
        return Toxic(self.name, self.type, self.stream, toxicity, attributes)


def check_name(name: str, what: str) -> None:
    """A proxy's or a toxic's name: it is a segment of the API's paths and a dashboard label."""
    if not 0 < len(name) <= MAX_NAME or "/" in name or not name.isprintable():
        raise bad_body(f"{what} name {printable(name[:MAX_NAME])!r} must be 1 to {MAX_NAME} "
                       "printable characters without '/'")


def _string(plain: dict, key: str) -> str:
    value = plain.get(key, "")
    if not isinstance(value, str):
        raise bad_body(f"{key} must be a string")
    return value


def _toxicity(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) \
            or not 0 <= value <= 1 or math.isnan(value):
        raise bad_body("toxicity must be a number from 0 to 1")
    return float(value)


def _shown(value: object, at_most: int = 40) -> str:
    """A JSON value as an error message quotes it: printable, and cut (a list of 100,000
    numbers is not repeated back)."""
    text = printable(json.dumps(value))
    return text if len(text) <= at_most else text[:at_most - 1] + "…"


def _attributes(kind: str, given: object, base: dict[str, int]) -> Mapping[str, int]:
    if given is None:
        given = {}
    if not isinstance(given, dict):
        raise bad_body("attributes must be a JSON object")
    merged = dict(base)
    for key in ATTRIBUTES[kind]:  # toxiproxy ignores keys its type does not have
        if key not in given:
            continue
        value = given[key]
        # Go decodes only whole numbers into an int64: 1.5, "5", true are refused alike.
        if isinstance(value, bool) or not isinstance(value, int) \
                or not 0 <= value <= MAX_ATTRIBUTE:
            raise bad_body(f"attribute {key} of {kind} must be a whole number from 0 "
                           f"to {MAX_ATTRIBUTE}, not {_shown(value)}")
        merged[key] = value
    return MappingProxyType(merged)


class ToxicSet:
    """The toxics of one proxy, both streams. Writers (the API's thread) hold a lock and swap
    an immutable tuple; readers (the engine's pipes) read the tuple and `version` unlocked."""

    def __init__(self, rng: random.Random | None = None) -> None:
        self._lock = threading.Lock()
        self._toxics: tuple[Toxic, ...] = ()
        self.version = 0
        # Draws toxicity, jitter and slice sizes, on the engine's thread only.
        self.rng = rng if rng is not None else random.Random()

    def all(self) -> tuple[Toxic, ...]:
        """Every toxic, upstream's first, each stream's in its chain order (as toxiproxy
        lists them)."""
        toxics = self._toxics
        return tuple(t for s in STREAMS for t in toxics if t.stream == s)

    def of(self, stream: str) -> tuple[Toxic, ...]:
        return tuple(t for t in self._toxics if t.stream == stream)

    def get(self, name: str) -> Toxic | None:
        return next((t for t in self._toxics if t.name == name), None)

    def add(self, toxic: Toxic) -> Toxic:
        """Append to the end of its stream's chain; 409 if the name is taken in either."""
        with self._lock:
            if any(t.name == toxic.name for t in self._toxics):
                raise ApiError("toxic already exists", 409)
            self._publish(self._toxics + (toxic,))
        return toxic

    def update(self, name: str, plain: object) -> Toxic:
        with self._lock:
            old = self.get(name)
            if old is None:
                raise ApiError("toxic not found", 404)
            new = old.updated(plain)
            self._publish(tuple(new if t is old else t for t in self._toxics))
        return new

    def remove(self, name: str) -> None:
        with self._lock:
            if self.get(name) is None:
                raise ApiError("toxic not found", 404)
            self._publish(tuple(t for t in self._toxics if t.name != name))

    def reset(self) -> None:
        with self._lock:
            if self._toxics:
                self._publish(())

    def _publish(self, toxics: tuple[Toxic, ...]) -> None:
        self._toxics = toxics
        self.version += 1  # after the tuple: a reader that sees the new version sees it

    def pipe(self, stream: str, conn_id: object = None, now: float | None = None) -> Pipe:
        """The pipe of one direction of one connection (conn_id only labels it), made at
        `now` (the engine's clock; time.monotonic() if not given): toxicity is drawn here,
        and a timeout toxic's timer starts here."""
        if stream not in STREAMS:
            raise ValueError(f"stream {stream!r} is not one of {STREAMS}")
        return Pipe(self, stream, conn_id, time.monotonic() if now is None else now)


class _End:
    """The end of a stream passing down a chain behind the bytes before it: the source's FIN
    (EOF, crossed as a half-close) or a toxic's close (CLOSE, the pair ends)."""

    __slots__ = ("kind",)

    def __init__(self, kind: str) -> None:
        self.kind = kind


class Chunk:
    """Bytes read at `stamp` (latency counts from it); `whole` marks a slicer's slice, which
    take() never joins with the bytes around it."""

    __slots__ = ("data", "stamp", "whole")

    def __init__(self, data: bytes, stamp: float, whole: bool = False) -> None:
        self.data = data
        self.stamp = stamp
        self.whole = whole


Item = Chunk | _End


class Stage:
    """One toxic applied to one pipe: a queue of (item, arrival) and its rule for when an
    item may leave. The base passes everything at once (noop)."""

    def __init__(self, toxic: Toxic, now: float, rng: random.Random) -> None:
        self.toxic = toxic
        self.rng = rng
        self.queue: deque[tuple[Item, float]] = deque()
        self.held = 0  # bytes in the queue
        self.ended = False  # an end went in: nothing more is taken

    def push(self, item: Item, now: float) -> None:
        if self.ended:
            return
        if isinstance(item, _End):
            self.ended = True
        else:
            self.held += len(item.data)
        self.queue.append((item, now))

    def pull(self, now: float, out: list[Item]) -> None:
        """Move the items that may leave at `now` to `out`, in order."""
        while self.queue:
            out.append(self._pop())

    def _pop(self) -> Item:
        item, _ = self.queue.popleft()
        if isinstance(item, Chunk):
            self.held -= len(item.data)
        return item

    def due(self) -> float | None:
        return None

    def reset(self) -> bool:
        return False

    def update(self, toxic: Toxic, now: float) -> None:
        self.toxic = toxic

    def drain(self) -> list[Item]:
        """Everything held, on removal: toxiproxy drops no data on the floor."""
        items = [item for item, _ in self.queue]
        self.queue.clear()
        self.held = 0
        return items


class Latency(Stage):
    """Each chunk leaves `latency` ± `jitter` ms after it was read, never before the chunk
    ahead of it (one chunk at a time, as toxiproxy's goroutine). A queued chunk keeps the
    stamp it came with beside it: an update re-times it by the new attributes."""

    def _delayed(self, data: Chunk, stamp: float) -> Chunk:
        jitter = self.toxic.attr("jitter")
        delay = self.toxic.attr("latency")
        if jitter > 0:
            delay += self.rng.randrange(2 * jitter) - jitter
        # The stamp moves on, so a second latency toxic adds its own delay.
        return Chunk(data.data, stamp + delay / 1000, data.whole)

    def push(self, item: Item, now: float) -> None:
        if isinstance(item, Chunk):
            if not self.ended:
                self.held += len(item.data)
                self.queue.append((self._delayed(item, item.stamp), item.stamp))
            return
        super().push(item, now)

    def update(self, toxic: Toxic, now: float) -> None:
        super().update(toxic, now)
        self.queue = deque((self._delayed(item, since) if isinstance(item, Chunk) else item,
                            since) for item, since in self.queue)

    def pull(self, now: float, out: list[Item]) -> None:
        while self.queue:
            item, _ = self.queue[0]
            if isinstance(item, Chunk) and item.stamp > now:
                return
            out.append(self._pop())

    def due(self) -> float | None:
        if self.queue and isinstance(self.queue[0][0], Chunk):
            return self.queue[0][0].stamp
        return None


class Bandwidth(Stage):
    """At most `rate` KB/s (1 KB = 1000 bytes): each piece leaves once the time to send it at
    that rate has passed since the link was free; a chunk is cut in pieces of 100 ms worth.
    An idle link earns no credit. Rate 0 lets nothing through, as toxiproxy's loop does."""

    def __init__(self, toxic: Toxic, now: float, rng: random.Random) -> None:
        super().__init__(toxic, now, rng)
        self.free_at = now  # when the last piece finished sending

    def _next(self) -> tuple[int, float] | None:
        """(bytes of the head's next piece, when it may leave), None if the head is an end."""
        item, arrival = self.queue[0]
        if isinstance(item, _End):
            return None
        per_ms = self.toxic.attr("rate")  # KB/s is bytes per ms
        size = min(len(item.data), per_ms * 100)
        return size, max(self.free_at, arrival) + size / (per_ms * 1000)

    def pull(self, now: float, out: list[Item]) -> None:
        if self.toxic.attr("rate") == 0:
            return
        while self.queue:
            piece = self._next()
            if piece is None:
                out.append(self._pop())
                continue
            size, leaves = piece
            if leaves > now:
                return
            item, arrival = self.queue[0]
            assert isinstance(item, Chunk)
            self.free_at = leaves
            if size == len(item.data):
                out.append(self._pop())
            else:
                out.append(Chunk(item.data[:size], item.stamp, item.whole))
                self.queue[0] = (Chunk(item.data[size:], item.stamp, item.whole), arrival)
                self.held -= size

    def due(self) -> float | None:
        if not self.queue or self.toxic.attr("rate") == 0:
            return None
        piece = self._next()
        return None if piece is None else piece[1]


class Slicer(Stage):
    """Each chunk cut in slices of about `average_size` ± `size_variation` bytes (halved
    until small enough, as toxiproxy does), one slice then `delay` µs, then the next."""

    def __init__(self, toxic: Toxic, now: float, rng: random.Random) -> None:
        super().__init__(toxic, now, rng)
        self.ready_at = now

    def push(self, item: Item, now: float) -> None:
        if isinstance(item, _End) or self.ended:
            super().push(item, now)
            return
        for start, end in self.cuts(len(item.data)):
            super().push(Chunk(item.data[start:end], item.stamp, True), now)

    def cuts(self, length: int) -> list[tuple[int, int]]:
        average = self.toxic.attr("average_size")
        variation = self.toxic.attr("size_variation")
        cuts: list[tuple[int, int]] = []
        spans = [(0, length)]
        while spans:
            start, end = spans.pop()
            if end - start - average <= variation or end - start <= 1:
                cuts.append((start, end))
                continue
            mid = start + (end - start) // 2
            if variation > 0:
                mid += self.rng.randrange(2 * variation) - variation
            mid = min(max(mid, start + 1), end - 1)  # toxiproxy would slice out of range
            spans.append((mid, end))  # popped after the left half: cuts stay in order
            spans.append((start, mid))
        return cuts

    def pull(self, now: float, out: list[Item]) -> None:
        while self.queue:
            item, arrival = self.queue[0]
            if isinstance(item, Chunk):
                if max(self.ready_at, arrival) > now:
                    return
                self.ready_at = now + self.toxic.attr("delay") / 1_000_000
            out.append(self._pop())

    def due(self) -> float | None:
        if self.queue and isinstance(self.queue[0][0], Chunk):
            return max(self.ready_at, self.queue[0][1])
        return None


class SlowClose(Stage):
    """Bytes pass at once; the end (FIN or close) waits `delay` ms after it arrived."""

    def pull(self, now: float, out: list[Item]) -> None:
        while self.queue:
            item, arrival = self.queue[0]
            if isinstance(item, _End) and arrival + self.toxic.attr("delay") / 1000 > now:
                return
            out.append(self._pop())

    def due(self) -> float | None:
        if self.queue and isinstance(self.queue[0][0], _End):
            return self.queue[0][1] + self.toxic.attr("delay") / 1000
        return None


class Timeout(Stage):
    """No byte gets through; the connection closes `timeout` ms after the toxic began on it
    (0: never, while the toxic lasts). Removing it closes the connection: bytes were lost."""

    def __init__(self, toxic: Toxic, now: float, rng: random.Random) -> None:
        super().__init__(toxic, now, rng)
        self.started = now

    def push(self, item: Item, now: float) -> None:
        if isinstance(item, _End):
            super().push(item, now)

    def _deadline(self) -> float | None:
        timeout = self.toxic.attr("timeout")
        return None if timeout == 0 or self.ended else self.started + timeout / 1000

    def pull(self, now: float, out: list[Item]) -> None:
        deadline = self._deadline()
        if deadline is not None and deadline <= now:
            super().push(_End(CLOSE), now)
        super().pull(now, out)

    def due(self) -> float | None:
        return self._deadline()

    def update(self, toxic: Toxic, now: float) -> None:
        super().update(toxic, now)
        self.started = now  # toxiproxy restarts an updated toxic: its timer starts again

    def drain(self) -> list[Item]:
        items = super().drain()
        return items if self.ended else [_End(CLOSE)]


class ResetPeer(Stage):
    """The first bytes (or end) to arrive start a `timeout` ms timer; then both legs are reset
    (TCP RST). Bytes that reach it are dropped, as toxiproxy's stub drops what it read."""

    def __init__(self, toxic: Toxic, now: float, rng: random.Random) -> None:
        super().__init__(toxic, now, rng)
        self.first: float | None = None

    def push(self, item: Item, now: float) -> None:
        if self.first is None:
            self.first = now

    def due(self) -> float | None:
        return None if self.first is None else self.first + self.toxic.attr("timeout") / 1000

    def reset(self) -> bool:
        return self.first is not None

    def pull(self, now: float, out: list[Item]) -> None:
        pass


class LimitData(Stage):
    """The first `bytes` bytes pass, the chunk that crosses the limit cut at it; then the
    connection closes. The count survives an update of the toxic (toxiproxy's state)."""

    def __init__(self, toxic: Toxic, now: float, rng: random.Random) -> None:
        super().__init__(toxic, now, rng)
        self.sent = 0

    def push(self, item: Item, now: float) -> None:
        if isinstance(item, Chunk) and not self.ended:
            left = max(self.toxic.attr("bytes") - self.sent, 0)
            if len(item.data) > left:
                item = Chunk(item.data[:left], item.stamp, item.whole)
            if item.data:
                self.sent += len(item.data)
                super().push(item, now)
            if self.sent >= self.toxic.attr("bytes"):
                super().push(_End(CLOSE), now)
            return
        super().push(item, now)


STAGES: Mapping[str, type[Stage]] = MappingProxyType({
    "noop": Stage, "latency": Latency, "bandwidth": Bandwidth, "slicer": Slicer,
    "slow_close": SlowClose, "timeout": Timeout, "reset_peer": ResetPeer,
    "limit_data": LimitData,
})


class Pipe:
    """One direction of one connection through its proxy's toxics. Engine thread only.

    feed()/feed_eof() what the source leg gave; take() what the sink leg may be sent now;
    due() when to wake for the next timer; verdict() whether the pair must end (see
    proxy-contract: "reset", "close", or "eof", the FIN crossing); buffered, bytes held."""

    def __init__(self, toxic_set: ToxicSet, stream: str, conn_id: object = None,
                 now: float = 0.0) -> None:
        self.toxic_set = toxic_set
        self.stream = stream
        self.conn_id = conn_id
        self._version = -1
        self._stages: list[Stage] = []
        self._applied: tuple[str, ...] = ()  # the names of _stages' toxics
        self._drawn: dict[str, tuple[float, bool]] = {}  # name -> (toxicity, applies)
        self._out: deque[Item] = deque()
        self._out_bytes = 0
        self._fed_end = False
        self._reset = False
        self._now = now  # the latest time given: for a change seen between calls
        self._sync(now)

    # -- what the engine calls

    def feed(self, data: bytes, now: float) -> None:
        if self._fed_end or not data:
            return
        self._sync(now)
        self._enter(0, Chunk(data, now), now)
        if self._stages:
            self._flow(now)

    def feed_eof(self, now: float) -> None:
        if self._fed_end:
            return
        self._fed_end = True
        self._sync(now)
        self._enter(0, _End(EOF), now)
        self._flow(now)

    def take(self, now: float, limit: int) -> bytes:
        self._sync(now)
        if self._stages:
            self._flow(now)
        out = self._out
        if limit <= 0 or not out or isinstance(out[0], _End):
            return b""
        head = out[0]
        assert isinstance(head, Chunk)
        if len(head.data) <= limit and (head.whole or len(out) == 1
                                        or not isinstance(out[1], Chunk) or out[1].whole):
            out.popleft()  # the common case: one chunk, whole, no copy
            self._out_bytes -= len(head.data)
            return head.data
        parts: list[bytes] = []
        room = limit
        while out and room > 0:
            head = out[0]
            if not isinstance(head, Chunk) or (head.whole and parts):
                break
            if len(head.data) <= room:
                out.popleft()
                parts.append(head.data)
            else:
                parts.append(head.data[:room])
                out[0] = Chunk(head.data[room:], head.stamp, head.whole)
            room -= len(parts[-1])
            if head.whole:
                break  # a slice goes alone
        taken = b"".join(parts)
        self._out_bytes -= len(taken)
        return taken

    def due(self, now: float) -> float | None:
        self._sync(now)
        if not self._stages:
            return None
        self._flow(now)
        dues = [d for d in (s.due() for s in self._stages) if d is not None]
        return min(dues) if dues else None

    def verdict(self, now: float) -> str | None:
        self._sync(now)
        if self._stages:
            self._flow(now)
        if self._reset or any(s.reset() and s.due() is not None and s.due() <= now
                              for s in self._stages):
            self._reset = True
            return RESET
        if self._out and isinstance(self._out[0], _End):
            return self._out[0].kind
        return None

    @property
    def buffered(self) -> int:
        return self._out_bytes + sum(s.held for s in self._stages)

    @property
    def applied(self) -> tuple[str, ...]:
        """The toxics applied to this connection (toxicity drawn), in chain order."""
        self._sync(self._now)
        return self._applied  # asked of every leg at every publish: made once per change

    # -- the chain

    def _enter(self, index: int, item: Item, now: float) -> None:
        if index < len(self._stages):
            self._stages[index].push(item, now)
        elif isinstance(item, Chunk):
            self._out.append(item)
            self._out_bytes += len(item.data)
        elif not any(isinstance(i, _End) for i in self._out):
            self._out.append(item)

    def _flow(self, now: float) -> None:
        # One pass suffices: what stage i lets go enters i+1 before i+1 is pulled.
        for index, stage in enumerate(self._stages):
            released: list[Item] = []
            stage.pull(now, released)
            for item in released:
                self._enter(index + 1, item, now)

    def _sync(self, now: float) -> None:
        self._now = now
        toxic_set = self.toxic_set
        if toxic_set.version == self._version:
            return
        self._version = toxic_set.version
        toxics = toxic_set.of(self.stream)
        old = {s.toxic.name: s for s in self._stages}
        stages: list[Stage] = []
        drawn: dict[str, tuple[float, bool]] = {}
        for toxic in toxics:
            previous = self._drawn.get(toxic.name)
            if previous is not None and previous[0] == toxic.toxicity:
                applies = previous[1]
            else:  # a new toxic, or its toxicity changed: draw again (toxiproxy re-runs it)
                applies = toxic_set.rng.random() < toxic.toxicity
            drawn[toxic.name] = (toxic.toxicity, applies)
            if not applies:
                continue
            stage = old.get(toxic.name)
            if stage is None:
                stage = STAGES[toxic.type](toxic, now, toxic_set.rng)
            elif stage.toxic != toxic:
                stage.update(toxic, now)
            stages.append(stage)
        self._drawn = drawn
        kept = {id(s) for s in stages}
        # What a removed stage held goes on to the next stage that stays, behind what that
        # one holds (it came later in the stream), or out.
        carry: list[Item] = []
        for stage in self._stages:
            if id(stage) not in kept:
                carry.extend(stage.drain())
            elif carry:
                for item in carry:
                    stage.push(item, now)
                carry = []
        self._stages = stages
        self._applied = tuple(s.toxic.name for s in stages)
        for item in carry:
            self._enter(len(stages), item, now)


def toxic_argument(text: str) -> Toxic:
    """argparse type for `--toxic STREAM:TYPE[:KEY=VALUE,...]`, e.g.
    `downstream:latency:latency=100,jitter=10`; `name=` and `toxicity=` set the toxic's own
    fields, every other key is an attribute of its type."""
    stream, _, rest = text.partition(":")
    kind, _, pairs = rest.partition(":")
    if not kind:
        raise argparse.ArgumentTypeError(
            f"{printable(text)!r} is not STREAM:TYPE[:KEY=VALUE,...] "
            "(e.g. downstream:latency:latency=100,jitter=10)")
    plain: dict[str, object] = {"stream": stream, "type": kind}
    attributes: dict[str, object] = {}
    for pair in filter(None, pairs.split(",")):
        key, equals, value = pair.partition("=")
        if not equals:
            raise argparse.ArgumentTypeError(f"{printable(pair)!r} in --toxic is not KEY=VALUE")
        if key == "name":
            plain["name"] = value
            continue
        try:
            number: object = float(value) if key == "toxicity" else int(value)
        except ValueError:
            what = "a number" if key == "toxicity" else "a whole number"
            raise argparse.ArgumentTypeError(
                f"{printable(key)}={printable(value)!r} in --toxic is not {what}") from None
        if key == "toxicity":
            plain["toxicity"] = number
        elif kind in ATTRIBUTES and key not in ATTRIBUTES[kind]:
            names = ", ".join(ATTRIBUTES[kind] + ("name", "toxicity"))
            raise argparse.ArgumentTypeError(
                f"{kind} has no attribute {printable(key)!r} (it takes {names})")
        else:
            attributes[key] = number
    plain["attributes"] = attributes
    if kind not in ATTRIBUTES:
        raise argparse.ArgumentTypeError(
            f"{printable(kind)!r} is not a toxic type (one of {', '.join(TYPES)})")
    try:
        return Toxic.from_plain(plain)
    except ApiError as exc:
        # argparse says "argument --toxic:" before it: the value and the why, no more.
        raise argparse.ArgumentTypeError(f"{printable(text)!r}: {exc.reason}") from None
