"""Every Table 3/4 metric of a prediction column, with bootstrap CIs, chance levels and oracle.

How it is fast: each list (one image's scenarios) is reduced once to a row of
additive statistics (``list_statistics``): metric value and "defined" flag for
the list-level metrics (NDCG@5, MRR, Kendall tau), safety counts for the
scenario-pooled ones (Unsafe Rate, AUC-Safety) and pair counts for the upstream
release's headline, pairwise accuracy (``metrics.pairwise``, pooled over pairs). Any resample of lists is then
a weight vector w (how often each list was drawn) and its metrics are a
function of w @ stats (``metrics_from_sums``), so 1,000 bootstrap resamples
are one (1000 x L) @ (L x 94) matrix product.

Definitions:

* list-level metrics are the mean over lists where the metric is defined
  (Kendall tau is NaN for lists tied on either side and excluded);
* Unsafe Rate and AUC-Safety pool all scenarios of the kept lists;
* pairwise accuracy pools the qualifying pairs of the kept lists (delta 0);
* bootstrap: lists (images) resampled with replacement, percentile CI;
* chance: the exact expected value of a random scorer on the same lists:
  a uniformly random order within each list for NDCG@5 / MRR (= a constant
  scorer with tie-averaging), Kendall tau (= 0) and pairwise accuracy (= 0.5);
  for the pooled metrics,
  the model's own predictions randomly reassigned to scenarios (same marginal
  distribution): Unsafe Rate = share of predictions > 2.5, AUC-Safety = 0.5;
* oracle: predictions equal to the human scores.

``min_list_size`` defaults to 2 because a one-scenario list scores NDCG = MRR
= 1 for any model; report ``min_list_size=1`` next to it.
"""

from __future__ import annotations

import math
from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from mmscale_core.errors import MmscaleError
from mmscale_core.metrics.padding import PaddedLists, pad_lists
from mmscale_core.metrics.pairwise import accuracy_from_counts, pair_counts_padded
from mmscale_core.metrics.ranking import kendall_tau_padded, ndcg_padded, reciprocal_rank_padded
from mmscale_core.metrics.safety import N_BINS, UNSAFE_THRESHOLD, safety_counts, safety_metrics_from_counts

PAIRWISE = "Pairwise accuracy (delta>=0)"
LIST_LEVEL_METRICS = ("NDCG@5", "MRR", "Kendall tau")
POOLED_METRICS = ("Unsafe Rate", "AUC-Safety")
METRICS = ("NDCG@5", PAIRWISE, "MRR", "Kendall tau", "Unsafe Rate", "AUC-Safety")  # table order
COLUMNS = ("metric", "value", "ci_low", "ci_high", "chance", "oracle",
           "n_lists", "n_scenarios", "min_list_size")
_SAFETY_OFFSET = 2 * len(LIST_LEVEL_METRICS)  # stats columns: (value, defined) x 3, safety counts, pair counts
_PAIR_OFFSET = _SAFETY_OFFSET + 2 + 2 * N_BINS
N_STATISTICS = _PAIR_OFFSET + 2


def list_metric_values(y_true: np.ndarray, y_score: np.ndarray, mask: np.ndarray,
                       k: int = 5) -> dict[str, np.ndarray]:
    """Per-list NDCG@k, MRR (reciprocal rank) and Kendall tau-b of padded arrays."""
    return {
        "NDCG@5": ndcg_padded(y_true, y_score, mask, k=k),
        "MRR": reciprocal_rank_padded(y_true, y_score, mask),
        "Kendall tau": kendall_tau_padded(y_true, y_score, mask),
    }


def list_statistics(y_true: np.ndarray, y_score: np.ndarray, mask: np.ndarray,
                    y_scale: np.ndarray | None = None, k: int = 5,
                    threshold: float = UNSAFE_THRESHOLD) -> np.ndarray:
    """(L, 94) additive statistics per list; ``y_scale`` (1-5 scale) feeds the pooled metrics."""
    columns = []
    for values in list_metric_values(y_true, y_score, mask, k).values():
        defined = np.isfinite(values)
        columns += [np.where(defined, values, 0.0), defined.astype(np.float64)]
    scale = y_score if y_scale is None else y_scale
    return np.column_stack(columns + [safety_counts(y_true, scale, mask, threshold),
                                      pair_counts_padded(y_true, y_score, mask, delta=0.0)])


