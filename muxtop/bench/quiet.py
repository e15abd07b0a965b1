"""Benchmarks on a shared machine: a run during which other processes used much CPU is
measured again, and the least disturbed attempt is kept (bench echo, bench proxy)."""

from __future__ import annotations

import sys
from collections.abc import Callable

from muxtop.arguments import non_negative_int, positive_float


def quietly(measure_once: Callable[[], dict], busy_retries: int, busy_pct: float,
            on_busy=None) -> dict:
    """One run, again up to ``busy_retries`` times while other processes used more than
    ``busy_pct`` CPU during it (a shared machine); keeps the least disturbed attempt and lists
    what the discarded ones saw. A failed run is not retried: failures are findings.
    `measure_once` returns a run's figures, ``{"failed": why}`` when it could not run."""
    attempts: list[dict] = []
    while True:
        result = measure_once()
        attempts.append(result)
        others = result.get("other_cpu_pct")
        if (result.get("failed") or others is None or others <= busy_pct
                or len(attempts) > busy_retries):
            break
        if on_busy:
            on_busy(others)
    ok = [a for a in attempts if not a.get("failed")]
    best = min(ok, key=lambda a: a.get("other_cpu_pct") or 0) if ok else attempts[-1]
    best["busy_discarded"] = [a.get("other_cpu_pct") for a in attempts if a is not best]
    return best


def add_busy_arguments(p, what: str) -> None:
    """--busy-retries and --busy-pct, as `quietly` takes them; `what` is measured again."""
    p.add_argument("--busy-retries", type=non_negative_int, default=2, metavar="N",
                   help=f"measure a {what} again, up to N times, when other processes used "
                   "more than --busy-pct CPU during its run (default 2; 0 never)")
    p.add_argument("--busy-pct", type=positive_float, default=25.0, metavar="PCT",
                   help="other processes' CPU%% (100 = one core) that makes a run too disturbed "
                   "(default 25)")


def tell_busy(width: int) -> Callable[[int, int, str, int, float], None]:
    """The line a run measured again says on stderr, its name padded to `width`."""
    def on_busy(run_index: int, runs: int, name: str, conns: int, others: float) -> None:
        print(f"  run {run_index + 1}/{runs}  {conns:>5,} conns  {name:<{width}} other processes "
              f"used {others:.0f}% CPU: measuring again", file=sys.stderr, flush=True)
    return on_busy
