"""Losses vs brute force (Plackett-Luce by enumeration, pairs by loops); masking and gradients."""

from __future__ import annotations

import math
from collections import Counter
from itertools import permutations

import pytest
import torch
import torch.nn.functional as F

from mmscale_core.losses import (
    OBJECTIVES,
    bce,
    bpo,
    listmle,
    make_objective,
    modality_ce,
    mse,
    pairwise_scalar,
    target_order,
)

LOSSES = {
    "listmle": listmle, "bpo": bpo, "pairwise": pairwise_scalar, "bce": bce, "mse": mse,
}


def plackett_luce_nll(scores: list[float], order: list[int]) -> float:
    """-log P(order | scores), literally the product formula of paper sec. 4.2."""
    nll = 0.0
    for t in range(len(order)):
        rest = order[t:]
        nll -= scores[order[t]] - math.log(sum(math.exp(scores[j]) for j in rest))
    return nll


def random_batch(seed: int, batch: int = 16, n_max: int = 5, tie_levels: int | None = None):
    gen = torch.Generator().manual_seed(seed)
    sizes = torch.randint(0, n_max + 1, (batch,), generator=gen)
    mask = torch.arange(n_max)[None, :] < sizes[:, None]
    if tie_levels is None:
        targets = 1 + 4 * torch.rand(batch, n_max, generator=gen, dtype=torch.float64)
    else:
        targets = 1 + torch.randint(0, tie_levels, (batch, n_max), generator=gen).double()
    scores = 3 * torch.randn(batch, n_max, generator=gen, dtype=torch.float64)
    return scores, targets, mask


def valid_orders(targets: list[float]) -> list[list[int]]:
    n = len(targets)
    return [list(p) for p in permutations(range(n))
            if all(targets[p[i]] >= targets[p[i + 1]] for i in range(n - 1))]


def test_listmle_equals_brute_force_plackett_luce():
    for seed in range(20):
        scores, targets, mask = random_batch(seed)
        per_list = listmle(scores, targets, mask, reduction="none")
        for b in range(scores.shape[0]):
            n = int(mask[b].sum())
            s, t = scores[b, :n].tolist(), targets[b, :n].tolist()
            order = sorted(range(n), key=lambda i: -t[i])
            assert per_list[b].item() == pytest.approx(plackett_luce_nll(s, order), abs=1e-10)
        non_empty = mask.any(dim=1)
        assert listmle(scores, targets, mask).item() == pytest.approx(per_list[non_empty].mean().item())
        assert listmle(scores, targets, mask, reduction="sum").item() == pytest.approx(per_list.sum().item())


def test_listmle_ties_are_broken_uniformly_with_the_generator():
    scores = torch.tensor([[0.3, -1.0, 2.0, 0.5]], dtype=torch.float64)
    targets = torch.tensor([[4.0, 4.0, 4.0, 1.0]], dtype=torch.float64)
    mask = torch.ones(1, 4, dtype=torch.bool)
    orders = valid_orders(targets[0].tolist())
    by_value = {round(plackett_luce_nll(scores[0].tolist(), o), 9): tuple(o) for o in orders}
    gen = torch.Generator().manual_seed(0)
    seen = Counter()
    for _ in range(1200):
        value = listmle(scores, targets, mask, generator=gen).item()
        seen[by_value[round(value, 9)]] += 1  # KeyError if the order was not a valid tie-break
    assert set(seen) == {tuple(o) for o in orders}
    assert all(150 <= c <= 250 for c in seen.values()), seen  # 6 orders, 200 expected each
    again = listmle(scores, targets, mask, generator=torch.Generator().manual_seed(0))
    first = listmle(scores, targets, mask, generator=torch.Generator().manual_seed(0))
    assert again.item() == first.item()


def test_tie_breaking_without_generator_keeps_input_order():
    targets = torch.tensor([[2.0, 5.0, 2.0, 5.0, 9.0]])
    mask = torch.tensor([[True, True, True, True, False]])
    assert target_order(targets, mask)[0].tolist() == [1, 3, 0, 2, 4]


def test_listmle_ties_average_matches_enumeration():
    for seed in range(5):
        scores, targets, mask = random_batch(seed, batch=4, tie_levels=2)
        gen = torch.Generator().manual_seed(seed)
        draws = torch.stack([listmle(scores, targets, mask, generator=gen, reduction="none")
                             for _ in range(3000)]).mean(dim=0)
        for b in range(4):
            n = int(mask[b].sum())
            s, t = scores[b, :n].tolist(), targets[b, :n].tolist()
            exact = sum(plackett_luce_nll(s, o) for o in valid_orders(t)) / len(valid_orders(t)) if n else 0.0
            assert draws[b].item() == pytest.approx(exact, abs=0.05 * (1 + abs(exact)))


def test_listmle_edge_cases_and_stability():
    mask = torch.tensor([[True, False, False], [False, False, False]])
    scores = torch.tensor([[7.0, 1.0, 2.0], [1.0, 2.0, 3.0]], requires_grad=True)
    targets = torch.tensor([[3.0, 1.0, 2.0], [1.0, 2.0, 3.0]])
    per_list = listmle(scores, targets, mask, reduction="none")
    assert per_list.tolist() == [0.0, 0.0]  # one item -> 0; empty list -> 0
    loss = listmle(scores, targets, mask)
    loss.backward()
    assert loss.item() == 0.0 and torch.all(scores.grad == 0)
    huge = torch.tensor([[1e4, -1e4, 3e4, 0.0]], requires_grad=True)
    value = listmle(huge, torch.tensor([[4.0, 3.0, 2.0, 1.0]]), torch.ones(1, 4, dtype=torch.bool))
    value.backward()
    assert torch.isfinite(value) and torch.isfinite(huge.grad).all()


