"""Paired difference of every Table 3 metric between a frame and a subset of its rows.

Sec 5.1's "consistent on the discrepancy-augmented split" compares the same model on the
test split with and without the annotator-added scenarios: both sides share their images,
so the bootstrap resamples images once and evaluates both sides on the same draw (a
paired bootstrap over lists), using the additive per-list statistics of
:mod:`mmscale_core.metrics.evaluate`. A list the subset drops entirely (or that falls
under ``min_list_size`` there) contributes zero statistics to the subset's side.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd

from mmscale_core.errors import MmscaleError
from mmscale_core.metrics.evaluate import (
    METRICS, _columns, _mean_statistics, _percentile_ci, _prepare, _scale_map, bootstrap_weights, metrics_from_sums,
)
from mmscale_core.metrics.safety import UNSAFE_THRESHOLD

COLUMNS = ("metric", "full_value", "subset_value", "diff", "ci_low", "ci_high", "n_lists", "n_lists_subset",
           "n_scenarios", "n_scenarios_subset")


def compare_subset(frame: pd.DataFrame, keep: np.ndarray | pd.Series, pred_col: str | Sequence[str] = "pred", *,
                   scale_col: str | Sequence[str] | None = None, list_col: str = "image_id",
                   true_col: str = "score", min_list_size: int = 2, k: int = 5,
                   threshold: float = UNSAFE_THRESHOLD, n_boot: int = 1000, ci: float = 0.95,
                   seed: int = 0) -> pd.DataFrame:
    """Per metric: value on ``frame``, on ``frame[keep]``, ``diff`` = full - subset and its
    paired percentile-bootstrap CI (lists of ``frame`` resampled, ``n_boot`` times, seeded)."""
    keep = np.asarray(keep, dtype=bool)
    if keep.shape != (len(frame),):
        raise MmscaleError(f"compare_subset: keep has {keep.shape[0]} entries for {len(frame)} rows")
    preds = _columns(pred_col)
    scales = _scale_map(preds, scale_col)
    full = _prepare(frame, list_col, true_col, preds, scales, min_list_size)
    sub = _prepare(frame[keep], list_col, true_col, preds, scales, min_list_size)
    stats_full = _mean_statistics(full, true_col, preds, scales, k, threshold)
    aligned = np.zeros_like(stats_full)
    rows = pd.Index(full.list_ids).get_indexer(sub.list_ids)
    if (rows < 0).any():  # cannot happen: dropping rows never makes a list longer
        raise MmscaleError("compare_subset: the subset has a list the full frame lacks")
    aligned[rows] = _mean_statistics(sub, true_col, preds, scales, k, threshold)
    value_full = metrics_from_sums(stats_full.sum(axis=0))
    value_sub = metrics_from_sums(aligned.sum(axis=0))
    weights = bootstrap_weights(full.n_lists, n_boot, np.random.default_rng(seed))
    boot_full, boot_sub = metrics_from_sums(weights @ stats_full), metrics_from_sums(weights @ aligned)
    out = []
    for name in METRICS:
        low, high = _percentile_ci(boot_full[name] - boot_sub[name], ci)
        out.append((name, float(value_full[name]), float(value_sub[name]),
                    float(value_full[name] - value_sub[name]), low, high, full.n_lists, sub.n_lists,
                    full.n_items, sub.n_items))
    return pd.DataFrame(out, columns=list(COLUMNS))
