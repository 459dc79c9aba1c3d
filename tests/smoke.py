"""The smoke pipeline in a temporary copy of the project, built once per test session.

Several test modules check what the smoke pipeline (`mmscale repro`, i.e. DVC's stages) produced (test_pipeline.py: the
outputs and the site; test_notebooks_interactive.py: the notebooks opened as a reader would); the
pipeline takes minutes, so conftest.py's session fixture ``smoke_project`` runs it once for all.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def sh(cmd: list[str], cwd: Path) -> str:
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "PYTHONUNBUFFERED": "1"}
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.fail(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-6000:]}")
    return proc.stdout


def copy_project(work: Path, edit_params=None) -> Path:
    """A git-committed copy of the project (what git would commit) at ``work`` with `profile: smoke`;
    ``edit_params(params_dict)`` may change params.yaml further before the commit."""
    files = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"], cwd=REPO,
                           capture_output=True, text=True, check=True).stdout.split("\0")
    for name in filter(None, files):
        src = REPO / name
        if src.is_file():
            (work / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, work / name)
    params = (work / "params.yaml").read_text()
    (work / "params.yaml").write_text(params.replace("\nprofile: default\n", "\nprofile: smoke\n", 1))
    if edit_params is not None:
        import yaml

        values = yaml.safe_load((work / "params.yaml").read_text())
        edit_params(values)
        (work / "params.yaml").write_text(yaml.safe_dump(values, sort_keys=False))
    git = ["git", "-c", "user.name=test", "-c", "user.email=test@example.invalid"]
    sh(["git", "init", "-q"], work)
    sh(git + ["add", "-A"], work)
    sh(git + ["commit", "-qm", "snapshot"], work)
    return work


REPRO_OUTPUT = "repro-output.txt"  # what `mmscale repro` printed, kept beside the project for the tests


def build_smoke_project(work: Path) -> Path:
    """A copy of the project with `profile: smoke`, after `mmscale repro --jobs 2` (DVC's stages, two at a
    time, as `make repro` runs them; test_pipeline.py checks DVC then finds nothing stale)."""
    printed = sh(["mmscale", "repro", "--jobs", "2"], copy_project(work))
    (work.parent / f"{work.name}-{REPRO_OUTPUT}").write_text(printed)
    return work
