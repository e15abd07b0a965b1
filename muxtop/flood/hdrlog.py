"""``--hdr-log FILE``: the flood's latency as a standard HdrHistogram interval log (format 1.2),
one line per progress interval, values in nanoseconds. HdrHistogram's own tools read it:
``HistogramLogProcessor -i FILE`` turns it into percentile series (in ms, its default unit
ratio for ns) for the plotter, and ``hdrh.log.HistogramLogReader`` parses it in Python."""

from __future__ import annotations

import math
import time
from datetime import datetime

from hdrh.histogram import HdrHistogram
from hdrh.log import HistogramLogWriter

from muxtop.userfiles import create


class IntervalLog:
    """An open interval log; timestamps in it are seconds since ``start`` (epoch seconds)."""

    def __init__(self, path: str, *, start: float | None = None, comment: str = "",
                 force: bool = False) -> None:
        """UserFileError if `path` cannot be a new log (it exists and not `force`, it is a
        FIFO, a device, a directory...)."""
        # A whole millisecond: StartTime is written to 3 decimals, BaseTime to 6, and a reader
        # skips any interval that starts before StartTime — a StartTime rounded up past
        # BaseTime would lose the first one.
        self.start = math.floor((time.time() if start is None else start) * 1000) / 1000
        self._file = create(path, force=force)  # closed in close()
        self._writer = HistogramLogWriter(self._file)
        self._writer.base_time = self.start * 1000.0
        if comment:
            self._writer.output_comment(f"[{comment}]")
        self._writer.output_log_format_version()
        # Written by hand: the package's output_start_time() calls a datetime method that
        # does not exist (iso_format), and takes seconds for milliseconds.
        stamp = datetime.fromtimestamp(self.start).isoformat(" ")
        self._file.write(f"#[StartTime: {self.start:.3f} (seconds since epoch), {stamp}]\n")
        self._writer.output_base_time(self.start * 1000.0)
        self._writer.output_legend()
        self._file.flush()

    def write(self, interval: HdrHistogram) -> None:
        """One interval line; the histogram carries its start and end (epoch ms)."""
        self._writer.output_interval_histogram(interval)
        self._file.flush()

    def close(self) -> None:
        self._file.close()
