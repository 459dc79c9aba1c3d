"""Within-image pairwise accuracy: the upstream release's headline ordering metric.

Definition (authors' release ``dbsltm/mmscale-submission``, ``src/evaluate_ordering.py``):
a pair is two scenarios of one image whose gold scores differ by at least
delta and are not equal, |g_i - g_j| >= delta and g_i != g_j. It earns

    c_ij = 1    if sign(p_i - p_j) == sign(g_i - g_j)   (ordered like the gold scores)
           1/2  if p_i == p_j                           (a tied prediction)
           0    otherwise

and the accuracy is sum c_ij / #pairs, *pooled* over the pairs of all images
(an image with many pairs weighs more; it is not a mean over images). A random
scorer (a uniformly random order) earns 1/2 per pair in expectation: chance 0.5.

The stratified form (``src/evaluate_modality_stratified.py``, delta 0) splits
the same pairs by the unordered pair of the two scenarios' modality labels,
T-T, I-I, B-B, T-I, T-B, I-B, with a Wilson 95% interval on the share.

One deliberate difference: gold scores are means of integer ratings, so
differences such as 13/3 - 10/3 are exactly 1 but come out 0.9999999999999996
in floating point, and the release's ``d < delta`` drops such a pair from
delta >= 1. Here |g_i - g_j| >= delta is tested with a tolerance of 1e-9,
which is exact for means of up to thousands of ratings.

Counts are additive per list (``pair_counts_padded``), so the bootstrap over
images reweights rows like every other metric here (see ``metrics.evaluate``).
"""

from __future__ import annotations

import numpy as np

from mmscale_core.metrics.padding import ArrayLike, as_padded, as_single_row

PAIR_TYPES = ("T-T", "I-I", "B-B", "T-I", "T-B", "I-B")
MODALITY_CODES = {"text": 0, "image": 1, "both": 2}
#: pair type index of modality codes (a, b), symmetric
_PAIR_TYPE = np.array([[0, 3, 4],
                       [3, 1, 5],
                       [4, 5, 2]])
GOLD_TOLERANCE = 1e-9


def _pair_terms(y_true: np.ndarray, y_score: np.ndarray, mask: np.ndarray,
                delta: float, tolerance: float = GOLD_TOLERANCE) -> tuple[np.ndarray, np.ndarray]:
    """(L, n, n) qualifying pairs i < j and their credit c_ij (1, 1/2 or 0)."""
    n_max = y_true.shape[1]
    upper = np.triu(np.ones((n_max, n_max), dtype=bool), k=1)
    true = np.where(mask, y_true, 0.0)
    score = np.where(mask, y_score, 0.0)
    dt = true[:, :, None] - true[:, None, :]
    ds = score[:, :, None] - score[:, None, :]
    gap = np.abs(dt)
    qualify = (mask[:, :, None] & mask[:, None, :] & upper
               & (gap >= delta - tolerance) & (gap > tolerance))
    credit = np.where(ds == 0, 0.5, (np.sign(ds) == np.sign(dt)).astype(np.float64))
    return qualify, credit


def pair_counts_padded(y_true: ArrayLike, y_score: ArrayLike, mask: ArrayLike | None = None,
                       delta: float = 0.0, tolerance: float = GOLD_TOLERANCE) -> np.ndarray:
    """(L, 2) per list: [sum of pair credits, number of qualifying pairs].

    ``tolerance=0`` is the release's floating-point test (see the module docstring)."""
    y_true, y_score, mask = as_padded(y_true, y_score, mask)
    qualify, credit = _pair_terms(y_true, y_score, mask, delta, tolerance)
    return np.column_stack([(credit * qualify).sum(axis=(1, 2)), qualify.sum(axis=(1, 2)).astype(np.float64)])


def accuracy_from_counts(counts: np.ndarray) -> np.ndarray:
    """Pooled accuracy sum(credit) / sum(pairs) from summed counts (..., 2); NaN without pairs."""
    counts = np.asarray(counts, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(counts[..., 1] > 0, counts[..., 0] / np.where(counts[..., 1] > 0, counts[..., 1], 1.0),
                        np.nan)


def pairwise_accuracy_padded(y_true: ArrayLike, y_score: ArrayLike, mask: ArrayLike | None = None,
                             delta: float = 0.0) -> float:
    """Pairwise accuracy pooled over the qualifying pairs of all lists (see the module docstring)."""
    return float(accuracy_from_counts(pair_counts_padded(y_true, y_score, mask, delta).sum(axis=0)))


def pairwise_accuracy(y_true: ArrayLike, y_score: ArrayLike, delta: float = 0.0) -> float:
    """Pairwise accuracy of one list (NaN when no pair qualifies)."""
    return pairwise_accuracy_padded(*as_single_row(y_true, y_score), None, delta)


def modality_pair_counts_padded(y_true: ArrayLike, y_score: ArrayLike, modality_code: ArrayLike,
                                mask: ArrayLike | None = None, delta: float = 0.0) -> np.ndarray:
    """(L, 6, 2) per list and pair type (:data:`PAIR_TYPES`): [sum of credits, pairs].

    ``modality_code`` holds :data:`MODALITY_CODES` (0 text, 1 image, 2 both) per
    item; items with any other code (a missing label) take part in no pair,
    as in the release's evaluator.
    """
    y_true, y_score, mask = as_padded(y_true, y_score, mask)
    codes = np.asarray(modality_code, dtype=np.float64)
    labelled = mask & np.isin(codes, (0, 1, 2))
    qualify, credit = _pair_terms(y_true, y_score, labelled, delta)
    safe = np.where(labelled, codes, 0).astype(np.int64)
    kind = _PAIR_TYPE[safe[:, :, None], safe[:, None, :]]
    out = np.zeros((y_true.shape[0], len(PAIR_TYPES), 2))
    for t in range(len(PAIR_TYPES)):
        members = qualify & (kind == t)
        out[:, t, 0] = (credit * members).sum(axis=(1, 2))
        out[:, t, 1] = members.sum(axis=(1, 2))
    return out


def wilson_interval(successes: ArrayLike, n: ArrayLike, ci: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    """Wilson score interval of successes / n (statsmodels); successes may be fractional
    (half credits of tied predictions, as in the release). NaN where n = 0."""
    from statsmodels.stats.proportion import proportion_confint

    successes = np.atleast_1d(np.asarray(successes, dtype=np.float64))
    n = np.atleast_1d(np.asarray(n, dtype=np.float64))
    low = np.full(n.shape, np.nan)
    high = np.full(n.shape, np.nan)
    some = n > 0
    if some.any():
        low[some], high[some] = proportion_confint(successes[some], n[some], alpha=1.0 - ci, method="wilson")
    return low, high