def metrics_from_sums(sums: np.ndarray) -> dict[str, np.ndarray]:
    """Metric values from (weighted) sums of :func:`list_statistics` rows, shape (..., 94)."""
    out = {}
    with np.errstate(invalid="ignore", divide="ignore"):
        for i, name in enumerate(LIST_LEVEL_METRICS):
            total, defined = sums[..., 2 * i], sums[..., 2 * i + 1]
            out[name] = np.where(defined > 0, total / np.where(defined > 0, defined, 1.0), np.nan)
    out["Unsafe Rate"], out["AUC-Safety"] = safety_metrics_from_counts(sums[..., _SAFETY_OFFSET:_PAIR_OFFSET])
    out[PAIRWISE] = accuracy_from_counts(sums[..., _PAIR_OFFSET:_PAIR_OFFSET + 2])
    return out


def bootstrap_weights(n_lists: int, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """(n_boot, n_lists) multinomial counts: row r says how often each list is drawn in resample r."""
    draws = rng.integers(0, n_lists, size=(n_boot, n_lists), dtype=np.int32)
    weights = np.empty((n_boot, n_lists))
    for row in range(n_boot):  # one bincount per resample stays in cache (4x faster than one flat bincount)
        weights[row] = np.bincount(draws[row], minlength=n_lists)
    return weights


def _percentile_ci(samples: np.ndarray, ci: float) -> tuple[float, float]:
    finite = samples[np.isfinite(samples)]
    if finite.size == 0:
        return math.nan, math.nan
    alpha = (1.0 - ci) / 2.0
    low, high = np.quantile(finite, [alpha, 1.0 - alpha])
    return float(low), float(high)


def _chance_levels(lists: PaddedLists, true_col: str, scale: np.ndarray, k: int,
                   threshold: float) -> dict[str, float]:
    y_true, mask = lists.values[true_col], lists.mask
    constant = np.where(mask, 0.0, np.nan)  # all tied: expectation over random orders
    per_list = list_metric_values(y_true, constant, mask, k)
    tau_defined = np.isfinite(kendall_tau_padded(y_true, np.cumsum(mask, axis=1) * 1.0, mask))
    pooled_true = y_true[mask]
    has_both = (pooled_true <= threshold).any() and (pooled_true > threshold).any()
    return {
        "NDCG@5": float(np.nanmean(per_list["NDCG@5"])),
        "MRR": float(np.nanmean(per_list["MRR"])),
        "Kendall tau": 0.0 if tau_defined.any() else math.nan,
        "Unsafe Rate": float(np.mean(scale[mask] > threshold))
        if (pooled_true <= threshold).any() else math.nan,
        "AUC-Safety": 0.5 if has_both else math.nan,
        PAIRWISE: 0.5 if pair_counts_padded(y_true, y_true, mask)[:, 1].sum() > 0 else math.nan,
    }


def _prepare(frame: pd.DataFrame, list_col: str, true_col: str, pred_cols: list[str],
             scale_cols: Mapping[str, str], min_list_size: int) -> PaddedLists:
    columns = list(dict.fromkeys([true_col, *pred_cols, *scale_cols.values()]))
    lists = pad_lists(frame, list_col, columns, min_list_size=min_list_size)
    if lists.n_lists == 0:
        raise MmscaleError(f"metrics: no list in column {list_col!r} has >= {min_list_size} scenarios "
                           f"({len(frame)} rows)")
    return lists


def _statistics(lists: PaddedLists, true_col: str, pred_col: str, scale_col: str | None,
                k: int, threshold: float) -> np.ndarray:
    v = lists.values
    return list_statistics(v[true_col], v[pred_col], lists.mask,
                           None if scale_col is None else v[scale_col], k, threshold)


def _columns(pred: str | Sequence[str]) -> list[str]:
    return [pred] if isinstance(pred, str) else list(pred)


def _scale_map(preds: list[str], scale: str | Sequence[str] | None) -> dict[str, str]:
    if scale is None:
        return {}
    scales = _columns(scale)
    if len(scales) != len(preds):
        raise MmscaleError(f"metrics: {len(preds)} prediction column(s) but {len(scales)} scale column(s)")
    return dict(zip(preds, scales))


def _mean_statistics(lists: PaddedLists, true_col: str, preds: list[str], scales: Mapping[str, str],
                     k: int, threshold: float) -> np.ndarray:
    """Per-list statistics averaged over ``preds`` (e.g. one column per training seed).

    Averaging the additive statistics (not the predictions) gives the mean over
    seeds of each list-level metric and pools the safety counts of all seeds, so
    a bootstrap over lists then carries both list and seed variation.
    """
    return np.mean([_statistics(lists, true_col, p, scales.get(p), k, threshold) for p in preds], axis=0)


def evaluate_lists(frame: pd.DataFrame, list_col: str = "image_id", true_col: str = "score",
                   pred_col: str | Sequence[str] = "pred", min_list_size: int = 2, *,
                   scale_col: str | Sequence[str] | None = None,
                   k: int = 5, threshold: float = UNSAFE_THRESHOLD, n_boot: int = 1000,
                   ci: float = 0.95, seed: int = 0) -> pd.DataFrame:
    """Table 3/4 metrics of ``pred_col`` over the lists of ``frame`` (one row per metric).

    Columns: metric, value, ci_low, ci_high (percentile bootstrap over lists,
    ``n_boot`` resamples, seeded), chance, oracle, n_lists, n_scenarios,
    min_list_size. Ranking metrics use ``pred_col``; Unsafe Rate and
    AUC-Safety use ``scale_col`` when given (e.g. isotonic-calibrated scores
    of an objective without a 1-5 scale), else ``pred_col``. Several
    prediction columns (one per training seed, with as many scale columns)
    give the seed-averaged metrics (see :func:`_mean_statistics`).
    """
    preds = _columns(pred_col)
    scales = _scale_map(preds, scale_col)
    lists = _prepare(frame, list_col, true_col, preds, scales, min_list_size)
    stats = _mean_statistics(lists, true_col, preds, scales, k, threshold)
    value = metrics_from_sums(stats.sum(axis=0))
    oracle = metrics_from_sums(_statistics(lists, true_col, true_col, None, k, threshold).sum(axis=0))
    chances = [_chance_levels(lists, true_col, lists.values[scales.get(p, p)], k, threshold) for p in preds]
    chance = {name: float(np.mean([c[name] for c in chances])) for name in METRICS}
    weights = bootstrap_weights(lists.n_lists, n_boot, np.random.default_rng(seed))
    boot = metrics_from_sums(weights @ stats)
    rows = []
    for name in METRICS:
        low, high = _percentile_ci(boot[name], ci)
        rows.append((name, float(value[name]), low, high, chance[name], float(oracle[name]),
                     lists.n_lists, lists.n_items, int(min_list_size)))
    return pd.DataFrame(rows, columns=list(COLUMNS))


def per_list_metrics(frame: pd.DataFrame, list_col: str = "image_id", true_col: str = "score",
                     pred_col: str = "pred", min_list_size: int = 1, k: int = 5) -> pd.DataFrame:
    """One row per list: list id, list_size, NDCG@5, MRR, Kendall tau (for breakdowns, e.g. by size)."""
    lists = _prepare(frame, list_col, true_col, [pred_col], {}, min_list_size)
    values = list_metric_values(lists.values[true_col], lists.values[pred_col], lists.mask, k)
    return pd.DataFrame({list_col: lists.list_ids, "list_size": lists.sizes, **values})


def to_metrics_dict(table: pd.DataFrame) -> dict[str, dict[str, float | int | None]]:
    """``{metric: {value, ci_low, ...}}`` from an :func:`evaluate_lists` table, NaN -> None (JSON-safe)."""
    out: dict[str, dict[str, float | int | None]] = {}
    for record in table.to_dict(orient="records"):
        name = record.pop("metric")
        out[name] = {key: _json_number(val) for key, val in record.items()}
    return out


def _json_number(value):
    if isinstance(value, (np.integer, int)) and not isinstance(value, bool):
        return int(value)
    value = float(value)
    return None if math.isnan(value) else value


def compare(frame: pd.DataFrame, pred_a: str | Sequence[str], pred_b: str | Sequence[str],
            *more_preds: str | Sequence[str],
            list_col: str = "image_id", true_col: str = "score", min_list_size: int = 2,
            scale_cols: Mapping[str, str] | None = None, k: int = 5,
            threshold: float = UNSAFE_THRESHOLD, n_boot: int = 1000, n_perm: int = 1000,
            ci: float = 0.95, seed: int = 0) -> pd.DataFrame:
    """Paired comparison of ``pred_a`` against each other prediction column, per metric.

    Returns one row per (other, metric): reference, other, metric,
    reference_value, other_value, diff = reference - other, ci_low / ci_high
    (paired percentile bootstrap: the same resampled lists for both columns),
    p_value (two-sided paired permutation test, (1 + #{|T*| >= |T|}) / (1 + n_perm)),
    n_lists. The permutation swaps the two columns' predictions within each
    list with probability 1/2, which is exchangeable under "no difference".
    For list-level metrics this is exactly the sign-flip test of per-list
    differences; for the pooled metrics (Unsafe Rate, AUC-Safety) it is the
    same swap applied to each list's counts, valid because both columns share
    the human labels (hence the denominators). No multiplicity correction.
    ``scale_cols`` maps a prediction column to its 1-5 scale column for the
    pooled metrics. A model given as a tuple of columns (one per training
    seed) is compared through its seed-averaged statistics; it is named by
    its first column.
    """
    scale_cols = dict(scale_cols or {})
    models = {_columns(p)[0]: _columns(p) for p in (pred_a, pred_b, *more_preds)}
    pred_a, *others = models
    all_cols = [c for cols in models.values() for c in cols]
    lists = _prepare(frame, list_col, true_col, all_cols,
                     {c: scale_cols[c] for c in all_cols if c in scale_cols}, min_list_size)
    stats = {name: _mean_statistics(lists, true_col, cols, scale_cols, k, threshold)
             for name, cols in models.items()}
    rng = np.random.default_rng(seed)
    weights = bootstrap_weights(lists.n_lists, n_boot, rng)
    swaps = rng.integers(0, 2, size=(n_perm, lists.n_lists)).astype(np.float64)
    ref_total = stats[pred_a].sum(axis=0)
    ref_value, ref_boot = metrics_from_sums(ref_total), metrics_from_sums(weights @ stats[pred_a])
    rows = []
    for other in others:
        other_total = stats[other].sum(axis=0)
        other_value, other_boot = metrics_from_sums(other_total), metrics_from_sums(weights @ stats[other])
        swapped_ref = ref_total + swaps @ (stats[other] - stats[pred_a])
        perm_ref = metrics_from_sums(swapped_ref)
        perm_other = metrics_from_sums(ref_total + other_total - swapped_ref)
        for name in METRICS:
            diff = float(ref_value[name] - other_value[name])
            low, high = _percentile_ci(ref_boot[name] - other_boot[name], ci)
            null = np.abs(perm_ref[name] - perm_other[name])
            tolerance = 1e-12 * max(1.0, abs(diff))
            p_value = (1 + np.sum(null >= abs(diff) - tolerance)) / (1 + n_perm) if np.isfinite(diff) else math.nan
            rows.append((pred_a, other, name, float(ref_value[name]), float(other_value[name]), diff,
                         low, high, float(p_value), lists.n_lists))
    return pd.DataFrame(rows, columns=["reference", "other", "metric", "reference_value", "other_value",
                                       "diff", "ci_low", "ci_high", "p_value", "n_lists"])
