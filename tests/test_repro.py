"""``mmscale repro``: stages side by side through DVC, in dependency order, at fixed thread counts."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from mmscale_core.errors import MmscaleError
from mmscale_core.repro import (
    DEFAULT_SECONDS, Stage, closure, critical_path, format_seconds, read_plan, run_plan, set_profile, stage_seconds,
    stage_threads, topological,
)


def _stages(edges: dict[str, set[str]]) -> dict[str, Stage]:
    stages = {name: Stage(name, set(up), 1) for name, up in edges.items()}
    for stage in stages.values():
        for up in stage.upstream:
            stages[up].downstream.add(stage.name)
    return stages


DIAMOND = {"a": set(), "b": {"a"}, "c": {"a"}, "d": {"b", "c"}, "e": set()}


def test_topological_order_puts_every_stage_after_its_upstream():
    stages = _stages(DIAMOND)
    order = topological(stages)
    assert sorted(order) == sorted(DIAMOND)
    for name, up in DIAMOND.items():
        assert all(order.index(u) < order.index(name) for u in up)


def test_a_circle_is_an_error_naming_its_stages():
    with pytest.raises(MmscaleError, match="x, y"):
        topological(_stages({"x": {"y"}, "y": {"x"}}))


def test_closure_goes_both_ways():
    stages = _stages(DIAMOND)
    assert closure(stages, {"b"}, "downstream") == {"b", "d"}
    assert closure(stages, {"d"}, "upstream") == {"a", "b", "c", "d"}
    assert closure(stages, {"e"}, "downstream") == {"e"}


def test_critical_path_is_the_longest_chain_of_expected_times_after_a_stage():
    stages = _stages(DIAMOND)
    names = topological(stages)
    longest = critical_path(stages, names, {"a": 1, "b": 10, "c": 2, "d": 5, "e": 3})
    assert longest == {"d": 5, "b": 15, "c": 7, "a": 16, "e": 3}
    # a stage not to run adds nothing to the chains through it
    assert critical_path(stages, ["a", "c"], {"a": 1, "c": 2}) == {"c": 2, "a": 3}
    # without a time measured here: the stage's meta.seconds, else the default
    stages["d"].seconds = 100.0
    longest = critical_path(stages, names, {"a": 1, "b": 10, "c": 2})
    assert longest["d"] == 100 and longest["b"] == 110 and longest["e"] == DEFAULT_SECONDS


@pytest.mark.parametrize(("meta", "expected"), [(None, None), ({}, None), ({"seconds": 12}, 12.0),
                                                 ({"threads": "all", "seconds": 0.5}, 0.5)])
def test_stage_seconds(meta, expected):
    assert stage_seconds(meta, "s") == expected


@pytest.mark.parametrize("bad", [-1, "long", True])
def test_stage_seconds_rejects_what_is_not_a_time(bad):
    with pytest.raises(MmscaleError, match=r"stage s: meta.seconds"):
        stage_seconds({"seconds": bad}, "s")


@pytest.mark.parametrize(("meta", "expected"), [(None, 1), ({}, 1), ({"threads": 2}, 2), ({"threads": 9}, 4),
                                                 ({"threads": "all"}, None)])
def test_stage_threads(meta, expected):
    assert stage_threads(meta, "s", cores=4) == expected


@pytest.mark.parametrize("bad", [0, -1, "two", True, 1.5])
def test_stage_threads_rejects_what_is_not_a_count(bad):
    with pytest.raises(MmscaleError, match=r"stage s: meta.threads"):
        stage_threads({"threads": bad}, "s", cores=2)


def test_format_seconds():
    assert format_seconds(12.34) == "12.3 s"
    assert format_seconds(245) == "4 min 05 s"


def test_set_profile_rewrites_only_the_profile_line(tmp_path):
    params = tmp_path / "params.yaml"
    body = "# top comment\nprofile: default   # which block\nprofiles:\n  smoke: {a: 1}\n  default: {a: 2}\n"
    params.write_text(body)
    assert set_profile(params, "smoke") == "default"
    assert params.read_text() == body.replace("profile: default", "profile: smoke")
    assert set_profile(params, "smoke") == "smoke"  # already: nothing written
    with pytest.raises(MmscaleError, match="no profile 'paperx'.*smoke, default"):
        set_profile(params, "paperx")


# --------------------------------------------------------------------------- a real DVC project

def _dvc_project(tmp_path: Path, fail: str = "") -> Path:
    """Stages a (alone), b and c (1 s each, side by side), d after both, e independent; each stage
    records its start/end times and OMP_NUM_THREADS."""
    root = tmp_path / "proj"
    root.mkdir()
    subprocess.run([sys.executable, "-m", "dvc", "init", "--no-scm", "-q"], cwd=root, check=True)
    step = textwrap.dedent("""\
        import os, sys, time
        name, deps = sys.argv[1], sys.argv[2:]
        start = time.time()
        if name == os.environ.get("FAIL_STAGE"):
            print("something broke in", name)
            sys.exit(3)
        time.sleep(1.0)
        text = "".join(open(f"out/{d}.txt").read() for d in deps)
        with open(f"out/{name}.txt", "w") as fh:
            fh.write(f"{name}:{start}:{time.time()}:{os.environ.get('OMP_NUM_THREADS', '-')}\\n" + text)
        """)
    (root / "step.py").write_text(step)
    (root / "out").mkdir()
    lines = ["stages:"]
    for name, up in DIAMOND.items():
        deps = sorted(up)
        lines += [f"  {name}:",
                  *(["    meta: {threads: all}"] if name == "a" else []),
                  f"    cmd: {sys.executable} step.py {name} {' '.join(deps)}",
                  "    deps: [step.py" + "".join(f", out/{d}.txt" for d in deps) + "]",
                  f"    outs: [out/{name}.txt]"]
    (root / "dvc.yaml").write_text("\n".join(lines) + "\n")
    return root


def _record(root: Path, name: str) -> tuple[float, float, str]:
    _, start, end, threads = (root / "out" / f"{name}.txt").read_text().splitlines()[0].split(":")
    return float(start), float(end), threads


@pytest.fixture
def in_project(tmp_path, monkeypatch):
    root = _dvc_project(tmp_path)
    monkeypatch.chdir(root)
    monkeypatch.delenv("FAIL_STAGE", raising=False)
    return root


def test_runs_independent_stages_side_by_side_and_leaves_dvc_up_to_date(in_project):
    root = in_project
    plan = read_plan(root, cores=2)
    assert plan.to_run == topological(plan.stages)  # nothing built yet: everything
    assert plan.stages["a"].threads is None and plan.stages["b"].threads == 1
    out = io.StringIO()
    assert run_plan(plan, jobs=2, out=out) == 0
    lines = out.getvalue().splitlines()
    assert len(lines) == 6 and lines[-1].startswith("5 stage(s) in")
    assert all(line.startswith(f"[{i}/5] ") for i, line in enumerate(lines[:5], 1))
    times = {name: _record(root, name) for name in DIAMOND}
    # b and c overlapped; d started after both ended; a ran alone with the environment's threads
    assert max(times["b"][0], times["c"][0]) < min(times["b"][1], times["c"][1])
    assert times["d"][0] >= max(times["b"][1], times["c"][1])
    assert times["a"][1] <= min(times[n][0] for n in "bcde")
    assert times["a"][2] == os.environ.get("OMP_NUM_THREADS", "-")
    assert {times[n][2] for n in "bcde"} == {"1"}
    # DVC recorded every stage: nothing is stale, and a second run starts nothing
    status = subprocess.run([sys.executable, "-m", "dvc", "status", "--json"], cwd=root, check=True,
                            capture_output=True, text=True).stdout
    assert json.loads(status) == {}
    assert read_plan(root, cores=2).to_run == []
    assert json.loads((root / ".dvc/tmp/mmscale-repro/seconds.json").read_text()).keys() == set(DIAMOND)


def test_a_changed_stage_reruns_with_what_is_downstream_of_it(in_project):
    root = in_project
    assert run_plan(read_plan(root, cores=2), jobs=2, out=io.StringIO()) == 0
    (root / "out" / "b.txt").write_text("edited by hand\n")
    assert read_plan(root, cores=2).to_run == ["b", "d"]
    assert read_plan(root, cores=2, targets=["e"]).to_run == []


def test_a_failing_stage_stops_the_run_with_its_output_and_a_rerun_continues(in_project, monkeypatch):
    root = in_project
    monkeypatch.setenv("FAIL_STAGE", "c")
    out = io.StringIO()
    assert run_plan(read_plan(root, cores=2), jobs=2, out=out) == 1
    text = out.getvalue()
    assert "c: FAILED (exit" in text and "something broke in c" in text
    assert "not started:" in text  # d at least
    assert not (root / "out" / "d.txt").exists()
    monkeypatch.delenv("FAIL_STAGE")
    plan = read_plan(root, cores=2)
    assert {"c", "d"} <= set(plan.to_run) <= {"c", "d", "e"}  # a and b are kept (e, if it had started)
    assert run_plan(plan, jobs=2, out=io.StringIO()) == 0
    lines = (root / "out" / "d.txt").read_text().splitlines()
    assert [line.split(":")[0] for line in lines] == ["d", "b", "a", "c", "a"]  # d, then b's and c's files


def test_cli_switches_the_profile_and_reports_up_to_date(tmp_path, monkeypatch):
    from mmscale_core.cli import main

    root = _dvc_project(tmp_path)
    (root / "params.yaml").write_text("profile: smoke\nprofiles:\n  smoke: {}\n  default: {}\n")
    monkeypatch.chdir(root)
    assert main(["repro", "--jobs", "2", "--profile", "default", "e"]) == 0
    assert (root / "params.yaml").read_text().startswith("profile: default\n")
    assert (root / "out" / "e.txt").exists() and not (root / "out" / "a.txt").exists()
