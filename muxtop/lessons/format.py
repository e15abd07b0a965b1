"""The lesson file: a small TOML document a teacher can write without touching code.

    title = "The O(n) scan"                       # required
    summary = "An idle herd on poll and on epoll"  # required, one line for `muxtop lesson`
    minutes = 3                                    # optional, 1-5: how long it takes

    [[step]]                                       # one or more, in order
    say = "What the learner reads first"           # required
    do = { backend = "poll", herd = 1000 }         # optional: what muxtop sets up first
    ask = "What will one poll() call cost?"        # optional: a question, asked before...
    choices = ["about the same", "much more"]      # ...the learner sees (2-6 choices)
    answer = 2                                     # the right choice, from 1
    then = { backend = "epoll" }                   # optional: done once answered
    after = 2.0                                    # optional: seconds to let run, then measure
    watch = "header"                               # optional: the panel to look at (PANELS)
    keep = { poll_cost = "cpu_per_call" }          # optional: measures kept for later steps
    explain = "poll took {poll_cost} a call"       # required with ask; {name}: a measure

Actions (`do`, `then`): backend, trigger (names), lab (the bug-lab switches to have on; the
others go off), herd (idle clients to hold; 0 lets them go), send (one client sends that many
bytes and reads the echo), flood (a table of clients, messages, size, rate, pattern),
stop_floods (true), reserve_fds (hold that many fds open in muxtop's process, so the next
connections get higher numbers; 0 releases them), fd_headroom (lower the fd limit to that
many above the fds open now; 0 restores it), step (stop the engine and make that many wait
calls, one every STEP_EVERY seconds), continue (true: run free again). Whatever a lesson
changed is put back when it ends.

`check` names the line and the problem of anything else; the dashboard refuses a lesson with
the same message.
"""

from __future__ import annotations

import re
import string
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path

from muxtop.backends import NAMES, TRIGGERS
from muxtop.engine.config import LABS
from muxtop.flood.patterns import PATTERNS, misfit
from muxtop.flood.process import FloodSettings
from muxtop.lessons.measures import MEASURES
from muxtop.userfiles import UserFileError, read_text

PANELS = ("header", "table", "ready-log", "step", "diagnoses", "floods", "trends")
MAX_LESSON_BYTES = 256 * 1024  # the built-in ones are a few KiB
MAX_SEND = 16 * 1024 * 1024
MAX_CLIENTS = 5000
_FLOOD_KEYS = {"clients": (int, 1, MAX_CLIENTS), "messages": (int, 0, 100_000),
               "size": (int, 1, MAX_SEND), "rate": ((int, float), 0, 10_000)}
# How a lesson's flood table names its settings in flood.patterns.misfit's words.
_FLOOD_NAMES = {"messages": "messages", "size": "size", "rate": "rate", "open_loop": "open loop"}


class LessonError(ValueError):
    """A lesson file that cannot run; the message names its line and the problem."""


@dataclass(frozen=True)
class Step:
    say: str
    do: dict = field(default_factory=dict)
    ask: str = ""
    choices: tuple[str, ...] = ()
    answer: int = 0  # from 1; 0: no question
    then: dict = field(default_factory=dict)
    after: float = 0.0
    watch: str = ""
    keep: dict[str, str] = field(default_factory=dict)
    explain: str = ""


@dataclass(frozen=True)
class Lesson:
    name: str  # the file's stem: what `muxtop lesson NAME` takes
    title: str
    summary: str
    minutes: int
    steps: tuple[Step, ...]


def load(path: Path) -> Lesson:
    """Read and check a lesson file; LessonError (with the line) if it cannot run."""
    try:
        text = read_text(path, MAX_LESSON_BYTES)
    except UserFileError as exc:
        raise LessonError(str(exc)) from None
    return parse(text, path.stem, where=str(path))


def parse(text: str, name: str, where: str = "lesson") -> Lesson:
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise LessonError(f"{where}: not TOML: {exc}") from None
    except RecursionError:  # tomllib recurses once per nested array or inline table
        raise LessonError(f"{where}: not TOML muxtop reads: arrays or tables nested "
                          "too deep") from None
    lines = _Lines(text, where)
    _known(doc, {"title", "summary", "minutes", "step"}, lines.top)
    title = _text(doc, "title", lines.top, required=True)
    summary = _text(doc, "summary", lines.top, required=True)
    minutes = doc.get("minutes", 5)
    if not isinstance(minutes, int) or isinstance(minutes, bool) or not 1 <= minutes <= 5:
        raise lines.top("minutes", "must be a whole number of minutes from 1 to 5")
    raw = doc.get("step")
    if not isinstance(raw, list) or not raw or not all(isinstance(s, dict) for s in raw):
        raise LessonError(f"{where}: no [[step]]: a lesson needs at least one step")
    kept: set[str] = set()
    steps = tuple(_step(s, lines.step(i), kept) for i, s in enumerate(raw))
    return Lesson(name, title, summary, minutes, steps)


