"""Layering: the packages of muxtop/ stand in one order, bottom first (LAYERS), and every
import (lazy and type-only ones included) points down it; no cycle between modules or between
packages; nothing outside engine/loop.py reads the Engine's private attributes, and the
headless modules never load textual."""

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
            "muxtop.record", "muxtop.replay", "muxtop.commands", "muxtop.units",
            "muxtop.arguments", "muxtop.traced", "muxtop.lessons", "muxtop.metrics",
            "muxtop.proxy")
# The packages (and top-level modules) of muxtop, bottom first. A package imports its own
# modules and packages of the layers below; only the vocabulary may import within its layer
# (without a cycle). Trio's `_core` never imports `trio`: here no source imports the UI, and no
# package imports the command line.
LAYERS: tuple[tuple[str, ...], ...] = (
    # The vocabulary: Snapshots and their plain form, the Source protocol and the commands it
    # takes, units, argument types, event flags, text made printable, user files, limits,
    # how to install an extra.
    ("muxtop", "muxtop.snapshot", "muxtop.plain", "muxtop.source", "muxtop.commands",
     "muxtop.units", "muxtop.arguments", "muxtop.events", "muxtop.printable", "muxtop.limits",
     "muxtop.userfiles", "muxtop.children", "muxtop.contrib", "muxtop.extras"),
    ("muxtop.kernel",),  # epoll bits, probes, procfs, sock_diag
    # select | poll | epoll; what every detector shares; the proxy's toxics, proxies and API
    ("muxtop.backends", "muxtop.findings", "muxtop.proxy"),
    # Sources and tools, each on its own.
    ("muxtop.engine", "muxtop.attach", "muxtop.trace", "muxtop.record", "muxtop.flood"),
    # Built on those: replay reads recordings, lessons drive the engine and floods, traced
    # composes attach with trace (attach --trace).
    ("muxtop.replay", "muxtop.lessons", "muxtop.traced", "muxtop.metrics"),
    ("muxtop.ui",),
    ("muxtop.cli", "muxtop.bench"),
    ("muxtop.__main__",),
)
HEADLESS_MODULES = [
    "muxtop.backends", "muxtop.engine", "muxtop.engine.protocols", "muxtop.kernel.probes",
    "muxtop.cli.serve", "muxtop.flood.cli", "muxtop.cli.attach", "muxtop.plain",
    "muxtop.cli.replay", "muxtop.replay.source", "muxtop.bench.replay", "muxtop.source",
    "muxtop.traced", "muxtop.lessons.format", "muxtop.lessons.runner", "muxtop.arguments",
    "muxtop.units",
    "muxtop.metrics.collector", "muxtop.metrics.server", "muxtop.proxy.api",
]


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, ast.Module]:
    return {module_name(p): ast.parse(p.read_text(encoding="utf-8"), str(p))
            for p in sorted(PACKAGE.rglob("*.py"))}


def import_lines(name: str, tree: ast.Module, known: set[str]) -> dict[str, int]:
    """Every muxtop module `name` imports anywhere: at the top, inside a function, under
    TYPE_CHECKING; each with the line of its first import. `from package import module` counts
    as importing that module."""
    package = name if (PACKAGE.parent / name.replace(".", "/") / "__init__.py").exists() \
        else name.rpartition(".")[0]
    found: dict[str, int] = {}
    for node in ast.walk(tree):
        names: set[str] = set()
        if isinstance(node, ast.Import):
            names = {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[:len(package.split(".")) - node.level + 1]
                                + ([base] if base else []))
            # `from package import module` imports the module; any other name is the
            # package's (or module's) own, so it imports `base` itself.
            names = {f"{base}.{alias.name}" for alias in node.names} & known
            if len(names) < len(node.names):
                names.add(base)
        elif isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "import_module":
            if node.args and isinstance(node.args[0], ast.Constant):
                names = {node.args[0].value}
        for target in names:
            if target in known and target != name:
                found[target] = min(found.get(target, node.lineno), node.lineno)
    return found


def imports_of(name: str, tree: ast.Module, known: set[str]) -> set[str]:
    return set(import_lines(name, tree, known))


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


def located_graph() -> dict[str, dict[str, int]]:
    """module -> {module it imports: line of the import}."""
    trees = modules()
    known = set(trees)
    return {name: import_lines(name, tree, known) for name, tree in trees.items()}


