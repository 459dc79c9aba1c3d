"""Calibration of 1-5 moral scores: reliability curve, ECE (paper Fig. 9), isotonic rescaling.

Definition used here (the paper leaves it open):

* predicted acceptability of a scenario  p = clip((s_hat - 1) / 4, 0, 1)
* observed acceptability of a bin        o = mean over its scenarios of (s - 1) / 4,
  with s the human score (mean rating).

Why the mean human score rather than the share of scenarios with s > 2.5:
with the share, even a model that predicts every human score exactly is
miscalibrated (s_hat = 3 -> p = 0.5, yet every such scenario is acceptable),
so the diagonal would mean nothing. With the mean, the diagonal is reached by
a predictor of E[s | s_hat], which is what the MSE auxiliary and the isotonic
map below target, and ECE = 0 for the oracle. ``reliability_curve`` and
``expected_calibration_error`` share this definition and the same bins.

Objectives without a scale (ListMLE, BPO, BCE) are mapped to 1-5 by
``calibrate_scores``: an isotonic regression of the human score on the raw
prediction, fitted on the *training* split. It is monotone but not strictly,
so it can create ties; rank on the raw scores and use the calibrated ones only
for score-based metrics (``evaluate_lists(..., scale_col=...)``).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.isotonic import IsotonicRegression

from mmscale_core.metrics.padding import ArrayLike

SCORE_MIN, SCORE_MAX = 1.0, 5.0


def acceptability(scores: ArrayLike) -> np.ndarray:
    """Map 1-5 scores to [0, 1]: (s - 1) / 4, clipped (out-of-scale predictions saturate)."""
    scores = np.asarray(scores, dtype=np.float64)
    return np.clip((scores - SCORE_MIN) / (SCORE_MAX - SCORE_MIN), 0.0, 1.0)


def reliability_curve(y_true: ArrayLike, y_score: ArrayLike, n_bins: int = 10) -> pd.DataFrame:
    """One row per non-empty equal-width bin of predicted acceptability.

    Columns: bin, bin_low, bin_high, count, mean_predicted, mean_observed
    (see the module docstring for both definitions). The last bin includes 1.
    """
    y_true = np.asarray(y_true, dtype=np.float64).ravel()
    predicted = acceptability(y_score).ravel()
    if y_true.shape != predicted.shape:
        raise ValueError(f"y_true has {y_true.size} items, y_score {predicted.size}")
    observed = acceptability(y_true)
    bins = np.minimum((predicted * n_bins).astype(int), n_bins - 1)
    count = np.bincount(bins, minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_pred = np.bincount(bins, predicted, minlength=n_bins) / count
        mean_obs = np.bincount(bins, observed, minlength=n_bins) / count
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    frame = pd.DataFrame({
        "bin": np.arange(n_bins), "bin_low": edges[:-1], "bin_high": edges[1:], "count": count,
        "mean_predicted": mean_pred, "mean_observed": mean_obs,
    })
    return frame[frame["count"] > 0].reset_index(drop=True)


def expected_calibration_error(y_true: ArrayLike, y_score: ArrayLike, n_bins: int = 10) -> float:
    """ECE = sum_b (n_b / N) |mean_predicted_b - mean_observed_b| over the reliability bins."""
    curve = reliability_curve(y_true, y_score, n_bins)
    if curve.empty:
        return float("nan")
    weights = curve["count"] / curve["count"].sum()
    return float((weights * (curve["mean_predicted"] - curve["mean_observed"]).abs()).sum())


def fit_score_calibrator(train_scores: ArrayLike, train_true: ArrayLike) -> IsotonicRegression:
    """Isotonic regression human score ~ raw prediction on the training split, output in [1, 5]."""
    train_scores = np.asarray(train_scores, dtype=np.float64).ravel()
    train_true = np.asarray(train_true, dtype=np.float64).ravel()
    if train_scores.shape != train_true.shape or train_scores.size == 0:
        raise ValueError(f"need equal, non-empty train arrays, got {train_scores.size} and {train_true.size}")
    model = IsotonicRegression(y_min=SCORE_MIN, y_max=SCORE_MAX, increasing=True, out_of_bounds="clip")
    return model.fit(train_scores, train_true)


def calibrate_scores(train_scores: ArrayLike, train_true: ArrayLike, scores: ArrayLike) -> np.ndarray:
    """Map raw ``scores`` to the 1-5 scale with an isotonic fit on (train_scores, train_true)."""
    model = fit_score_calibrator(train_scores, train_true)
    return model.predict(np.asarray(scores, dtype=np.float64).ravel())