def _step(raw: dict, at: Callable[[str, str], LessonError], kept: set[str]) -> Step:
    _known(raw, {"say", "do", "ask", "choices", "answer", "then", "after", "watch", "keep",
                 "explain"}, at)
    say = _text(raw, "say", at, required=True)
    ask = _text(raw, "ask", at)
    choices = raw.get("choices", [])
    answer = raw.get("answer", 0)
    if ask:
        if not isinstance(choices, list) or not 2 <= len(choices) <= 6 or \
                not all(isinstance(c, str) and c.strip() for c in choices):
            raise at("choices" if "choices" in raw else "ask",
                     "a question needs choices: a list of 2 to 6 texts")
        if not isinstance(answer, int) or isinstance(answer, bool) or \
                not 1 <= answer <= len(choices):
            raise at("answer" if "answer" in raw else "ask",
                     f"answer must be the number of the right choice, 1 to {len(choices)}")
        if "explain" not in raw:
            raise at("ask", "a question needs an explain: what the answer shows")
    elif "choices" in raw or "answer" in raw:
        raise at("choices" if "choices" in raw else "answer", "choices need an ask")
    after = raw.get("after", 0.0)
    if not isinstance(after, int | float) or isinstance(after, bool) or not 0 <= after <= 60:
        raise at("after", "after must be seconds from 0 to 60")
    watch = _text(raw, "watch", at)
    if watch and watch not in PANELS:
        raise at("watch", f"no panel {watch!r}; one of {', '.join(PANELS)}")
    keep = raw.get("keep", {})
    if not isinstance(keep, dict) or not all(isinstance(v, str) for v in keep.values()):
        raise at("keep", "keep must be a table of name = \"measure\"")
    for measure in keep.values():
        if measure not in MEASURES:
            raise at("keep", f"no measure {measure!r}; one of {', '.join(MEASURES)}")
    explain = _text(raw, "explain", at)
    for key, value in (("say", say), ("ask", ask), ("explain", explain)):
        _placeholders(value, key, at, known=kept | set(MEASURES))
    kept.update(keep)
    return Step(say, _actions(raw, "do", at), ask, tuple(choices), answer,
                _actions(raw, "then", at), float(after), watch, dict(keep), explain)


def _actions(raw: dict, key: str, at) -> dict:
    actions = raw.get(key, {})
    if not isinstance(actions, dict):
        raise at(key, f"{key} must be a table, like {key} = {{ backend = \"poll\" }}")
    for name, value in actions.items():
        problem = _action_problem(name, value)
        if problem:
            raise at(key, f"{key}.{name}: {problem}")
    return actions


def _action_problem(name: str, value: object) -> str | None:
    check = ACTIONS.get(name)
    if check is None:
        return f"no such action; one of {', '.join(ACTIONS)}"
    return check(value)


def _one_of(names: tuple[str, ...]) -> Callable[[object], str | None]:
    return lambda value: None if value in names else f"one of {', '.join(names)}"


def _count(low: int, high: int) -> Callable[[object], str | None]:
    def problem(value: object) -> str | None:
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            return f"a whole number from {low:,} to {high:,}"
        return None
    return problem


def _true(value: object) -> str | None:
    return None if value is True else "true, or leave it out"


def _labs(value: object) -> str | None:
    if isinstance(value, list) and all(v in LABS for v in value):
        return None
    return f"a list of bug-lab switches: {', '.join(LABS)}"


def _flood_problem(value: object) -> str | None:
    if not isinstance(value, dict):
        return "a table, like { clients = 100, messages = 10 }"
    for key, item in value.items():
        if key == "pattern":
            if item not in PATTERNS:
                return f"pattern: one of {', '.join(PATTERNS)}"
            continue
        if key not in _FLOOD_KEYS:
            return f"no flood setting {key!r}; one of pattern, {', '.join(_FLOOD_KEYS)}"
        kinds, low, high = _FLOOD_KEYS[key]
        if isinstance(item, bool) or not isinstance(item, kinds) or not low <= item <= high:
            return f"{key}: a number from {low:,} to {high:,}"
    flood = FloodSettings("", 0, **value)
    wrong = misfit(flood.pattern, messages=flood.messages, size=flood.size, rate=flood.rate,
                   open_loop=False, names=_FLOOD_NAMES)
    return None if wrong is None else f"{wrong.setting}: {wrong.problem}"


