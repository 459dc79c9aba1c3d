"""The upstream release's definitions where they are ill-posed, reimplemented for the audit.

``mmscale evaluate`` and every table use the exact definitions (``metrics.ranking``,
``metrics.scalar``); these variants exist only so that the audit notebook can
measure how far the release's own evaluators (``dbsltm/mmscale-submission``,
``src/evaluate_ordering.py`` and ``src/evaluate_scalar.py``) move a number:

* :func:`ndcg_argsort`: NDCG@k ranking by ``np.argsort(pred)[::-1]``, so
  tied predictions are ordered by their position in the input (for the small
  lists here numpy's sort is stable and the reversal puts later rows first).
  With integer predictions (a prompted VLM's answers) most lists have ties,
  and the value depends on the order of the rows in the prediction file.
* :func:`ece_half_open`: bins ``lo <= c < hi`` for all ten bins, so a
  confidence of exactly 1 (a prediction of 5 or more) is in no bin, yet still
  counts in the denominator N.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from mmscale_core.metrics.calibration import acceptability
from mmscale_core.metrics.padding import ArrayLike
from mmscale_core.metrics.scalar import ACCEPTABLE_THRESHOLD, ECE_BINS, confidence_bins, is_acceptable


def _dcg(gains_in_order: np.ndarray, k: int) -> float:
    top = gains_in_order[:k]
    return float(np.sum((2.0 ** top - 1.0) / np.log2(np.arange(top.size) + 2.0)))


def ndcg_argsort(y_true: ArrayLike, y_score: ArrayLike, k: int = 5) -> float:
    """NDCG@k as the release computes it: gains 2^g - 1, ranks by ``argsort`` (input order on ties),
    0 for an empty list or a zero ideal DCG."""
    y_true = np.asarray(y_true, dtype=np.float64).ravel()
    y_score = np.asarray(y_score, dtype=np.float64).ravel()
    if y_true.size == 0:
        return 0.0
    ideal = _dcg(y_true[np.argsort(y_true)[::-1]], k)
    if ideal <= 0:
        return 0.0
    return _dcg(y_true[np.argsort(y_score)[::-1]], k) / ideal


def mean_ndcg_argsort(frame: pd.DataFrame, list_col: str = "image_id", true_col: str = "score",
                      pred_col: str = "prediction", k: int = 5, min_list_size: int = 2) -> float:
    """The release's ``ndcg_at_5_mean``: mean of :func:`ndcg_argsort` over lists of >= 2 rows,
    each list in the order its rows have in ``frame``."""
    codes, _ = pd.factorize(frame[list_col], sort=False)
    rows = np.argsort(codes, kind="stable")  # grouped by list, each list's rows in frame order
    gold, pred = frame[true_col].to_numpy(np.float64), frame[pred_col].to_numpy(np.float64)
    values = [ndcg_argsort(gold[idx], pred[idx], k)
              for idx in np.split(rows, np.flatnonzero(np.diff(codes[rows])) + 1) if idx.size >= min_list_size]
    return float(np.mean(values)) if values else float("nan")


def ece_half_open(y_true: ArrayLike, y_score: ArrayLike, n_bins: int = ECE_BINS,
                  threshold: float = ACCEPTABLE_THRESHOLD) -> float:
    """The release's ECE: the bins of ``metrics.scalar`` without the scenarios at confidence 1
    (they fall outside every half-open bin), divided by all N scenarios all the same."""
    conf = acceptability(y_score).ravel()
    accept = is_acceptable(y_true, threshold).ravel().astype(np.float64)
    binned = conf < 1.0
    bins = confidence_bins(conf[binned], n_bins)
    gap = np.bincount(bins, weights=accept[binned] - conf[binned], minlength=n_bins)
    return float(np.abs(gap).sum() / conf.size) if conf.size else float("nan")
