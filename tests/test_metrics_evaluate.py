"""evaluate_lists / compare: values, bootstrap, chance levels (vs Monte-Carlo), oracle, errors."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from mmscale_core.errors import MmscaleError
from mmscale_core.metrics import (
    METRICS,
    auc_safety,
    compare,
    evaluate_lists,
    kendall_tau,
    ndcg_at_k,
    per_list_metrics,
    reciprocal_rank,
    to_metrics_dict,
    unsafe_rate,
)
from mmscale_core.bench.metrics import synthetic_lists
from mmscale_core.metrics.evaluate import bootstrap_weights, list_statistics, metrics_from_sums
from mmscale_core.metrics.padding import pad_lists


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    data = synthetic_lists(400, seed=3)
    rng = np.random.default_rng(0)
    data["noise"] = rng.uniform(1, 5, size=len(data))
    return data.sample(frac=1.0, random_state=1).reset_index(drop=True)  # lists interleaved


def direct_metrics(frame: pd.DataFrame, pred: str, min_size: int = 1) -> dict[str, float]:
    """Reference: single-list functions in a loop, pooled functions on the concatenation."""
    groups = [g for _, g in frame.groupby("image_id", sort=False) if len(g) >= min_size]
    pooled = pd.concat(groups)
    return {
        "NDCG@5": np.mean([ndcg_at_k(g["score"], g[pred]) for g in groups]),
        "MRR": np.mean([reciprocal_rank(g["score"], g[pred]) for g in groups]),
        "Kendall tau": np.nanmean([kendall_tau(g["score"], g[pred]) for g in groups]),
        "Unsafe Rate": unsafe_rate(pooled["score"], pooled[pred]),
        "AUC-Safety": auc_safety(pooled["score"], pooled[pred]),
        "Pairwise accuracy (delta>=0)": pooled_pairwise_accuracy(groups, pred),
    }


def pooled_pairwise_accuracy(groups: list[pd.DataFrame], pred: str) -> float:
    """Reference: every pair of every list enumerated in Python, credit 1 / 0.5 / 0."""
    credit = pairs = 0.0
    for g in groups:
        gold, score = g["score"].tolist(), g[pred].tolist()
        for i in range(len(gold)):
            for j in range(i + 1, len(gold)):
                if gold[i] == gold[j]:
                    continue
                pairs += 1
                credit += 0.5 if score[i] == score[j] else float((score[i] > score[j]) == (gold[i] > gold[j]))
    return credit / pairs


@pytest.mark.parametrize("min_size", [1, 2, 4])
def test_values_equal_per_list_loop(frame, min_size):
    table = evaluate_lists(frame, min_list_size=min_size, n_boot=50).set_index("metric")
    expected = direct_metrics(frame, "pred", min_size)
    for name in METRICS:
        assert table.loc[name, "value"] == pytest.approx(expected[name], abs=1e-12)
    sizes = frame.groupby("image_id").size()
    assert (table["n_lists"] == (sizes >= min_size).sum()).all()
    assert (table["n_scenarios"] == sizes[sizes >= min_size].sum()).all()
    assert (table["min_list_size"] == min_size).all()


def test_table_layout_and_oracle(frame):
    table = evaluate_lists(frame, n_boot=100)
    assert list(table.columns) == ["metric", "value", "ci_low", "ci_high", "chance", "oracle",
                                   "n_lists", "n_scenarios", "min_list_size"]
    assert list(table["metric"]) == list(METRICS)
    assert table.set_index("metric")["oracle"].to_dict() == pytest.approx({
        "NDCG@5": 1.0, "MRR": 1.0, "Kendall tau": 1.0, "Unsafe Rate": 0.0, "AUC-Safety": 1.0,
        "Pairwise accuracy (delta>=0)": 1.0}, abs=1e-12)
    assert (table["ci_low"] <= table["value"]).all() and (table["value"] <= table["ci_high"]).all()


def test_bootstrap_is_seeded(frame):
    a = evaluate_lists(frame, n_boot=200, seed=5)
    b = evaluate_lists(frame, n_boot=200, seed=5)
    c = evaluate_lists(frame, n_boot=200, seed=6)
    pd.testing.assert_frame_equal(a, b)
    assert not np.allclose(a["ci_low"], c["ci_low"])


def test_weighted_resample_equals_recomputing_on_resampled_lists(frame):
    """One bootstrap resample via weights == metrics of the explicitly duplicated lists."""
    lists = pad_lists(frame, "image_id", ["score", "pred"])
    stats = list_statistics(lists.values["score"], lists.values["pred"], lists.mask)
    weights = bootstrap_weights(lists.n_lists, 3, np.random.default_rng(0))
    assert (weights.sum(axis=1) == lists.n_lists).all()
    via_weights = metrics_from_sums(weights[0] @ stats)
    by_list = dict(list(frame.groupby("image_id", sort=False)))
    copies = []
    for row, count in enumerate(weights[0].astype(int)):
        for copy in range(count):
            copies.append(by_list[lists.list_ids[row]].assign(image_id=f"{lists.list_ids[row]}#{copy}"))
    expected = direct_metrics(pd.concat(copies), "pred")
    for name in METRICS:
        assert via_weights[name] == pytest.approx(expected[name], abs=1e-12)


def test_chance_levels_match_monte_carlo(frame):
    """Random scorers: random distinct scores per scenario (ranking), predictions shuffled across
    scenarios (pooled). Their Monte-Carlo means must match the reported exact chance levels."""
    table = evaluate_lists(frame, n_boot=10).set_index("metric")
    rng = np.random.default_rng(11)
    draws = []
    for _ in range(150):
        trial = frame.assign(random=rng.random(len(frame)), shuffled=rng.permutation(frame["pred"].to_numpy()))
        ranking = evaluate_lists(trial, pred_col="random", scale_col="shuffled", n_boot=1).set_index("metric")
        draws.append(ranking["value"])
    draws = pd.DataFrame(draws)
    for name in METRICS:
        mean, se = draws[name].mean(), draws[name].std(ddof=1) / np.sqrt(len(draws))
        assert abs(mean - table.loc[name, "chance"]) < 4 * se + 1e-12, name


def test_chance_unsafe_rate_is_share_of_accepting_predictions(frame):
    table = evaluate_lists(frame, min_list_size=1, n_boot=10).set_index("metric")
    assert table.loc["Unsafe Rate", "chance"] == pytest.approx((frame["pred"] > 2.5).mean())
    assert table.loc["AUC-Safety", "chance"] == 0.5
    assert table.loc["Kendall tau", "chance"] == 0.0


def test_scale_col_only_feeds_pooled_metrics(frame):
    base = evaluate_lists(frame, n_boot=10).set_index("metric")
    scaled = evaluate_lists(frame, scale_col="noise", n_boot=10).set_index("metric")
    for name in ("NDCG@5", "MRR", "Kendall tau"):
        assert scaled.loc[name, "value"] == base.loc[name, "value"]
    noise_only = evaluate_lists(frame, pred_col="noise", n_boot=10).set_index("metric")
    for name in ("Unsafe Rate", "AUC-Safety"):
        assert scaled.loc[name, "value"] == noise_only.loc[name, "value"]


def test_to_metrics_dict_is_json_safe(frame):
    one_list = frame[frame["image_id"] == frame["image_id"].iloc[0]].assign(score=4.0)  # no unsafe item
    as_dict = to_metrics_dict(evaluate_lists(one_list, min_list_size=1, n_boot=20))
    text = json.dumps(as_dict, allow_nan=False)
    assert json.loads(text)["Unsafe Rate"]["value"] is None
    assert set(as_dict) == set(METRICS)
    assert isinstance(as_dict["NDCG@5"]["n_lists"], int)


def test_per_list_metrics(frame):
    per_list = per_list_metrics(frame)
    assert len(per_list) == frame["image_id"].nunique()
    assert per_list["NDCG@5"].mean() == pytest.approx(direct_metrics(frame, "pred")["NDCG@5"])
    assert (per_list.loc[per_list["list_size"] == 1, "MRR"] == 1.0).all()


@pytest.mark.parametrize("mutate, message", [
    (lambda f: f.assign(pred=np.where(np.arange(len(f)) == 3, np.nan, f["pred"])), "'pred'"),
    (lambda f: f.drop(columns="score"), "score"),
    (lambda f: f.assign(pred="high"), "not numeric"),
    (lambda f: f.head(1), "no list"),
])
def test_user_errors_raise_mmscale_error(frame, mutate, message):
    with pytest.raises(MmscaleError, match=message):
        evaluate_lists(mutate(frame), n_boot=5)


def test_compare_same_column_has_no_difference(frame):
    result = compare(frame.assign(copy=frame["pred"]), "pred", "copy", n_boot=100, n_perm=100)
    assert (result["diff"] == 0).all()
    assert (result["p_value"] == 1.0).all()


def test_compare_detects_a_better_model_and_matches_evaluate(frame):
    result = compare(frame, "pred", "noise", "score", n_boot=300, n_perm=300, seed=2)
    assert len(result) == 2 * len(METRICS)
    assert set(result["reference"]) == {"pred"} and list(result["other"].unique()) == ["noise", "score"]
    pred_table = evaluate_lists(frame, n_boot=5).set_index("metric")["value"]
    noise_table = evaluate_lists(frame, pred_col="noise", n_boot=5).set_index("metric")["value"]
    vs_noise = result[result["other"] == "noise"].set_index("metric")
    for name in METRICS:
        assert vs_noise.loc[name, "diff"] == pytest.approx(pred_table[name] - noise_table[name])
        assert vs_noise.loc[name, "ci_low"] <= vs_noise.loc[name, "diff"] <= vs_noise.loc[name, "ci_high"]
        assert vs_noise.loc[name, "p_value"] < 0.01
    # "higher is better" metrics beat random noise, Unsafe Rate is lower
    assert (vs_noise.loc[["NDCG@5", "MRR", "Kendall tau", "AUC-Safety"], "diff"] > 0).all()
    assert vs_noise.loc["Unsafe Rate", "diff"] < 0


def test_compare_permutation_is_sign_flip_for_list_level_metrics(frame):
    """p-value of NDCG@5 equals a hand-written sign-flip test with the same random swaps."""
    n_perm, seed = 200, 4
    result = compare(frame, "pred", "noise", n_boot=50, n_perm=n_perm, seed=seed).set_index("metric")
    lists = pad_lists(frame, "image_id", ["score", "pred", "noise"], min_list_size=2)
    a = per_list_metrics(frame, pred_col="pred", min_list_size=2)["NDCG@5"].to_numpy()
    b = per_list_metrics(frame, pred_col="noise", min_list_size=2)["NDCG@5"].to_numpy()
    rng = np.random.default_rng(seed)
    bootstrap_weights(lists.n_lists, 50, rng)  # compare draws the bootstrap first, then the swaps
    swaps = rng.integers(0, 2, size=(n_perm, lists.n_lists))
    d = a - b
    flipped = np.abs(((1 - 2 * swaps) * d).mean(axis=1))
    expected = (1 + np.sum(flipped >= abs(d.mean()) - 1e-12)) / (1 + n_perm)
    assert result.loc["NDCG@5", "p_value"] == pytest.approx(expected)


def test_seed_columns_average_the_list_metrics(frame):
    """Several prediction columns (training seeds): list metrics are the mean over seeds."""
    rng = np.random.default_rng(7)
    frame = frame.assign(pred2=frame["pred"] + rng.normal(0, 1.0, len(frame)))
    one = evaluate_lists(frame, pred_col="pred", n_boot=50).set_index("metric")
    two = evaluate_lists(frame, pred_col="pred2", n_boot=50).set_index("metric")
    both = evaluate_lists(frame, pred_col=["pred", "pred2"], n_boot=50).set_index("metric")
    for name in ("NDCG@5", "MRR"):
        assert both.loc[name, "value"] == pytest.approx((one.loc[name, "value"] + two.loc[name, "value"]) / 2)
    # pooled safety counts: Unsafe Rate of the pooled seeds is the mean (same denominators)
    assert both.loc["Unsafe Rate", "value"] == pytest.approx(
        (one.loc["Unsafe Rate", "value"] + two.loc["Unsafe Rate", "value"]) / 2)
    same = evaluate_lists(frame, pred_col=["pred", "pred"], n_boot=50)
    pd.testing.assert_frame_equal(same, evaluate_lists(frame, pred_col="pred", n_boot=50))
    with pytest.raises(MmscaleError, match="2 prediction column"):
        evaluate_lists(frame, pred_col=["pred", "pred2"], scale_col="pred")


def test_compare_seed_tuples_use_seed_averaged_values(frame):
    rng = np.random.default_rng(3)
    frame = frame.assign(a2=frame["pred"] + rng.normal(0, 0.5, len(frame)),
                         b1=rng.normal(3, 1, len(frame)), b2=rng.normal(3, 1, len(frame)))
    table = compare(frame, ("pred", "a2"), ("b1", "b2"), n_boot=50, n_perm=50).set_index("metric")
    a = evaluate_lists(frame, pred_col=["pred", "a2"], n_boot=10).set_index("metric")
    b = evaluate_lists(frame, pred_col=["b1", "b2"], n_boot=10).set_index("metric")
    assert table.loc["NDCG@5", "reference"] == "pred" and table.loc["NDCG@5", "other"] == "b1"
    assert table.loc["NDCG@5", "diff"] == pytest.approx(a.loc["NDCG@5", "value"] - b.loc["NDCG@5", "value"])
