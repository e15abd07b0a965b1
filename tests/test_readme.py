"""The README stays short and true: under 250 lines; every `muxtop SUB` it names is a real
subcommand; every long option its examples give a command is one that command's parser has;
every relative link, in it and in docs/, names a file of the repository (and a heading there).

The README and docs/ are not installed with the package: they are read from the repository.
"""

from __future__ import annotations

import argparse
import importlib
import re
import shlex
from pathlib import Path

import pytest

from muxtop.cli import SUBCOMMANDS, serve

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = sorted((ROOT / "docs").glob("*.md"))
MAX_LINES = 250

FENCED = re.compile(r"^```[^\n]*\n(.*?)^```", re.S | re.M)
INLINE = re.compile(r"`([^`\n]+)`")
NAMED = re.compile(r"\bmuxtop ([a-z][a-z-]*)\b")
LINK = re.compile(r"\]\(([^)\s]+)\)")
OPTION = re.compile(r"(?<![\w-])(--[a-z][a-z0-9-]*)")
# Shell operators between two commands on one line (spaced, as the README writes them).
BETWEEN = re.compile(r"\s(?:&&|\|\||\||;|&)(?:\s|$)")


def text() -> str:
    return README.read_text(encoding="utf-8")


def code(markdown: str) -> list[str]:
    """The README's code: each fenced block, and each inline span."""
    blocks = FENCED.findall(markdown)
    prose = FENCED.sub("", markdown)
    return blocks + INLINE.findall(prose)


def command_lines(markdown: str) -> list[list[str]]:
    """Each `muxtop ...` command of the fenced blocks and inline spans, as its words after
    `muxtop` (a comment and what other commands share its line cut off)."""
    commands = []
    for chunk in code(markdown):
        for line in chunk.splitlines():
            line = re.sub(r"\s#.*$", "", line)
            for part in BETWEEN.split(line):
                try:
                    words = shlex.split(part)
                except ValueError:
                    words = part.split()
                if words and words[0] == "muxtop":
                    commands.append(words[1:])
    return commands


def paragraph_options(markdown: str) -> list[tuple[list[str], list[str]]]:
    """(the command's words, the long options of its inline code) of each paragraph that opens
    with a command in bold, as **`muxtop flood HOST:PORT`** does."""
    found = []
    for paragraph in re.split(r"\n\s*\n", FENCED.sub("", markdown)):
        opening = re.match(r"\*\*`muxtop([^`]*)`\*\*", paragraph.strip())
        if opening:
            # A span that is a command of its own is checked as one (command_lines).
            spans = " ".join(s for s in INLINE.findall(paragraph)[1:] if not s.startswith("muxtop"))
            found.append((opening.group(1).split(), OPTION.findall(spans)))
    return found


def parser_of(module_name: str) -> argparse.ArgumentParser:
    """A command's parser, from its module's parser() or build_parser()."""
    module = importlib.import_module(module_name)
    for name in ("parser", "build_parser"):
        make = getattr(module, name, None)
        if callable(make):
            return make()
    raise AssertionError(f"{module_name} has neither parser() nor build_parser()")


def subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


BENCH = subparsers(parser_of(SUBCOMMANDS["bench"]))


def parser_for(words: list[str]) -> tuple[str, argparse.ArgumentParser]:
    """(the command's name, its parser) for the words after `muxtop`."""
    if not words or words[0] not in SUBCOMMANDS:
        return "muxtop", serve.parser()
    if words[0] != "bench":
        return f"muxtop {words[0]}", parser_of(SUBCOMMANDS[words[0]])
    if len(words) == 1 or words[1].startswith("-"):
        return "muxtop bench", parser_of(SUBCOMMANDS["bench"])
    name = words[1]
    assert name in BENCH, f"`muxtop bench {name}`: bench has {sorted(BENCH)}"
    try:  # a bench with its own module (and its own --help) has its own parser there
        return f"muxtop bench {name}", parser_of(f"muxtop.bench.{name}")
    except (ImportError, AssertionError):
        return f"muxtop bench {name}", BENCH[name]


