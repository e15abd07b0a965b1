"""A flood's latency in HdrHistograms: the whole run's and the current second's, in
nanoseconds (the unit HdrHistogram's log tools assume by default), mergeable across worker
processes by shipping the histograms in HdrHistogram's own encoding.

The flood's loop appends raw latencies (float seconds) to ``Latency.pending``, one append per
echoed message; ``fold()`` moves them into the interval histogram off that path, and ``cut()``
closes an interval (a progress line, an interval-log line) and adds it to the run's total.
"""

from __future__ import annotations

import struct
import sys
from array import array
from collections import Counter

from hdrh.histogram import HdrHistogram

LOWEST_NS = 1_000                # 1 µs: the smallest latency told apart from 0
HIGHEST_NS = 3_600 * 10**9       # an hour: anything longer is recorded as an hour
SIGNIFICANT_FIGURES = 3          # ≤ 0.1 % error at every magnitude
# The percentiles a summary and each progress line report, and their names in JSON.
PERCENTILES = ((50.0, "p50"), (90.0, "p90"), (99.0, "p99"), (99.9, "p99.9"),
               (99.99, "p99.99"))

# Recording one value in the pure-Python HdrHistogram costs ~0.9 µs, too much on the flood's
# own core at 200k echoes a second, so raw samples are first grouped by the top 23 bits of
# their IEEE-754 double (sign, 11 exponent bits, 11 mantissa bits) with byte slices, which
# run in C; each group then costs one record_value(mid, count). A group spans 1/2048 of its
# octave, half the width of a 3-significant-figure HdrHistogram bucket (1/1024), so the
# grouping adds at most 0.025 % to the histogram's own error.
_GROUP_MASK = bytes(b & 0xFE for b in range(256))   # keeps mantissa bits 47-41 of byte 5
_GROUP_HALF_WIDTH = 1 << (52 - 11 - 1)   # half a group, in units of the double's mantissa


def _groups(samples: array) -> Counter[int]:
    """Group keys (see above) and their counts for an ``array("d")`` of seconds."""
    if sys.byteorder != "little":
        samples = array("d", samples)
        samples.byteswap()
    raw = samples.tobytes()
    keys = bytearray(len(samples) * 4)   # one little-endian uint32 key per sample
    keys[1::4] = raw[5::8].translate(_GROUP_MASK)
    keys[2::4] = raw[6::8]
    keys[3::4] = raw[7::8]
    return Counter(memoryview(keys).cast("I"))


def _group_middle_ns(key: int) -> int:
    """The middle of group ``key``, in whole nanoseconds."""
    seconds = struct.unpack("<d", struct.pack("<Q", (key << 32) | _GROUP_HALF_WIDTH))[0]
    return int(seconds * 1e9)


def new_histogram() -> HdrHistogram:
    return HdrHistogram(LOWEST_NS, HIGHEST_NS, SIGNIFICANT_FIGURES)


def percentiles_ms(histogram: HdrHistogram, max_s: float | None = None) -> dict:
    """p50 … p99.99 and max in milliseconds (3 decimals), None each when it holds nothing.
    ``max_s``: the exact maximum in seconds, if known (the histogram's is within 0.1 %)."""
    names = [name for _, name in PERCENTILES] + ["max"]
    if not histogram.get_total_count():
        return dict.fromkeys(names)
    by_percentile = histogram.get_percentile_to_value_dict([p for p, _ in PERCENTILES])
    top_ns = histogram.get_max_value() if max_s is None else max_s * 1e9
    # A percentile is the top of its bucket (up to 0.1 % above the samples in it): never
    # more than the max, which no sample passed (p99.99 1,002.4 beside max 1,002.3).
    shown = {name: round(min(by_percentile[p], top_ns) / 1e6, 3) for p, name in PERCENTILES}
    shown["max"] = round(top_ns / 1e6, 3)
    return shown


class Latency:
    """The latencies of one flood (or, in the parent of workers, of all of them)."""

    def __init__(self) -> None:
        self.pending = array("d")        # seconds, since the last fold()
        self.interval = new_histogram()  # since the last cut()
        self.total = new_histogram()     # the whole run, up to the last cut()
        self.interval_max = 0.0          # exact maxima, in seconds
        self.max = 0.0

    def fold(self) -> None:
        """Move the raw samples gathered since the last call into the interval histogram."""
        pending = self.pending
        if not pending:
            return
        record = self.interval.record_value
        for key, count in _groups(pending).items():
            record(min(max(_group_middle_ns(key), 0), HIGHEST_NS), count)
        self.interval_max = max(self.interval_max, max(pending))
        del pending[:]

    def cut(self, start_ms: float = 0.0, end_ms: float = 0.0) -> HdrHistogram:
        """Close the current interval: add it to the total and return it (stamped with its
        start and end, epoch milliseconds, for the interval log); a new one begins."""
        self.fold()
        interval = self.interval
        interval.set_start_time_stamp(start_ms)
        interval.set_end_time_stamp(end_ms)
        self.total.add(interval)
        self.max = max(self.max, self.interval_max)
        self.interval, self.interval_max = new_histogram(), 0.0
        return interval

    def absorb(self, encoded: str | bytes, interval_max: float) -> None:
        """Add another process's interval (``encode()`` of a ``cut()``) to the current one."""
        self.interval.decode_and_add(encoded)
        self.interval_max = max(self.interval_max, interval_max)

    def count(self) -> int:
        """Samples recorded so far, the current interval included."""
        self.fold()
        return self.total.get_total_count() + self.interval.get_total_count()

    def whole_run(self) -> HdrHistogram:
        """Total plus the current interval, without closing it."""
        self.fold()
        merged = new_histogram()
        merged.add(self.total)
        merged.add(self.interval)
        return merged

    def summary_ms(self) -> dict:
        """The whole run's percentiles and exact max, in milliseconds."""
        whole = self.whole_run()
        return percentiles_ms(whole, max(self.max, self.interval_max) or None)

    def merge(self, other: Latency) -> None:
        """Add another Latency (e.g. a worker's, in the same process) to this one."""
        other.fold()
        self.fold()
        self.total.add(other.total)
        self.interval.add(other.interval)
        self.max = max(self.max, other.max)
        self.interval_max = max(self.interval_max, other.interval_max)
