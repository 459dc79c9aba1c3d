"""Training objectives on padded batches of lists: ListMLE (ours), BPO, RankNet, BCE, MSE, modality CE.

Every loss takes ``scores`` (B, n_max) float, ``targets`` (B, n_max) human
scores on 1-5 and ``mask`` (B, n_max) bool (True = real scenario). Padded
entries never touch the result: they are replaced with ``torch.where`` before
any arithmetic, so they get exactly zero gradient even if they hold NaN/inf.
Losses averaged over pairs or items return 0 (with a graph, so ``backward``
works) when a batch has none.

Names of ``make_objective`` follow the paper's tables: ``lipo`` (ListMLE,
"Ours"), ``lipo+mse`` (ListMLE + MSE, Fig. 9), ``bpo``, ``bce``; plus
``pairwise`` (RankNet on scalar targets, a baseline the paper lacks between
BPO and ListMLE) and ``mse`` (pointwise regression).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F

UNSAFE_THRESHOLD = 2.5
#: Gap below a list's smallest score given to padding inside ListMLE's log-cum-sum-exp:
#: exp(-1e4) is exactly 0 in float32 and float64, so padding adds nothing and stays finite.
_PAD_GAP = 1.0e4


def _masked_mean(values: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Mean of ``values`` where ``valid``; 0 (still attached to the graph) when nothing is valid.

    Written without a data-dependent branch, so it never synchronizes a GPU.
    """
    return torch.where(valid, values, 0.0).sum() / valid.sum().clamp(min=1)


def target_order(targets: torch.Tensor, mask: torch.Tensor,
                 generator: torch.Generator | None = None) -> torch.Tensor:
    """Indices sorting each list by target, best first, padding last.

    Equal targets are ordered uniformly at random with ``generator`` (drawn on
    CPU, seeded by the caller); without a generator they keep their input
    order (stable sort), which is deterministic but not symmetric.
    """
    mask = mask.bool()
    key = torch.where(mask, targets.detach().to(torch.float64), float("-inf"))
    if generator is None:
        return torch.sort(key, dim=1, descending=True, stable=True).indices
    shuffle = torch.rand(key.shape, generator=generator, dtype=torch.float64).argsort(dim=1).to(key.device)
    shuffled_order = torch.sort(torch.gather(key, 1, shuffle), dim=1, descending=True, stable=True).indices
    return torch.gather(shuffle, 1, shuffled_order)


def listmle(scores: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor,
            generator: torch.Generator | None = None, reduction: str = "mean") -> torch.Tensor:
    """Negative Plackett-Luce log-likelihood of the human order (paper sec. 4.2).

    With pi* the order of targets (best first, ties broken by ``target_order``)
    and s the scores of the n real items of a list:
        L = -sum_{t=1..n} [ s_{pi*(t)} - log sum_{j=t..n} exp(s_{pi*(j)}) ],
    computed with a reverse log-cum-sum-exp. A one-item list scores 0.
    ``reduction``: "mean" over lists with at least one item, "sum", or "none" (B,).
    """
    mask = mask.bool()
    order = target_order(targets, mask, generator)
    sorted_mask = torch.gather(mask, 1, order)
    sorted_scores = torch.gather(scores, 1, order)
    floor = torch.where(mask, scores, float("inf")).amin(dim=1, keepdim=True).detach()
    floor = torch.where(torch.isfinite(floor), floor, 0.0) - _PAD_GAP
    sorted_scores = torch.where(sorted_mask, sorted_scores, floor)
    tail_lse = torch.logcumsumexp(sorted_scores.flip(1), dim=1).flip(1)
    per_list = torch.where(sorted_mask, tail_lse - sorted_scores, 0.0).sum(dim=1)
    if reduction == "none":
        return per_list
    if reduction == "sum":
        return per_list.sum()
    if reduction == "mean":
        return _masked_mean(per_list, mask.any(dim=1))
    raise ValueError(f"reduction must be 'mean', 'sum' or 'none', got {reduction!r}")


def _pair_logistic(scores: torch.Tensor, better: torch.Tensor) -> torch.Tensor:
    """Mean over pairs (i, j) with better[b, i, j] of -log sigmoid(s_i - s_j)."""
    safe_scores = torch.where(better.any(dim=2) | better.any(dim=1), scores, 0.0)
    margins = safe_scores[:, :, None] - safe_scores[:, None, :]
    return _masked_mean(F.softplus(-margins), better)


