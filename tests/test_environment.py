"""The environment the numbers come from: the lock file against pyproject.toml, and the Makefile's
install and profile logic (run with `echo` in place of pip/dvc, so nothing is installed or trained)."""

from __future__ import annotations

import re
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

REPO = Path(__file__).resolve().parents[1]


def lock_pins() -> dict[str, Version]:
    pins = {}
    for line in (REPO / "requirements.lock").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        name, _, version = line.partition("==")
        assert version and not any(c in line for c in "<>~!@ "), f"requirements.lock: not an exact pin: {line!r}"
        pins[canonicalize_name(name)] = Version(version)
    return pins


def pyproject_requirements() -> list[Requirement]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    reqs = [Requirement(r) for r in project["dependencies"]]
    for extra in project["optional-dependencies"].values():
        reqs += [Requirement(r) for r in extra if not r.startswith(project["name"] + "[")]
    return reqs


def makefile_torch_pin() -> Version:
    match = re.search(r"^TORCH_SPEC \?= torch==(\S+)$", (REPO / "Makefile").read_text(), re.M)
    assert match, "Makefile: TORCH_SPEC ?= torch==X.Y.Z not found"
    return Version(match.group(1))


def test_every_dependency_of_pyproject_is_pinned_in_the_lock_within_its_range():
    pins = lock_pins()
    problems = []
    for req in pyproject_requirements():
        name = canonicalize_name(req.name)
        version = makefile_torch_pin() if name == "torch" else pins.get(name)
        if version is None:
            problems.append(f"{req}: not pinned in requirements.lock")
        elif not req.specifier.contains(version, prereleases=True):
            problems.append(f"{req}: the lock pins {version}")
    assert not problems, "requirements.lock is out of step with pyproject.toml: " + "; ".join(problems)


def test_the_lock_leaves_torch_to_torch_spec_and_holds_no_project():
    pins = lock_pins()
    assert "torch" not in pins and "mmscale" not in pins
    assert "torchvision" in pins and len(pins) > 50  # the whole closure, not only the direct dependencies


def _project(tmp_path: Path, profile: str) -> Path:
    for name in ("Makefile", "pyproject.toml", "requirements.lock"):
        shutil.copy2(REPO / name, tmp_path / name)
    params = (REPO / "params.yaml").read_text().replace("\nprofile: default\n", f"\nprofile: {profile}\n", 1)
    (tmp_path / "params.yaml").write_text(params)
    bin_dir = tmp_path / ".venv" / "bin"
    bin_dir.mkdir(parents=True)
    (bin_dir / "python").write_text("")
    (tmp_path / ".venv" / ".mmscale-installed").write_text("")  # newer than pyproject: no install
    return tmp_path


def make(project: Path, *args: str) -> list[str]:
    if shutil.which("make") is None:
        pytest.skip("no make on this machine")
    out = subprocess.run(["make", "--no-print-directory", *args, "DVC=echo dvc", "MMSCALE=echo mmscale"],
                         cwd=project, capture_output=True, text=True, check=True).stdout
    return out.splitlines()


@pytest.mark.parametrize(("left", "asked"), [("smoke", None), ("default", None), ("default", "smoke"),
                                             ("smoke", "smoke")])
def test_repro_runs_the_profile_asked_for_whatever_params_yaml_says(tmp_path, left, asked):
    """A plain ``make repro`` is the default profile even after a smoke run; ``mmscale repro --profile``
    writes it to params.yaml (tests/test_repro.py) before running the stages."""
    project = _project(tmp_path, left)
    lines = make(project, "repro", "JOBS=3", *([f"PROFILE={asked}"] if asked else []))
    assert lines[0].startswith(f"make repro: profile {asked or 'default'} (params.yaml had: {left}")
    assert f"mmscale repro --profile {asked or 'default'} --jobs 3" in lines
    assert lines[-1] == "mmscale site --strict"


def test_install_uses_the_lock_unless_lock_0(tmp_path):
    project = _project(tmp_path, "default")
    (project / ".venv" / ".mmscale-installed").unlink()
    locked = [line for line in make(project, "-n", "install") if "-e \".[" in line]
    ranges = [line for line in make(project, "-n", "install", "LOCK=0") if "-e \".[" in line]
    assert len(locked) == 1 and "-c requirements.lock" in locked[0]
    assert "-c .venv/torch-constraint.txt" in locked[0]  # torch stays what TORCH_SPEC installed
    assert len(ranges) == 1 and "requirements.lock" not in ranges[0]
