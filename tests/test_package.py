"""What `pip install .` ships is what muxtop needs: the tests run against the installed copy
(not the work tree, where an editable install once hid that the lessons were not shipped), and
that copy has every file of the source tree's package: modules, lessons, styles, the C client."""

from __future__ import annotations

import subprocess
import sys
from importlib import resources
from pathlib import Path

import muxtop
from muxtop.bench import loadgen
from muxtop.lessons.format import LessonError, builtin, find
from muxtop.ui.app import MuxtopApp

TREE = Path(__file__).resolve().parent.parent / "muxtop"
INSTALLED = Path(muxtop.__file__).resolve().parent
# What the package reads at run time besides its modules, by folder: a new kind of file is a
# new line here, and the files test below then also checks the source tree has it.
DATA = {"lessons/builtin": ".toml", "ui": ".tcss", "bench": ".c", "contrib": ".yml"}


def package_files(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")
            if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"}


def test_the_tests_import_the_installed_package_not_the_work_tree():
    assert INSTALLED != TREE, (
        f"muxtop is imported from the work tree ({TREE}): install it with `pip install .` "
        "(not -e) and run pytest, as the README says, so the tests see what users get")


def test_a_muxtop_a_test_starts_from_the_work_tree_is_the_installed_one_too():
    said = subprocess.run([sys.executable, "-c", "import muxtop; print(muxtop.__file__)"],
                          cwd=TREE.parent, capture_output=True, text=True, timeout=30)
    assert Path(said.stdout.strip()).resolve().parent == INSTALLED, said.stderr


def test_the_installed_package_has_every_file_of_the_source_tree():
    missing = sorted(package_files(TREE) - package_files(INSTALLED))
    assert not missing, f"pip install . does not ship: {missing}"
    for folder, suffix in DATA.items():
        assert any(p.endswith(suffix) for p in package_files(INSTALLED / folder)), folder


def test_what_the_package_reads_at_run_time_is_there():
    lessons = builtin()
    assert len(lessons) == len(list((TREE / "lessons" / "builtin").glob("*.toml"))) >= 8
    assert find("level-edge").name == "03-level-edge"
    assert Path(MuxtopApp.CSS_PATH).is_file()
    assert Path(MuxtopApp.CSS_PATH).is_relative_to(INSTALLED)
    assert (resources.files(loadgen.__package__) / loadgen.SOURCE_NAME).is_file()


def test_no_lessons_is_an_error_not_an_empty_list(monkeypatch, tmp_path):
    from muxtop.lessons import format as lesson_format

    class Empty:
        def __truediv__(self, name):
            return tmp_path / name

    monkeypatch.setattr(lesson_format.resources, "files", lambda package: Empty())
    for call in (builtin, lambda: find("level-edge")):
        try:
            call()
        except LessonError as exc:
            assert "without its package data" in str(exc)
        else:
            raise AssertionError("no built-in lessons went unnoticed")
