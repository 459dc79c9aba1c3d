"""Where a notebook runs: the project root, its path parameters, and where its outputs go.

Why: a notebook is run two ways. ``mmscale notebook`` (papermill, the DVC stages) starts it in the
project root and writes where ``dvc.yaml`` says. JupyterLab starts the kernel in the notebook's own
directory (``notebooks/`` or ``reports/notebooks/``), where the parameters' relative defaults
(``params.yaml``, ``data/dataset``, ``runs/...``) mean nothing, and where a reader's "Run All" must
not overwrite the figures, tables and metrics DVC tracks. The first code cell of every notebook
makes both work with one call::

    ctx = notebook_context.setup(globals(), "04_table3", needs=["data_dir", "runs_dir"])

which

- finds the project root: ``$MMSCALE_PROJECT_ROOT``, else the nearest directory holding
  ``dvc.yaml`` from the working directory up, and makes it the working directory, so every
  relative path (the path parameters, ``*_dir``/``*_file``, and those inside ``params.yaml``, such
  as the feature store) means what it means in the pipeline;
- loads the profile (``profile = None``: the one ``params.yaml`` names) and fills ``provenance``
  from its data source when the parameter is ``None``;
- checks that every parameter in ``needs`` names an existing path, else stops with one message
  naming the ``dvc repro`` stage that makes it (read from ``dvc.yaml``'s outs);
- in an interactive run (not launched by ``mmscale notebook``, which sets ``RUNNER_ENV``), points
  the output parameters (``figures_dir``, ``tables_dir``, those naming an out of this notebook's own
  stages, and ``writes``) into ``scratch/NAME/`` (same layout below it; git- and DVC-ignored)
  unless the parameter ``write_outputs`` is ``"pipeline"``;
- prints one line: the profile, the data, where the notebook writes (and a note when ``dvc.lock``
  says the data was made with another profile).

The redirect rewrites parameters rather than living in :mod:`mmscale_core.outputs` because the
notebooks also write metrics and plot data with ``write_json``/``atomic_path``: one place covers
every write. (layout.md puts this module in ``pipeline/``; it stays at the package root until
``pipeline.py`` becomes that package.)
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from mmscale_core.errors import MmscaleError

ROOT_ENV = "MMSCALE_PROJECT_ROOT"
RUNNER_ENV = "MMSCALE_NOTEBOOK_RUNNER"  # set by `mmscale notebook` for its kernels
ROOT_MARKER = "dvc.yaml"
SCRATCH_DIR = "scratch"
OUTPUT_PARAMETERS = ("figures_dir", "tables_dir")  # every notebook's, by the runner's convention
PATH_SUFFIXES = ("_dir", "_file")
WRITE_MODES = ("scratch", "pipeline")


class NotebookSetupError(MmscaleError):
    """A notebook cannot start (no project root, no params file, a pipeline output not made yet).

    Jupyter shows ``_render_traceback_``'s lines instead of a traceback: the reader gets the
    message, which says what to do.
    """

    def _render_traceback_(self) -> list[str]:
        return [f"\x1b[31m{self}\x1b[0m"]


@dataclass
class NotebookContext:
    name: str
    root: Path
    interactive: bool
    writes_to: str                      # "pipeline" or "scratch"
    profile: dict[str, Any]
    outputs: dict[str, str] = field(default_factory=dict)   # output parameter -> path it now holds

    def summary(self, data_dir: str, provenance_label: str, params_file: str) -> str:
        where = (", ".join(dict.fromkeys(self.outputs.values())) if self.writes_to == "pipeline"
                 else f"{SCRATCH_DIR}/{self.name}/")
        if self.interactive and self.writes_to == "scratch":
            where += ' (interactive run; write_outputs = "pipeline" writes where dvc.yaml says)'
        elif self.interactive:
            where += " (interactive run, overwriting the pipeline's outputs)"
        return (f"profile: {self.profile['name']} ({params_file}) | data: {data_dir} ({provenance_label}) "
                f"| writes: {where}")


# --------------------------------------------------------------------------- the project root

def find_root(start: str | Path | None = None) -> Path:
    """``$MMSCALE_PROJECT_ROOT``, else the nearest directory holding ``dvc.yaml`` from ``start`` up."""
    override = os.environ.get(ROOT_ENV)
    if override:
        root = Path(override).expanduser().resolve()
        if not (root / ROOT_MARKER).is_file():
            raise NotebookSetupError(f"{ROOT_ENV}={override}: no {ROOT_MARKER} there; point it at the project root")
        return root
    here = Path(start or Path.cwd()).resolve()
    for directory in (here, *here.parents):
        if (directory / ROOT_MARKER).is_file():
            return directory
    raise NotebookSetupError(f"no {ROOT_MARKER} in {here} or any directory above it: open the notebook inside "
                             f"the mmscale project, or set {ROOT_ENV} to the project root")


# --------------------------------------------------------------------------- dvc.yaml's outs

def _stage_bodies(dvc_yaml: dict) -> Iterable[tuple[str, dict]]:
    for name, stage in (dvc_yaml.get("stages") or {}).items():
        yield name, stage.get("do", stage) if "foreach" in stage else stage


def _out_paths(body: dict) -> list[str]:
    """The stage's outs, metrics and plots; a templated path (``runs/x/${item}``) as its fixed prefix dir."""
    paths = []
    for key in ("outs", "metrics", "plots"):
        for entry in body.get(key) or []:
            path = next(iter(entry)) if isinstance(entry, dict) else str(entry)
            if "${" in path:
                fixed = path[:path.index("${")]
                path = fixed.rsplit("/", 1)[0] if "/" in fixed else ""
            if path:
                paths.append(path.rstrip("/"))
    return paths


