"""The upstream release's metrics (pairwise accuracy, stratified, MAE, RMSE, AUC, ECE) against
brute force: pairs enumerated in Python loops, gold scores as exact fractions, Wilson by formula."""

from __future__ import annotations

import math
from fractions import Fraction
from itertools import combinations

import numpy as np
import pandas as pd
import pytest
from scipy.stats import norm
from sklearn.metrics import roc_auc_score

from mmscale_core.metrics import evaluate_lists, ndcg_at_k
from mmscale_core.metrics.as_released import ece_half_open, mean_ndcg_argsort, ndcg_argsort
from mmscale_core.metrics.evaluate import bootstrap_weights
from mmscale_core.metrics.pairwise import (
    PAIR_TYPES, modality_pair_counts_padded, pair_counts_padded, pairwise_accuracy, wilson_interval,
)
from mmscale_core.metrics.padding import pad_lists
from mmscale_core.metrics.scalar import (
    auc_acceptability, auc_from_histograms, auc_histograms, bootstrap_auc, ece_acceptability, hypergeom_pmf, mae,
    rmse, scalar_chance_levels,
)
from mmscale_core.metrics.upstream import RELEASE_METRICS, evaluate_predictions, metrics_json

LETTER = {"text": "T", "image": "I", "both": "B"}


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    """Lists of 1-6 scenarios; gold = mean of 1-4 integer ratings (exact Fraction kept), integer
    predictions (many ties) or a 0.5 grid, about 15% of the predictions missing, rows interleaved."""
    rng = np.random.default_rng(7)
    rows = []
    for image in range(120):
        for s in range(int(rng.integers(1, 7))):
            ratings = rng.integers(1, 6, size=int(rng.integers(1, 5)))
            gold = Fraction(int(ratings.sum()), len(ratings))
            pred = float(np.clip(np.rint(float(gold) + rng.normal(0, 1.0)), 1, 5)) if image % 2 else \
                float(np.clip(np.round(2 * (float(gold) + rng.normal(0, 0.8))) / 2, 1, 5))
            rows.append({"image_id": f"im{image:03d}", "scenario_id": f"im{image:03d}_s{s}", "gold": gold,
                         "score": float(gold), "prediction": pred,
                         "modality": ["text", "image", "both"][int(rng.integers(0, 3))]})
    data = pd.DataFrame(rows)
    data.loc[rng.random(len(data)) < 0.15, "prediction"] = np.nan
    return data.sample(frac=1.0, random_state=3).reset_index(drop=True)


@pytest.fixture(scope="module")
def predicted(frame) -> pd.DataFrame:
    return frame[frame["prediction"].notna()].reset_index(drop=True)


def brute_pairs(data: pd.DataFrame, delta: float):
    """[(credit, pair type)] of every qualifying pair, exact gold differences."""
    out = []
    for _, g in data.groupby("image_id", sort=False):
        for a, b in combinations(g.itertuples(), 2):
            gap = abs(a.gold - b.gold)
            if gap == 0 or gap < Fraction(delta):
                continue
            if a.prediction == b.prediction:
                credit = 0.5
            else:
                credit = 1.0 if (a.prediction > b.prediction) == (a.gold > b.gold) else 0.0
            kind = "-".join(sorted({LETTER[a.modality], LETTER[b.modality]}, key="TIB".index))
            out.append((credit, kind if "-" in kind else f"{kind}-{kind}"))
    return out


def brute_wilson(p: float, n: int, z: float = norm.ppf(0.975)) -> tuple[float, float]:
    denom = 1 + z ** 2 / n
    center = (p + z ** 2 / (2 * n)) / denom
    radius = z / denom * math.sqrt(p * (1 - p) / n + z ** 2 / (4 * n ** 2))
    return center - radius, center + radius


def brute_ece(gold, pred, n_bins=10, closed_last=True):
    conf = [min(max((p - 1) / 4, 0.0), 1.0) for p in pred]
    total = 0.0
    for b in range(n_bins):
        low, high = b / n_bins, (b + 1) / n_bins
        members = [i for i, c in enumerate(conf)
                   if low <= c < high or (closed_last and b == n_bins - 1 and c == 1.0)]
        if members:
            share = sum(gold[i] >= 2.5 for i in members) / len(members)
            total += len(members) / len(conf) * abs(share - sum(conf[i] for i in members) / len(members))
    return total


def brute_auc(gold, pred):
    pos = [p for g, p in zip(gold, pred) if g >= 2.5]
    neg = [p for g, p in zip(gold, pred) if g < 2.5]
    wins = sum(1.0 if a > b else 0.5 if a == b else 0.0 for a in pos for b in neg)
    return wins / (len(pos) * len(neg))


