"""A lesson running over a server of muxtop's own (the file format: lessons/format.py).

Each step: muxtop sets it up (`do`), asks (the learner predicts before seeing), does what
the answer waits for (`then`), lets it run `after` seconds, then explains with the numbers
just measured. muxtop does the setting up, never the learner. Whatever the lesson changed
(backend, trigger, bug lab, step mode, floods, held fds, the fd limit) is put back when it
ends or is left.

The runner works on a Source and a FloodLauncher and draws nothing: the dashboard ticks it and
shows it (ui/lesson_keys.py, ui/widgets/lesson_panel.py); it holds the sockets, threads and fd
limits a lesson needs, so none of that lives in the UI.
"""

from __future__ import annotations

import os
import resource
import socket
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, replace

from muxtop.commands import Continue, SetLab, Step, Switch
from muxtop.flood.process import IDLE_HERD, FloodProcess, FloodSettings
from muxtop.lessons.format import Lesson
from muxtop.lessons.measures import Tally, measure
from muxtop.snapshot import Snapshot
from muxtop.source import Source

STEP_EVERY = 0.5  # seconds between the wait calls a lesson makes itself: slow enough to watch
# The lesson's clock: `after` and STEP_EVERY are multiplied by it. 1 for people; the tests
# run every lesson at a faster pace, with the engine's stuck-after shortened to match.
PACE = 1.0
SETTLE = 15.0  # seconds an action may take to show in a Snapshot before the lesson goes on
SETUP, ASK, THEN, RUN, EXPLAIN, DONE = "setup", "ask", "then", "run", "explain", "done"


@dataclass(frozen=True)
class FloodLauncher:
    """How a lesson starts and stops floods: the dashboard's own (its panel lists them), or
    FloodProcess itself when nothing shows them."""

    launch: Callable[[FloodSettings], FloodProcess | None]  # None: not launched (it said why)
    stop: Callable[[FloodProcess], None]


class LessonClient:
    """One client of the lesson's own (`send`): sends its bytes and reads the echo back, on a
    thread, so a stopped (stepping) engine never blocks the dashboard."""

    def __init__(self, address: tuple[str, int], size: int) -> None:
        self.size = size
        self.echoed = 0
        self.error = ""
        self.sent = threading.Event()  # every byte handed to the kernel (or the send failed)
        self._sock = socket.create_connection(address, timeout=5)
        self._sock.settimeout(None)
        self._sender = threading.Thread(target=self._send, daemon=True, name="lesson-send")
        self._reader = threading.Thread(target=self._read, daemon=True, name="lesson-read")
        self._sender.start()
        self._reader.start()

    def _send(self) -> None:
        try:
            self._sock.sendall(os.urandom(self.size))
        except OSError as exc:
            self.error = exc.strerror or repr(exc)
        self.sent.set()

    def _read(self) -> None:
        try:
            while self.echoed < self.size:
                data = self._sock.recv(1 << 20)
                if not data:
                    return
                self.echoed += len(data)
        except OSError:
            pass  # closed by close(), or the server went away

    def close(self) -> None:
        try:
            self._sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self._sock.close()


class Held:
    """What a lesson holds in muxtop's own process, and lets go of at the end."""

    def __init__(self) -> None:
        self.fds: list[int] = []
        self.limit: tuple[int, int] | None = None  # the fd limit before fd_headroom

    def reserve(self, count: int) -> None:
        """Hold `count` fds (the lowest free ones); 0 lets them go."""
        self.release_fds()
        try:
            for _ in range(count):
                self.fds.append(os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC))
        except OSError:
            pass  # out of fds already: hold what we got

    def release_fds(self) -> None:
        for fd in self.fds:
            os.close(fd)
        self.fds.clear()

    def headroom(self, extra: int) -> None:
        if self.limit is None:
            self.limit = resource.getrlimit(resource.RLIMIT_NOFILE)
        if not extra:
            self.restore_limit()
            return
        soft = min(len(os.listdir("/proc/self/fd")) + extra, self.limit[0])
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, self.limit[1]))

    def restore_limit(self) -> None:
        if self.limit is not None:
            resource.setrlimit(resource.RLIMIT_NOFILE, self.limit)
            self.limit = None


