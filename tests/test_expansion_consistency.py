"""Sec 5.1's discrepancy-augmented split: the paired with/without comparison."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mmscale_core import paper
from mmscale_core.expansion_consistency import NO_ORIGIN, expansion_consistency, has_expansion
from mmscale_core.metrics import METRICS, compare_subset, evaluate_lists


def _frame(n_images: int = 40, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n_images):
        size = int(rng.integers(1, 6))
        for j in range(size):
            score = float(rng.integers(1, 6) + rng.integers(0, 3) / 3)
            rows.append({"scenario_id": f"i{i}-{j}", "image_id": f"i{i}", "score": min(score, 5.0),
                         "origin": "expansion" if j >= 3 and j == size - 1 else "source"})
    frame = pd.DataFrame(rows)
    for run in ("a", "b"):
        frame[f"pred:{run}"] = frame["score"] + rng.normal(0, 1.0, len(frame))
        frame[f"scale:{run}"] = frame[f"pred:{run}"].clip(1, 5)
    return frame


def test_subset_difference_is_the_difference_of_the_two_evaluations():
    frame = _frame()
    keep = (frame["origin"] == "source").to_numpy()
    assert 0 < (~keep).sum() < len(frame)
    got = compare_subset(frame, keep, ["pred:a", "pred:b"], scale_col=["scale:a", "scale:b"], n_boot=200)
    full = evaluate_lists(frame, pred_col=["pred:a", "pred:b"], scale_col=["scale:a", "scale:b"], n_boot=10)
    sub = evaluate_lists(frame[keep], pred_col=["pred:a", "pred:b"], scale_col=["scale:a", "scale:b"], n_boot=10)
    for metric in full["metric"]:
        row = got.set_index("metric").loc[metric]
        want = full.set_index("metric").loc[metric, "value"] - sub.set_index("metric").loc[metric, "value"]
        assert row["diff"] == pytest.approx(want, abs=1e-12), metric
        assert row["ci_low"] <= row["diff"] <= row["ci_high"], metric
    assert (got["n_lists_subset"] <= got["n_lists"]).all() and (got["n_scenarios_subset"] < got["n_scenarios"]).all()


def test_the_paired_bootstrap_is_narrower_than_two_independent_ones_and_zero_on_identity():
    frame = _frame(80, seed=1)
    same = compare_subset(frame, np.ones(len(frame), bool), "pred:a", scale_col="scale:a", n_boot=100)
    assert (same["diff"] == 0).all() and (same["ci_low"] == 0).all() and (same["ci_high"] == 0).all()
    keep = (frame["origin"] == "source").to_numpy()
    paired = compare_subset(frame, keep, "pred:a", scale_col="scale:a", n_boot=300).set_index("metric")
    full = evaluate_lists(frame, pred_col="pred:a", scale_col="scale:a", n_boot=300).set_index("metric")
    sub = evaluate_lists(frame[keep], pred_col="pred:a", scale_col="scale:a", n_boot=300).set_index("metric")
    # both sides share their images: the paired interval is tighter than two independent ones combined
    width = paired["ci_high"] - paired["ci_low"]
    independent = np.hypot(full["ci_high"] - full["ci_low"], sub["ci_high"] - sub["ci_low"])
    for metric in ("NDCG@5", "MRR", "Unsafe Rate", "AUC-Safety"):
        assert width.loc[metric] < 0.8 * independent.loc[metric], metric


def test_consistency_table_per_objective_next_to_the_paper():
    frame = _frame()
    runs = pd.DataFrame({"run": ["a", "b"], "backbone": ["bb", "bb"], "objective": ["lipo", "bpo"]})
    table = expansion_consistency(runs, frame, n_boot=50)
    assert list(table["objective"].unique()) == ["lipo", "bpo"] and len(table) == 2 * len(METRICS)
    assert paper.EXPANSION_CONSISTENCY["max_abs_difference"] == 0.02 and (table["paper_tolerance"] == 0.02).all()
    assert (table["within_paper"] == (table["diff"].abs() <= 0.02)).all()
    assert paper.EXPANSION_CONSISTENCY["section"] == "sec 5.1"


def test_a_dataset_without_origin_has_no_expansion():
    class FakeDataset:
        def __init__(self, frame):
            self.scenarios = frame

        def has(self, name):
            return name in self.scenarios.columns and self.scenarios[name].notna().any()

    assert not has_expansion(None) and "no `origin` field" in NO_ORIGIN
    assert not has_expansion(FakeDataset(pd.DataFrame({"origin": [None], "split": ["test"]})))
    assert not has_expansion(FakeDataset(pd.DataFrame({"origin": ["expansion"], "split": ["train"]})))
    assert has_expansion(FakeDataset(pd.DataFrame({"origin": ["source", "expansion"], "split": ["test"] * 2})))
