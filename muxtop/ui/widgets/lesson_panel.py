"""The lesson under way, below the panels: what to read, the question and its choices, then
the explanation with the numbers just measured. Keys: 1-3 answer (as many as the question
has choices), n next, esc leaves (the app's bindings, so they work wherever the focus is)."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static

from muxtop.lessons.runner import ASK, DONE, EXPLAIN, RUN, SETUP, THEN, LessonRun
from muxtop.snapshot import Snapshot
from muxtop.ui import format as fmt
from muxtop.ui.actions import BY_NAME

# The dashboard's widget for each panel name a lesson may `watch`.
WATCHED = {"header": "#header", "table": "#conns", "ready-log": "#ready-log", "step": "#step",
           "diagnoses": "#diagnoses", "floods": "#flood-panel", "trends": "#trends"}
LOWER = frozenset(WATCHED[name] for name in ("ready-log", "step", "diagnoses", "floods",
                                             "trends"))  # the panels below the table


class LessonPanel(Static):
    DEFAULT_CSS = """
    LessonPanel {
        display: none;
        height: auto;
        max-height: 16;
        border: round $accent;
        border-title-color: $text-accent;
        border-subtitle-color: $text-muted;
        padding: 0 1;
        overflow-y: auto;
    }
    LessonPanel.-shown { display: block; }
    """

    def __init__(self, **kwargs) -> None:
        super().__init__("", **kwargs)
        self._shown: Text | None = None

    def show(self, run: LessonRun | None, snapshot: Snapshot | None) -> None:
        self.set_class(run is not None and run.phase != DONE, "-shown")
        if run is None or run.phase == DONE:
            self._shown = None
            return
        lesson = run.lesson
        title = f"lesson: {fmt.title(lesson.title)} · step {run.index + 1} of " \
            f"{len(lesson.steps)}"
        keys = _keys(run)
        # Set only when they change: each assignment repaints the whole widget.
        if title != self.border_title:
            self.border_title = title
        if keys != self.border_subtitle:
            self.border_subtitle = keys
        text = lesson_text(run, snapshot)
        if text != self._shown:
            self._shown = text
            self.update(text)


def _keys(run: LessonRun) -> str:
    if run.phase == ASK:
        answer = BY_NAME["answer"].first(len(run.step.choices))
        return f"{answer.display} {answer.label} · esc leaves"
    if run.phase == EXPLAIN:
        last = run.index + 1 == len(run.lesson.steps)
        return f"n {'ends the lesson' if last else 'next step'} · esc leaves"
    return "esc leaves"


def lesson_text(run: LessonRun, snapshot: Snapshot | None) -> Text:
    """Before the answer: what to read, the question and its choices. After: the question,
    the verdict and the explanation first (on a short screen that is what must show)."""
    step = run.step
    text = Text()
    if run.phase == EXPLAIN:
        if step.ask:
            text.append(fmt.plain(run.text(snapshot, step.ask)) + " ", "bold")
            right = fmt.plain(step.choices[step.answer - 1])
            # The choice in quotes: its own words may start with a number ("1: the edge is
            # reported once"), which beside the key read as a stutter ("it is 1, 1: ...").
            if run.chosen == step.answer:
                text.append(f'Right: "{right}".', "bold green")
            else:
                text.append(f'Not quite: you chose {run.chosen}; the answer is {step.answer}, '
                            f'"{right}".', "bold yellow")
            text.append("\n")
        text.append(fmt.plain(run.explained))
        return text
    text.append(fmt.plain(run.text(snapshot, step.say)))
    if step.ask:
        text.append("\n\n")
        text.append(fmt.plain(run.text(snapshot, step.ask)), "bold")
        for number, choice in enumerate(step.choices, 1):
            mark = "▸ " if number == run.chosen else "  "
            text.append(f"\n{mark}{number}  {fmt.plain(choice)}")
    waiting = {SETUP: "muxtop is setting this up…", THEN: "muxtop is doing it…",
               RUN: "watch the dashboard…", ASK: ""}[run.phase]
    if run.phase == SETUP and step.ask:
        waiting = "muxtop is setting this up; then answer"
    if step.watch and waiting:
        waiting += f" (look at the {step.watch})"
    if waiting:
        text.append(f"\n{waiting}", "italic")
    if run.trouble:
        text.append(f"\n{fmt.plain(run.trouble)}", "yellow")
    return text
