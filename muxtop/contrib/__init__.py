"""Files to copy into a Prometheus setup (installed with the package; docs/metrics.md):
alerts.yml (alerting rules for muxtop's findings), recording.yml (recording rules) and
prometheus.yml (an example scrape config). `path(name)` finds one in the installed copy."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

FILES = ("alerts.yml", "recording.yml", "prometheus.yml")


def path(name: str) -> Path:
    """Where the installed copy of contrib file `name` is."""
    return Path(str(resources.files(__package__) / name))
