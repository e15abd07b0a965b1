"""The kinds of picture the dashboard draws, by Snapshot.source (see views/base.py)."""

from muxtop.snapshot import SOURCE_TRACED
from muxtop.ui.views.base import SourceView
from muxtop.ui.views.engine import ENGINE
from muxtop.ui.views.process import PROCESS
from muxtop.ui.views.traced import TRACED

VIEWS: dict[str, SourceView] = {"engine": ENGINE, "attach": PROCESS, SOURCE_TRACED: TRACED}


def view_for(kind: str) -> SourceView:
    """The view of a source kind; an unknown kind (a newer recording) draws as the engine's."""
    return VIEWS.get(kind, ENGINE)


__all__ = ["ENGINE", "PROCESS", "TRACED", "VIEWS", "SourceView", "view_for"]
