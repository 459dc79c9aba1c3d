"""Scoring heads on top of any backbone: the paper's "small MLP head" (sec 4.3).

``ScoringModel(backbone)`` maps each (image, scenario) pair's pooled
representation to one real-valued score with a small MLP, and optionally to
modality logits (text / image / both) for the multitask variant and the
modality-classification study (Table 5). The heads start with a LayerNorm so
the same head works on a 384-d MiniLM vector and on a 3584-d Qwen2-VL hidden
state, whose scales differ by orders of magnitude.

The model uses only the ``Backbone`` interface (``encode``, ``hidden_size``),
so a peft-wrapped backbone (LoRA) or a 7B VLM drops in unchanged.
"""

from __future__ import annotations

import torch
from torch import nn

from mmscale_core.models.base import ListBatch

MODALITY_LABELS = ("text", "image", "both")  # order of the modality head's logits (== data.MODALITIES)


def mlp_head(in_dim: int, hidden: int, out_dim: int, dropout: float = 0.1) -> nn.Sequential:
    """LayerNorm -> Linear -> GELU -> Dropout -> Linear."""
    return nn.Sequential(
        nn.LayerNorm(in_dim),
        nn.Linear(in_dim, hidden),
        nn.GELU(),
        nn.Dropout(dropout),
        nn.Linear(hidden, out_dim),
    )


class ScoringModel(nn.Module):
    """backbone + scalar head (+ optional modality head); ``forward(batch) -> (scores, modality_logits)``.

    scores: (B, n_max) raw head outputs, 0 in padded slots;
    modality_logits: (B, n_max, 3) in ``MODALITY_LABELS`` order, or None without a modality head.
    """

    def __init__(self, backbone: nn.Module, head_hidden: int = 256, dropout: float = 0.1,
                 modality_head: bool = False):
        super().__init__()
        self.backbone = backbone
        hidden_size = backbone.hidden_size
        self.scalar_head = mlp_head(hidden_size, head_hidden, 1, dropout)
        self.modality_head = (
            mlp_head(hidden_size, head_hidden, len(MODALITY_LABELS), dropout) if modality_head else None
        )

    def forward(self, batch: ListBatch) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The heads run on the real slots only (a batch of lists of 1-5 is ~30% padding); each head is
        per slot, so a padded slot's output is its fill value: score 0, modality logits 0 (ignored by
        every objective, as the padded scores are).

        A ``list_constant`` backbone (image only) gives every scenario of a list the same input. In
        eval mode its heads then run once per list and every scenario gets that list's output, so the
        scores are exactly tied, as the model is: per slot, a matrix product's rounding depends on the
        row's position in the batch, and the last-bit differences between copies of one input read as
        a ranking (a Kendall tau of 0.816 with a CI of zero width, where no ranking exists). In
        training each slot keeps its own dropout draw, as before.
        """
        pairs = self.backbone.encode(batch)  # (B, n_max, hidden): the shared-prefix path
        pairs = pairs.to(self.scalar_head[0].weight.dtype)  # a bf16 VLM under an fp32 head, without autocast
        mask = batch.mask.to(pairs.device)
        if getattr(self.backbone, "list_constant", False) and not self.training:
            first = pairs[:, 0]  # (B, hidden): slot 0 is real in every list
            list_of_slot = mask.nonzero()[:, 0]  # each real slot's list, in the row-major order of pairs[mask]
            scores = _unpad(self.scalar_head(first).squeeze(-1).float()[list_of_slot], mask)
            logits = None if self.modality_head is None else _unpad(
                self.modality_head(first).float()[list_of_slot], mask)
            return scores, logits
        real = pairs[mask]  # (n_real, hidden), row-major order of the mask
        scores = _unpad(self.scalar_head(real).squeeze(-1).float(), mask)
        logits = None
        if self.modality_head is not None:
            logits = _unpad(self.modality_head(real).float(), mask)
        return scores, logits


def _unpad(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(n_real, ...) values back to (B, n_max, ...), zeros in the padded slots (differentiable)."""
    out = values.new_zeros((*mask.shape, *values.shape[1:]))
    out[mask] = values
    return out
