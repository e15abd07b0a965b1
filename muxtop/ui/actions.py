"""Every key of the dashboard, once: one table of actions that the key bindings, check_action,
the refusal notices, the footer, the command palette and the help all read (as Redis's
command table feeds its parser, its ACLs and COMMAND INFO).

An Action says what it needs (Needs); what holds now comes as one `Now`, built by the app from
the source, its features and the screen. A need has a scope: a `source` need missing means the
key does not exist for this source (no footer, no help, no palette); a `hidden` one, that the
key does nothing now and stays out of the footer; a `now` one greys the key out. Whatever the
scope, pressing a key that cannot act says why (a key this source lacks, where it acts), but
esc, which stays quiet.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Literal

from textual.binding import Binding

from muxtop.backends import BACKENDS, COMPLETION, LEVEL, NAMES, TRIGGERS
from muxtop.snapshot import ConnView
from muxtop.ui.rows import can_act_on


@dataclass(frozen=True)
class Now:
    """What the keys depend on, at one moment."""

    read_only: str | None  # why the source refuses commands; None: it takes them
    player: bool  # the source is a recording that plays
    recorder: bool  # the source can be recorded (R)
    own_engine: bool  # the picture is of muxtop's own engine: step mode, lessons
    flood_target: bool  # a server of our own to flood
    floods_running: bool
    lesson: bool  # a lesson is running
    stepping: bool  # the engine is in step mode
    mode: tuple[str, str] | None  # (backend, trigger), or as a Switch on its way makes it
    highest_fd: int  # the highest open fd (-1: none)
    selected: ConnView | None  # the table's selected row
    has_waits: bool  # the view has a ready-list log
    filtering: bool  # a filter is set or being typed
    targets: int | None = None  # processes watched (attach --name, several PIDs); None: one
    proxies: bool = False  # the source has proxies whose toxics can change (--toxic, --api)
    proxy: bool = False  # the server is a proxy: what answers a flood is its upstream
    question: int = 0  # the choices of the lesson's question waiting for an answer; 0: none
    explained: bool = False  # the lesson's step is explained: n goes on


Scope = Literal["source", "hidden", "now"]


@dataclass(frozen=True)
class Need:
    holds: Callable[[Now], bool]
    why: Callable[[Now], str]  # in words a person can act on: where the key acts
    scope: Scope = "now"


def next_backend(now: Now) -> str | None:
    """The next backend after the current one that can take the trigger mode and every open
    fd (select watches only fds below FD_SETSIZE)."""
    if now.mode is None:
        return None
    backend, trigger = now.mode
    here = NAMES.index(backend) if backend in NAMES else -1
    for step in range(1, len(NAMES)):
        name = NAMES[(here + step) % len(NAMES)]
        if can_take(name, trigger, now.highest_fd):
            return name
    return None


def can_take(backend: str, trigger: str, highest_fd: int) -> bool:
    cls = BACKENDS[backend]
    return trigger in cls.triggers and (cls.fd_limit is None or highest_fd < cls.fd_limit) \
        and cls.unavailable() is None


def unavailable(backend: str) -> str | None:
    """Why a backend cannot run in this process at all (uring where io_uring is disabled)."""
    why = BACKENDS[backend].unavailable()
    return None if why is None else f"{backend} is unavailable: {why}"


def _no_backend(now: Now) -> str:
    backend, trigger = now.mode or ("", "")
    able = [n for n in NAMES if trigger in BACKENDS[n].triggers and unavailable(n) is None]
    if [n for n in able if n != backend]:
        limited = [n for n in able if not can_take(n, trigger, now.highest_fd)]
        return (f"fd {now.highest_fd} is open: {' and '.join(limited)} watch only fds below "
                f"{BACKENDS[limited[0]].fd_limit} (FD_SETSIZE)")
    # Why the others cannot take this mode, and the t presses back to level (as t cycles).
    missing = [why for n in NAMES if n != backend and trigger in BACKENDS[n].triggers
               and (why := unavailable(n))]
    having = [n for n in NAMES if trigger in BACKENDS[n].triggers]
    others = [n for n in NAMES if n not in having]
    cycle = [t for t in TRIGGERS if backend in BACKENDS and t in BACKENDS[backend].triggers]
    here = cycle.index(trigger) if trigger in cycle else 0
    steps = [trigger, *(cycle[here + 1:] + cycle[:here])]
    back = " → ".join(steps[:steps.index(LEVEL) + 1] if LEVEL in steps else steps)
    if trigger == COMPLETION:
        why = (f"completion needs {' or '.join(having)}: {' and '.join(others)} only say that "
               "an fd is ready, the reading is muxtop's")
    else:
        why = (f"{trigger} triggering needs {' or '.join(having)}: {' and '.join(others)} "
               "report readiness level-triggered only")
    return "; ".join([*missing, f"{why}. Press t until the mode is level ({back}), then b."])


def _one_trigger(now: Now) -> bool:
    backend = now.mode[0] if now.mode else None
    return backend not in BACKENDS or len(BACKENDS[backend].triggers) > 1


def _level_only(now: Now) -> str:
    able = [n for n in NAMES if len(BACKENDS[n].triggers) > 1]
    return (f"{now.mode[0] if now.mode else '?'} reports readiness level-triggered only: "
            f"edge and oneshot need {' or '.join(able)} (b switches backend)")


COMMANDS = Need(lambda n: n.read_only is None, lambda n: n.read_only or "this view is read-only")
PLAYER = Need(lambda n: n.player, lambda n: "only a recording plays: muxtop replay FILE",
              "source")
NO_PLAYER = Need(lambda n: not n.player, lambda n: "a recording plays instead", "source")
RECORDER = Need(lambda n: n.recorder, lambda n: "this is a recording already" if n.player
                else "nothing here to record: R records muxtop's own server", "source")
OWN_ENGINE = Need(lambda n: n.own_engine and not n.player,
                  lambda n: "only muxtop's own engine does this"
                  + (f": {n.read_only}" if n.read_only else ""), "source")
WAITS = Need(lambda n: n.has_waits, lambda n: "this view has no ready-list log", "source")
FLOODS = Need(lambda n: n.flood_target, lambda n: "no server of our own to flood here"
              + (f": {n.read_only}" if n.read_only else ""))
# f, F and the lessons send echo traffic and check every byte comes back: through a proxy the
# upstream answers, and it need not echo (redis, HTTP): every client failed with one-way
# findings. The idle herd only holds connections: it works through any proxy.
ECHOED = Need(lambda n: not n.proxy, lambda n: "a proxy passes the flood to its upstream, "
              "which need not echo: f, F and the lessons check every byte comes back. "
              "h holds idle connections through it; load the upstream with its own tools")
RUNNING_FLOOD = Need(lambda n: n.floods_running, lambda n: "no flood is running")
STEPPING = Need(lambda n: n.stepping, lambda n: "the engine is not stepping: . stops it "
                "before its next wait call", "hidden")
LESSON = Need(lambda n: n.lesson, lambda n: "no lesson is running: L picks one", "hidden")
EXPLAINED = Need(lambda n: n.explained, lambda n: f"answer first: 1–{n.question}"
                 if n.question else "the step is under way: n goes on once it is explained")
QUESTION = Need(lambda n: n.question > 0, lambda n: "no question waits now")
FILTERING = Need(lambda n: n.filtering, lambda n: "no filter is set: / sets one", "hidden")
MODE = Need(lambda n: n.mode is not None, lambda n: "no picture of the server yet")
BACKEND = Need(lambda n: next_backend(n) is not None, _no_backend)
TRIGGER = Need(_one_trigger, _level_only)
TARGETS = Need(lambda n: n.targets is not None, lambda n: "only muxtop attach watching "
                "several processes (--name, or several PIDs) shows another", "source")
OTHER_TARGET = Need(lambda n: (n.targets or 0) > 1,
                    lambda n: "no other process to show: only one is watched now"
                    if n.targets else "no process is watched yet")
PROXIES = Need(lambda n: n.proxies, lambda n: "no toxics here: muxtop --upstream with "
               "--toxic or --api has them", "source")
ROW = Need(lambda n: n.selected is not None, lambda n: "select a row first")
CONNECTION = Need(lambda n: can_act_on(n.selected), lambda n: "select an open connection first "
                  "(the listener, control and epoll fds are not connections)")


@dataclass(frozen=True)
class Some:
    """Only the first `count(now)` of an action's keys act now (a question's answers: a question
    has 2 to 6 choices, the table binds 1 to 6); 0: all of them. A later key says `why`."""

    count: Callable[[Now], int]
    why: Callable[[Now, str], str]


CHOICES = Some(lambda n: n.question, lambda n, key: f"no choice {key}: the question has "
               f"{n.question}, 1–{n.question}")


@dataclass(frozen=True)
class Action:
    name: str  # the action method (action_<name>), on the app or (`screen`) the dashboard
    keys: tuple[str, ...]  # Textual key names; the first is the one the footer shows
    display: str  # how the footer, the help and the palette write the keys
    label: str  # a word or two: the footer and the palette
    description: str  # a sentence: the help and the palette
    needs: tuple[Need, ...] = ()
    screen: bool = False
    argument: str = ""  # "(1)": what the binding passes the action; "(key)": the key itself
    also: str = ""  # the other keys, as the help writes them ("F1")
    some: Some | None = None  # only some of its keys act now (the answers)
    # Keys bound with priority: they act on every screen, before any widget sees them (ctrl+c
    # quits from the help, the palette, a menu, the flood form: a modal screen hides the app's
    # other keys, and an Input takes ctrl+c as copy).
    everywhere: tuple[str, ...] = ()
    # Pressed when it cannot act, it says nothing: esc is the key people press to get out of
    # anything, and a notice each time would be noise (the palette still says why).
    quiet: bool = False

    def first(self, count: int) -> Action:
        """The action with its first `count` keys only (0: all), written as a range."""
        if not 0 < count < len(self.keys):
            return self
        keys = self.keys[:count]
        return replace(self, keys=keys, display="-".join(dict.fromkeys((keys[0], keys[-1]))))

    def at(self, now: Now) -> Action:
        """The action as the footer, the help and the palette show it now: with the keys that
        act (1-3 while a question of 3 choices waits)."""
        return self if self.some is None else self.first(self.some.count(now))

    @property
    def help_keys(self) -> str:
        """The keys as the help writes them: the footer's, and the others."""
        return f"{self.display} {self.also}" if self.also else self.display

    def why_not(self, now: Now, scopes: tuple[Scope, ...] = ("source", "hidden", "now")
                ) -> Need | None:
        """The first need that does not hold now (among `scopes`), or None."""
        return next((need for need in self.needs
                     if need.scope in scopes and not need.holds(now)), None)

    def exists(self, now: Now) -> bool:
        """The key exists for this source (its help line, its palette entry)."""
        return self.why_not(now, ("source",)) is None


