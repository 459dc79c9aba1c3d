"""Ranking metrics of one image's scenario list: NDCG@k, reciprocal rank, Kendall tau-b.

Each metric has a single-list form (``ndcg_at_k``, ``reciprocal_rank``,
``kendall_tau``) and a padded form (``*_padded``) that takes (L, n_max) arrays
and a mask and returns one value per list, vectorized with numpy. The
single-list NDCG and RR call the padded code with one row, so there is one
implementation; tests check it against brute-force enumeration of tie-breaking
permutations and against scikit-learn / scipy.

Ties in the model's scores are resolved by the *expectation over uniformly
random tie-breaking*, never by input order, so a constant scorer gets a fixed,
reproducible value, which is also the metric's exact chance level: a uniformly
random permutation of the list is what random tie-breaking of a constant
scorer produces.
"""

from __future__ import annotations

import warnings

import numpy as np
from scipy.special import comb
from scipy.stats import kendalltau

from mmscale_core.metrics.padding import ArrayLike, as_padded, as_single_row


def _pair_counts(y_score: np.ndarray, mask: np.ndarray):
    """Per item: #valid items scored strictly higher, and #valid items tied (itself included)."""
    valid_pair = mask[:, :, None] & mask[:, None, :]
    other = y_score[:, None, :]
    own = y_score[:, :, None]
    above = ((other > own) & valid_pair).sum(axis=2)
    tied = ((other == own) & valid_pair).sum(axis=2)
    return above, tied


def _discounts(n_max: int, k: int) -> np.ndarray:
    """d_p = 1/log2(p+2) for 0-based positions p < k, 0 after."""
    pos = np.arange(n_max)
    return np.where(pos < k, 1.0 / np.log2(pos + 2.0), 0.0)


def ndcg_padded(y_true: ArrayLike, y_score: ArrayLike, mask: ArrayLike | None = None,
                k: int = 5) -> np.ndarray:
    """Tie-averaged NDCG@k per list; NaN for empty lists or lists whose IDCG is 0.

    DCG@k = sum_i (2^rel_i - 1) * avgdisc_i, where an item tied with others on
    the predicted score at positions p..q (0-based, after all items scored
    higher) gets avgdisc_i = mean(d_p..d_q), d_p = 1/log2(p+2) for p < k else 0.
    That is the expected DCG under uniformly random tie-breaking (identical to
    scikit-learn's ``ndcg_score(..., ignore_ties=False)``). IDCG@k sorts the same
    list by rel; lists shorter than k use all their items.
    """
    y_true, y_score, mask = as_padded(y_true, y_score, mask)
    n_max = y_true.shape[1]
    disc = _discounts(n_max, k)
    cum = np.concatenate([[0.0], np.cumsum(disc)])
    gains = np.where(mask, np.exp2(np.where(mask, y_true, 0.0)) - 1.0, 0.0)
    above, tied = _pair_counts(y_score, mask)
    tied_safe = np.maximum(tied, 1)
    avg_disc = (cum[np.minimum(above + tied_safe, n_max)] - cum[above]) / tied_safe
    dcg = (gains * avg_disc * mask).sum(axis=1)
    ideal = -np.sort(np.where(mask, -gains, np.inf), axis=1)
    ideal = np.where(np.isfinite(ideal), ideal, 0.0)
    idcg = (ideal * disc).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(idcg > 0, dcg / np.where(idcg > 0, idcg, 1.0), np.nan)


def reciprocal_rank_padded(y_true: ArrayLike, y_score: ArrayLike,
                           mask: ArrayLike | None = None) -> np.ndarray:
    """Expected 1/rank of the first human-top item under random tie-breaking; NaN for empty lists.

    Top items are those sharing the list's maximum ``y_true``. Let s* be the
    highest predicted score of a top item, a the number of items scored above
    s* (none of them top), g the size of the tied group at s* and t the number
    of top items in it. After random tie-breaking the first top item sits at
    position a + J, where P(J = j) = C(g-j, t-1) / C(g, t), j = 1..g-t+1, so
    E[1/rank] = sum_j P(J = j) / (a + j).
    """
    y_true, y_score, mask = as_padded(y_true, y_score, mask)
    n_max = y_true.shape[1]
    has_items = mask.any(axis=1)
    true_max = np.max(np.where(mask, y_true, -np.inf), axis=1, keepdims=True)
    top = mask & (y_true == true_max)
    best_top = np.max(np.where(top, y_score, -np.inf), axis=1, keepdims=True)
    above = (mask & (y_score > best_top)).sum(axis=1)
    group = mask & (y_score == best_top)
    g = group.sum(axis=1)
    t = (group & top).sum(axis=1)
    j = np.arange(1, n_max + 1)[None, :]
    with np.errstate(invalid="ignore", divide="ignore"):
        p_j = comb(g[:, None] - j, t[:, None] - 1) / comb(g, t)[:, None]
        rr = (p_j / (above[:, None] + j)).sum(axis=1)
    return np.where(has_items, rr, np.nan)


def kendall_tau_padded(y_true: ArrayLike, y_score: ArrayLike,
                       mask: ArrayLike | None = None) -> np.ndarray:
    """Kendall tau-b per list from pair counts; NaN where undefined.

    tau_b = (C - D) / sqrt((n0 - n1) (n0 - n2)) over the n0 valid pairs, with
    n1 / n2 the pairs tied in y_true / y_score (scipy's definition; tests check
    equality with ``scipy.stats.kendalltau``). Undefined (NaN) when a list has
    fewer than two items or all its items tie on either side.
    """
    y_true, y_score, mask = as_padded(y_true, y_score, mask)
    n_max = y_true.shape[1]
    upper = np.triu(np.ones((n_max, n_max), dtype=bool), k=1)
    pair = mask[:, :, None] & mask[:, None, :] & upper
    dt = np.sign(np.where(mask, y_true, 0.0)[:, :, None] - np.where(mask, y_true, 0.0)[:, None, :])
    ds = np.sign(np.where(mask, y_score, 0.0)[:, :, None] - np.where(mask, y_score, 0.0)[:, None, :])
    n0 = pair.sum(axis=(1, 2))
    n1 = (pair & (dt == 0)).sum(axis=(1, 2))
    n2 = (pair & (ds == 0)).sum(axis=(1, 2))
    concordance = (dt * ds * pair).sum(axis=(1, 2))
    denom = np.sqrt((n0 - n1).astype(float) * (n0 - n2))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denom > 0, concordance / np.where(denom > 0, denom, 1.0), np.nan)


def ndcg_at_k(y_true: ArrayLike, y_score: ArrayLike, k: int = 5) -> float:
    """NDCG@k of one list, gains 2^rel - 1, ties averaged (see :func:`ndcg_padded`)."""
    return float(ndcg_padded(*as_single_row(y_true, y_score), None, k=k)[0])


def reciprocal_rank(y_true: ArrayLike, y_score: ArrayLike) -> float:
    """Expected reciprocal rank of the first human-top item (see :func:`reciprocal_rank_padded`)."""
    return float(reciprocal_rank_padded(*as_single_row(y_true, y_score), None)[0])


def kendall_tau(y_true: ArrayLike, y_score: ArrayLike) -> float:
    """Kendall tau-b via ``scipy.stats.kendalltau``; NaN where undefined (constant side, < 2 items)."""
    y_true, y_score = (a[0] for a in as_single_row(y_true, y_score))
    if y_true.size < 2 or np.all(y_true == y_true[0]) or np.all(y_score == y_score[0]):
        return float("nan")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return float(kendalltau(y_true, y_score, variant="b").statistic)