def package_of(module: str) -> str:
    """muxtop.X for every module of the package or module X; muxtop for the package's own."""
    return ".".join(module.split(".")[:2])


def where(module: str, line: int) -> str:
    path = module.replace(".", "/")
    path += "/__init__.py" if (PACKAGE.parent / path).is_dir() else ".py"
    return f"{path}:{line} imports"


def package_graph(located: dict[str, dict[str, int]]
                  ) -> dict[str, dict[str, list[str]]]:
    """package -> {package it imports: the imports that make the edge, "path:line imports
    module"}."""
    edges: dict[str, dict[str, list[str]]] = {}
    for name, targets in sorted(located.items()):
        edges.setdefault(package_of(name), {})
        for target, line in sorted(targets.items()):
            if package_of(target) != package_of(name):
                edges[package_of(name)].setdefault(package_of(target), []).append(
                    f"{where(name, line)} {target}")
    return edges


def against_the_order(located: dict[str, dict[str, int]],
                      layers: tuple[tuple[str, ...], ...] = LAYERS) -> list[str]:
    """Every import that goes up the order of layers, or across a layer above the first; and
    every package the order does not place."""
    rank = {package: i for i, layer in enumerate(layers) for package in layer}
    bad = [f"{package} has no place in LAYERS" for package in
           sorted({package_of(name) for name in located} - rank.keys())]
    for package, targets in package_graph(located).items():
        for target, evidence in targets.items():
            if package not in rank or target not in rank:
                continue
            if rank[target] > rank[package] or (rank[target] == rank[package] > 0):
                how = "up to" if rank[target] > rank[package] else "across its layer to"
                bad += [f"{line} ({package}, layer {rank[package]}, reaches {how} {target}, "
                        f"layer {rank[target]})" for line in evidence]
    return bad


def package_cycle(located: dict[str, dict[str, int]]) -> str | None:
    """One cycle between packages, with the imports that close it; None if there is none."""
    packages = package_graph(located)
    cycle = find_cycle({package: set(targets) for package, targets in packages.items()})
    if cycle is None:
        return None
    steps = [f"{a} -> {b} ({packages[a][b][0]})" for a, b in zip(cycle, cycle[1:])]
    return "; ".join(steps)


def test_the_layer_checker_finds_an_upward_import_a_sideways_one_and_a_package_cycle():
    layers = (("muxtop.words",), ("muxtop.low", "muxtop.side"), ("muxtop.high",))
    fine = {"muxtop.words": {}, "muxtop.low.a": {"muxtop.words": 3},
            "muxtop.side": {}, "muxtop.high.b": {"muxtop.low.a": 5, "muxtop.side": 6}}
    assert against_the_order(fine, layers) == []
    assert package_cycle(fine) is None
    upward = {**fine, "muxtop.low.c": {"muxtop.high.b": 7}}
    assert against_the_order(upward, layers) == [
        "muxtop/low/c.py:7 imports muxtop.high.b (muxtop.low, layer 1, reaches up to "
        "muxtop.high, layer 2)"]
    sideways = {**fine, "muxtop.side": {"muxtop.low.a": 9}}
    assert against_the_order(sideways, layers) == [
        "muxtop/side.py:9 imports muxtop.low.a (muxtop.side, layer 1, reaches across its "
        "layer to muxtop.low, layer 1)"]
    assert against_the_order({**fine, "muxtop.stray": {}}, layers) == [
        "muxtop.stray has no place in LAYERS"]
    # A cycle between packages that no module cycle shows: low.a -> side, side -> low.c.
    cycle = {**fine, "muxtop.low.a": {"muxtop.side": 4}, "muxtop.side": {"muxtop.low.c": 2},
             "muxtop.low.c": {}}
    assert find_cycle({m: set(t) for m, t in cycle.items()}) is None
    assert package_cycle(cycle) == (
        "muxtop.low -> muxtop.side (muxtop/low/a.py:4 imports muxtop.side); "
        "muxtop.side -> muxtop.low (muxtop/side.py:2 imports muxtop.low.c)")


def test_every_import_follows_the_order_of_layers():
    bad = against_the_order(located_graph())
    assert not bad, "\n".join(bad)


