"""argparse types shared by every subcommand: each turns bad input into one plain line; and
the parser they all use, whose errors show the user's own text escaped."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import NoReturn

from muxtop.printable import printable
from muxtop.userfiles import name_problem


class Parser(argparse.ArgumentParser):
    """argparse's parser, its error line escaped: "unrecognized arguments", "ambiguous
    option" and the like quote argv as it is, and argv may hold ESC ] 0 ; … BEL (a new
    terminal title) or a newline (a forged second line). Subparsers are of this class too."""

    def error(self, message: str) -> NoReturn:
        super().error(printable(message))


def _parsed(text: str, kind: Callable[[str], float], what: str) -> float:
    try:
        return kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not {what}") from None


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise argparse.ArgumentTypeError(message)


def non_negative_int(text: str) -> int:
    """argparse type: a whole number ≥ 0, with a plain message otherwise."""
    value = _parsed(text, int, "a whole number")
    _check(value >= 0, f"{text!r} must be 0 or more")
    return value


def positive_int(text: str) -> int:
    """argparse type: a whole number ≥ 1."""
    value = _parsed(text, int, "a whole number")
    _check(value >= 1, f"{text!r} must be at least 1")
    return value


# Past ~9.2e9 s Python's clocks overflow (time.sleep, Event.wait, a deadline's arithmetic):
# no duration, rate or size given as a float here needs more than this.
MAX_NUMBER = 1e9


def non_negative_float(text: str) -> float:
    """argparse type: a number from 0 to MAX_NUMBER (NaN and infinities are refused)."""
    value = _parsed(text, float, "a number")
    _check(0 <= value <= MAX_NUMBER, f"{text!r} must be a number from 0 to {MAX_NUMBER:,.0f}")
    return value


def positive_float(text: str) -> float:
    """argparse type: a number over 0, up to MAX_NUMBER (a duration, an interval, a rate)."""
    value = _parsed(text, float, "a number")
    _check(0 < value <= MAX_NUMBER,
           f"{text!r} must be more than 0 and at most {MAX_NUMBER:,.0f}")
    return value


# A refresh more often than 100 times a second only burns CPU; time.sleep() overflows past
# ~9e9 s, and an hour between looks is no longer watching.
MIN_INTERVAL, MAX_INTERVAL = 0.01, 3600.0


def interval(text: str) -> float:
    """argparse type: seconds between refreshes, MIN_INTERVAL to MAX_INTERVAL."""
    value = _parsed(text, float, "a number")
    _check(MIN_INTERVAL <= value <= MAX_INTERVAL,
           f"{text!r} must be seconds from {MIN_INTERVAL:g} to {MAX_INTERVAL:g}")
    return value


def refresh_interval(text: str) -> float:
    """argparse type: seconds between dashboard redraws, at most 20 a second."""
    value = positive_float(text)
    if value < 0.05:
        raise argparse.ArgumentTypeError(f"{text!r} must be at least 0.05 (20 redraws a second)")
    return value


def port_number(text: str) -> int:
    value = _parsed(text, int, "a port number")
    _check(0 <= value <= 65535, f"port {value} is out of range 0-65535")
    return value


def host_port(text: str) -> tuple[str, int]:
    """argparse type: HOST:PORT to connect to ([::1]:PORT for IPv6), port 1-65535."""
    host, colon, port = text.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not colon or not host:
        raise argparse.ArgumentTypeError(f"{text!r} is not HOST:PORT (e.g. 127.0.0.1:6379)")
    number = port_number(port)
    _check(number > 0, f"port 0 cannot be connected to (in {text!r})")
    return host, number


def int_list(text: str) -> list[int]:
    """argparse type: ``10,100,1000`` → [10, 100, 1000], each ≥ 1, in the given order."""
    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a comma-separated list of whole numbers (e.g. 10,100)") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: give whole numbers ≥ 1, e.g. 10,100")
    return list(dict.fromkeys(values))


def name_list(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def file_name(text: str) -> str:
    """A file's name as given: not empty (`--record ""`, a shell's unset variable, would
    otherwise read as no name at all and pick a default)."""
    problem = name_problem(text)
    _check(problem is None, f"{problem}: name a file")
    return text


def remote_refused(doing: str, address: str, option: str, given: str) -> str:
    """The one wording of every refusal of an address other machines can reach, without
    --allow-remote (Redis's protected mode): the server's --host, --metrics, --api, and
    muxtop web's --host. `given` is the user's text: repr escapes what is not printable."""
    return (f"refusing to {doing} on {address} ({option} {given!r}): other machines could "
            "reach it; pass --allow-remote if you mean it")
