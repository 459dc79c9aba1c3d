"""Agreement statistics: Krippendorff's alpha of annotators, modality-classification scores.

``krippendorff_alpha`` wraps the ``krippendorff`` package. Alpha depends only
on which values co-occur within a unit, never on who gave them, so the
dataset's per-scenario rating lists are passed as value counts (units x
values) instead of a sparse raters x units matrix (thousands of crowd workers).
"""

from __future__ import annotations

from typing import Sequence

import krippendorff
import numpy as np
import pandas as pd
from sklearn.metrics import accuracy_score, f1_score

from mmscale_core.metrics.padding import ArrayLike

LEVELS = ("nominal", "ordinal", "interval", "ratio")
MODALITY_LABELS = ("text", "image", "both")


def _is_missing(value) -> bool:
    return value is None or (isinstance(value, float) and np.isnan(value))


def value_counts_from_lists(per_unit: Sequence[Sequence]) -> tuple[np.ndarray, list]:
    """(units x values) count matrix and the sorted value domain from per-unit value lists.

    Missing entries (None / NaN) are skipped; values may be numbers or labels.
    """
    units = [[v for v in values if not _is_missing(v)] for values in per_unit]
    domain = sorted({v for values in units for v in values})
    index = {v: i for i, v in enumerate(domain)}
    counts = np.zeros((len(units), len(domain)))
    for row, values in enumerate(units):
        for v in values:
            counts[row, index[v]] += 1
    return counts, domain


def _reliability_numeric(data: np.ndarray) -> np.ndarray:
    """Raters x units matrix as floats; labels (object/str) become integer codes, missing -> NaN."""
    if data.dtype.kind in "biuf":
        return data.astype(np.float64)
    flat = data.ravel()
    present = np.array([not _is_missing(v) for v in flat])
    codes = np.full(flat.shape, np.nan)
    codes[present] = pd.factorize(pd.Series(flat[present]), sort=True)[0]
    return codes.reshape(data.shape)


def krippendorff_alpha(ratings: ArrayLike | pd.Series, level: str = "interval") -> float:
    """Krippendorff's alpha at the given level of measurement, missing values allowed.

    ``ratings`` is either a raters x units array (NaN / None = missing), as in
    the ``krippendorff`` package, or a pandas Series with one list of values
    per unit (the dataset's ``ratings`` or ``modalities`` column). Labels
    (strings) are only meaningful at the nominal level. NaN when fewer than
    two values are pairable.
    """
    if level not in LEVELS:
        raise ValueError(f"level must be one of {LEVELS}, got {level!r}")
    if isinstance(ratings, pd.Series):
        counts, value_domain = _unit_counts(ratings, level)
        return _alpha_from_counts(counts, value_domain, level)
    data = _reliability_numeric(np.asarray(ratings))
    if data.ndim != 2:
        raise ValueError(f"reliability data must be raters x units, got shape {data.shape}")
    values = data[~np.isnan(data)]
    if np.unique(values).size < 2:
        return float("nan")
    return float(krippendorff.alpha(reliability_data=data, level_of_measurement=level))


def krippendorff_alpha_bootstrap(per_unit: pd.Series, level: str, n_boot: int,
                                 rng: np.random.Generator) -> tuple[float, np.ndarray]:
    """Alpha of one value list per unit, and ``n_boot`` alphas over units resampled with replacement.

    Alpha depends only on each unit's value counts, so the (units x values) count matrix is
    built once and a resample takes its rows: the same numbers as recomputing alpha on the
    resampled lists (tested), without rebuilding the matrix from Python lists each time.
    """
    if level not in LEVELS:
        raise ValueError(f"level must be one of {LEVELS}, got {level!r}")
    counts, value_domain = _unit_counts(per_unit, level)
    n = len(counts)
    boots = np.array([_alpha_from_counts(counts[rng.integers(0, n, n)], value_domain, level)
                      for _ in range(n_boot)])
    return _alpha_from_counts(counts, value_domain, level), boots


def _unit_counts(per_unit: pd.Series, level: str) -> tuple[np.ndarray, np.ndarray]:
    counts, domain = value_counts_from_lists(per_unit.tolist())
    numeric = all(isinstance(v, (int, float, np.integer, np.floating)) for v in domain)
    if not numeric and level != "nominal":
        raise ValueError(f"labels {domain[:5]} have no order or distance; use level='nominal'")
    return counts, (np.asarray(domain, dtype=np.float64) if numeric else np.arange(len(domain)))


def _alpha_from_counts(counts: np.ndarray, value_domain: np.ndarray, level: str) -> float:
    present = counts.sum(axis=0) > 0  # values no unit of this (re)sample holds
    if (counts.sum(axis=1) >= 2).sum() == 0 or present.sum() < 2:
        return float("nan")
    return float(krippendorff.alpha(value_counts=counts[:, present], value_domain=value_domain[present],
                                    level_of_measurement=level))


def modality_scores(y_true: Sequence[str], y_pred: Sequence[str],
                    labels: Sequence[str] = MODALITY_LABELS) -> dict[str, float]:
    """Accuracy and macro-F1 (scikit-learn, over ``labels``; absent classes score F1 = 0) of modality labels."""
    return {
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "macro_f1": float(f1_score(y_true, y_pred, labels=list(labels), average="macro", zero_division=0)),
        "n": int(len(y_true)),
    }