def test_no_package_cycle():
    cycle = package_cycle(located_graph())
    assert cycle is None, cycle


def test_the_order_names_the_issues_layers_in_its_order():
    """snapshot/vocabulary -> kernel, backends -> engine, attach, trace, record, replay,
    flood, lessons -> ui -> cli, bench."""
    rank = {package: i for i, layer in enumerate(LAYERS) for package in layer}
    coarse = [("snapshot", "commands", "units", "arguments", "source"), ("kernel", "backends"),
              ("engine", "attach", "trace", "record", "replay", "flood", "lessons"), ("ui",),
              ("cli", "bench")]
    for low, high in zip(coarse, coarse[1:]):
        assert max(rank[f"muxtop.{p}"] for p in low) < min(rank[f"muxtop.{p}"] for p in high)


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


COUNT_WRITERS = {PACKAGE / "engine" / name for name in ("loop.py", "proxying.py", "waiting.py")}


def _writes_to_counts(node: ast.AST) -> bool:
    """`x.counts.accepted += 1`, `counts.waits = ...`, `counts.guard_closes[g] += 1`."""
    targets = node.targets if isinstance(node, ast.Assign) else \
        [node.target] if isinstance(node, ast.AugAssign) else []
    for target in targets:
        while isinstance(target, ast.Subscript):
            target = target.value
        if isinstance(target, ast.Attribute):
            owner = target.value
            if (isinstance(owner, ast.Name) and owner.id in ("counts", "_counts")) or (
                    isinstance(owner, ast.Attribute) and owner.attr in ("counts", "_counts")):
                return True
    return False


def test_the_loops_counts_have_one_writer():
    """Issue 25: the engine's counters had two owners (the loop bumped telemetry's). Now the
    loop's LoopCounts is written by the engine thread's code alone; telemetry only reads."""
    assert _writes_to_counts(ast.parse("self.counts.accepted += 1").body[0])
    assert _writes_to_counts(ast.parse("counts.guard_closes[g] += 1").body[0])
    bad = [f"{path.relative_to(PACKAGE)}:{node.lineno}"
           for path in sorted(PACKAGE.rglob("*.py")) if path not in COUNT_WRITERS
           for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
           if _writes_to_counts(node)]
    assert not bad, bad
    writers = {path for path in COUNT_WRITERS
               if any(_writes_to_counts(node)
                      for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))))}
    assert writers == COUNT_WRITERS


@pytest.mark.parametrize("module", HEADLESS_MODULES)
def test_does_not_import_textual(module):
    code = (f"import sys, importlib; importlib.import_module({module!r}); "
            "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('textual', 'rich')); "
            "print(bad); sys.exit(1 if bad else 0)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=30)
    assert result.returncode == 0, result.stdout + result.stderr


def test_optional_source_features_are_declared_not_probed():
    """What a source may have besides pictures and commands is declared on Source (None: it
    has not), as selectors.BaseSelector declares its whole interface: nothing asks for one by
    getattr or hasattr."""
    from muxtop.source import Source

    optional = {name for name, value in vars(Source).items()
                if value is None and not name.startswith("_")}
    assert {"player", "recorder", "recent_waits", "published", "targets", "proxies"} <= optional
    probed = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call) and getattr(node.func, "id", "") in (
                    "getattr", "hasattr") and len(node.args) > 1 \
                    and isinstance(node.args[1], ast.Constant) and node.args[1].value in optional:
                probed.append(f"{path.relative_to(PACKAGE)}:{node.lineno} "
                              f"{node.func.id} {node.args[1].value}")
    assert not probed, probed


def test_a_recordable_source_keeps_every_optional_feature_of_the_source():
    """The dashboard wraps its source to record it: every feature the source declares must
    pass through (it dropped `proxies` once, and T never showed)."""
    from muxtop.record.control import Recordable
    from muxtop.source import Source

    optional = sorted(name for name, value in vars(Source).items()
                      if value is None and not name.startswith("_") and name != "recorder")

    class Full(Source):
        kind, shares_gil, announces_refusals = "engine", True, False

    source = Full()
    for name in optional:
        setattr(source, name, object())
    wrapped = Recordable(source, recorder=object())
    lost = [name for name in optional if getattr(wrapped, name) is not getattr(source, name)]
    assert not lost, lost