def long_options(parser: argparse.ArgumentParser) -> set[str]:
    return {s for action in parser._actions for s in action.option_strings if s.startswith("--")}


def anchors(markdown: str) -> set[str]:
    """The anchors GitHub makes of a file's headings."""
    found = set()
    for heading in re.findall(r"^#{1,6} (.+)$", FENCED.sub("", markdown), re.M):
        slug = re.sub(r"[^\w\- ]", "", heading.replace("`", "").strip().lower())
        found.add(slug.replace(" ", "-"))
    return found


def test_the_readme_is_under_250_lines():
    lines = len(text().splitlines())
    assert lines < MAX_LINES, f"README.md has {lines} lines; the rest belongs in docs/"


def test_the_readme_links_to_docs():
    linked = {target.split("#")[0] for target in LINK.findall(text())}
    missing = [doc.name for doc in DOCS if f"docs/{doc.name}" not in linked]
    assert DOCS and not missing, f"docs/ files the README does not link to: {missing}"


def test_every_muxtop_sub_the_readme_names_is_a_subcommand():
    named = {m for chunk in code(text()) for m in NAMED.findall(chunk)}
    assert named, "the README names no subcommand"
    assert named <= set(SUBCOMMANDS), f"not subcommands: {sorted(named - set(SUBCOMMANDS))}"
    assert set(SUBCOMMANDS) <= named, \
        f"subcommands the README leaves out: {sorted(set(SUBCOMMANDS) - named)}"


def test_every_long_option_the_readme_shows_is_in_its_commands_parser():
    commands = command_lines(text())
    assert len(commands) >= len(SUBCOMMANDS)
    checked = 0
    for words in commands:
        # After a bare `--` (muxtop web -- ...) the options are muxtop's own.
        head, _, tail = " ".join(words).partition(" -- ")
        for part, (name, parser) in ((head, parser_for(words)), (tail, parser_for([]))):
            options = long_options(parser)
            for option in OPTION.findall(part):
                assert option in options, f"`{name}` has no {option} (README: muxtop {part})"
                checked += 1
    assert checked, "the README's examples show no option at all"


def test_every_long_option_a_commands_paragraph_names_is_in_its_parser():
    paragraphs = paragraph_options(text())
    assert len(paragraphs) >= len(SUBCOMMANDS) + 1  # muxtop itself, and each subcommand
    for words, options in paragraphs:
        name, parser = parser_for(words)
        missing = sorted(set(options) - long_options(parser))
        assert not missing, f"the README's paragraph on `{name}` names {missing}: not options"


