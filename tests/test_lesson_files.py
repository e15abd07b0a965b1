"""Lesson files that pass `--check` must run: placeholders are names only, deep nesting and
special files are refused with one line, and measure() fills names and nothing more."""

from __future__ import annotations

import os

import pytest

from muxtop.cli import lesson as lesson_cli
from muxtop.engine import Engine, EngineConfig
from muxtop.lessons.format import MAX_LESSON_BYTES
from muxtop.lessons.measures import Tally, measure

pytestmark = pytest.mark.timeout(20)  # a FIFO or /dev/zero read without bound hangs

GOOD = '''title = "t"
summary = "s"

[[step]]
say = "a"
explain = "e {backend}"
'''


def check(capsys, path) -> tuple[int, str]:
    code = lesson_cli.main(["--check", str(path)])
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.count("\n") <= 1, err
    return code, err


@pytest.mark.parametrize("placeholder", [
    "{backend:d}", "{backend!x}", "{backend:{nope}}", "{backend:>100000000}", "{backend!r}",
])
def test_a_placeholder_with_a_format_spec_is_refused_by_check(tmp_path, capsys, placeholder):
    path = tmp_path / "spec.toml"
    path.write_text(GOOD.replace("{backend}", placeholder))
    code, err = check(capsys, path)
    assert code == 1 and "spec.toml:6:" in err and "a placeholder is a name alone" in err, err
    assert lesson_cli.main([str(path)]) == 1  # running it is refused the same way
    assert capsys.readouterr().err == err


def test_measure_fills_names_and_applies_no_format_spec():
    engine = Engine(EngineConfig(port=0, backend="poll")).start()
    try:
        snapshot = engine.snapshot()
        tally = Tally()
        # Was: ValueError ({:d} on text), KeyError, or text padded to any width asked.
        assert measure("{backend:>100000} on {backend!r}, {backend:d}", snapshot, tally,
                       {}) == "poll on poll, poll"
        assert measure("{kept} {{x}} {nothing}", snapshot, tally, {"kept": "k"}) == "k {x} ?"
        assert measure("a stray {", snapshot, tally, {}) == "a stray {"
    finally:
        engine.stop()


@pytest.mark.parametrize("nested", ["[" * 5000 + "]" * 5000, "{a=" * 5000 + "1" + "}" * 5000])
def test_deeply_nested_toml_is_refused_by_check(tmp_path, capsys, nested):
    path = tmp_path / "deep.toml"
    path.write_text(GOOD + f"\nx = {nested}\n")  # was: RecursionError
    code, err = check(capsys, path)
    assert code == 1 and "nested too deep" in err


def test_check_refuses_special_files_without_reading_or_blocking(tmp_path, capsys):
    fifo = tmp_path / "lesson.fifo"
    os.mkfifo(fifo)
    for path, said in [("/dev/zero", "character device"), (fifo, "a FIFO"),
                       (tmp_path, "a directory")]:
        code, err = check(capsys, path)  # was: /dev/zero read 4.9 GB, the FIFO hung
        assert code == 1 and said in err and "not a regular file" in err, err
    assert lesson_cli.main([str(fifo)]) == 1  # `muxtop lesson FIFO` too: it hung
    assert "a FIFO" in capsys.readouterr().err
    big = tmp_path / "big.toml"
    big.write_text(GOOD + "#" * MAX_LESSON_BYTES)
    code, err = check(capsys, big)
    assert code == 1 and "over" in err


def test_the_users_control_characters_are_escaped(tmp_path, capsys):
    with pytest.raises(SystemExit) as stop:
        lesson_cli.main(["--no-such\x1b]0;pwned\x07"])  # was: echoed as it was
    err = capsys.readouterr().err
    assert stop.value.code == 2 and "\x1b" not in err and "\\x1b]0;pwned\\x07" in err, err
    path = tmp_path / "t\x1b[2J.toml"
    path.write_text(GOOD)
    assert lesson_cli.main(["--check", str(path)]) == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out and "t\\x1b[2J.toml: OK" in out, out


def test_the_list_keeps_its_columns_whatever_a_name_is_long(capsys):
    # Was: "9. readiness-completion Readiness vs ..." overran a 14-character column.
    assert lesson_cli.main([]) == 0
    lines = capsys.readouterr().out.split("\n\n")[0].splitlines()
    titles = lines[0::2]
    assert len(titles) >= 9
    starts = {len(line) - len(line.split("  ", 1)[1].lstrip()) for line in titles}
    summaries = {len(line) - len(line.lstrip()) for line in lines[1::2]}
    assert len(starts) == 1 and starts == summaries, lines
