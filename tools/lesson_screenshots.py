"""`python tools/lesson_screenshots.py [DIR]`: SVG screenshots of a lesson from a real run.

Runs the level-vs-edge lesson over an engine on an ephemeral loopback port and saves the
question (the engine stopped, the client's message waiting) and the explanation after
muxtop stepped through it: lesson-question.svg, lesson-explain.svg; and the step panel in
step mode with the lesson's numbers: lesson-step.svg.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from muxtop.engine import Engine, EngineConfig
from muxtop.engine.source import EngineSource
from muxtop.lessons.format import find
from muxtop.lessons.runner import ASK, EXPLAIN
from muxtop.ui.app import MuxtopApp

SIZE = (160, 48)


async def until(predicate, pilot, timeout: float = 30.0) -> None:
    for _ in range(int(timeout / 0.05)):
        if predicate():
            return
        await pilot.pause(0.05)
    raise SystemExit("the lesson did not get there in time")


async def shoot(out: Path) -> None:
    engine = Engine(EngineConfig(port=0)).start()
    try:
        app = MuxtopApp(EngineSource(engine))
        async with app.run_test(size=SIZE) as pilot:
            await until(lambda: app.latest is not None, pilot)
            app.start_lesson(find("level-edge"))
            run = app.lesson
            await until(lambda: run.phase == ASK, pilot)
            await pilot.pause(0.5)
            app.save_screenshot(str(out / "lesson-question.svg"))
            await pilot.press("2")
            await until(lambda: run.tally.stepped >= 3, pilot)
            await pilot.pause(0.3)
            app.save_screenshot(str(out / "lesson-step.svg"))
            await until(lambda: run.phase == EXPLAIN, pilot)
            await pilot.pause(0.5)
            app.save_screenshot(str(out / "lesson-explain.svg"))
            await pilot.press("escape")
            await pilot.pause(0.5)
    finally:
        engine.stop()


def main() -> None:
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "screenshots")
    out.mkdir(parents=True, exist_ok=True)
    asyncio.run(shoot(out))
    print(f"wrote lesson-question.svg, lesson-step.svg, lesson-explain.svg in {out}")


if __name__ == "__main__":
    main()
