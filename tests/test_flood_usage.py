"""Bad combinations of the open-loop, fault and worker flags: each one usage line and the error
that says why, exit 2, no traceback; and `muxtop bench flood`'s own refusals."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from muxtop.flood import cli
from muxtop.flood.patterns import PARAMETERS, PATTERNS

GUIDE = Path(__file__).resolve().parents[1] / "docs" / "flood.md"

pytestmark = pytest.mark.timeout(20)


@pytest.mark.parametrize(("argv", "said"), [
    (["--open-loop"], "needs --rate R or --total-rate R"),
    (["--open-loop", "--rate", "10", "--pattern", "idle"], "not idle"),
    (["--open-loop", "--rate", "10", "--pattern", "stall"], "not stall"),
    (["--rate", "5", "--total-rate", "5"], "not allowed with argument"),
    (["--total-rate", "0"], "must be more than 0"),
    (["--hold", "1"], "--hold applies to --pattern stall or slow-close, not echo"),
    (["--pattern", "slicer", "--delay", "0.1"], "--delay applies to --pattern latency"),
    (["--pattern", "slicer", "--slice-bytes", "0"], "must be at least 1"),
    (["--pattern", "latency", "--jitter", "-1"], "must be a number from 0"),
    (["--pattern", "stall", "--messages", "0"], "stall needs --messages 1 or more"),
    (["--pattern", "slow-close", "--messages", "0"], "slow-close needs --messages 1"),
    (["--pattern", "limit", "--messages", "0"], "needs --limit-bytes N"),
    (["--pattern", "limit", "--limit-bytes", "1000"], "more than the 192 bytes"),
    (["--workers", "10000"], "per CPU"),
])
def test_bad_combinations_are_one_usage_line_and_the_reason(capsys, argv, said):
    assert cli.main(["127.0.0.1:80", *argv]) == 2
    out, err = capsys.readouterr()
    lines = err.strip().splitlines()
    assert out == "" and "Traceback" not in err
    assert len(lines) == 2 and lines[0].startswith("usage: muxtop flood HOST:PORT"), err
    assert said in lines[1], err


def test_the_help_and_the_guide_say_what_the_table_of_patterns_says():
    helps = {action.dest: action.help for action in cli.build_parser()._actions}
    assert helps["pattern"].startswith(
        "; ".join(f"{p.name}: {p.does}" for p in PATTERNS.values()))
    guide = GUIDE.read_text(encoding="utf-8")
    usage = next(block for block in guide.split("```") if "[--pattern" in block)
    names = re.search(r"\[--pattern ([^\]]+)\]", usage).group(1)
    assert names.replace("|", " ").split() == list(PATTERNS)
    for pattern in PATTERNS.values():
        assert f"| `{pattern.name}` | {pattern.does} |" in guide, pattern.name
    for knob in PARAMETERS.values():
        assert f"[{knob.flag} {knob.metavar}]" in usage, knob.flag
        assert helps[knob.name].startswith(", ".join(
            name for name, p in PATTERNS.items() if knob.name in p.parameters))


def test_an_hdr_log_that_cannot_be_written_is_one_line(capsys, tmp_path):
    path = tmp_path / "no-such-dir" / "x.hlog"
    assert cli.main(["127.0.0.1:80", "--hdr-log", str(path)]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1 and "--hdr-log: cannot write" in err


def test_an_hdr_log_is_never_replaced_unless_forced_nor_a_fifo_waited_on(capsys, tmp_path):
    kept = tmp_path / "kept.hlog"
    kept.write_text("precious")
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    for path in (kept, fifo, "/dev/full"):  # was: replaced silently; the FIFO hung
        assert cli.main(["127.0.0.1:80", "--hdr-log", str(path)]) == 2
        out, err = capsys.readouterr()
        assert out == "" and err.count("\n") == 1 and "--hdr-log: cannot write" in err, err
    assert cli.main(["127.0.0.1:80", "--hdr-log", str(fifo), "--force"]) == 2  # not blocked
    assert "a FIFO" in capsys.readouterr().err
    assert kept.read_text() == "precious"


def test_workers_are_bounded_by_the_cpus_before_anything_forks(capsys):
    # 60 workers once forked 60 processes; now the flag itself is refused, before a connect
    # or a fork (the port is closed: were the flood to run, it would exit 1, not 2).
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    limit = 4 * len(os.sched_getaffinity(0))   # 4 per CPU, as --help says
    assert cli.main([f"127.0.0.1:{port}", "--clients", "2", "--workers", str(limit + 1)]) == 2
    err = capsys.readouterr().err
    assert f"is over {limit}" in err and "--workers" in err
    assert cli.build_parser().parse_args(["h:1", "--workers", str(limit)]).workers == limit
    assert cli.max_workers() == limit


@pytest.mark.parametrize(("argv", "said"), [
    (["--stall-at", "3", "--stall", "2", "--duration", "4"], "must end before --duration"),
    (["--rate", "0"], "must be more than 0"),
    (["--backend", "kqueue"], "invalid choice"),
])
def test_bench_flood_refuses_bad_plans(argv, said):
    proc = subprocess.run([sys.executable, "-m", "muxtop", "bench", "flood", *argv],
                          capture_output=True, text=True, timeout=15, check=False)
    assert proc.returncode == 2 and proc.stdout == ""
    assert "Traceback" not in proc.stderr and said in proc.stderr
    assert proc.stderr.startswith("usage: muxtop bench flood")


def test_bench_flood_refuses_an_existing_hdr_log_before_it_starts_a_server(tmp_path, capsys):
    from muxtop.bench import flood as bench_flood

    kept = tmp_path / "kept.hlog"
    kept.write_text("precious")
    assert bench_flood.main(["--hdr-log", str(kept)]) == 1  # was: replaced by the child
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "exists" in err and "--force" in err, err
    assert kept.read_text() == "precious"