class LessonRun:
    """One lesson under way: `start`, then `tick` a few times a second; `answer` and `next`
    are the learner's; `finish` puts the server back as it was."""

    def __init__(self, source: Source, launcher: FloodLauncher, lesson: Lesson) -> None:
        self.source = source
        self.launcher = launcher
        self.lesson = lesson
        self.index = -1
        self.phase = SETUP
        self.chosen = 0
        self.tally = Tally()
        self.kept: dict[str, str] = {}
        self.explained = ""  # the explanation, measured once when it is shown
        self.trouble = ""  # an action that did not take effect, in words
        self.held = Held()
        self.clients: list[LessonClient] = []
        self.floods: list[FloodProcess] = []
        self.herd: FloodProcess | None = None
        self._coming: list[tuple[FloodProcess, float]] = []  # floods until their clients connect
        self._actions: deque[tuple[str, object]] = deque()
        self._waiting: tuple[Callable[[Snapshot], bool], float, str] | None = None
        self._steps_left = 0
        self._step_asked: Future | None = None
        self._counted = 0  # StepInfo.steps already in the tally
        self._next_step_at = 0.0
        self._run_until = 0.0
        s = source.latest()
        self.initial = (s.backend, s.trigger, s.lab) if s is not None else None
        self.was_stepping = s is not None and s.step is not None

    @property
    def step(self):
        return self.lesson.steps[self.index]

    # ---- the learner -------------------------------------------------------------------

    def start(self) -> None:
        self._enter(0)

    def answer(self, choice: int) -> bool:
        """The learner's prediction; False when there is no question to answer now."""
        step = self.step
        if self.phase != ASK or not 1 <= choice <= len(step.choices):
            return False
        self.chosen = choice
        self.tally.answer = step.choices[choice - 1]
        self.tally.right = step.choices[step.answer - 1]
        self._queue(step.then)
        self.phase = THEN
        return True

    def next(self) -> bool:
        """On to the next step (or the end); False while this one is not explained yet."""
        if self.phase != EXPLAIN:
            return False
        if self.index + 1 < len(self.lesson.steps):
            self._enter(self.index + 1)
        else:
            self.finish()
        return True

    def finish(self) -> None:
        """End (or leave) the lesson and put the server back as it was."""
        if self.phase == DONE:
            return
        self.phase = DONE
        self._actions.clear()
        self._coming.clear()
        self._steps_left = 0
        send = self.source.submit
        latest = self.source.latest()
        if not self.was_stepping:
            send(Continue())
        if self.initial is not None:
            backend, trigger, lab = self.initial
            now = latest.lab if latest is not None else frozenset()
            for name in sorted(now ^ lab):
                send(SetLab(name, name in lab))
            send(Switch(backend, trigger))
        for flood in [*self.floods, *([self.herd] if self.herd else [])]:
            self.launcher.stop(flood)
        for client in self.clients:
            client.close()
        self.held.release_fds()
        self.held.restore_limit()

    # ---- the steps ---------------------------------------------------------------------

    def _enter(self, index: int) -> None:
        self.index = index
        self.phase = SETUP
        self.chosen = 0
        self.tally = Tally()
        self.explained = self.trouble = ""
        latest = self.source.latest()
        self._counted = latest.step.steps if latest is not None and latest.step else 0
        self._queue(self.step.do)

    def _queue(self, actions: dict) -> None:
        self._actions.extend(actions.items())

    def tick(self) -> None:
        """Move the lesson on: the next action once the last one shows, the next step of
        the engine, the explanation when the run is over."""
        if self.phase == DONE:
            return
        snapshot = self.source.latest()
        if snapshot is None:
            return
        now = time.monotonic()
        self._count(snapshot)
        if not self._settled(snapshot, now) or not self._stepped(snapshot, now):
            return
        while self._actions and self._waiting is None:
            name, value = self._actions.popleft()
            try:
                DOING[name](self, value, snapshot, now)
            except (OSError, ValueError, RuntimeError) as exc:  # out of fds, a refused connect
                self.trouble = f"{name} failed: {exc}; the lesson goes on"
        if self._waiting is not None or self._steps_left or not self._floods_up(now):
            return
        step = self.step
        if self.phase == SETUP:
            self.phase = ASK if step.ask else RUN
            self._run_until = now + step.after * PACE
        elif self.phase == THEN:
            self.phase = RUN
            self._run_until = now + step.after * PACE
        elif self.phase == RUN and now >= self._run_until:
            self.explained = measure(step.explain or "", snapshot, self.tally, self.kept)
            for name, what in step.keep.items():
                self.kept[name] = measure("{" + what + "}", snapshot, self.tally, {})
            self.phase = EXPLAIN

    def text(self, snapshot: Snapshot | None, template: str) -> str:
        """`say` and `ask` with their measures as they stand now."""
        if snapshot is None:
            return template
        return measure(template, snapshot, self.tally, self.kept)

    def _settled(self, snapshot: Snapshot, now: float) -> bool:
        if self._waiting is None:
            return True
        seen, deadline, what = self._waiting
        if seen(snapshot):
            self._waiting = None
            return True
        if now >= deadline:
            self.trouble = f"{what} did not show in {SETTLE:.0f} s; the lesson goes on"
            self._waiting = None
            return True
        return False

    def _floods_up(self, now: float) -> bool:
        """Every flood this step launched has all its clients connected (or has ended). The
        step's clock starts then, not at the launch: on a busy machine a flood takes a while
        to come up, and what it does is what the step measures. The step's other actions go
        on meanwhile (the fd limit must fall while the clients still come)."""
        coming = []
        for flood, deadline in self._coming:
            connected = (flood.progress or {}).get("connected", 0)
            if not flood.running or connected >= flood.args.clients:
                continue
            if now >= deadline:
                self.trouble = (f"the flood's {flood.args.clients:,} clients did not connect in "
                                f"{SETTLE:.0f} s; the lesson goes on")
                continue
            coming.append((flood, deadline))
        self._coming = coming
        return not coming

    def _stepped(self, snapshot: Snapshot, now: float) -> bool:
        """The wait calls the lesson makes itself, one each STEP_EVERY, each counted once
        its Snapshot is out (the engine answers a Step after publishing it)."""
        asked = self._step_asked
        if asked is not None:
            if not asked.done():
                return False
            self._step_asked = None
            self._steps_left -= 1
        if self._steps_left and now >= self._next_step_at and snapshot.step is not None:
            self._step_asked = self.source.submit(Step())
            self._next_step_at = now + STEP_EVERY * PACE
        return not self._steps_left

    def _count(self, snapshot: Snapshot) -> None:
        """Each stepped wait call once, the lesson's own and the learner's (`.`): a step the
        learner makes faster than the dashboard polls is seen only by its last picture."""
        step = snapshot.step
        if step is None or step.steps == self._counted:
            return
        self._counted = step.steps  # changed: a new step (or a new step mode's first)
        if not step.seq:
            return
        tally = self.tally
        tally.stepped += 1
        reads = [f.read for f in step.fds if f.role == "connection" and f.read]
        if reads:
            tally.stepped_reads += 1
            tally.stepped_read += sum(reads)

    def _wait(self, seen: Callable[[Snapshot], bool], what: str, now: float) -> None:
        self._waiting = (seen, now + SETTLE, what)

    # ---- the actions (`do`, `then`), one each; lessons/format.py checks their values -------

    def _switch_to(self, name: str, value: object, now: float) -> None:
        future = self.source.submit(Switch(**{name: value}))
        # Done once answered: a refusal is what some lessons are about.
        self._wait(lambda s: future.done() and (not future.result().ok or
                                                getattr(s, name) == value),
                   f"the switch to {value}", now)

    def _switch_backend(self, value: object, snapshot: Snapshot, now: float) -> None:
        self._switch_to("backend", value, now)

    def _switch_trigger(self, value: object, snapshot: Snapshot, now: float) -> None:
        self._switch_to("trigger", value, now)

    def _lab(self, value: object, snapshot: Snapshot, now: float) -> None:
        wanted = frozenset(value)
        futures = [self.source.submit(SetLab(lab, lab in wanted))
                   for lab in sorted(snapshot.lab ^ wanted)]
        self._wait(lambda s: all(f.done() for f in futures) and s.lab == wanted,
                   "the bug-lab switches", now)

    def _send(self, value: object, snapshot: Snapshot, now: float) -> None:
        client = LessonClient(self._address(), int(value))
        self.clients.append(client)
        # On: once the bytes are in the kernel (a stopped engine finds them all queued).
        self._wait(lambda s: client.sent.is_set(), f"sending {int(value):,} bytes", now)

    def _flood(self, value: object, snapshot: Snapshot, now: float) -> None:
        flood = self.launcher.launch(FloodSettings(*self._address(), **value))
        if flood is not None:
            self.floods.append(flood)
            self._coming.append((flood, now + SETTLE))

    def _stop_floods(self, value: object, snapshot: Snapshot, now: float) -> None:
        for flood in self.floods:
            self.launcher.stop(flood)
        self.floods.clear()

    def _reserve_fds(self, value: object, snapshot: Snapshot, now: float) -> None:
        self.held.reserve(int(value))

    def _fd_headroom(self, value: object, snapshot: Snapshot, now: float) -> None:
        self.held.headroom(int(value))

    def _step(self, value: object, snapshot: Snapshot, now: float) -> None:
        if snapshot.step is None:
            self.source.submit(Step())
            self._wait(lambda s: s.step is not None, "step mode", now)
        self._steps_left += int(value)
        self._next_step_at = now

    def _continue(self, value: object, snapshot: Snapshot, now: float) -> None:
        self.source.submit(Continue())
        self._wait(lambda s: s.step is None, "leaving step mode", now)

    def _herd(self, value: object, snapshot: Snapshot, now: float) -> None:
        """Hold `value` idle clients (one flood process), letting the last herd go first:
        gone from the server before the new one comes (fds are handed out lowest first)."""
        count = int(value)
        if self.herd is not None:
            self.launcher.stop(self.herd)
            left = max(snapshot.open_connections - self.herd.args.clients, 0)
            self.herd = None
            self._actions.appendleft(("herd", count))
            self._wait(lambda s: s.open_connections <= left, "the idle clients leaving", now)
            return
        if not count:
            return
        herd = self.launcher.launch(replace(IDLE_HERD, clients=count).at(*self._address()))
        if herd is not None:
            self.herd = herd
            self._wait(lambda s: s.open_connections >= count, f"{count:,} idle clients", now)

    def _address(self) -> tuple[str, int]:
        target = self.source.flood_target
        if target is None:
            raise RuntimeError("this lesson needs muxtop's own server")
        return target


# What each lesson action does: the same names as lessons/format.py's ACTIONS, which checks them.
DOING: dict[str, Callable[[LessonRun, object, Snapshot, float], None]] = {
    "backend": LessonRun._switch_backend, "trigger": LessonRun._switch_trigger,
    "lab": LessonRun._lab, "herd": LessonRun._herd, "send": LessonRun._send,
    "flood": LessonRun._flood, "stop_floods": LessonRun._stop_floods,
    "reserve_fds": LessonRun._reserve_fds, "fd_headroom": LessonRun._fd_headroom,
    "step": LessonRun._step, "continue": LessonRun._continue,
}
