"""The flood's patterns, one table: what each client does, in words and in the traits the loop
acts on, and the fault parameters each takes. `muxtop flood`'s --pattern and fault flags, the
dashboard's flood form and help, lesson files and FloodPlan all read it, as Redis's command
table feeds its parser and COMMAND INFO: the loop (client.py) asks a trait, never a name.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import NamedTuple

SLOW_READ_EVERY = 0.25       # slow-reader: one recv per connection this often...
SLOW_READ_BYTES = 16384      # ...of at most this many bytes

# Once every message is written (`ending`): half-close shuts its side, reset closes with RST,
# stall holds still off epoll. Once every echo is back: slow-close lingers, then closes.
SHUT_WR, RESET, STALL, LINGER = "shut-wr", "reset", "stall", "linger"


@dataclass(frozen=True)
class Parameter:
    """A fault pattern's knob: a FloodPlan field, and the flag of the same name."""

    name: str
    default: int | float | None
    metavar: str
    means: str  # what it sets, for --help
    whole: bool = False  # a whole number 1 or more; else seconds, 0 or more

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")


PARAMETERS = {p.name: p for p in (
    Parameter("slice_bytes", 16, "N", "each write is 1..N bytes", whole=True),
    Parameter("slice_delay", 0.002, "S", "0..S seconds between slices"),
    Parameter("hold", 1.0, "S", "seconds to hold"),
    Parameter("delay", 0.05, "S", "seconds each message is held back"),
    Parameter("jitter", 0.0, "S", "give or take up to S seconds, uniformly"),
    Parameter("limit_bytes", None, "N", "close after writing N bytes (default: half-way "
              "through the last message, M×B − B/2)", whole=True),
)}


@dataclass(frozen=True)
class Pattern:
    """One pattern: its name, what each client does, and the traits the loop acts on."""

    name: str
    does: str  # what each client does, in one line (--help, the form, the help screen)
    sends: bool = True  # writes messages
    echoed: bool = False  # an echo: one message in flight in closed loop, each echo checked
    verifies: bool = False  # reads back what it sent and checks every byte
    reads: bool = False  # keeps reading while it writes (slow-reader reads on a timer)
    paced: bool = True  # follows --rate (if it sends)
    open_loop: bool = False  # sends on a clock and reads the echoes: --open-loop fits it
    endless: bool = True  # --messages 0 sends until stopped (else: none before its ending)
    needs_messages: str = ""  # why it needs 1 or more ("": it does not)
    parameters: tuple[str, ...] = ()  # the PARAMETERS it takes
    ending: str = ""  # SHUT_WR, RESET, STALL or LINGER
    opens_and_closes: bool = False  # closes once connected; again until --duration, if given
    reads_slowly: bool = False  # SLOW_READ_BYTES per connection every SLOW_READ_EVERY
    slices: bool = False  # writes each message in small slices, pausing between them
    delays: bool = False  # holds each message back before its send
    cuts: bool = False  # closes once a byte limit is written
    # The measuring case, without a twist: the loop inlines its common turn (with no rate).
    ping_pong: bool = False

    @property
    def faulty(self) -> bool:
        """A fault pattern: one that takes knobs of its own."""
        return bool(self.parameters)


_SLICE_BYTES, _SLICE_DELAY, _HOLD, _DELAY = (PARAMETERS[name].default for name in (
    "slice_bytes", "slice_delay", "hold", "delay"))
