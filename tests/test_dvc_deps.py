"""dvc.yaml's code deps follow its header's rule: exactly the mmscale_core units each stage can run.

Missing units mean an edit that changes a stage's outputs re-runs nothing (stale results that
look fresh); extra ones re-run a stage for nothing. ``python tests/stage_code.py`` prints the
lists to paste."""

from __future__ import annotations

import pytest

import stage_code as sc

STAGES = sc.stages()


@pytest.mark.parametrize("name", sorted(STAGES))
def test_code_deps_are_what_the_stage_runs(name):
    stage = STAGES[name]
    listed = {d for d in stage.get("deps") or [] if d.startswith("mmscale_core/")}
    needed = sc.needed_units(stage)
    assert not needed - listed, f"dvc.yaml stage {name}: add deps {sorted(needed - listed)}"
    assert not listed - needed, f"dvc.yaml stage {name}: deps not on its path {sorted(listed - needed)}"


def test_the_rule_sees_lazy_imports_parents_and_notebook_imports():
    """The closure follows an import inside a function, a submodule's parent package, and a
    notebook's imports; it skips the speed-only and face modules."""
    reach = sc.reachable({"mmscale_core.judges.stage"})
    assert "mmscale_core.judges.cli" in reach  # imported inside _cmd_stage
    assert "mmscale_core.judges" in reach and "mmscale_core" in reach  # parent packages run first
    assert not any(sc.within(m, "mmscale_core.cli") for m in reach)
    assert "mmscale_core.robustness.report" in sc.notebook_imports("09_robustness") or any(
        sc.within(m, "mmscale_core.robustness") for m in sc.notebook_imports("09_robustness"))
    assert sc.unit("mmscale_core.training.loop") == "mmscale_core/training"
    assert sc.unit("mmscale_core.io") == "mmscale_core/io.py"
    assert sc.verb_modules()["judge-stage"] == "mmscale_core.judges.stage"
    with pytest.raises(ValueError):
        sc.entry_modules("python -m something")


@pytest.mark.parametrize("name", sorted(set(STAGES) - {"data"}))
def test_stages_after_data_depend_on_the_dataset_digest_not_the_directory(name):
    stage = STAGES[name]
    deps = stage.get("deps") or []
    assert "data/dataset" not in deps, f"{name}: list data/dataset.digest.json instead (see dvc.yaml's header)"
    if "data/dataset" in stage["cmd"] or "data_dir" in notebook_parameter_names(stage["cmd"]):
        assert "data/dataset.digest.json" in deps, f"{name} reads data/dataset but does not depend on its digest"


def test_the_data_stage_writes_the_digest_it_is_depended_on_by():
    assert STAGES["data"]["outs"] == ["data/dataset", "data/dataset.digest.json"]


def notebook_parameter_names(cmd: str) -> set[str]:
    """The parameters of the notebook a ``mmscale notebook NAME`` command executes (empty otherwise)."""
    words = cmd.split()
    if words[:2] != ["mmscale", "notebook"]:
        return set()
    cell = next(c for c in sc.notebook_cells(words[2]) if "parameters" in c.get("metadata", {}).get("tags", []))
    return {line.split("=")[0].strip() for line in "".join(cell["source"]).splitlines() if "=" in line}


def test_stages_depend_on_the_active_profile_only():
    """`profiles.${profile}.KEY` in dvc.yaml: DVC resolves it from params.yaml's `profile`, so a stage's
    lock records (and re-runs for) the profile it ran, and editing another profile re-runs nothing."""
    import yaml
    from dvc.repo import Repo

    params = yaml.safe_load((sc.ROOT_DIR / "params.yaml").read_text(encoding="utf-8"))
    active, profiles = params["profile"], set(params["profiles"])
    for name, stage in STAGES.items():
        for key in stage.get("params") or []:
            assert not (key.startswith("profiles.") and key.split(".")[1] in profiles), \
                f"dvc.yaml stage {name}: {key} names a profile; write profiles.${{profile}}.{key.split('.', 2)[2]}"
    with Repo(str(sc.ROOT_DIR)) as repo:
        resolved = {key for stage in repo.index.stages for dep in stage.params for key in dep.params}
    named = {key.split(".")[1] for key in resolved if key.startswith("profiles.")}
    assert named == {active}
    assert "profile" in resolved