def test_listmle_gradcheck():
    scores, targets, mask = random_batch(3, batch=3)
    scores.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda s: listmle(s, targets, mask), (scores,))


@pytest.mark.parametrize("name", sorted(LOSSES))
@pytest.mark.parametrize("padding", [0.0, 1e30, float("nan"), float("inf")])
def test_masked_entries_get_exactly_zero_gradient(name, padding):
    scores, targets, mask = random_batch(7, tie_levels=3)
    scores = torch.where(mask, scores, padding).requires_grad_(True)
    targets = torch.where(mask, targets, padding)
    loss = LOSSES[name](scores, targets, mask)
    loss.backward()
    assert torch.isfinite(loss)
    assert torch.isfinite(scores.grad).all()
    assert torch.all(scores.grad[~mask] == 0)
    assert scores.grad[mask].abs().sum() > 0


def test_bpo_equals_pair_loop():
    scores, targets, mask = random_batch(11, batch=8)
    total, count = 0.0, 0
    for b in range(8):
        for i in range(5):
            for j in range(5):
                if mask[b, i] and mask[b, j] and targets[b, i] > 2.5 >= targets[b, j]:
                    total += -math.log(torch.sigmoid(scores[b, i] - scores[b, j]).item())
                    count += 1
    assert bpo(scores, targets, mask).item() == pytest.approx(total / count)


def test_pairwise_scalar_equals_pair_loop():
    scores, targets, mask = random_batch(12, batch=8, tie_levels=4)
    total, count = 0.0, 0
    for b in range(8):
        for i in range(5):
            for j in range(5):
                if mask[b, i] and mask[b, j] and targets[b, i] > targets[b, j]:
                    total += F.softplus(-(scores[b, i] - scores[b, j])).item()
                    count += 1
    assert pairwise_scalar(scores, targets, mask).item() == pytest.approx(total / count)


@pytest.mark.parametrize("loss_fn", [bpo, pairwise_scalar])
def test_pair_losses_without_pairs_are_zero_with_graph(loss_fn):
    scores = torch.randn(2, 3, requires_grad=True)
    targets = torch.tensor([[4.0, 4.0, 1.0], [2.0, 2.0, 2.0]])
    mask = torch.tensor([[True, True, False], [True, True, True]])  # all safe / all tied
    loss = loss_fn(scores, targets, mask)
    loss.backward()
    assert loss.item() == 0.0 and torch.all(scores.grad == 0)


def test_pointwise_losses_equal_torch_on_valid_items():
    scores, targets, mask = random_batch(13)
    labels = (targets > 2.5).double()
    assert bce(scores, targets, mask).item() == pytest.approx(
        F.binary_cross_entropy_with_logits(scores[mask], labels[mask]).item())
    assert mse(scores, targets, mask).item() == pytest.approx(F.mse_loss(scores[mask], targets[mask]).item())
    logits = torch.randn(*mask.shape, 3, dtype=torch.float64)
    classes = torch.randint(0, 3, mask.shape)
    classes[0, 0] = -1  # unknown modality: ignored
    keep = mask & (classes >= 0)
    assert modality_ce(logits, classes, mask).item() == pytest.approx(
        F.cross_entropy(logits[keep], classes[keep]).item())


def test_bce_threshold_is_inclusive_for_unsafe():
    scores = torch.zeros(1, 2)
    targets = torch.tensor([[2.5, 2.6]])
    mask = torch.ones(1, 2, dtype=torch.bool)
    # labels 0 (unsafe, 2.5 <= 2.5) and 1: at logit 0 both cost log 2
    assert bce(scores, targets, mask).item() == pytest.approx(math.log(2))
    assert bce(torch.tensor([[-20.0, 20.0]]), targets, mask).item() == pytest.approx(0.0, abs=1e-8)


def test_make_objective_combines_parts():
    scores, targets, mask = random_batch(14)
    logits = torch.randn(*mask.shape, 3, dtype=torch.float64)
    classes = torch.randint(0, 3, mask.shape)
    gen = torch.Generator().manual_seed(0)
    objective = make_objective("lipo+mse", modality_weight=0.5)
    assert objective.aux_mse == 1.0 and objective.on_score_scale
    loss, parts = objective(scores, targets, mask, logits, classes, generator=gen)
    expected = (listmle(scores, targets, mask, generator=torch.Generator().manual_seed(0))
                + mse(scores, targets, mask) + 0.5 * modality_ce(logits, classes, mask))
    assert loss.item() == pytest.approx(expected.item())
    assert set(parts) == {"lipo", "mse", "modality_ce", "total"}
    assert not any(p.requires_grad for p in parts.values())
    for name in OBJECTIVES:
        value, parts = make_objective(name)(scores, targets, mask)
        assert torch.isfinite(value) and parts["total"].item() == pytest.approx(value.item())
    assert not make_objective("bce").on_score_scale and make_objective("mse").on_score_scale


def test_make_objective_errors():
    with pytest.raises(ValueError, match="unknown objective"):
        make_objective("dpo")
    scores, targets, mask = random_batch(15)
    with pytest.raises(ValueError, match="modality"):
        make_objective("lipo", modality_weight=1.0)(scores, targets, mask)
