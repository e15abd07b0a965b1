"""Lessons from the dashboard: L picks one, n, 1-6 and esc go through it; a timer ticks the
run (muxtop.lessons.runner) and redraws the lesson panel."""

from __future__ import annotations

from muxtop.lessons.format import Lesson, LessonError
from muxtop.lessons.format import builtin as builtin_lessons
from muxtop.lessons.runner import DONE, FloodLauncher, LessonRun
from muxtop.ui.screens.lesson_picker import LessonPicker


class LessonKeys:
    """The MuxtopApp's lesson keys (a mixin: it works on the app's state)."""

    def action_lessons(self) -> None:
        try:
            lessons = builtin_lessons()
        except LessonError as exc:
            self.notify(str(exc), title="lessons", severity="error")
            return
        self.push_screen(LessonPicker(lessons), self._picked)

    def _picked(self, lesson: Lesson | None) -> None:
        if lesson is not None:
            self.start_lesson(lesson)

    def start_lesson(self, lesson: Lesson) -> None:
        """Run a lesson over this server (one at a time: a new one ends the last)."""
        why = self.why_not("lessons")
        if why is not None:
            self.notify(f"no lesson here: {why}", severity="warning")
            return
        if self.lesson is not None:
            self.lesson.finish()
        # Its floods go through the app's launcher, so the floods panel lists them.
        self.lesson = LessonRun(self.source, FloodLauncher(self.launch_flood, self.floods.stop),
                                lesson)
        self.lesson.start()
        if self._lesson_timer is None:
            self._lesson_timer = self.set_interval(0.1, self._lesson_tick)
        self._lesson_tick()
        self.refresh_bindings()

    def _lesson_tick(self) -> None:
        run = self.lesson
        if run is None or not self.dashboard.ready:
            return
        phase = run.phase
        run.tick()
        self.dashboard.show_lesson(run, self.source.latest())
        if run.phase != phase:
            self.refresh_bindings()  # n and 1-6 act in some phases only (a question, explained)
        if run.phase == DONE:
            self.lesson = None
            self.dashboard.show_lesson(None, None)
            if self._lesson_timer is not None:
                self._lesson_timer.stop()
                self._lesson_timer = None
            self.refresh_bindings()

    def action_answer(self, choice: int) -> None:
        if self.lesson is not None and self.lesson.answer(choice):
            self._lesson_tick()
            self.refresh_bindings()

    def action_lesson_next(self) -> None:
        if self.lesson is not None and self.lesson.next():
            if self.lesson.phase == DONE:
                self.notify(f"lesson over: {self.lesson.lesson.title}. The server is as it "
                            "was.", timeout=5)
            self._lesson_tick()
            self.refresh_bindings()

    def action_leave_lesson(self) -> None:
        if self.lesson is not None:
            self.lesson.finish()
            self.notify("left the lesson; the server is as it was", timeout=3)
            self._lesson_tick()