def _a(name: str, keys: str, display: str, label: str, description: str,
       *needs: Need, screen: bool = False, argument: str = "", also: str = "",
       some: Some | None = None, everywhere: str = "", quiet: bool = False) -> Action:
    return Action(name, tuple(keys.split(",")), display, label, description, needs, screen,
                  argument, also, some, tuple(everywhere.split(",")) if everywhere else (),
                  quiet)


# In footer order: the keys a newcomer needs first, then the table's, then the rest.
ACTIONS: tuple[Action, ...] = (
    _a("help", "question_mark,f1", "?", "help",
       "Keys, columns, and how select, poll, epoll and io_uring work", also="F1"),
    _a("quit", "q,ctrl+c", "q", "quit", "Quit (ctrl+c from any screen)", also="ctrl+c",
       everywhere="ctrl+c"),
    _a("cycle_backend", "b", "b", "backend",
       "Switch live to the next backend that can take the trigger mode and the open fds",
       COMMANDS, MODE, BACKEND),
    _a("cycle_trigger", "t", "t", "trigger",
       "Switch to the next trigger mode the backend supports", COMMANDS, MODE, TRIGGER),
    _a("details", "enter", "enter", "details", "Everything about the selected fd", ROW,
       screen=True),
    _a("close_connection", "k", "k", "close", "Close the selected connection",
       COMMANDS, CONNECTION, screen=True),
    _a("toggle_reading", "p", "p", "pause rd", "Stop or resume reading the selected "
       "connection", COMMANDS, CONNECTION, screen=True),
    _a("next_target", "greater_than_sign", ">", "next process", "Show the next process "
       "watched (attach --name, several PIDs); the line above the table lists them",
       TARGETS, OTHER_TARGET),
    _a("previous_target", "less_than_sign", "<", "previous", "Show the previous process "
       "watched", TARGETS, OTHER_TARGET),
    _a("cycle_sort", "s", "s", "sort", "Sort by the next column", screen=True),
    _a("reverse_sort", "r", "r", "reverse", "Reverse the sort order", screen=True),
    _a("filter", "slash", "/", "filter",
       "Show only rows whose fd, address, state or flags match", screen=True),
    _a("clear_filter", "escape", "esc", "clear filter", "Clear the filter", FILTERING,
       screen=True, quiet=True),
    _a("freeze", "z", "z", "freeze", "Keep the row order; values still change", screen=True),
    _a("toggle_empty", "e", "e", "empty waits", "Hide or show waits that returned nothing",
       WAITS, screen=True),
    _a("toggle_pause", "space", "space", "pause",
       "Freeze the display; the server keeps running and the header keeps moving", NO_PLAYER),
    _a("play", "space", "space", "play/pause",
       "Play the recording at the chosen speed, or pause it", PLAYER),
    _a("step", "full_stop", ".", "step", "One wait call forward: the ready list, table, "
       "findings and header right after it", PLAYER, argument="(1)"),
    _a("step_back", "comma", ",", "back", "One wait call back", PLAYER),
    _a("faster", "right_square_bracket", "]", "faster", "Play faster (up to ×64)", PLAYER),
    _a("slower", "left_square_bracket", "[", "slower", "Play slower (down to ×1/16)", PLAYER),
    _a("to_start", "g", "g", "start", "Jump to the start", PLAYER),
    _a("to_end", "G", "G", "end", "Jump to the end", PLAYER),
    _a("step_engine", "full_stop", ".", "step", "Stop the engine before its next wait call; "
       "then each press makes exactly one, and the step panel says what it returned and what "
       "the engine did with each fd", OWN_ENGINE, COMMANDS),
    _a("continue_engine", "c", "c", "continue",
       "Leave step mode: the engine runs at full speed again", OWN_ENGINE, COMMANDS, STEPPING),
    _a("record", "R", "R", "record", "Start or stop recording everything to a new file "
       "(muxtop replay FILE plays it back)", RECORDER),
    _a("flood", "f", "f", "flood", "Launch the default flood at this server: 500 clients × "
       "20 echoed messages of 64 B at 2/s each (about 10 s), every byte checked", FLOODS,
       ECHOED),
    _a("flood_form", "F", "F", "flood…", "Choose a flood: a preset, or the pattern, "
       "clients, messages, size, rate, duration", FLOODS, ECHOED),
    _a("idle_herd", "h", "h", "idle herd", "Hold 1,000 idle connections (again: let them "
       "go): select and poll pay for every one on every call, epoll does not; watch "
       "cpu/call and scans", FLOODS),
    _a("stop_floods", "x", "x", "stop floods", "Stop every running flood", FLOODS,
       RUNNING_FLOOD),
    _a("lessons", "L", "L", "lessons", "Guided lessons: muxtop sets up an experiment, asks "
       "what you expect, runs it and explains it with the numbers", OWN_ENGINE, FLOODS, ECHOED),
    _a("lesson_next", "n", "n", "next", "The lesson's next step", OWN_ENGINE, LESSON,
       EXPLAINED),
    _a("answer", "1,2,3,4,5,6", "1-6", "answer", "Answer the lesson's question: one key "
       "a choice (a question has 2 to 6)", OWN_ENGINE, LESSON, QUESTION, argument="(key)",
       some=CHOICES),
    _a("leave_lesson", "escape", "esc", "leave lesson",
       "Leave the lesson; muxtop puts the server back as it was", OWN_ENGINE, LESSON,
       quiet=True),
    _a("lab", "l", "l", "lab", "Turn bug-lab switches on and off: break the engine on "
       "purpose and watch the diagnoses", COMMANDS),
    _a("toxics", "T", "T", "toxics", "Toxiproxy's toxics on the proxies: the ones on now, "
       "and presets to add (latency, bandwidth, slicer, ...); enter adds or removes one",
       PROXIES),
    _a("command_palette", "ctrl+p", "^p", "palette",
       "Every action by name, each backend by name, and the themes"),
)
BY_NAME = {action.name: action for action in ACTIONS}


