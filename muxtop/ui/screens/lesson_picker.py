"""`L`: the lessons, to pick one. Enter starts it over this server; esc closes."""

from __future__ import annotations

from typing import ClassVar

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import OptionList
from textual.widgets.option_list import Option

from muxtop.lessons.format import Lesson
from muxtop.ui import format as fmt


class LessonPicker(ModalScreen[Lesson | None]):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,L,q", "close", "close", tooltip="Back to the dashboard"),
    ]

    def __init__(self, lessons: list[Lesson]) -> None:
        super().__init__()
        self.lessons = lessons

    def compose(self) -> ComposeResult:
        with Vertical(id="lesson-picker"):
            yield OptionList(*[self._option(n, lesson) for n, lesson in
                               enumerate(self.lessons, 1)], id="lesson-list")

    def _option(self, number: int, lesson: Lesson) -> Option:
        prompt = Table.grid(padding=(0, 1), expand=True)
        prompt.add_column(no_wrap=True, width=3)
        prompt.add_column(ratio=1)
        # Its own column, so "3 min" never wraps into "3" and "min" on a narrow terminal.
        prompt.add_column(no_wrap=True, justify="right")
        prompt.add_row(Text(f"{number}.", "bold"), Text(fmt.plain(lesson.title), "bold"),
                       Text(f"{lesson.minutes} min", "dim"))
        prompt.add_row("", Text(f"{fmt.plain(lesson.summary)} · "
                                f"muxtop lesson {lesson.name.split('-', 1)[-1]}", "dim"), "")
        return Option(prompt, id=lesson.name)

    def on_mount(self) -> None:
        panel = self.query_one("#lesson-picker")
        panel.border_title = "lessons"
        panel.border_subtitle = "enter starts one · esc closes"
        options = self.query_one(OptionList)
        options.highlighted = 0
        options.focus()

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        event.stop()
        self.dismiss(self.lessons[event.option_index])

    def action_close(self) -> None:
        self.dismiss(None)