def bpo(scores: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor,
        threshold: float = UNSAFE_THRESHOLD) -> torch.Tensor:
    """Binary pairwise preference (the paper's BPO, after SPA-VL): safe over unsafe within a list.

    Pairs (i, j) of the same list with target_i > 2.5 >= target_j; loss
    -log sigmoid(s_i - s_j), averaged over all such pairs of the batch
    (a Bradley-Terry / DPO-style objective on binarized labels).
    """
    mask = mask.bool()
    safe = mask & (targets > threshold)
    unsafe = mask & (targets <= threshold)
    return _pair_logistic(scores, safe[:, :, None] & unsafe[:, None, :])


def pairwise_scalar(scores: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """RankNet on scalar targets: -log sigmoid(s_i - s_j) over all pairs with target_i > target_j."""
    mask = mask.bool()
    valid = mask[:, :, None] & mask[:, None, :]
    better = valid & (targets[:, :, None] > targets[:, None, :])
    return _pair_logistic(scores, better)


def bce(scores: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor,
        threshold: float = UNSAFE_THRESHOLD) -> torch.Tensor:
    """Binary cross-entropy with the score as the logit of P(safe); label safe = target > 2.5 (paper sec. 5.1)."""
    mask = mask.bool()
    labels = (targets > threshold).to(scores.dtype)
    logits = torch.where(mask, scores, 0.0)
    losses = F.binary_cross_entropy_with_logits(logits, torch.where(mask, labels, 0.0), reduction="none")
    return _masked_mean(losses, mask)


def mse(scores: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean squared error of the score against the 1-5 human score, over real items."""
    mask = mask.bool()
    diff = torch.where(mask, scores, 0.0) - torch.where(mask, targets.to(scores.dtype), 0.0)
    return _masked_mean(diff.square(), mask)


def modality_ce(logits: torch.Tensor, modality_targets: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of modality logits (B, n_max, C) vs class ids (B, n_max); ids < 0 are ignored."""
    valid = mask.bool() & (modality_targets >= 0)
    safe_logits = torch.where(valid[..., None], logits, 0.0)
    losses = F.cross_entropy(safe_logits.flatten(0, 1), torch.where(valid, modality_targets, 0).flatten(),
                             reduction="none").view(valid.shape)
    return _masked_mean(losses, valid)


_RANKING_LOSSES: dict[str, Callable[..., torch.Tensor]] = {
    "lipo": listmle, "bpo": bpo, "bce": bce, "pairwise": pairwise_scalar, "mse": mse,
}
OBJECTIVES = ("lipo", "lipo+mse", "bpo", "bce", "pairwise", "mse")


@dataclass(frozen=True)
class Objective:
    """A named training objective: main loss + aux_mse * MSE + modality_weight * modality CE.

    ``on_score_scale`` says whether the scores it trains land on the 1-5 scale
    (any MSE term); otherwise evaluation maps them with ``calibrate_scores``.
    """

    name: str
    main: str
    aux_mse: float = 0.0
    modality_weight: float = 0.0

    @property
    def on_score_scale(self) -> bool:
        return self.main == "mse" or self.aux_mse > 0

    def __call__(self, scores: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor,
                 modality_logits: torch.Tensor | None = None, modality_targets: torch.Tensor | None = None,
                 generator: torch.Generator | None = None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """(total loss, {part name: detached value}) for one padded batch."""
        loss_fn = _RANKING_LOSSES[self.main]
        kwargs = {"generator": generator} if self.main == "lipo" else {}
        total = loss_fn(scores, targets, mask, **kwargs)
        parts = {self.main: total.detach()}
        if self.aux_mse > 0:
            aux = mse(scores, targets, mask)
            parts["mse"] = aux.detach()
            total = total + self.aux_mse * aux
        if self.modality_weight > 0:
            if modality_logits is None or modality_targets is None:
                raise ValueError(f"objective {self.name!r} has modality_weight > 0 but got no modality logits/targets")
            aux = modality_ce(modality_logits, modality_targets, mask)
            parts["modality_ce"] = aux.detach()
            total = total + self.modality_weight * aux
        parts["total"] = total.detach()
        return total, parts


def make_objective(name: str, aux_mse: float = 0.0, modality_weight: float = 0.0) -> Objective:
    """Objective by table name: lipo, lipo+mse (aux_mse defaults to 1.0), bpo, bce, pairwise, mse."""
    if name not in OBJECTIVES:
        raise ValueError(f"unknown objective {name!r}; choose from {OBJECTIVES}")
    main = "lipo" if name == "lipo+mse" else name
    if name == "lipo+mse" and aux_mse == 0.0:
        aux_mse = 1.0
    if aux_mse < 0 or modality_weight < 0:
        raise ValueError("aux_mse and modality_weight must be >= 0")
    return Objective(name=name, main=main, aux_mse=float(aux_mse), modality_weight=float(modality_weight))
