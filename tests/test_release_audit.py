"""The release's card beside the paper, and the measured definition differences (definition_audit)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from mmscale_core import definition_audit, release_card
from mmscale_core.bench.metrics import synthetic_lists


@pytest.fixture(scope="module")
def judged() -> pd.DataFrame:
    frame = synthetic_lists(300, seed=4)
    return frame.assign(prediction=definition_audit.integer_judge(frame, seed=1))


def test_release_counts_beside_the_papers():
    table = release_card.release_vs_paper().set_index("quantity")
    assert table.loc["images", "paper"] == "9,260" and table.loc["images", "release (dataset card)"] == "8,444"
    assert table.loc["scenarios", "paper"] == "32,212" and table.loc["scenarios", "release (dataset card)"] == "21,977"
    assert "train 5,910 / val 844 / test 1,690" in table.loc["split", "release (dataset card)"]
    assert table.loc["modality label image", "release (dataset card)"] == "46.9%"
    assert sum(release_card.RELEASE["split_images"].values()) == release_card.RELEASE["images"]
    assert sum(release_card.RELEASE["modality_percent"].values()) == pytest.approx(100.0)
    steps = release_card.cleaning_steps()
    assert len(steps) == 6 and "38,099" in steps["count"].tolist() and "9,246" in steps["count"].tolist()


def test_ndcg_row_order_spread_with_ties_and_without(judged):
    per_order, summary = definition_audit.ndcg_row_order_spread(judged, n_orders=12, seed=0)
    assert len(per_order) == 12 and summary["lists with a tie"] > 0.3
    assert summary["release max"] > summary["release min"]
    # random row orders are random tie-breaks, whose expectation is ours
    assert abs(summary["release mean"] - summary["ours"]) < 4 * summary["release sd"] / np.sqrt(12)
    distinct = judged.assign(prediction=judged["prediction"] + np.random.default_rng(0).random(len(judged)) * 1e-3)
    _, exact = definition_audit.ndcg_row_order_spread(distinct, n_orders=3)
    assert exact["release sd"] == pytest.approx(0.0, abs=1e-15)
    assert exact["release mean"] == pytest.approx(exact["ours"], abs=1e-12)


def test_ece_top_bin_counts_the_dropped_fives(judged):
    gold, pred = judged["score"].to_numpy(), judged["prediction"].to_numpy()
    result = definition_audit.ece_top_bin(gold, pred)
    assert result["predictions of 5"] == int((pred == 5).sum()) > 0
    without_fives = pred < 5
    # the release's value: bins of the other predictions, divided by all N
    rest = definition_audit.ece_top_bin(gold[without_fives], pred[without_fives])
    assert result["ECE, half-open bins (release)"] == pytest.approx(
        rest["ECE, last bin closed (ours)"] * without_fives.mean(), abs=1e-12)


def test_acceptability_threshold_both_sides():
    gold = np.array([2.5, 2.5, 1.0, 4.0, 3.0, 2.0, 2.5, 5.0])
    pred = np.array([2.0, 3.0, 1.0, 4.0, 2.0, 3.0, 1.0, 5.0])
    result = definition_audit.acceptability_threshold(gold, pred)
    assert result["gold exactly 2.5"] == 3
    assert result["AUC, 2.5 acceptable (release)"] == pytest.approx(roc_auc_score(gold >= 2.5, pred))
    assert result["AUC, 2.5 unsafe (as Unsafe Rate)"] == pytest.approx(roc_auc_score(gold > 2.5, pred))
    assert result["AUC, 2.5 acceptable (release)"] != pytest.approx(result["AUC, 2.5 unsafe (as Unsafe Rate)"])


def test_delta_float_pairs_counts_thirds_exactly():
    frame = pd.DataFrame({"image_id": ["a", "a", "b", "b"], "score": [13 / 3, 10 / 3, 4.0, 3.0],
                          "prediction": [1.0, 2.0, 5.0, 1.0]})
    result = definition_audit.delta_float_pairs(frame)
    assert result["pairs (exact)"] == 2 and result["pairs (floating point, release)"] == 1
    assert result["accuracy (exact)"] == 0.5 and result["accuracy (floating point, release)"] == 1.0


def test_definition_differences_table(judged):
    table = definition_audit.definition_differences(judged, n_orders=3)
    assert list(table.columns) == ["difference", "quantity", "value", "shown"]
    assert table["difference"].nunique() == 4 and table["value"].notna().all()
