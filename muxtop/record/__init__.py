"""Recordings: every wait call, Snapshot, notice, finding and command of a run, in one
append-only file (format.py) that a recorder thread writes as it goes (recorder.py, started
and stopped by control.py) and that `muxtop replay` reads back (reader.py)."""
