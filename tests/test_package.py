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


def test_an_extras_install_hint_works_for_this_install(monkeypatch):
    # muxtop is on no index: "pip install 'muxtop[metrics]'" asked one for it. The tests run
    # against a copy pip installed from the work tree, so the hint names that clone.
    from muxtop import extras

    hint = extras.install_hint("metrics")
    assert hint == f"pip install '.[metrics]' in muxtop's clone ({TREE.parent})"
    monkeypatch.setattr(extras, "_origin", lambda: {
        "url": "https://example.org/muxtop.git", "vcs_info": {"vcs": "git", "commit_id": "ab"}})
    assert extras.install_hint("web") == \
        "pip install 'muxtop[web] @ git+https://example.org/muxtop.git'"
    monkeypatch.setattr(extras, "_origin", lambda: {"archive_info": {}, "url": "https://x/y.whl"})
    assert extras.install_hint("bench") == "pip install 'muxtop[bench]'"


def test_no_install_hint_names_the_index_form_by_hand():
    # Each said 'muxtop[metrics]' (or [web], [bench]) on its own, which fails from a clone:
    # the code asks extras.install_hint, the guides give the clone's form.
    said = [f"{p.relative_to(TREE.parent)}:{n}" for p in [*TREE.rglob("*.py"),
                                                         *TREE.parent.glob("docs/*.md"),
                                                         TREE.parent / "README.md"]
            if p.name not in ("extras.py", "changelog.md")
            for n, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1)
            if "install 'muxtop[" in line or "install \"muxtop[" in line]
    assert said == []