_ECHO = {"sends": True, "echoed": True, "verifies": True, "reads": True, "open_loop": True}
PATTERNS = {p.name: p for p in (
    Pattern("echo", "send M messages per client and check every echoed byte", **_ECHO,
            ping_pong=True),
    Pattern("idle", "open N connections and hold them, sending nothing", sends=False,
            reads=True),
    Pattern("slow-reader", f"send steadily, read {SLOW_READ_BYTES // 1024} KiB per connection "
            f"every {SLOW_READ_EVERY:g} s: the server's out-buffers fill", verifies=True,
            open_loop=True, reads_slowly=True),
    Pattern("half-close", "send, SHUT_WR, read the echo, expect EOF", verifies=True,
            reads=True, open_loop=True, endless=False, ending=SHUT_WR),
    Pattern("reset", "send, then close with RST", endless=False, ending=RESET),
    Pattern("burst", "open and close connections as fast as allowed (again and again until "
            "the duration, if one is given)", sends=False, opens_and_closes=True),
    Pattern("slicer", f"echo, each message written in random slices of 1..{_SLICE_BYTES} bytes "
            f"(--slice-bytes), 0..{_SLICE_DELAY * 1000:g} ms apart (--slice-delay): the "
            "server's partial reads", **_ECHO, parameters=("slice_bytes", "slice_delay"),
            slices=True),
    Pattern("stall", f"send M messages, then neither read nor write for {_HOLD:g} s (--hold), "
            "then read every echoed byte back", verifies=True, paced=False,
            needs_messages="it holds still after them", parameters=("hold",), ending=STALL),
    Pattern("slow-close", f"echo M messages, then wait {_HOLD:g} s (--hold) before closing",
            **_ECHO, needs_messages="it waits after them", parameters=("hold",),
            ending=LINGER),
    Pattern("latency", f"echo, each message held back {_DELAY * 1000:g} ms (--delay, "
            "± --jitter) before its send", **_ECHO, parameters=("delay", "jitter"),
            delays=True),
    Pattern("limit", "echo, and close the moment half of the last message is written (or "
            "--limit-bytes)", **_ECHO, needs_messages="it cuts the last one",
            parameters=("limit_bytes",), cuts=True),
)}
OPEN_LOOP = tuple(name for name, p in PATTERNS.items() if p.open_loop)


def takers(parameter: str) -> tuple[str, ...]:
    """The patterns that take a parameter."""
    return tuple(name for name, p in PATTERNS.items() if parameter in p.parameters)


class Misfit(NamedTuple):
    """Settings that do not fit their pattern: which one to change, and why, in words."""

    setting: str  # pattern, messages, rate, open_loop or limit_bytes
    problem: str


# How FloodPlan names the settings in its words; the command line and the form name them their
# own way (flags, fields). A setting a caller does not name is one it does not offer.
FIELD_NAMES = {"messages": "messages", "size": "size", "rate": "a rate",
               "open_loop": "open loop", "limit_bytes": "limit_bytes"}


def misfit(name: str, *, messages: int, size: int, rate: float, open_loop: bool,
           limit_bytes: int | None = None,
           names: Mapping[str, str] = FIELD_NAMES) -> Misfit | None:
    """The first thing these settings get wrong for pattern `name`; None if they fit. Every
    place that takes a flood's settings asks this, so they all refuse the same things."""
    pattern = PATTERNS.get(name)
    if pattern is None:
        return Misfit("pattern", f"no pattern {name!r}; one of {', '.join(PATTERNS)}")
    return (_loop_misfit(pattern, rate, open_loop, names)
            or _messages_misfit(pattern, messages, limit_bytes, names)
            or _limit_misfit(pattern, messages, size, limit_bytes, names))


def _loop_misfit(pattern: Pattern, rate: float, open_loop: bool,
                 names: Mapping[str, str]) -> Misfit | None:
    if not open_loop:
        return None
    if not rate:
        return Misfit("rate", f"{names['open_loop']} needs {names['rate']}: the schedule "
                      "messages are due on")
    if not pattern.open_loop:
        return Misfit("open_loop", f"{names['open_loop']} applies to patterns that send and "
                      f"read messages ({', '.join(OPEN_LOOP)}), not {pattern.name}")
    return None


def _messages_misfit(pattern: Pattern, messages: int, limit_bytes: int | None,
                     names: Mapping[str, str]) -> Misfit | None:
    if not pattern.needs_messages or messages:
        return None
    if pattern.cuts and limit_bytes is not None:
        return None  # the byte limit says where to cut
    if pattern.cuts and "limit_bytes" in names:
        return Misfit("messages", f"{pattern.name} with {names['messages']} 0 needs "
                      f"{names['limit_bytes']} N")
    return Misfit("messages", f"{pattern.name} needs {names['messages']} 1 or more "
                  f"({pattern.needs_messages})")


def _limit_misfit(pattern: Pattern, messages: int, size: int, limit_bytes: int | None,
                  names: Mapping[str, str]) -> Misfit | None:
    whole = messages * size
    if not pattern.cuts or limit_bytes is None or not messages or limit_bytes <= whole:
        return None
    return Misfit("limit_bytes", f"{names['limit_bytes']} {limit_bytes} is more than the "
                  f"{whole} bytes of {names['messages']} × {names['size']}: it would never be "
                  f"reached ({names['messages']} 0 sends until it is)")
