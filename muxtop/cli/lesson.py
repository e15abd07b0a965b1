"""`muxtop lesson`: list the lessons, run one over a server of muxtop's own, or check a
lesson file (the format: muxtop/lessons/format.py)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from muxtop.arguments import Parser, port_number
from muxtop.engine import Engine, EngineConfig, EngineStartError
from muxtop.lessons.format import LessonError, builtin, find, load
from muxtop.printable import printable


def parser() -> argparse.ArgumentParser:
    p = Parser(
        prog="muxtop lesson",
        description="Guided lessons over muxtop's own server: muxtop sets each experiment up, "
        "asks what you expect, runs it and explains it with the numbers it just measured. "
        "Without NAME: the list.")
    p.add_argument("name", nargs="?", metavar="NAME",
                   help="a lesson (its name, its number, or a lesson file)")
    p.add_argument("--check", metavar="FILE",
                   help="check a lesson file: its line and problem, or OK")
    p.add_argument("--port", type=port_number, default=0,
                   help="TCP port of the server (default 0: a free one)")
    p.add_argument("--theme", metavar="NAME", default=None,
                   help="dashboard colours (textual-light for a projector)")
    return p


def main(argv: list[str]) -> int:
    args = parser().parse_args(argv)
    if args.check is not None:
        try:
            lesson = load(Path(args.check))
        except LessonError as exc:
            print(f"muxtop lesson: {printable(str(exc))}", file=sys.stderr)
            return 1
        print(f"{printable(args.check)}: OK, {lesson.title!r}, {len(lesson.steps)} steps")
        return 0
    try:
        if args.name is None:
            return _list()
        lesson = find(_by_number(args.name))
    except LessonError as exc:
        print(f"muxtop lesson: {printable(str(exc))}", file=sys.stderr)
        return 1
    from muxtop.ui.app import THEMES, run_dashboard

    if args.theme is not None and args.theme not in THEMES:
        parser().error(f"no theme {args.theme!r} (choose from {', '.join(THEMES)})")
    try:
        engine = Engine(EngineConfig(port=args.port)).start()
    except EngineStartError as exc:
        print(f"muxtop: {exc}", file=sys.stderr)
        return 1
    try:
        return run_dashboard(engine, theme=args.theme, lesson=lesson)
    finally:
        engine.stop()


def _by_number(name: str) -> str:
    """`muxtop lesson 3` is the third lesson."""
    if name.isdigit():
        lessons = builtin()
        if 1 <= int(name) <= len(lessons):
            return lessons[int(name) - 1].name
    return name


def _list() -> int:
    lessons = builtin()
    numbers = [f"{number}." for number in range(1, len(lessons) + 1)]
    shorts = [lesson.name.split("-", 1)[-1] for lesson in lessons]
    # Columns as wide as their longest entry: readiness-completion is 20 characters.
    wide, width = max(map(len, numbers)), max(map(len, shorts))
    for number, short, lesson in zip(numbers, shorts, lessons):
        print(f"{number:<{wide}} {short:<{width}}  {lesson.title} ({lesson.minutes} min)")
        print(f"{'':<{wide}} {'':<{width}}  {lesson.summary}")
    print("\nmuxtop lesson NAME runs one (or press L in the dashboard); esc leaves it.")
    return 0