@pytest.mark.parametrize("delta", [0.0, 1.0, 0.5, 2.0])
def test_pairwise_accuracy_equals_enumerated_pairs(predicted, delta):
    pairs = brute_pairs(predicted, delta)
    lists = pad_lists(predicted, "image_id", ["score", "prediction"])
    counts = pair_counts_padded(lists.values["score"], lists.values["prediction"], lists.mask, delta).sum(axis=0)
    assert counts[1] == len(pairs) > 0
    assert counts[0] / counts[1] == pytest.approx(sum(c for c, _ in pairs) / len(pairs), abs=1e-12)


def test_pairwise_delta_uses_exact_gold_differences():
    """13/3 - 10/3 is exactly 1 (0.9999999999999996 in floats): the pair counts at delta >= 1."""
    gold = [13 / 3, 10 / 3]
    assert abs(gold[0] - gold[1]) < 1.0
    assert pairwise_accuracy(gold, [5.0, 1.0], delta=1.0) == 1.0
    assert math.isnan(pairwise_accuracy([3.0, 3.0], [1.0, 2.0]))  # equal gold: no pair
    assert pairwise_accuracy([1.0, 2.0, 3.0], [2.0, 2.0, 1.0]) == pytest.approx((0.5 + 0 + 0) / 3)


def test_modality_stratified_and_wilson_equal_brute_force(predicted):
    pairs = brute_pairs(predicted, 0.0)
    lists = pad_lists(predicted.assign(code=predicted["modality"].map({"text": 0, "image": 1, "both": 2})),
                      "image_id", ["score", "prediction", "code"])
    counts = modality_pair_counts_padded(lists.values["score"], lists.values["prediction"], lists.values["code"],
                                         lists.mask).sum(axis=0)
    low, high = wilson_interval(counts[:, 0], counts[:, 1])
    for t, kind in enumerate(PAIR_TYPES):
        credits = [c for c, k in pairs if k == kind]
        assert counts[t, 1] == len(credits) > 0, kind
        p = sum(credits) / len(credits)
        assert counts[t, 0] / counts[t, 1] == pytest.approx(p, abs=1e-12)
        assert (low[t], high[t]) == pytest.approx(brute_wilson(p, len(credits)), abs=1e-12)
    assert np.isnan(wilson_interval([0.0], [0.0])[0]).all()


def test_scalar_metrics_equal_loops(predicted):
    gold, pred = predicted["score"].tolist(), predicted["prediction"].tolist()
    n = len(gold)
    assert mae(gold, pred) == pytest.approx(sum(abs(p - g) for g, p in zip(gold, pred)) / n, abs=1e-12)
    assert rmse(gold, pred) == pytest.approx(math.sqrt(sum((p - g) ** 2 for g, p in zip(gold, pred)) / n), abs=1e-12)
    assert auc_acceptability(gold, pred) == pytest.approx(brute_auc(gold, pred), abs=1e-12)
    assert ece_acceptability(gold, pred) == pytest.approx(brute_ece(gold, pred), abs=1e-12)
    assert any(p == 5.0 for p in pred)  # the closed last bin matters on this data
    assert ece_half_open(gold, pred) == pytest.approx(brute_ece(gold, pred, closed_last=False), abs=1e-12)
    # a 5 for an unacceptable scenario: miscalibrated in the closed last bin, invisible to half-open bins
    assert ece_acceptability([1.0, 4.0], [5.0, 5.0]) == pytest.approx(0.5)
    assert ece_half_open([1.0, 4.0], [5.0, 5.0]) == 0.0


def test_auc_histograms_bootstrap_equals_sklearn_on_duplicated_lists(predicted):
    lists = pad_lists(predicted, "image_id", ["score", "prediction"])
    g, p, mask = lists.values["score"], lists.values["prediction"], lists.mask
    hist = auc_histograms(g, p, mask)
    assert auc_from_histograms(np.asarray(hist.sum(axis=0)).ravel()) == pytest.approx(
        roc_auc_score(g[mask] >= 2.5, p[mask]), abs=1e-12)
    weights = bootstrap_weights(lists.n_lists, 5, np.random.default_rng(1))
    boot = bootstrap_auc(hist, weights, chunk=2)
    for r in range(5):
        reps = np.repeat(np.arange(lists.n_lists), weights[r].astype(int))
        assert boot[r] == pytest.approx(roc_auc_score((g[reps] >= 2.5)[mask[reps]], p[reps][mask[reps]]), abs=1e-12)


def test_hypergeom_pmf_matches_scipy():
    from scipy.stats import hypergeom

    x = np.arange(-3, 80)
    for total, good, drawn in ((100, 40, 50), (30, 0, 5), (30, 30, 7), (500, 123, 77)):
        assert hypergeom_pmf(x, total, good, drawn) == pytest.approx(hypergeom.pmf(x, total, good, drawn), abs=1e-12)