# The actions a step may take (`do`, `then`), each with the check of its value (None: fine);
# lessons/runner.py's DOING does them, under the same names.
ACTIONS: dict[str, Callable[[object], str | None]] = {
    "backend": _one_of(NAMES), "trigger": _one_of(TRIGGERS), "lab": _labs,
    "herd": _count(0, MAX_CLIENTS), "send": _count(1, MAX_SEND), "flood": _flood_problem,
    "stop_floods": _true, "reserve_fds": _count(0, 4096), "fd_headroom": _count(0, 1000),
    "step": _count(0, 200), "continue": _true,
}


def _placeholders(text: str, key: str, at, known: set[str]) -> None:
    try:
        fields = [(f, spec, conv) for _, f, spec, conv in string.Formatter().parse(text)
                  if f is not None]
    except ValueError as exc:
        raise at(key, f"a stray brace: {exc} (write {{{{ for a brace)") from None
    for name, spec, conversion in fields:
        # A name only: a format spec can pad to a gigabyte ({x:>100000000}) or raise on text
        # ({x:d}), and measure() fills names, nothing more.
        if spec or conversion is not None:
            shown = name + (f"!{conversion}" if conversion else "") + (f":{spec}" if spec else "")
            raise at(key, f"{{{shown}}}: a placeholder is a name alone, like {{{name}}} "
                     "(no :format or !conversion)")
        if name not in known:
            raise at(key, f"{{{name}}} is no measure and was not kept by an earlier step; "
                     f"measures: {', '.join(MEASURES)}")


def _text(raw: dict, key: str, at, required: bool = False) -> str:
    value = raw.get(key, "")
    if not isinstance(value, str) or (required and not value.strip()):
        raise at(key, f"{key} must be {'a non-empty' if required else 'a'} text")
    return value.strip()


def _known(raw: dict, keys: set[str], at) -> None:
    for key in raw:
        if key not in keys:
            raise at(key, f"unknown key {key!r}; a {'step' if 'say' in keys else 'lesson'} "
                     f"has {', '.join(sorted(keys))}")


class _Lines:
    """Where a key is in the text (tomllib keeps no positions): the n-th [[step]] header
    and the first `key =` line after it."""

    _STEP = re.compile(r"^\s*\[\[\s*step\s*\]\]")

    def __init__(self, text: str, where: str) -> None:
        self.lines = text.splitlines()
        self.where = where
        self.headers = [i for i, line in enumerate(self.lines) if self._STEP.match(line)]

    def top(self, key: str, problem: str) -> LessonError:
        end = self.headers[0] if self.headers else len(self.lines)
        return self._error(0, end, key, problem, fallback=0)

    def step(self, n: int) -> Callable[[str, str], LessonError]:
        start = self.headers[n] if n < len(self.headers) else 0
        end = self.headers[n + 1] if n + 1 < len(self.headers) else len(self.lines)

        def at(key: str, problem: str) -> LessonError:
            return self._error(start, end, key, f"step {n + 1}: {problem}", fallback=start)
        return at

    def _error(self, start: int, end: int, key: str, problem: str,
               fallback: int | None = None) -> LessonError:
        pattern = re.compile(rf"^\s*{re.escape(key)}\s*=")
        line = next((i for i in range(start, end) if pattern.match(self.lines[i])), fallback)
        place = f"{self.where}:{line + 1}" if line is not None else self.where
        return LessonError(f"{place}: {problem}")


def _builtin_files() -> list[Traversable]:
    """The built-in lesson files, in order (their names are numbered). Read through
    importlib.resources: they are package data, wherever pip put the package."""
    folder = resources.files(__package__) / "builtin"
    files = sorted((f for f in folder.iterdir() if f.name.endswith(".toml")),
                   key=lambda f: f.name) if folder.is_dir() else []
    if not files:
        raise LessonError(f"no built-in lessons in {folder}: this muxtop was installed "
                          "without its package data; reinstall it with pip install .")
    return files


def _stem(file: Traversable) -> str:
    return file.name.removesuffix(".toml")


def builtin() -> list[Lesson]:
    """The lessons that come with muxtop, in order; LessonError if there are none."""
    return [parse(_read(f), _stem(f), where=f"lesson {_stem(f)}") for f in _builtin_files()]


def _read(file: Traversable) -> str:
    try:
        return file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise LessonError(f"lesson {_stem(file)}: cannot read: {exc}") from None


def find(name: str) -> Lesson:
    """A built-in lesson by name (with or without its number), or a lesson file's path."""
    path = Path(name)
    if name.strip() and (path.suffix == ".toml" or path.exists()):  # Path("") is "."
        return load(path)
    files = _builtin_files()
    for f in files:
        if name in (_stem(f), _stem(f).split("-", 1)[-1]):
            return parse(_read(f), _stem(f), where=f"lesson {_stem(f)}")
    names = ", ".join(_stem(f).split("-", 1)[-1] for f in files)
    raise LessonError(f"no lesson {name!r}; the lessons are: {names}")