@pytest.mark.parametrize("doc", [README, *DOCS], ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_resolves(doc):
    markdown = doc.read_text(encoding="utf-8")
    for target in LINK.findall(markdown):
        if re.match(r"[a-z]+:", target):
            continue  # https:, mailto:
        path, _, anchor = target.partition("#")
        file = (doc.parent / path).resolve() if path else doc
        assert file.is_file() and file.is_relative_to(ROOT), f"{doc.name}: no file {target}"
        if anchor and file.suffix == ".md":
            assert anchor in anchors(file.read_text(encoding="utf-8")), \
                f"{doc.name}: {file.name} has no heading #{anchor}"


def readme_key_rows() -> list[list[str]]:
    """The keys (each `span` of its first column) of each row of the README's key table."""
    section = text().split("\n## Keys\n", 1)[1].split("\n## ", 1)[0]
    rows = [line.split("|")[1] for line in section.splitlines()
            if line.startswith("| ") and not line.startswith("| key ")]
    return [INLINE.findall(first) for first in rows]


def help_order() -> dict[str, int]:
    """Each key as the README writes it, at its first place in the help's list: the table of
    actions (every source's keys, in its order), then the help's lines for the mouse-free
    moves after it."""
    from muxtop.ui import actions

    shown = {"^p": "ctrl+p", "1-6": "1–6"}  # the help writes ^p and 1-6; the README ctrl+p, 1–6
    order: dict[str, int] = {}
    tokens = [t for a in actions.ACTIONS for t in a.help_keys.split()] + \
        ["↑", "↓", "PgUp", "PgDn", "tab"]
    for token in tokens:
        for key in shown.get(token, token).split("–"):  # `1`–`6`: two spans
            order.setdefault(key, len(order))
    return order


def test_the_readme_key_table_has_every_key_in_the_help_order():
    order = help_order()
    rows = [row for row in readme_key_rows() if row]  # "click a header": no key
    named = {key for row in rows for key in row}
    assert not named - order.keys(), f"keys the help does not have: {named - order.keys()}"
    assert not order.keys() - named, f"keys the README leaves out: {order.keys() - named}"
    places = [min(order[key] for key in row) for row in rows]
    out_of_order = [(rows[i], rows[i + 1]) for i in range(len(places) - 1)
                    if places[i] > places[i + 1]]
    assert not out_of_order, f"README rows not in the help's order: {out_of_order}"


def test_the_idle_herds_scans_are_what_h_then_b_shows(make_engine):
    # The README said poll scanned 1,038 fds and epoll 11: the screenshots' herd beside other
    # traffic. h then b shows the herd, plus what the engine registers of its own (listener,
    # control eventfd) on poll, and the ready fds (none) on epoll.
    import time

    from muxtop.flood.process import IDLE_HERD

    engine = make_engine(backend="poll", publish_interval=0.05)
    started = time.monotonic()
    while engine.snapshot().taken_at <= started and time.monotonic() < started + 10:
        time.sleep(0.01)  # a Snapshot published after the start
    assert engine.snapshot().backend == "poll"
    own = engine.snapshot().registered  # the engine's fds, no client yet
    for guide, words in ((text(), r"scanned ([\d,]+) fds.*?on epoll [\d.]+ µs and (\d+) fds"),
                         ((ROOT / "docs" / "muxtop.md").read_text(encoding="utf-8"),
                          r"scans ([\d,]+) fds.*?on epoll [\d.]+ µs and (\d+) fds")):
        found = re.search(words, guide, re.S)
        assert found, words
        poll, epoll = (int(n.replace(",", "")) for n in found.groups())
        assert (poll, epoll) == (IDLE_HERD.clients + own, 0)


# Each user-facing command's parser and its guide: every long option is in the guide's code
# (its synopsis), so a new option cannot go undocumented. The bench's parsers are the
# project's own measuring tools, described in bench.md's prose.
GUIDED = {"muxtop.cli.serve:parser": "muxtop.md", "muxtop.flood.cli:build_parser": "flood.md",
          "muxtop.cli.attach:build_parser": "attach.md", "muxtop.cli.web:build_parser": "web.md",
          "muxtop.cli.replay:build_parser": "replay.md", "muxtop.cli.lesson:parser": "lesson.md"}


@pytest.mark.parametrize(("where", "guide"), GUIDED.items(), ids=GUIDED.values())
def test_every_long_option_is_in_its_guides_synopsis(where, guide):
    module, function = where.split(":")
    parser = getattr(importlib.import_module(module), function)()
    synopsis = "\n".join(FENCED.findall((ROOT / "docs" / guide).read_text(encoding="utf-8")))
    options = {o for a in parser._actions for o in a.option_strings
               if o.startswith("--") and o != "--help"}
    missing = sorted(o for o in options if not re.search(rf"(?<![\w-]){o}(?![\w-])", synopsis))
    assert missing == [], f"docs/{guide} leaves out {missing}"


def test_lesson_guides_table_names_every_built_in_lesson_in_order():
    # Was: 8 rows, and `muxtop lesson`, the L menu and the README had nine lessons.
    from muxtop.lessons.format import builtin

    guide = (ROOT / "docs" / "lesson.md").read_text(encoding="utf-8")
    table = guide.split("## The built-in lessons", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| (\d+) `([a-z-]+)` \|", table, re.M)
    lessons = [(str(n), lesson.name.split("-", 1)[1]) for n, lesson in enumerate(builtin(), 1)]
    assert rows == lessons
