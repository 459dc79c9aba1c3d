"""Execute a numbered notebook with papermill, parameters from ``params.yaml``.

``mmscale notebook NAME [--set KEY=VALUE ...] [--output PATH]`` is the command
of each notebook stage in ``dvc.yaml``. Parameters injected into the notebook's
tagged ``parameters`` cell: ``profile``, ``params_file``, ``data_dir``,
``provenance`` (simulated/real), ``figures_dir`` and ``tables_dir``
(``figures/NAME``, ``tables/NAME``), then each ``--set`` (values parsed as
YAML, so ``seed=0`` is an int). The executed copy goes to
``reports/notebooks/NAME.ipynb`` (what the report renders) or ``--output``,
written only when the whole notebook succeeded; a failing cell stops the stage
with that cell's source and error, not a kernel traceback dump. Kernels, and the
command's own papermill call, are forked from a warm process that has the libraries
imported (:mod:`mmscale_core.warm_kernel`; ``MMSCALE_WARM_KERNEL=0`` for a cold one). The kernel's
environment carries ``MMSCALE_NOTEBOOK_RUNNER``, which tells :mod:`mmscale_core.notebook_context`
that this is a pipeline run (outputs go where ``dvc.yaml`` says, not to the scratch directory).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from mmscale_core.errors import MmscaleError
from mmscale_core.io import atomic_path
from mmscale_core.notebook_context import RUNNER_ENV
from mmscale_core.outputs import data_provenance
from mmscale_core.params import load_profile

NOTEBOOK_DIR = Path("notebooks")
EXECUTED_DIR = Path("reports/notebooks")


def notebook_parameters(name: str, profile: dict, params_file: str | Path) -> dict[str, Any]:
    return {
        "profile": profile["name"],
        "params_file": str(Path(params_file)),
        "data_dir": "data/dataset",
        "provenance": data_provenance(profile),
        "figures_dir": f"figures/{name}",
        "tables_dir": f"tables/{name}",
    }


def parse_assignments(items: list[str]) -> dict[str, Any]:
    """``["seed=0", "objective=lipo"]`` -> ``{"seed": 0, "objective": "lipo"}`` (values as YAML)."""
    import yaml

    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.isidentifier():
            raise MmscaleError(f"--set expects KEY=VALUE with KEY a Python name, got {item!r}")
        out[key] = yaml.safe_load(value) if value else ""
    return out


def import_papermill():
    """papermill, imported without the ~2 s that rfc3987-syntax would add to every stage.

    jsonschema (via nbformat) imports rfc3987-syntax 1.1 if present, which builds a grammar at
    import (python-jsonschema#1521); notebooks never hold IRIs to check, so it is skipped.
    """
    sys.modules.setdefault("rfc3987_syntax", None)
    import papermill

    return papermill


def run_notebook(name: str, params_file: str | Path = "params.yaml", profile_name: str | None = None,
                 notebook_dir: str | Path = NOTEBOOK_DIR, output: str | Path | None = None,
                 extra: dict[str, Any] | None = None) -> Path:
    pm = import_papermill()
    from papermill.exceptions import PapermillExecutionError

    from mmscale_core.warm_kernel import kernel_name

    source = Path(notebook_dir) / f"{name}.ipynb"
    if not source.is_file():
        raise MmscaleError(f"{source}: no such notebook")
    profile = load_profile(params_file, profile_name)
    parameters = {**notebook_parameters(name, profile, params_file), **(extra or {})}
    target = Path(output) if output else EXECUTED_DIR / f"{name}.ipynb"
    for key in ("figures_dir", "tables_dir"):  # stage outputs, even when a release allows no figure
        Path(parameters[key]).mkdir(parents=True, exist_ok=True)
    with atomic_path(target) as tmp, _runner_environment():
        try:
            pm.execute_notebook(
                str(source), str(tmp), parameters=parameters, kernel_name=kernel_name(),
                progress_bar=False, cwd=str(Path.cwd()), language="python", config=kernel_transport_config(),
                kernel_manager_class=stage_kernel_manager(),
            )
        except PapermillExecutionError as err:
            raise MmscaleError(
                f"notebook {source} failed in cell {err.exec_count}:\n"
                f"{_indent(err.source)}\n{err.ename}: {err.evalue}"
            ) from None
    return target


def kernel_transport_config():
    """Talk to the stage's kernel over Unix sockets (IPC), not loopback TCP.

    Why: over TCP without CurveZMQ keys ipykernel warns on every start that its traffic is
    unencrypted ("Kernel is running over TCP without encryption"), one stderr line per notebook
    stage; IPC sockets are files in Jupyter's runtime directory that only this user can open,
    so nothing travels unencrypted over a network interface and the warning is gone honestly.
    Each kernel gets its own socket prefix there: jupyter_client's default, ``kernel-ipc`` in the
    working directory, is the same for every kernel started in one directory, so two stages
    running at once (``mmscale repro``) read each other's messages ("Invalid Signature").
    Windows has no IPC transport: it keeps TCP (and the warning)."""
    import uuid

    from jupyter_core.paths import jupyter_runtime_dir
    from traitlets.config import Config

    if os.name == "nt":
        return Config({"KernelManager": {"transport": "tcp"}})
    runtime = Path(jupyter_runtime_dir())
    runtime.mkdir(parents=True, exist_ok=True, mode=0o700)
    prefix = runtime / f"mmscale-{os.getpid()}-{uuid.uuid4().hex[:8]}"  # + "-<port>" per channel
    return Config({"KernelManager": {"transport": "ipc", "ip": str(prefix)}})


_STAGE_KERNEL_MANAGER = None


def stage_kernel_manager():
    """jupyter_client's kernel manager, without the SIGINT it sends a kernel it is shutting down.

    Why: ``shutdown_kernel`` interrupts the kernel before asking it to exit. A stage's kernel has
    finished every cell by then, but ipykernel reports idle a moment before it stops handling the
    last message, so now and then the interrupt lands inside that handler and the kernel logs
    "KeyboardInterrupt caught in kernel." to the stage's stderr (once in ~15 default stages).
    There is nothing to interrupt; the shutdown request (and, failing that, SIGTERM and SIGKILL)
    still ends the kernel. Interrupts outside a shutdown (a cell timeout) are unchanged."""
    global _STAGE_KERNEL_MANAGER
    if _STAGE_KERNEL_MANAGER is None:
        from jupyter_client import AsyncKernelManager

        class StageKernelManager(AsyncKernelManager):
            async def _async_interrupt_kernel(self) -> None:
                if self.shutting_down:
                    return
                await super()._async_interrupt_kernel()

        _STAGE_KERNEL_MANAGER = StageKernelManager
    return _STAGE_KERNEL_MANAGER


@contextmanager
def _runner_environment():
    """Tell the kernel it runs as a pipeline stage (outputs where dvc.yaml says; see notebook_context)."""
    before = os.environ.get(RUNNER_ENV)
    os.environ[RUNNER_ENV] = "papermill"
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(RUNNER_ENV, None)
        else:
            os.environ[RUNNER_ENV] = before


def _indent(text: str) -> str:
    return "\n".join("    " + line for line in text.splitlines())


def _cmd_notebook(args: argparse.Namespace) -> int:
    """``mmscale notebook``: in a fork of the warm zygote, which has papermill imported, else here."""
    from mmscale_core import warm_kernel

    options = {"name": args.name, "params": args.params, "profile": args.profile, "output": args.output,
               "set": list(args.set)}
    code = warm_kernel.run_forked("mmscale_core.notebook_runner:notebook_command", options)
    return notebook_command(options) if code is None else code


def notebook_command(options: dict[str, Any]) -> int:
    """Execute one stage's notebook in this process; the exit code, a user error printed as the CLI prints it."""
    started = time.perf_counter()
    try:
        out = run_notebook(options["name"], options["params"], options["profile"], output=options["output"],
                           extra=parse_assignments(options["set"]))
    except MmscaleError as err:
        print(f"mmscale notebook: error: {err}", file=sys.stderr)
        return err.exit_code
    print(f"executed {options['name']} -> {out} in {time.perf_counter() - started:.1f} s")
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser("notebook", help="pipeline stage: execute a numbered notebook with papermill")
    p.add_argument("name", help="notebook name without .ipynb, e.g. 01_data_stats")
    p.add_argument("--params", default="params.yaml")
    p.add_argument("--profile", default=None, help="override the profile named in params.yaml")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override one notebook parameter (repeatable); VALUE is parsed as YAML")
    p.add_argument("--output", default=None, help="where to write the executed notebook")
    p.set_defaults(func=_cmd_notebook)