def _overlaps(path: str, out: str) -> bool:
    """One is the other or lies inside it (both relative to the root)."""
    a, b = Path(path).parts, Path(out).parts
    n = min(len(a), len(b))
    return n > 0 and a[:n] == b[:n]


def read_stages(root: Path) -> dict[str, dict]:
    """``{stage: {"outs": [...], "cmd": str}}`` from ``root/dvc.yaml`` (foreach/matrix stages by group name)."""
    import yaml

    text = (root / ROOT_MARKER).read_text(encoding="utf-8")
    try:
        spec = yaml.safe_load(text) or {}
    except yaml.YAMLError as err:
        raise NotebookSetupError(f"{root / ROOT_MARKER}: not valid YAML: {err}") from None
    return {name: {"outs": _out_paths(body), "cmd": str(body.get("cmd", ""))} for name, body in _stage_bodies(spec)}


def locked_profile(root: Path, stage: str = "data") -> str | None:
    """The profile ``stage`` last ran with, from ``dvc.lock`` (None when it has not run)."""
    import yaml

    lock = root / "dvc.lock"
    if not lock.is_file():
        return None
    try:
        stages = (yaml.safe_load(lock.read_text(encoding="utf-8")) or {}).get("stages") or {}
    except yaml.YAMLError:
        return None
    return ((stages.get(stage) or {}).get("params") or {}).get("params.yaml", {}).get("profile")


def stages_making(path: str, stages: dict[str, dict]) -> list[str]:
    return [name for name, stage in stages.items() if any(_overlaps(path, out) for out in stage["outs"])]


def notebook_stages(name: str, stages: dict[str, dict]) -> list[str]:
    """The stages whose command executes notebook ``name``."""
    command = re.compile(rf"\bmmscale\s+notebook\s+{re.escape(name)}(\s|$)")
    return [stage for stage, spec in stages.items() if command.search(spec["cmd"])]


# --------------------------------------------------------------------------- setup

def is_path_parameter(key: str, value: Any) -> bool:
    return isinstance(value, str) and key.endswith(PATH_SUFFIXES) and not key.startswith("_")


def _inside_root(value: str, root: Path) -> str | None:
    """``value`` as a path relative to ``root``, or None when it lies outside."""
    path = Path(value).expanduser()
    path = path if path.is_absolute() else root / path
    try:
        return Path(os.path.normpath(path)).relative_to(root).as_posix()
    except ValueError:
        return None


def setup(namespace: dict[str, Any], name: str, needs: Iterable[str] = (), writes: Iterable[str] = (),
          quiet: bool = False) -> NotebookContext:
    """Prepare a notebook's ``globals()`` (see the module docstring); returns what it decided."""
    from mmscale_core.outputs import data_provenance, provenance_label
    from mmscale_core.params import load_profile

    root = find_root()
    os.chdir(root)
    interactive = os.environ.get(RUNNER_ENV) is None
    mode = str(namespace.get("write_outputs") or "scratch") if interactive else "pipeline"
    if mode not in WRITE_MODES:
        raise NotebookSetupError(f"write_outputs must be one of {', '.join(map(repr, WRITE_MODES))}, not {mode!r}")

    try:
        profile = load_profile(namespace.get("params_file") or "params.yaml", namespace.get("profile"))
    except MmscaleError as err:
        raise NotebookSetupError(str(err)) from None
    namespace["profile"] = profile["name"]
    if namespace.get("provenance") is None:
        namespace["provenance"] = data_provenance(profile)

    stages = read_stages(root)
    missing = []
    for key in needs:
        if not isinstance(namespace.get(key), str):
            raise NotebookSetupError(f"setup(needs=...) names {key!r}, which is not a path parameter of this notebook")
        if not Path(namespace[key]).expanduser().exists():
            made_by = stages_making(_inside_root(namespace[key], root) or namespace[key], stages)
            how = f"`dvc repro {' '.join(made_by)}` makes it" if made_by else "no stage of dvc.yaml makes it"
            missing.append(f"{key} = {namespace[key]!r} does not exist yet: {how}")
    if missing:
        raise NotebookSetupError("; ".join(missing) + " (`make repro` runs the whole pipeline)")

    own_outs = [out for stage in notebook_stages(name, stages) for out in stages[stage]["outs"]]
    keys = [k for k, v in namespace.items() if is_path_parameter(k, v)]
    output_keys = [k for k in keys if k in OUTPUT_PARAMETERS or k in set(writes)
                   or any(_overlaps(_inside_root(namespace[k], root) or "", out) for out in own_outs)]
    ctx = NotebookContext(name=name, root=root, interactive=interactive, writes_to=mode, profile=profile)
    if not interactive:  # an executed page is read after the run: library progress bars would land on it as stderr
        from mmscale_core.display import quiet_progress_bars

        quiet_progress_bars()
    for key in output_keys:
        relative = _inside_root(namespace[key], root)
        if relative is None:  # a place outside the project the reader chose: not the pipeline's
            ctx.outputs[key] = namespace[key]
            continue
        if mode == "scratch" and not relative.startswith(f"{SCRATCH_DIR}/"):
            relative = f"{SCRATCH_DIR}/{name}/{relative}"
        namespace[key] = ctx.outputs[key] = relative
    if not quiet:
        print(ctx.summary(namespace.get("data_dir", "-"), provenance_label(namespace["provenance"]),
                          namespace["params_file"]))
        if interactive:
            print(f"working directory: {root} (the project root, as in the pipeline)")
        made_with = locked_profile(root)
        if made_with and made_with != profile["name"]:
            print(f"note: the pipeline's data was made with profile {made_with!r} (dvc.lock), not {profile['name']!r}")
    return ctx
