"""Ranking metrics vs brute force: enumerate every tie-breaking order of lists up to 5 items."""

from __future__ import annotations

from itertools import permutations

import numpy as np
import pytest
from scipy.stats import kendalltau
from sklearn.metrics import ndcg_score

from mmscale_core.metrics import (
    kendall_tau,
    kendall_tau_padded,
    ndcg_at_k,
    ndcg_padded,
    reciprocal_rank,
    reciprocal_rank_padded,
)

N_LISTS = 2000


def random_lists(n_lists: int, seed: int, max_size: int = 5, score_levels: int = 3):
    """Lists with many ties on both sides: human means of 3 ratings, model scores on few levels."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n_lists):
        n = int(rng.integers(1, max_size + 1))
        y_true = rng.integers(1, 6, size=(n, 3)).mean(axis=1)
        if rng.random() < 0.3:  # coarse human scores: more ties among the top items
            y_true = np.round(y_true)
        y_score = rng.integers(0, score_levels, size=n).astype(float) / 2
        out.append((y_true, y_score))
    return out


def tie_breaking_orders(y_score: np.ndarray):
    """All orders of the items that sort the scores descending (the random tie-breakings)."""
    n = len(y_score)
    return [p for p in permutations(range(n))
            if all(y_score[p[i]] >= y_score[p[i + 1]] for i in range(n - 1))]


def dcg_of_order(rel_in_order: np.ndarray, k: int) -> float:
    return sum((2.0 ** r - 1) / np.log2(i + 2) for i, r in enumerate(rel_in_order[:k]))


def brute_ndcg(y_true, y_score, k=5):
    ideal = max(dcg_of_order(y_true[list(p)], k) for p in permutations(range(len(y_true))))
    orders = tie_breaking_orders(y_score)
    return np.mean([dcg_of_order(y_true[list(p)], k) for p in orders]) / ideal


def brute_rr(y_true, y_score):
    top = y_true.max()
    values = []
    for p in tie_breaking_orders(y_score):
        first = next(i for i, item in enumerate(p) if y_true[item] == top)
        values.append(1.0 / (first + 1))
    return np.mean(values)


def pad(lists):
    n_max = max(len(t) for t, _ in lists)
    y_true = np.full((len(lists), n_max), np.nan)
    y_score = np.full((len(lists), n_max), np.nan)
    for row, (t, s) in enumerate(lists):
        y_true[row, :len(t)] = t
        y_score[row, :len(s)] = s
    return y_true, y_score, ~np.isnan(y_true)


@pytest.mark.parametrize("k", [5, 3, 1])
def test_ndcg_matches_brute_force_tie_enumeration(k):
    for y_true, y_score in random_lists(N_LISTS // 2, seed=k):
        assert ndcg_at_k(y_true, y_score, k=k) == pytest.approx(brute_ndcg(y_true, y_score, k), abs=1e-12)


def test_ndcg_matches_sklearn_with_tie_averaging():
    for y_true, y_score in random_lists(N_LISTS, seed=1):
        if len(y_true) < 2:
            continue  # sklearn refuses single-document lists
        gains = 2.0 ** y_true - 1  # sklearn uses y_true as the gain itself
        expected = ndcg_score(gains[None], y_score[None], k=5, ignore_ties=False)
        assert ndcg_at_k(y_true, y_score) == pytest.approx(expected, abs=1e-12)


def test_reciprocal_rank_matches_brute_force_tie_enumeration():
    for y_true, y_score in random_lists(N_LISTS, seed=2):
        assert reciprocal_rank(y_true, y_score) == pytest.approx(brute_rr(y_true, y_score), abs=1e-12)


def test_kendall_tau_padded_equals_scipy():
    lists = random_lists(N_LISTS, seed=3)
    padded = kendall_tau_padded(*pad(lists))
    for value, (y_true, y_score) in zip(padded, lists):
        if len(y_true) < 2 or np.ptp(y_true) == 0 or np.ptp(y_score) == 0:
            assert np.isnan(value)
            assert np.isnan(kendall_tau(y_true, y_score))
        else:
            expected = kendalltau(y_true, y_score, variant="b").statistic
            assert value == pytest.approx(expected, abs=1e-12)
            assert kendall_tau(y_true, y_score) == pytest.approx(expected, abs=1e-12)


def test_padded_forms_equal_single_list_forms():
    lists = random_lists(500, seed=4)
    y_true, y_score, mask = pad(lists)
    np.testing.assert_allclose(ndcg_padded(y_true, y_score, mask),
                               [ndcg_at_k(t, s) for t, s in lists], atol=1e-12)
    np.testing.assert_allclose(reciprocal_rank_padded(y_true, y_score, mask),
                               [reciprocal_rank(t, s) for t, s in lists], atol=1e-12)


def test_padding_values_are_ignored():
    lists = random_lists(200, seed=5)
    y_true, y_score, mask = pad(lists)
    garbage_true = np.where(mask, y_true, 99.0)
    garbage_score = np.where(mask, y_score, -7.0)
    for fn in (ndcg_padded, reciprocal_rank_padded, kendall_tau_padded):
        np.testing.assert_array_equal(fn(garbage_true, garbage_score, mask), fn(y_true, y_score, mask))


def test_constant_scorer_is_the_exact_chance_level():
    """Averaging over ties of a constant scorer = expectation over all n! random orders."""
    for y_true, _ in random_lists(300, seed=6):
        n = len(y_true)
        constant = np.zeros(n)
        orders = list(permutations(range(n)))
        distinct_scores = np.arange(n, 0, -1, dtype=float)
        ndcg_values, rr_values, tau_values = [], [], []
        for p in orders:
            scores = np.empty(n)
            scores[list(p)] = distinct_scores  # item p[i] gets the i-th best score
            ndcg_values.append(ndcg_at_k(y_true, scores))
            rr_values.append(reciprocal_rank(y_true, scores))
            tau_values.append(kendall_tau(y_true, scores))
        assert ndcg_at_k(y_true, constant) == pytest.approx(np.mean(ndcg_values), abs=1e-12)
        assert reciprocal_rank(y_true, constant) == pytest.approx(np.mean(rr_values), abs=1e-12)
        if not np.all(np.isnan(tau_values)):
            assert np.mean(tau_values) == pytest.approx(0.0, abs=1e-12)


def test_known_values():
    assert ndcg_at_k([3, 2, 1], [3, 2, 1]) == 1.0
    assert ndcg_at_k([5], [0]) == 1.0
    assert reciprocal_rank([1, 5, 2], [3, 2, 1]) == 0.5
    assert reciprocal_rank([5, 5, 1], [0, 0, 1]) == 0.5  # both tops tied at ranks 2-3: first at 2
    assert reciprocal_rank([5, 1, 1], [0, 0, 0]) == pytest.approx((1 + 1 / 2 + 1 / 3) / 3)
    assert kendall_tau([1, 2, 3], [3, 2, 1]) == -1.0
    assert np.isnan(kendall_tau([2, 2, 2], [1, 2, 3]))
    assert np.isnan(kendall_tau([1], [1]))
    # k truncates the discount; a tie straddling position k averages a zero discount in
    assert ndcg_at_k([1, 3], [0, 0], k=1) == pytest.approx((1 + 7) / 2 / 7)


def test_empty_and_all_zero_gain_lists_are_nan():
    y_true = np.array([[np.nan, np.nan], [0.0, 0.0]])
    y_score = np.zeros((2, 2))
    mask = np.array([[False, False], [True, True]])
    assert np.isnan(ndcg_padded(y_true, y_score, mask)).all()
    rr = reciprocal_rank_padded(y_true, y_score, mask)
    assert np.isnan(rr[0]) and rr[1] == 1.0  # every item is "top" when all tie


def test_shape_mismatch_raises():
    with pytest.raises(ValueError):
        ndcg_at_k([1, 2], [1, 2, 3])
    with pytest.raises(ValueError):
        ndcg_padded(np.zeros((2, 3)), np.zeros((2, 2)))
