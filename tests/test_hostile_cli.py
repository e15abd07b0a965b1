"""Every subcommand's command line against hostile values (huge, negative, non-numeric, empty,
very long, not UTF-8): exit 2 with the usage and one error line, or exit 1 with one error
line, or (a valid value) a normal run — never a traceback.

Parsing is driven in-process (hypothesis, over every option the parsers declare); the values
that parse and then reach the program (a host, a target, a PID) run for real, bounded: the
server for --duration 0, flood against port 0, attach against a PID that does not exist.
A few run as a child process too, with argv bytes that are not UTF-8.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import subprocess
import sys

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from muxtop import cli
from muxtop.bench import cli as bench_cli
from muxtop.bench import ui as bench_ui
from muxtop.cli import attach as attach_cli
from muxtop.cli import serve
from muxtop.flood import cli as flood_cli

pytestmark = pytest.mark.timeout(120)

PARSERS = {  # argv prefix -> its parser
    (): serve.parser(), ("flood",): flood_cli.build_parser(),
    ("attach",): attach_cli.build_parser(), ("bench", "ui"): bench_ui.parser(),
    **{("bench", name): sub for name, sub in
       next(a for a in bench_cli.parser()._actions
            if isinstance(a, argparse._SubParsersAction)).choices.items() if name != "ui"},
}
# What each command needs besides the option under test, so that it never runs for long:
# a positional, or a flag that makes it stop at once.
NEEDS = {(): [], ("flood",): ["127.0.0.1:0"], ("attach",): ["1"], ("replay",): ["x.muxrec"]}
# Never a valid value for a number, a port, a list of counts or a choice. 1e20: seconds past
# what Python's clocks hold (bench's --duration took it, then died of an OverflowError).
ALWAYS_BAD = ["", "-1", "-0.5", "abc", "nan", "inf", "-inf", "1e400", "1e20", "9" * 5000,
              "0x10", "1,,-2", "\udcff", "\x00", "½", "1_000_000_000_000_000_000_000_000x"]
HUGE = [str(10 ** 30), "9" * 4000, "1e300"]


def options():
    """(prefix, option string, argparse action) of every option that takes a value."""
    for prefix, parser in PARSERS.items():
        for action in parser._actions:
            if action.option_strings and action.nargs != 0 and action.dest != "help":
                yield prefix, action.option_strings[-1], action


OPTIONS = list(options())


def run(argv: list[str]) -> tuple[int, str, str]:
    """muxtop's main in this process: (exit status, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = cli.main(argv)
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
    return code, out.getvalue(), err.getvalue()


def check_refusal(code: int, err: str) -> str:
    """One of the two shapes a refusal may take; returns its error line."""
    assert "Traceback" not in err, err
    lines = err.strip().splitlines()
    assert code in (1, 2), (code, err)
    if code == 2 and lines and lines[0].startswith("usage:"):
        errors = [line for line in lines if ": error: " in line]
        assert len(errors) == 1 and lines[-1] == errors[0], err  # usage, then one error line
        return errors[0]
    assert len(lines) == 1, err  # exit 1 (or a program's own exit-2 message): one line
    return lines[0]


def _numeric(action: argparse.Action) -> bool:
    return action.choices is not None or action.type not in (None, str) and \
        getattr(action.type, "__name__", "") not in ("name_list", "Path", "file_name")


@pytest.mark.parametrize(("prefix", "option", "action"), OPTIONS,
                         ids=[" ".join((*p, o)) for p, o, _ in OPTIONS])
def test_always_bad_values_are_refused_by_the_option(prefix, option, action):
    if not _numeric(action):
        # `pytest -rs` shows this line alone, once per option: it says which and why.
        what = action.metavar or action.dest.upper()
        pytest.skip(f"`muxtop {' '.join((*prefix, option))} {what}` is free text, checked "
                    "where it is used, not by its argparse type: the always-bad values of a "
                    "number or a choice do not apply; "
                    "test_any_value_of_any_option_parses_or_is_one_usage_error fuzzes it")
    for value in ALWAYS_BAD:
        if action.choices is not None and value in action.choices:
            continue
        code, _, err = run([*prefix, *NEEDS.get(prefix, []), f"{option}={value}"])
        line = check_refusal(code, err)
        assert code == 2 and any(f"argument {o}" in line or o in line
                                 for o in action.option_strings), (value, err)


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(choice=st.sampled_from(OPTIONS),
       value=st.one_of(st.sampled_from(ALWAYS_BAD + HUGE), st.text(max_size=30),
                       st.integers(min_value=-10 ** 40, max_value=10 ** 40).map(str),
                       st.floats().map(repr)))
