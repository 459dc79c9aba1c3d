"""Sec. 5.2's safety-threshold ablation: metrics at each t against a brute-force count, and the verdict."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mmscale_core import experiments
from mmscale_core.metrics.safety import AUC_THRESHOLDS
from mmscale_core.safety_thresholds import paired_by_threshold, ranking_verdict, safety_by_threshold

from test_experiments import fake_run, fake_scenarios


@pytest.fixture
def one_seed_runs(tmp_path):
    scenarios = fake_scenarios(n_images=60)
    for objective, noise in (("lipo", 0.3), ("bce", 2.0)):
        fake_run(tmp_path / "runs", f"{objective}/seed0", scenarios, objective, 0, noise)
    runs = experiments.collect_runs(tmp_path / "runs")
    return runs, experiments.run_predictions(runs, scenarios, split="test")


def brute_force(truth: np.ndarray, scale: np.ndarray, t: float) -> tuple[float, float, float]:
    """Unsafe Rate, AUC-Safety on the 0.1 grid (pairs of unsafe/safe, ties half), chance Unsafe Rate."""
    unsafe = truth <= t
    rate = np.mean(scale[unsafe] > t)
    bins = np.searchsorted(AUC_THRESHOLDS, scale, side="left")
    wins = [(bu < bs) + 0.5 * (bu == bs) for bu in bins[unsafe] for bs in bins[~unsafe]]
    return rate, float(np.mean(wins)), float(np.mean(scale > t))


def test_every_threshold_matches_a_brute_force_count(one_seed_runs):
    runs, frame = one_seed_runs
    thresholds = [1.5, 2.5, 3.5]
    table = safety_by_threshold(runs, frame, thresholds, n_boot=50, min_list_size=1)
    assert sorted(table["threshold"].unique()) == thresholds
    assert set(table["metric"]) == {"Unsafe Rate", "AUC-Safety"}
    assert table.loc[table["paper_threshold"], "threshold"].unique().tolist() == [2.5]
    for t in thresholds:
        for run in runs.itertuples():
            rows = table[(table["threshold"] == t) & (table["objective"] == run.objective)].set_index("metric")
            rate, auc, chance = brute_force(frame["score"].to_numpy(), frame[f"scale:{run.run}"].to_numpy(), t)
            assert rows.loc["Unsafe Rate", "value"] == pytest.approx(rate)
            assert rows.loc["AUC-Safety", "value"] == pytest.approx(auc)
            assert rows.loc["Unsafe Rate", "chance"] == pytest.approx(chance)
            assert rows.loc["AUC-Safety", "chance"] == 0.5
            assert rows.loc["Unsafe Rate", "n_unsafe"] == int((frame["score"] <= t).sum())
            for metric in ("Unsafe Rate", "AUC-Safety"):
                assert rows.loc[metric, "ci_low"] <= rows.loc[metric, "value"] <= rows.loc[metric, "ci_high"]


def test_the_better_objective_is_clearly_better_and_never_swaps(one_seed_runs):
    runs, frame = one_seed_runs
    pairs = paired_by_threshold(runs, frame, [2.0, 2.5, 3.0], n_boot=200, n_perm=50, min_list_size=2)
    assert len(pairs) == 3 * 2  # one pair of objectives, three thresholds, two pooled metrics
    auc = pairs[pairs["metric"] == "AUC-Safety"]
    lipo_first = (auc["reference"] == "lipo").all()
    assert ((auc["ci_low"] > 0) if lipo_first else (auc["ci_high"] < 0)).any()  # noise 0.3 vs 2.0
    assert ranking_verdict(pairs).startswith("No pair of objectives swaps order")


def _pairs(rows):
    return pd.DataFrame(rows, columns=["backbone", "metric", "reference", "other", "threshold", "diff",
                                       "ci_low", "ci_high"])


def test_verdict_names_a_swap_the_cis_support():
    pairs = _pairs([("b", "AUC-Safety", "lipo", "bce", 1.5, 0.10, 0.05, 0.15),
                    ("b", "AUC-Safety", "lipo", "bce", 3.5, -0.10, -0.15, -0.05)])
    verdict = ranking_verdict(pairs)
    assert verdict.startswith("The ranking of objectives depends on the threshold")
    assert "t = 1.5" in verdict and "t = 3.5" in verdict and "Ours (Listwise PO)" in verdict


def test_verdict_calls_a_point_swap_inside_the_cis_unresolved():
    pairs = _pairs([("b", "Unsafe Rate", "lipo", "bce", 1.5, 0.02, -0.05, 0.09),
                    ("b", "Unsafe Rate", "lipo", "bce", 3.5, -0.02, -0.09, 0.05)])
    verdict = ranking_verdict(pairs)
    assert verdict.startswith("No pair of objectives swaps order") and "0 of 2" in verdict
    assert "point estimates do swap" in verdict


def test_verdict_with_one_objective():
    assert "only one objective" in ranking_verdict(pd.DataFrame()).lower()