def test_scalar_chance_levels_match_brute_force_and_monte_carlo(predicted):
    gold, pred = predicted["score"].to_numpy(), predicted["prediction"].to_numpy()
    chance = scalar_chance_levels(gold, pred)
    assert chance["MAE"] == pytest.approx(np.abs(gold[:, None] - pred[None, :]).mean(), abs=1e-12)
    assert chance["RMSE"] == pytest.approx(math.sqrt(((gold[:, None] - pred[None, :]) ** 2).mean()), abs=1e-12)
    assert chance["AUC-acceptability"] == 0.5
    rng = np.random.default_rng(5)
    draws = np.array([ece_acceptability(gold, rng.permutation(pred)) for _ in range(400)])
    assert abs(draws.mean() - chance["ECE (acceptability)"]) < 4 * draws.std(ddof=1) / math.sqrt(draws.size)


def test_evaluate_predictions_equals_brute_force(frame, predicted):
    table = evaluate_predictions(predicted, n_in_split=len(frame), n_boot=200).set_index("metric")
    assert list(table.index) == list(RELEASE_METRICS)
    assert table.loc["coverage", "value"] == pytest.approx(len(predicted) / len(frame))
    assert table.loc["coverage", "n"] == len(frame)
    for delta, name in ((0.0, "Pairwise accuracy (delta>=0)"), (1.0, "Pairwise accuracy (delta>=1)")):
        pairs = brute_pairs(predicted, delta)
        assert table.loc[name, "value"] == pytest.approx(sum(c for c, _ in pairs) / len(pairs), abs=1e-12)
        assert table.loc[name, "n"] == len(pairs)
        assert table.loc[name, "chance"] == 0.5
    gold, pred = predicted["score"].tolist(), predicted["prediction"].tolist()
    assert table.loc["MAE", "value"] == pytest.approx(np.mean(np.abs(np.subtract(pred, gold))), abs=1e-12)
    assert table.loc["AUC-acceptability", "value"] == pytest.approx(brute_auc(gold, pred), abs=1e-12)
    assert table.loc["ECE (acceptability)", "value"] == pytest.approx(brute_ece(gold, pred), abs=1e-12)
    assert table.loc["MAE", "n"] == len(predicted)
    ours = evaluate_lists(predicted, pred_col="prediction", n_boot=1).set_index("metric")
    for name in ("NDCG@5", "MRR", "Kendall tau", "Unsafe Rate", "AUC-Safety"):
        assert table.loc[name, "value"] == pytest.approx(ours.loc[name, "value"], abs=1e-12)
        assert table.loc[name, "chance"] == pytest.approx(ours.loc[name, "chance"], abs=1e-12)
    assert table.loc["NDCG@5", "n"] == ours.loc["NDCG@5", "n_lists"]
    bootstrapped = table.drop(index=["coverage"])
    assert (bootstrapped["ci_low"] <= bootstrapped["value"] + 1e-12).all()
    assert (bootstrapped["value"] <= bootstrapped["ci_high"] + 1e-12).all()
    as_json = metrics_json(table.reset_index())
    assert [m["metric"] for m in as_json["metrics"]] == list(RELEASE_METRICS)
    assert as_json["metrics"][0]["ci_low"] is None


def test_bootstrap_is_one_resampling_of_images(predicted):
    """With the same seed, a resample's pairwise accuracy and MAE are those of the duplicated images."""
    table = evaluate_predictions(predicted, n_boot=3, ci=0.0, seed=4).set_index("metric")  # ci 0: the median
    lists = pad_lists(predicted, "image_id", ["score"])
    weights = bootstrap_weights(lists.n_lists, 3, np.random.default_rng(4))
    by_image = dict(list(predicted.groupby("image_id", sort=False)))
    maes = []
    for r in range(3):
        copies = [by_image[lists.list_ids[i]].assign(image_id=f"{lists.list_ids[i]}#{c}")
                  for i, count in enumerate(weights[r].astype(int)) for c in range(count)]
        resample = pd.concat(copies)
        maes.append(np.mean(np.abs(resample["prediction"] - resample["score"])))
    assert table.loc["MAE", "ci_low"] == pytest.approx(np.median(maes), abs=1e-12)


def test_ndcg_argsort_depends_on_row_order_only_with_ties():
    gold, pred = [5.0, 3.0, 1.0, 2.0], [4.0, 4.0, 2.0, 1.0]
    assert ndcg_argsort(gold, pred) != pytest.approx(ndcg_argsort(gold[1::-1] + gold[2:], pred[1::-1] + pred[2:]))
    low, high = sorted([ndcg_argsort(gold, pred), ndcg_argsort([3.0, 5.0, 1.0, 2.0], pred)])
    assert low < ndcg_at_k(gold, pred) < high  # ours: the mean of the two tie-breaks
    assert ndcg_at_k(gold, pred) == pytest.approx((low + high) / 2)
    distinct = [4.5, 2.0, 3.0, 1.0]
    assert ndcg_argsort(gold, distinct) == pytest.approx(ndcg_at_k(gold, distinct), abs=1e-12)
    frame = pd.DataFrame({"image_id": ["a"] * 4 + ["b"], "score": gold + [3.0], "prediction": distinct + [1.0]})
    assert mean_ndcg_argsort(frame) == pytest.approx(ndcg_at_k(gold, distinct))  # "b" has one row: left out