def action_name(action: str) -> str:
    """An action string without its namespace and arguments: "app.step(1)" -> "step"."""
    return action.removeprefix("app.").split("(")[0]


def state(name: str, now: Now, parameters: tuple[object, ...] = ()) -> bool | None:
    """check_action's answer: True (it acts), None (greyed out: pressing it says why), False
    (not now and not shown, or no such key for this source). `parameters`: the binding's, the
    key itself for a (key) action (answer(4) while the question has 3 choices is greyed)."""
    action = BY_NAME.get(action_name(name))
    if action is None:
        return True  # not ours (Textual's own, or a widget's)
    need = action.why_not(now)
    if need is not None:
        return None if need.scope == "now" else False
    if action.argument == "(key)" and parameters and \
            str(parameters[0]) not in action.at(now).keys:
        return None
    return True


def refusal(key: str, now: Now) -> str | None:
    """Why `key` does nothing now, or None: one of its actions acts, it is not the table's,
    or it stays quiet (esc). A key this source does not have says where it acts."""
    known = [a for a in ACTIONS if key in a.keys]
    here = [a for a in known if a.exists(now)]
    acting = [a for a in here if a.why_not(now) is None]
    if not known or any(key in a.at(now).keys for a in acting):
        return None
    if acting:  # a key past the ones that act now: 4 at a question of 3 choices
        some = acting[0].some
        return some.why(now, key) if some is not None else None
    whys = [need.why(now) for a in here or known
            if not a.quiet and (need := a.why_not(now)) is not None]
    return "; ".join(dict.fromkeys(whys)) or None


