"""The contract between backbones, heads and the training loop.

A *list* is one image with its 1..n scenarios (the paper's unit of listwise
supervision). A backbone turns a padded batch of lists into one pooled vector
per (image, scenario) pair. ``encode`` is the shared-prefix path (the image and
prompt are encoded once per list); ``encode_naive`` is the paper's one-pair-
at-a-time path, kept as the reference that tests and ``mmscale bench prefix``
compare against.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import torch
from PIL import Image
from torch import nn

# image loading lives beside the data format; re-exported here for the backbones that import it from base
from mmscale_core.data.images import MAX_IMAGE_SIDE, KeyedImage, as_pil, pixel_key, resize_max_side  # noqa: E402,F401


@dataclass
class ListBatch:
    """B lists padded to ``n_max`` scenarios.

    images: B PIL images (one per list), or :class:`KeyedImage` for backbones with an image cache.
    texts:  B lists of scenario strings, list b has ``mask[b].sum()`` entries.
    mask:   (B, n_max) bool, True where a scenario exists.
    text_features, image_features: a frozen tower's outputs, already looked up by index
            ((B, n_max, D) with zeros in padding; (B, D)); a backbone that gets them skips that
            tower (then ``texts`` / ``images`` may be empty). See ``frozen_features``.
    """

    images: list[Image.Image]
    texts: list[list[str]]
    mask: torch.Tensor
    text_features: torch.Tensor | None = None
    image_features: torch.Tensor | None = None

    @classmethod
    def from_lists(cls, images: list[Image.Image], texts: list[list[str]]) -> "ListBatch":
        if len(images) != len(texts):
            raise ValueError(f"{len(images)} images but {len(texts)} scenario lists")
        n_max = max(len(t) for t in texts)
        mask = torch.zeros(len(texts), n_max, dtype=torch.bool)
        for b, t in enumerate(texts):
            mask[b, : len(t)] = True
        return cls(list(images), [list(t) for t in texts], mask)

    def __len__(self) -> int:
        return int(self.mask.shape[0])


class Backbone(nn.Module, ABC):
    """An encoder of (image, scenario) pairs, pooled to ``hidden_size``.

    Subclasses set ``hidden_size`` and ``lora_target_modules`` (module-name
    suffixes that peft's LoRA adapts) and implement both encode paths, which
    must agree within 1e-4 (relative) in values and gradients.
    """

    hidden_size: int
    lora_target_modules: list[str]
    # True when a pair's representation ignores the scenario (an image-only backbone): every scenario
    # of a list has the same input, so in eval mode ``ScoringModel`` scores it once per list
    list_constant: bool = False

    @abstractmethod
    def encode(self, batch: ListBatch) -> torch.Tensor:
        """(B, n_max, hidden_size) pair representations, shared-prefix path; padded slots are ignored."""

    @abstractmethod
    def encode_naive(self, batch: ListBatch) -> torch.Tensor:
        """Same output as ``encode``, one (image, scenario) pair per forward pass."""

    def forward(self, batch: ListBatch) -> torch.Tensor:
        """``encode``: wrappers (peft, accelerate) call the module itself."""
        return self.encode(batch)