def test_any_value_of_any_option_parses_or_is_one_usage_error(choice, value):
    prefix, option, _ = choice
    # An unknown flag after it: whatever the value, parsing ends in a usage error, so a
    # valid value never starts a run here; a bad one is reported first, and either way
    # argparse's own message, never an exception from a type function.
    code, _, err = run([*prefix, *NEEDS.get(prefix, []), f"{option}={value}", "--no-such"])
    assert code == 2
    check_refusal(code, err)


# ---- values that parse and reach the program --------------------------------------------

SERVE = ["--headless", "--duration", "0", "--port", "0"]


@pytest.mark.parametrize("argv", [
    [*SERVE, "--host", "a" * 300],  # was: UnicodeError traceback
    [*SERVE, "--host", "a." * 200 + "b"],
    [*SERVE, "--host", "\udcff\udcfe"],  # argv bytes that are not UTF-8
    [*SERVE, "--host", "\x00"],
    [*SERVE, "--host", "[::1]"],
    [*SERVE, "--host", "0.0.0.0"],  # needs --allow-remote
    [*SERVE, "--host", ""],  # every address: needs --allow-remote
    [*SERVE, "--backend", "select", "--trigger", "oneshot"],
    ["flood", "a" * 300 + ":1"], ["flood", "\udcff:1"], ["flood", "127.0.0.1:99999999999"],
    ["flood", "[::1"], ["flood", ":"], ["flood", ""], ["flood", "127.0.0.1:0"],
    ["attach", str(2 ** 22 + 1), "--once"], ["attach", str(10 ** 30), "--once"],
    ["attach", "99999999", "--once", "--json"],
    ["bench", "wait", "--fds", str(10 ** 30), "--backends", "kqueue"],
    ["bench", "ui", "--conns", "x", "--size", "1e400x\udcff"],
    ["bench", "ui", "--size", "0"],
])
def test_hostile_values_that_reach_the_program_are_one_error_line(argv):
    code, _, err = run(argv)
    check_refusal(code, err)


@pytest.mark.parametrize("argv", [
    [*SERVE, "--protocol", "http", "--max-conns", str(10 ** 30), "--idle-timeout", "1e9",
     "--header-timeout", "1e-300", "--max-out-buffer", str(10 ** 30), "--stuck-after", "0"],
    [*SERVE, "--max-conns", "0"],  # was refused; now: accept nothing, clients wait
    [*SERVE, "--protocol", "http", "--header-timeout", "0.001"],
])
def test_extreme_but_valid_values_just_run(argv):
    code, out, err = run(argv)
    assert (code, err) == (0, ""), err
    assert "Traceback" not in out


def child(*args: bytes) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "muxtop", *args], capture_output=True,
                          timeout=30, env={**os.environ, "PYTHONIOENCODING": "utf-8"})


@pytest.mark.parametrize("args", [
    [b"--headless", b"--duration", b"0", b"--port", b"0", b"--host", b"\xff\xfe"],
    [b"--port", b"\xff"],
    [b"flood", b"\xff\xfe:80"],
    [b"attach", b"\xc3("],
])
def test_argv_that_is_not_utf8(args):
    result = child(*args)
    err = result.stderr.decode("utf-8", "replace")
    check_refusal(result.returncode, err)


# Every parser, with the two whose options are not fuzzed above (a FILE to read; a server).
ESCAPED = [*PARSERS, ("replay",), ("web",)]


@pytest.mark.parametrize("prefix", ESCAPED, ids=[" ".join(p) or "serve" for p in ESCAPED])
def test_the_users_control_characters_are_escaped_in_usage_errors(prefix):
    # Was: "unrecognized arguments: ESC ] 0 ; pwned BEL" as it was: a new terminal title,
    # a cleared screen, and a forged line after the newline.
    hostile = "\x1b]0;pwned\x07\n\x1b[2J"
    for argv in ([hostile], [f"--{hostile}"], ["--no-such", hostile]):
        code, _, err = run([*prefix, *NEEDS.get(prefix, []), *argv])
        line = check_refusal(code, err)
        assert code == 2 and not any(c in err for c in "\x1b\x07\r"), err
        assert "\\x1b]0;pwned\\x07\\n\\x1b[2J" in line, line
