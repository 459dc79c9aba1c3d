"""The import rules of ``/work/shared/design/layout.md``, read from the source with ``ast``.

Imports point down the layout (errors/io, data, simulator, losses, metrics, models, training,
..., bench, cli), never up, and there are no import circles. Circles are checked on module-level
imports (the ones Python runs at import time); the direction rules on every import, also the
lazy ones inside functions, because a lazy import upwards is still a lower layer knowing a
higher one. A violation that needs a bigger move than its issue could make is listed in
``ALLOWED`` with the reason; the test fails when an entry is no longer needed, so the list
only shrinks.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "mmscale_core"
ROOT = "mmscale_core"

# (importer, imported) -> why it is still there. Prefixes are module names (a package covers its modules).
ALLOWED: dict[tuple[str, str], str] = {}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _resolve(importer: str, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    is_package = MODULES[importer].name == "__init__.py"
    base = importer.split(".")[: len(importer.split(".")) - node.level + (1 if is_package else 0)]
    return ".".join(base + ([node.module] if node.module else []))


def imports_of(name: str, module_level_only: bool) -> set[str]:
    """The mmscale_core modules ``name`` imports (a ``from pkg import sub`` of a submodule counts as ``pkg.sub``)."""
    tree = ast.parse(MODULES[name].read_text(encoding="utf-8"))
    nodes: list[ast.AST] = []
    if module_level_only:  # statements Python runs at import time, also under if/try at module level
        stack = list(tree.body)
        while stack:
            node = stack.pop()
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                continue
            if isinstance(node, ast.If) and _is_type_checking(node.test):
                continue  # never runs
            nodes.append(node)
            stack.extend(ast.iter_child_nodes(node))
    else:
        nodes = [n for n in ast.walk(tree) if not (isinstance(n, ast.If) and _is_type_checking(n.test))]
        skipped = {id(c) for n in ast.walk(tree) if isinstance(n, ast.If) and _is_type_checking(n.test)
                   for c in ast.walk(n)}
        nodes = [n for n in nodes if id(n) not in skipped]
    found = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = _resolve(name, node)  # ``from pkg import sub`` imports pkg.sub; ``from pkg import name``, pkg
            subs = [f"{base}.{a.name}" for a in node.names if f"{base}.{a.name}" in MODULES]
            targets = subs + ([base] if len(subs) < len(node.names) else [])
        else:
            continue
        found |= {t for t in targets if t == ROOT or t.startswith(ROOT + ".")}
    return {t for t in found if t in MODULES and t != name}


def _is_type_checking(test: ast.AST) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def within(module: str, prefix: str) -> bool:
    return module == prefix or module.startswith(prefix + ".")


def _is_parent_package(importer: str, imported: str) -> bool:
    return importer.startswith(imported + ".")


def find_circles() -> list[list[str]]:
    """Strongly connected components (> 1 module) of the module-level import graph (Tarjan)."""
    graph = {m: imports_of(m, module_level_only=True) for m in MODULES}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    circles: list[list[str]] = []

    def visit(v: str) -> None:  # recursion depth is bounded by the package's ~100 modules
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                circles.append(sorted(component))

    for module in sorted(graph):
        if module not in index:
            visit(module)
    return circles


TRAINING = ("mmscale_core.training", "mmscale_core.predict", "mmscale_core.train_cli")
BELOW_TRAINING = ("mmscale_core.data", "mmscale_core.models", "mmscale_core.metrics", "mmscale_core.losses",
                  "mmscale_core.simulator", "mmscale_core.errors", "mmscale_core.io")
RULES = [  # (rule, importer prefixes, forbidden imported prefixes, importers exempt)
    ("nothing below training/ imports it", BELOW_TRAINING, TRAINING, ()),
    ("only bench/ and cli.py import bench/", (ROOT,), ("mmscale_core.bench",), ("mmscale_core.bench", "mmscale_core.cli")),
    ("no module imports cli.py", (ROOT,), ("mmscale_core.cli",), ()),
    ("metrics/ and losses.py know no model", ("mmscale_core.metrics", "mmscale_core.losses"), ("mmscale_core.models",), ()),
    ("data/ knows none of its producers", ("mmscale_core.data",), ("mmscale_core.simulator", "mmscale_core.morale"), ()),
]


def violations() -> list[tuple[str, str, str]]:
    found = []
    for module in MODULES:
        imported = imports_of(module, module_level_only=False)
        for rule, importers, forbidden, exempt in RULES:
            if not any(within(module, p) for p in importers) or any(within(module, p) for p in exempt):
                continue
            for target in sorted(imported):
                if any(within(target, f) for f in forbidden) and not _is_parent_package(module, target):
                    found.append((rule, module, target))
    return found


def _allowed(module: str, target: str) -> bool:
    return any(within(module, a) and within(target, b) for a, b in ALLOWED)


def test_the_graph_sees_the_package():
    """The checks below would pass vacuously on a parse that found nothing."""
    assert len(MODULES) > 50
    assert "mmscale_core.training.loop" in imports_of("mmscale_core.training", module_level_only=True)
    assert "mmscale_core.models" in imports_of("mmscale_core.training.model", module_level_only=True)


def test_no_import_circles():
    assert find_circles() == []


@pytest.mark.parametrize("rule", [r[0] for r in RULES])
def test_imports_point_down_the_layout(rule):
    broken = [f"{module} imports {target}" for r, module, target in violations()
              if r == rule and not _allowed(module, target)]
    assert broken == [], rule


def test_the_allow_list_only_holds_live_exceptions():
    live = {(m, t) for _, m, t in violations()}
    stale = [pair for pair in ALLOWED if not any(within(m, pair[0]) and within(t, pair[1]) for m, t in live)]
    assert stale == []


def test_the_checker_catches_a_circle_and_an_upward_import(tmp_path, monkeypatch):
    """A two-module circle and a data -> simulator import in a fake package are both found."""
    fake = tmp_path / ROOT
    (fake / "data").mkdir(parents=True)
    (fake / "simulator").mkdir()
    (fake / "__init__.py").write_text("")
    (fake / "data" / "__init__.py").write_text("from mmscale_core.data import a\n")
    (fake / "data" / "a.py").write_text("from mmscale_core.data.b import x\n")
    (fake / "data" / "b.py").write_text("from mmscale_core.data import a\n"
                                        "def f():\n    from mmscale_core.simulator import run\n")
    (fake / "simulator" / "__init__.py").write_text("run = 1\n")
    import sys

    this = sys.modules[__name__]
    monkeypatch.setattr(this, "PACKAGE", fake)
    monkeypatch.setattr(this, "MODULES", {module_name(p): p for p in sorted(fake.rglob("*.py"))})
    assert ["mmscale_core.data.a", "mmscale_core.data.b"] in [c for c in find_circles()]
    assert ("data/ knows none of its producers", "mmscale_core.data.b", "mmscale_core.simulator") in violations()
