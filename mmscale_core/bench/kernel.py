"""``mmscale bench kernel``: a notebook stage's start-up, cold kernel vs warm (forked) kernel.

The work: papermill executes a one-cell notebook that imports what the training
notebook imports (the training stack and the plotting module) and then does
nothing else, so the time is the start-up a DVC notebook stage pays before its
own work. Cold and warm runs alternate, each ``--runs`` times; the warm zygote is
started (and its import time printed) before the first warm run, as the first
notebook stage of ``dvc repro`` pays it once.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

from mmscale_core.bench.timing import alternate, medians, ratio_line, time_once

STAGE_IMPORTS = (
    "from mmscale_core.training import train\n"
    "from mmscale_core.experiments import training_config\n"
    "import mmscale_core.plots\n"
)


def _execute(notebook: Path, out: Path, kernel: str) -> None:
    import papermill as pm

    pm.execute_notebook(str(notebook), str(out), kernel_name=kernel, cwd=str(Path.cwd()),
                        progress_bar=False, language="python")


def run(runs: int = 3) -> dict[str, float]:
    import nbformat

    from mmscale_core import warm_kernel
    from mmscale_core.notebook_runner import import_papermill

    if not warm_kernel.enabled():
        raise SystemExit("the warm kernel is off (MMSCALE_WARM_KERNEL=0 or not Linux): nothing to compare")
    import_papermill()  # as the notebook runner imports it
    warm_name = warm_kernel.kernel_name()
    saved = os.environ.get("MMSCALE_WARM_KERNEL_ADDRESS")
    os.environ["MMSCALE_WARM_KERNEL_ADDRESS"] = f"mmscale-bench-{os.getpid()}"  # a fresh zygote, ours alone
    try:
        with tempfile.TemporaryDirectory() as tmp:
            notebook, out = Path(tmp) / "stage.ipynb", Path(tmp) / "stage.out.ipynb"
            nb = nbformat.v4.new_notebook()
            nb.cells = [nbformat.v4.new_code_cell(STAGE_IMPORTS)]
            nbformat.write(nb, notebook)
            zygote = warm_kernel.start_zygote(os.environ["MMSCALE_WARM_KERNEL_ADDRESS"], idle_s=30)
            first_warm = time_once(lambda: _execute(notebook, out, warm_name))  # waits for the zygote's imports
            timings = medians(alternate({"cold": [lambda: _execute(notebook, out, "python3")],
                                         "warm": [lambda: _execute(notebook, out, warm_name)]}, repeats=runs))
            zygote.terminate()
    finally:
        if saved is None:
            os.environ.pop("MMSCALE_WARM_KERNEL_ADDRESS", None)
        else:
            os.environ["MMSCALE_WARM_KERNEL_ADDRESS"] = saved
    return {**timings, "first_warm": first_warm}


def _cmd(args: argparse.Namespace) -> int:
    times = run(args.runs)
    print(f"notebook stage start-up (papermill + kernel + the training notebook's imports), "
          f"median of {args.runs}, alternating:")
    print(f"  cold kernel (python3)        {times['cold']:6.2f} s")
    print(f"  warm kernel (forked)         {times['warm']:6.2f} s")
    print(f"  first warm run, zygote start {times['first_warm']:6.2f} s (paid once per dvc repro)")
    print("  " + ratio_line("cold/warm ratio", ("cold", times["cold"]), ("warm", times["warm"])))
    return 0


def register_bench(subparsers) -> None:
    p = subparsers.add_parser("kernel", help="notebook stage start-up: cold kernel vs warm (forked) kernel")
    p.add_argument("--runs", type=int, default=3)
    p.set_defaults(func=_cmd)
