"""Replaying a recording: positions and the picture at each (timeline.py), playing and
stepping through them (player.py), and the recording as a read-only Source (source.py)."""
