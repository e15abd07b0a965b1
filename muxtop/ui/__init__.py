"""The Textual dashboard: a pure function of the latest Snapshot plus UI state."""
