"""Layering: the import graph of muxtop/ has no cycle (lazy and type-only imports included),
the UI is imported only from the UI and the command line, nothing outside engine/loop.py reads
the Engine's private attributes, and the headless modules never load textual."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.timeout(60)

PACKAGE = Path(__file__).resolve().parents[1] / "muxtop"
HEADLESS = ("muxtop.backends", "muxtop.engine", "muxtop.flood", "muxtop.attach", "muxtop.trace",
            "muxtop.kernel", "muxtop.snapshot", "muxtop.plain", "muxtop.findings",
            "muxtop.source", "muxtop.events", "muxtop.limits", "muxtop.printable",
            "muxtop.record", "muxtop.replay", "muxtop.metrics")
HEADLESS_MODULES = [
    "muxtop.backends", "muxtop.engine", "muxtop.engine.protocols", "muxtop.kernel.probes",
    "muxtop.cli.serve", "muxtop.flood.cli", "muxtop.cli.attach", "muxtop.plain",
    "muxtop.cli.replay", "muxtop.replay.source", "muxtop.bench.replay",
    "muxtop.metrics.collector", "muxtop.metrics.server",
]


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, ast.Module]:
    return {module_name(p): ast.parse(p.read_text(encoding="utf-8"), str(p))
            for p in sorted(PACKAGE.rglob("*.py"))}


def imports_of(name: str, tree: ast.Module, known: set[str]) -> set[str]:
    """Every muxtop module `name` imports anywhere: at the top, inside a function, under
    TYPE_CHECKING. `from package import module` counts as importing that module."""
    package = name if (PACKAGE.parent / name.replace(".", "/") / "__init__.py").exists() \
        else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[:len(package.split(".")) - node.level + 1]
                                + ([base] if base else []))
            # `from package import module` imports the module; any other name is the
            # package's (or module's) own, so it imports `base` itself.
            submodules = {f"{base}.{alias.name}" for alias in node.names} & known
            found |= submodules
            if len(submodules) < len(node.names):
                found.add(base)
        elif isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "import_module":
            if node.args and isinstance(node.args[0], ast.Constant):
                found.add(node.args[0].value)
    return {m for m in found if m in known and m != name}


def graph() -> dict[str, set[str]]:
    trees = modules()
    known = set(trees)
    return {name: imports_of(name, tree, known) for name, tree in trees.items()}


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    """One import cycle, as the list of modules around it; None if there is none."""
    state: dict[str, int] = {}  # 1 on the stack, 2 done
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(edges[node]):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(edges):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_the_checker_finds_a_cycle_and_a_lazy_import():
    tree = ast.parse("def f():\n    from muxtop.b import x\n")
    assert imports_of("muxtop.a", tree, {"muxtop.a", "muxtop.b", "muxtop.b.x"}) == \
        {"muxtop.b.x"}
    tree = ast.parse("from muxtop.b import y, x\n")
    assert imports_of("muxtop.a", tree, {"muxtop.a", "muxtop.b", "muxtop.b.x"}) == \
        {"muxtop.b", "muxtop.b.x"}
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_cycle():
    cycle = find_cycle(graph())
    assert cycle is None, " -> ".join(cycle)


def test_only_the_ui_and_the_command_line_import_the_ui():
    bad = sorted(f"{name} imports {target}" for name, targets in graph().items()
                 for target in targets
                 if target.startswith("muxtop.ui") and name.startswith(HEADLESS))
    assert not bad, bad


def engine_private_names() -> set[str]:
    tree = ast.parse((PACKAGE / "engine" / "loop.py").read_text(encoding="utf-8"))
    engine = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "Engine")
    return {node.attr for node in ast.walk(engine)
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
            and node.value.id == "self" and node.attr.startswith("_")
            and not node.attr.startswith("__")}


def test_nothing_outside_the_loop_reads_the_engines_private_attributes():
    private = engine_private_names()
    assert {"_conns", "_pending", "_nreg", "_backend"} <= private
    bad = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path == PACKAGE / "engine" / "loop.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Attribute) and node.attr in private and not (
                    isinstance(node.value, ast.Name) and node.value.id == "self"):
                bad.append(f"{path.relative_to(PACKAGE)}:{node.lineno} .{node.attr}")
            elif isinstance(node, ast.Call) and getattr(node.func, "id", "") == "getattr" \
                    and len(node.args) > 1 and isinstance(node.args[1], ast.Constant) \
                    and node.args[1].value in private:
                bad.append(f"{path.relative_to(PACKAGE)}:{node.lineno} getattr "
                           f"{node.args[1].value}")
    assert not bad, bad


@pytest.mark.parametrize("module", HEADLESS_MODULES)
def test_does_not_import_textual(module):
    code = (f"import sys, importlib; importlib.import_module({module!r}); "
            "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('textual', 'rich')); "
            "print(bad); sys.exit(1 if bad else 0)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=30)
    assert result.returncode == 0, result.stdout + result.stderr
