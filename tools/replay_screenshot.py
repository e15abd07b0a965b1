"""`python tools/replay_screenshot.py [SVG]`: a screenshot of a replay, timeline and all, from a
real recording.

Records an engine on an ephemeral loopback port for a few seconds of bounded echo traffic
(tools/screenshots.py's Traffic): on epoll, then switched live to select, then back to epoll
edge-triggered with the naive-edge bug lab on and one connection stuck behind it. Then it
opens the recording in the dashboard, jumps to just after the stuck read was found, steps a
few wait calls on, selects the stuck connection and saves what the dashboard shows (default
screenshots/replay.svg).
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
import time
from pathlib import Path

from muxtop.commands import SetLab, Switch
from muxtop.engine import Engine, EngineConfig
from muxtop.engine.source import EngineSource
from muxtop.record.reader import Recording
from muxtop.record.recorder import Recorder
from muxtop.replay.source import ReplaySource
from muxtop.ui.app import MuxtopApp
from screenshots import IDLE, SIZE, Traffic, sort_by


def record(path: str) -> None:
    engine = Engine(EngineConfig(port=0, stuck_after=1.0)).start()
    recorder = Recorder(EngineSource(engine), path, ["muxtop", "--record", "demo.muxrec"])
    recorder.start()
    traffic = Traffic(engine.address)
    try:
        traffic.connect(IDLE)
        traffic.start()
        time.sleep(2.0)
        engine.submit(Switch(backend="select")).result(5)
        time.sleep(2.0)
        engine.submit(Switch(backend="epoll", trigger="edge")).result(5)
        engine.submit(SetLab("naive-edge", True)).result(5)
        victim = traffic.connect(1)[0]
        victim.sendall(b"n" * 1_000_000)  # one read per edge: the rest sits in rx-q
        deadline = time.monotonic() + 10
        while not any(d.kind == "stuck-read" for d in engine.snapshot().diagnoses):
            if time.monotonic() > deadline:
                raise RuntimeError("no stuck read was found in time")
            time.sleep(0.1)
        time.sleep(1.5)
    finally:
        traffic.close()
        engine.stop()
        recorder.stop()


async def shoot(path: str, out: Path) -> None:
    with Recording.open(path) as rec:
        source = ReplaySource(rec)
        player = source.player
        found = next(e.t for e in player.events if e.kind == "finding")
        app = MuxtopApp(source, interval=None)
        async with app.run_test(size=SIZE) as pilot:
            player.seek(found + 0.3)
            await pilot.press("full_stop", "full_stop", "full_stop")
            sort_by(app, "rx_queue", descending=True)  # the stuck connection first, selected
            stuck = next(d.fd for d in app.latest.diagnoses if d.kind == "stuck-read")
            table = app.dashboard.table
            table.move_to(next(i for i, v in enumerate(table.rows)
                               if v.fd == stuck and v.kind == "conn"))
            await pilot.pause(0.3)
            out.write_text(app.export_screenshot(title="muxtop replay"), encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    out = Path(argv[0] if argv else "screenshots/replay.svg")
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as folder:
        path = str(Path(folder) / "demo.muxrec")
        record(path)
        asyncio.run(shoot(path, out))
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
