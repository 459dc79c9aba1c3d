"""Which parts of ``mmscale_core`` each DVC stage's command can run: the code deps ``dvc.yaml`` must list.

A stage's entry modules are, for ``mmscale notebook NAME``, the ``mmscale_core`` modules the notebook
imports plus the notebook runner, and for any other ``mmscale VERB``, the module that defines the
verb's handler. Its code is every module reachable from those by imports, lazy ones inside functions
included (an over-approximation: a function the command never calls still counts), and each module's
parent packages (importing ``a.b.c`` runs ``a/__init__.py`` and ``a/b/__init__.py``). Modules that
only make a stage faster or are not on any stage's path (``SPEED_OR_FACE``) are left out, so editing
them re-runs nothing. A dep is a *unit*: a top-level package directory (``mmscale_core/data``) or a
top-level module file (``mmscale_core/io.py``).

``python tests/stage_code.py`` prints, per stage, the code deps it needs and the ones dvc.yaml lacks;
``tests/test_dvc_deps.py`` fails while any is missing.
"""

from __future__ import annotations

import ast
import json
import re
import sys
from functools import lru_cache
from pathlib import Path

import yaml

TESTS = Path(__file__).resolve().parent
ROOT_DIR = TESTS.parent
sys.path.insert(0, str(TESTS))

from test_layout import MODULES, PACKAGE, imports_of, within  # noqa: E402

# faster start-up only (warm kernels), benchmarks, argument parsing, the annotation app
SPEED_OR_FACE = ("mmscale_core.warm_kernel", "mmscale_core.bench", "mmscale_core.cli", "mmscale_core.morale")


@lru_cache(maxsize=None)
def verb_modules() -> dict[str, str]:
    """``mmscale`` verb -> the module defining its handler (read from the real parser)."""
    from mmscale_core.cli import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(getattr(a, "choices", None), dict))
    return {verb: p._defaults["func"].__module__ for verb, p in sub.choices.items() if "func" in p._defaults}


def notebook_cells(name: str) -> list[dict]:
    """The cells of ``notebooks/NAME.ipynb``."""
    return json.loads((ROOT_DIR / "notebooks" / f"{name}.ipynb").read_text(encoding="utf-8"))["cells"]


def notebook_imports(name: str) -> set[str]:
    """The ``mmscale_core`` modules imported by the code cells of ``notebooks/NAME.ipynb``."""
    found: set[str] = set()
    for cell in notebook_cells(name):
        if cell["cell_type"] != "code":
            continue
        source = "\n".join(line for line in "".join(cell["source"]).splitlines()
                           if not line.lstrip().startswith(("%", "!")))  # IPython magics are not Python
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.Import):
                found |= {a.name for a in node.names if within(a.name, "mmscale_core")}
            elif isinstance(node, ast.ImportFrom) and within(node.module or "", "mmscale_core"):
                for alias in node.names:
                    full = f"{node.module}.{alias.name}"
                    found.add(full if full in MODULES else node.module)
    return found


def entry_modules(cmd: str) -> set[str]:
    words = cmd.split()
    if words[:1] != ["mmscale"] or len(words) < 2:
        raise ValueError(f"not an mmscale command: {cmd!r}")
    if words[1] == "notebook":
        return notebook_imports(words[2]) | {"mmscale_core.notebook_runner"}
    return {verb_modules()[words[1]]}


def reachable(entries: set[str]) -> set[str]:
    seen: set[str] = set()
    todo = list(entries)
    while todo:
        module = todo.pop()
        if module in seen or module not in MODULES or any(within(module, s) for s in SPEED_OR_FACE):
            continue
        seen.add(module)
        parts = module.split(".")
        todo.extend(".".join(parts[:i]) for i in range(1, len(parts)))  # parent packages run first
        todo.extend(imports_of(module, module_level_only=False))
    return seen


def unit(module: str) -> str:
    """The dep path covering ``module``: its top-level package directory or its own file."""
    relative = MODULES[module].relative_to(PACKAGE.parent)
    if len(relative.parts) > 2:
        return "/".join(relative.parts[:2])
    return relative.as_posix()


def stages() -> dict[str, dict]:
    """dvc.yaml's stages (a ``foreach``/``matrix`` stage by its template)."""
    loaded = yaml.safe_load((ROOT_DIR / "dvc.yaml").read_text(encoding="utf-8"))["stages"]
    return {name: stage.get("do", stage) for name, stage in loaded.items()}


def needed_units(stage: dict) -> set[str]:
    return {unit(m) for m in reachable(entry_modules(" ".join(stage["cmd"].split())))}


def covered(path: str, deps: list[str]) -> bool:
    return any(path == d or path.startswith(d.rstrip("/") + "/") for d in deps)


def missing_units(stage: dict) -> list[str]:
    return sorted(u for u in needed_units(stage) if not covered(u, stage.get("deps") or []))


if __name__ == "__main__":
    for name, stage in stages().items():
        print(f"{name}: needs {', '.join(sorted(needed_units(stage)))}")
        gap = missing_units(stage)
        if gap:
            print(f"  MISSING: {', '.join(gap)}")
