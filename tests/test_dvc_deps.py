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