def why_not(name: str, now: Now) -> str | None:
    """Why the action `name` cannot act now, in words a person can act on; None when it can."""
    action = BY_NAME.get(action_name(name))
    need = action.why_not(now) if action is not None else None
    return None if need is None else need.why(now)


def footer(now: Now) -> list[Action]:
    """The actions that act now, in table order, each once, with the keys that act."""
    return [action.at(now) for action in ACTIONS if action.why_not(now) is None]


def listed(now: Now) -> list[Action]:
    """The actions this source has (help and palette), in table order, with the keys that
    act now."""
    return [action.at(now) for action in ACTIONS if action.exists(now)]


def bindings(screen: bool) -> list[Binding]:
    """The key bindings of the app's actions (screen=False) or the dashboard's. The footer is
    muxtop's own (widgets/key_bar.py): none is shown by Textual's."""
    made = []
    for a in ACTIONS:
        if a.screen != screen or a.name == "command_palette":  # Textual binds ctrl+p itself
            continue
        if a.argument == "(key)":
            made += [Binding(key, f"{a.name}({key})", a.label, show=False, tooltip=a.description)
                     for key in a.keys]
        else:
            keys = [key for key in a.keys if key not in a.everywhere]
            made.append(Binding(",".join(keys), f"{a.name}{a.argument}", a.label,
                                key_display=a.display, show=False, tooltip=a.description))
        made += [Binding(key, f"{a.name}{a.argument}", a.label, show=False, priority=True,
                         tooltip=a.description) for key in a.everywhere]
    return made
